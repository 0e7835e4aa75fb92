"""Out-of-distribution score: Mahalanobis distance in the backbone's pooled
feature space (Lee et al., 2018, simplified to one class-agnostic Gaussian).

The pooled 1280-d MobileNetV2 features of the training images are centred,
projected on their top ``k`` principal components and whitened (each
component divided by the square root of its variance plus a shrinkage term,
so tiny-variance directions cannot dominate). The squared distance is the
sum of squares of the whitened projection, i.e. exactly what the exported
model computes with built-in layers::

    z = Dense(k, name="ood_projection")(features)    # kernel W, bias -mu @ W
    d = Dense(1, use_bias=False, kernel=ones)(Multiply()([z, z]))

The threshold is a high quantile (99th percentile by default) of the
training images' own distances, so ~99% of training images pass. numpy
only, except :func:`distance_layers` (the exported form; Keras imported
when called).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHOD = "mahalanobis-pca-whitened"


@dataclass
class MahalanobisOOD:
    mean: np.ndarray  # (d,)
    projection: np.ndarray  # (d, k) whitening matrix W
    threshold: float
    quantile: float
    shrinkage: float
    explained_variance: float  # share of total variance in the k components

    @property
    def components(self) -> int:
        return int(self.projection.shape[1])

    @property
    def bias(self) -> np.ndarray:
        """Bias of the exported ``ood_projection`` Dense layer: ``-mean @ W``."""
        return -(self.mean @ self.projection)

    def distance(self, features) -> np.ndarray:
        """Squared Mahalanobis distance of each row; (N,)."""
        z = np.asarray(features, dtype=np.float64) @ self.projection + self.bias
        return np.sum(z * z, axis=1)

    def is_ood(self, features) -> np.ndarray:
        return self.distance(features) > self.threshold

    def summary(self) -> dict:
        return {
            "method": METHOD,
            "components": self.components,
            "shrinkage": self.shrinkage,
            "explained_variance": self.explained_variance,
            "threshold": float(self.threshold),
            "threshold_quantile": self.quantile,
        }


def fit_ood(features, components: int = 128, shrinkage: float = 0.05, quantile: float = 0.99) -> MahalanobisOOD:
    """Fit on training features (N, d).

    ``shrinkage`` is added to every component variance as a fraction of the
    mean variance of the kept components (ridge regularisation of the
    covariance inverse).
    """
    x = np.asarray(features, dtype=np.float64)
    n, d = x.shape
    k = int(min(components, d, max(n - 1, 1)))
    mean = x.mean(axis=0)
    xc = x - mean
    # SVD of the centred data: right singular vectors = covariance eigenvectors.
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    var = s**2 / max(n - 1, 1)
    top = var[:k]
    reg = top + shrinkage * float(top.mean())
    projection = vt[:k].T / np.sqrt(reg)[None, :]
    model = MahalanobisOOD(
        mean=mean,
        projection=projection,
        threshold=0.0,
        quantile=quantile,
        shrinkage=shrinkage,
        explained_variance=float(top.sum() / var.sum()) if var.sum() > 0 else 1.0,
    )
    model.threshold = float(np.quantile(model.distance(x), quantile))
    return model


def distance_layers(ood_input, projection: np.ndarray, bias: np.ndarray):
    """The squared distance of ``ood_input`` (a Keras tensor) in built-in
    layers, as every exported model computes it: ``ood_projection`` (the
    whitening Dense, kernel ``projection``, bias ``bias``), ``ood_square``
    and ``ood_distance`` (a sum). The layer names are the ONNX contract."""
    from keras import layers

    k = int(projection.shape[1])
    proj = layers.Dense(k, name="ood_projection")
    z = proj(ood_input)
    proj.set_weights([np.asarray(projection, np.float32), np.asarray(bias, np.float32)])
    total = layers.Dense(1, use_bias=False, name="ood_distance")
    distance = total(layers.Multiply(name="ood_square")([z, z]))
    total.set_weights([np.ones((k, 1), dtype=np.float32)])
    return distance
