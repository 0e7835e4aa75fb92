"""Loading a model file and running it: shared by the worker and the CLI.

No Django here. TensorFlow is imported only when a Predictor is built, which
happens lazily in the process that will use it: a Celery pool child, never
its parent (TensorFlow's thread pools do not survive fork(), and a model
loaded before forking deadlocks the prefork pool).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.preprocessing import PIPELINES, VIGNETTE_LEVEL, load_for_model

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"
METADATA_FILE = "model.json"
SUPPORTED_FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model file or its metadata cannot be used; the message says why."""


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def shipped_model_dir() -> Path:
    """The folder of the model shipped as active (named in models/ACTIVE)."""
    name = (MODELS_DIR / "ACTIVE").read_text().strip()
    return MODELS_DIR / name


def read_metadata(model_dir: str | os.PathLike) -> dict:
    path = Path(model_dir) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{path} is missing") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path} is not valid JSON: {exc}") from None
    validate_metadata(metadata)
    return metadata


def validate_metadata(metadata: dict) -> None:
    required = ("name", "version", "input_size", "preprocessing", "threshold")
    missing = [key for key in required if key not in metadata]
    if missing:
        raise ModelFileError(f"model metadata lacks {', '.join(missing)}")
    if metadata.get("format_version", 1) != SUPPORTED_FORMAT_VERSION:
        raise ModelFileError(f"unsupported model format_version {metadata.get('format_version')}")
    if metadata["preprocessing"] not in PIPELINES:
        # A model trained with other preprocessing would be fed images it
        # never learned from: refuse rather than predict quietly wrong.
        raise ModelFileError(
            f"model expects preprocessing {metadata['preprocessing']!r}; this code provides {', '.join(PIPELINES)}"
        )
    size = metadata["input_size"]
    if not isinstance(size, int) or not 16 <= size <= 1024:
        raise ModelFileError(f"input_size {size!r} is not a sensible image size")
    if not 0.0 < float(metadata["threshold"]) < 1.0:
        raise ModelFileError("threshold must lie strictly between 0 and 1")
    if "ood" in metadata:
        ood = metadata["ood"]
        threshold = ood.get("threshold") if isinstance(ood, dict) else None
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not threshold > 0:
            raise ModelFileError("ood must be an object with a positive numeric threshold")


@dataclass(frozen=True)
class Result:
    probability_malignant: float
    label: str
    confidence: float
    preprocess_ms: float
    inference_ms: float
    # None when the model has no out-of-distribution output (format v1 models)
    # or, for the flag, no threshold in its metadata.
    ood_distance: float | None = None
    out_of_distribution: bool | None = None


def decide(probability: float, metadata: dict) -> tuple[str, float]:
    """Turn P(melanoma) into (label, confidence) with the model's own threshold.

    A model may carry an ``uncertain_band`` [low, high] chosen on out-of-fold
    data; inside it the answer is "uncertain" (needs specialist review)
    rather than a bare class. Confidence is the probability of the class
    given (for "uncertain", of the more likely class).
    """
    threshold = float(metadata["threshold"])
    band = metadata.get("uncertain_band")
    confidence = max(probability, 1.0 - probability)
    if band and band[0] <= probability < band[1]:
        return "uncertain", confidence
    if probability >= threshold:
        return "malignant", probability
    return "benign", 1.0 - probability


# An image-quality gate beside the model's own out-of-distribution score: a
# blank frame or a screenshot has so little texture that its backbone
# features sit close to the data's mean, and the Mahalanobis distance lets
# it pass. Measured on 3,000 training images (square-sog-v2, 224 px): the
# share of exactly flat lit pixels peaks at 0.37 (median 0.014), the lit
# share never falls below 0.32; a screenshot scores 0.96, a blank image 1.0.
FLAT_LIMIT = 0.6
MIN_LIT = 0.2


def featureless(array: np.ndarray) -> bool:
    """True for images with almost no texture (blank, flat graphics) or almost no light."""
    pixels = array.astype(np.int16)
    lit = pixels[:-1, :-1].mean(axis=2) > VIGNETTE_LEVEL
    if lit.mean() < MIN_LIT:
        return True
    still_x = np.abs(np.diff(pixels, axis=1))[:-1].sum(axis=2) == 0
    still_y = np.abs(np.diff(pixels, axis=0))[:, :-1].sum(axis=2) == 0
    flat = (still_x & still_y & lit).sum() / lit.sum()
    return bool(flat > FLAT_LIMIT)


class Predictor:
    """A loaded model plus its metadata; call ``predict_sources`` or ``predict_batch``.

    Two output contracts are understood: a single (N, 1) probability tensor
    (format v1 models), or a dict with ``probability`` and, optionally,
    ``ood_distance`` (a squared Mahalanobis distance from the training data).
    """

    def __init__(self, model_path: str | os.PathLike, metadata: dict):
        validate_metadata(metadata)
        import keras
        import tensorflow as tf

        self.metadata = metadata
        self.input_size = int(metadata["input_size"])
        try:
            self.model = keras.models.load_model(model_path, compile=False)
        except Exception as exc:  # Keras raises many types for a bad file
            raise ModelFileError(f"cannot load {model_path}: {exc}") from exc
        expected = (None, self.input_size, self.input_size, 3)
        actual = tuple(self.model.input_shape)
        if actual != expected:
            raise ModelFileError(f"model input shape is {actual}, metadata says {expected}")
        outputs = self.model.output
        if isinstance(outputs, dict):
            if "probability" not in outputs:
                raise ModelFileError(f"model outputs are {sorted(outputs)}; a 'probability' output is required")
            self.has_ood = "ood_distance" in outputs
        elif len(self.model.outputs) != 1:
            raise ModelFileError("model has several unnamed outputs; expected one probability or a dict of outputs")
        else:
            self.has_ood = False
        if "ood" in metadata and not self.has_ood:
            # The metadata promises a warning the model cannot give: refuse it
            # rather than silently show every image as in-distribution.
            raise ModelFileError("metadata has 'ood' but the model has no 'ood_distance' output")
        self.ood_threshold = float(metadata["ood"]["threshold"]) if "ood" in metadata else None
        self.gradcam_layer = self._find_gradcam_layer(metadata.get("gradcam_layer"))
        self._gradcam = None  # built on the first heatmap() call

        model = self.model

        def forward(x):
            out = model(x, training=False)
            if not isinstance(out, dict):
                out = {"probability": out}
            return {key: out[key] for key in ("probability", "ood_distance") if key in out}

        # One traced graph for any batch size: no per-call retracing and none
        # of model.predict()'s per-call set-up cost.
        self._forward = tf.function(
            forward, input_signature=[tf.TensorSpec(expected, tf.float32)], reduce_retracing=True
        )
        self.predict_batch(np.zeros((1, *expected[1:]), dtype=np.uint8))  # trace now, not on the first image

    def _find_gradcam_layer(self, name: str | None) -> str | None:
        """The conv activation Grad-CAM explains: named in metadata, else the last 4-D layer."""
        if name:
            try:
                layer = self.model.get_layer(name)
            except ValueError:
                raise ModelFileError(f"gradcam_layer {name!r} is not a layer of the model") from None
            if len(layer.output.shape) != 4:
                raise ModelFileError(f"gradcam_layer {name!r} has output shape {layer.output.shape}, not (N, H, W, C)")
            return name
        # Older models do not name one; the last spatial feature map is the
        # standard choice (finest semantics that still has a location). A
        # pooling layer after it would only halve the map's resolution.
        import keras

        skip = (keras.layers.InputLayer, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
        for layer in reversed(self.model.layers):
            if isinstance(layer, skip):
                continue
            try:
                if len(layer.output.shape) == 4:
                    return layer.name
            except (AttributeError, ValueError):  # a layer used at several places has no single output
                continue
        return None

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike) -> Predictor:
        metadata = read_metadata(model_dir)
        return cls(Path(model_dir) / metadata.get("file", "model.keras"), metadata)

    def preprocess(self, source) -> np.ndarray:
        """Exactly what training did to an image (ImageError for unusable input)."""
        return load_for_model(source, self.input_size, self.metadata["preprocessing"])

    @property
    def version_label(self) -> str:
        return f"{self.metadata['name']}-{self.metadata['version']}"

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 (N, S, S, 3) -> (probabilities (N,), OOD distances (N,) or None)."""
        out = self._forward(batch.astype(np.float32))
        probabilities = out["probability"].numpy().reshape(len(batch)).astype(np.float64)
        distances = out["ood_distance"].numpy().reshape(len(batch)).astype(np.float64) if self.has_ood else None
        return probabilities, distances

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) -> float64 (N,) probabilities of melanoma."""
        return self._run(batch)[0]

    def predict_arrays(self, arrays, preprocess_ms: float = 0.0) -> list[Result]:
        """Predict preprocessed uint8 arrays and apply the model's decision rule."""
        t0 = time.perf_counter()
        probabilities, distances = self._run(np.stack(arrays))
        inference_ms = (time.perf_counter() - t0) * 1000 / len(arrays)
        results = []
        for i, p in enumerate(probabilities):
            p = float(np.clip(p, 0.0, 1.0))
            label, confidence = decide(p, self.metadata)
            distance = float(distances[i]) if distances is not None else None
            flagged = None
            if distance is not None and self.ood_threshold is not None:
                flagged = distance > self.ood_threshold
            if featureless(arrays[i]):
                flagged = True
            results.append(Result(p, label, confidence, preprocess_ms, inference_ms, distance, flagged))
        return results

    def predict_sources(self, sources) -> list[Result]:
        """Preprocess and predict paths/bytes/files (ImageError propagates)."""
        t0 = time.perf_counter()
        arrays = [self.preprocess(src) for src in sources]
        preprocess_ms = (time.perf_counter() - t0) * 1000 / len(arrays)
        return self.predict_arrays(arrays, preprocess_ms)

    def predict_source(self, source) -> Result:
        return self.predict_sources([source])[0]

    def heatmap(self, array: np.ndarray) -> np.ndarray:
        """Grad-CAM of one preprocessed uint8 (S, S, 3) image: float32 (S, S) in 0..1.

        Where the model looked for evidence of melanoma: the feature map of
        ``gradcam_layer`` weighted by the spatially averaged gradient of the
        logit (gradients of a saturated sigmoid vanish, so the logit layer
        is used when the model has one).
        """
        if self._gradcam is None:
            self._gradcam = self._build_gradcam()
        heat = self._gradcam(np.asarray(array, dtype=np.float32)[None])
        return heat.numpy()[0]

    def _build_gradcam(self):
        import keras
        import tensorflow as tf

        if self.gradcam_layer is None:
            raise ModelFileError("the model has no spatial layer to explain")
        model = self.model
        try:
            target = model.get_layer("logit").output
        except ValueError:
            target = model.output["probability"] if isinstance(model.output, dict) else model.output
        grad_model = keras.Model(model.inputs, [model.get_layer(self.gradcam_layer).output, target])
        size = self.input_size

        def gradcam(x):
            with tf.GradientTape() as tape:
                features, score = grad_model(x, training=False)
                # Images in a batch are independent, so the gradient of the
                # sum is each image's own gradient.
                total = tf.reduce_sum(tf.cast(score, tf.float32))
            grads = tf.cast(tape.gradient(total, features), tf.float32)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one weight per channel
            cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(features, tf.float32), axis=-1, keepdims=True))
            cam = tf.image.resize(cam, (size, size), method="bilinear")[..., 0]
            peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
            return tf.math.divide_no_nan(cam, peak)  # an all-zero map stays zero

        # Built and traced once per Predictor, like the forward pass.
        return tf.function(
            gradcam, input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)], reduce_retracing=True
        )


def _jet(x: np.ndarray) -> np.ndarray:
    """The classic 'jet' colour map as piecewise-linear RGB in 0..1 (no matplotlib needed)."""
    return np.clip(1.5 - np.abs(4.0 * x[..., None] - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)


HEATMAP_MAX_ALPHA = 0.6  # the lesion stays visible under the hottest spot


def heatmap_png(heat: np.ndarray) -> bytes:
    """An (S, S) 0..1 heat map as an RGBA PNG to lay over the framed image.

    Colour follows the jet map and opacity grows with heat, so cold regions
    are transparent rather than painted blue.
    """
    from PIL import Image

    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)
    rgba = np.empty((*heat.shape, 4), dtype=np.uint8)
    rgba[..., :3] = np.round(_jet(heat) * 255)
    rgba[..., 3] = np.round(heat * HEATMAP_MAX_ALPHA * 255)
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    return buffer.getvalue()
