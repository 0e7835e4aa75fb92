"""The Predictor: one model loaded for prediction, shared by the worker and the CLI.

No Django here. The runtime (ONNX Runtime, or TensorFlow for models without
an ONNX export) is imported only when a Predictor is built, which happens
lazily in the process that will use it: a Celery pool child, never its
parent (neither runtime's thread pools survive fork(), and a model loaded
before forking deadlocks the prefork pool).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from training.preprocessing import load_for_model

from .backends import requested_backend
from .decision import Result, decide, featureless
from .heatmaps import gradcam_heatmap
from .keras_backend import KerasModel
from .model_format import ModelFileError, read_metadata, validate_metadata
from .onnx_backend import OnnxModel

logger = logging.getLogger(__name__)


class Predictor:
    """A loaded model plus its metadata; call ``predict_sources`` or ``predict_batch``.

    Two backends run the same network: ONNX Runtime, when the model has an
    ONNX export (``onnx_path``) and onnxruntime imports, and TensorFlow
    otherwise. ``backend`` (default: $SKINCARE_INFERENCE_BACKEND, else
    "auto") forces one: "onnx" raises ModelFileError when the ONNX file
    cannot be used, "tensorflow" ignores it. On the ONNX path TensorFlow is
    never imported, unless the export has no ``gradcam`` output: then heat
    maps (only) load the Keras model on first use.

    Two output contracts are understood: a single (N, 1) probability tensor
    (format v1 models), or a dict with ``probability`` and, optionally,
    ``ood_distance`` (a squared Mahalanobis distance from the training data).
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        metadata: dict,
        *,
        onnx_path: str | os.PathLike | None = None,
        backend: str | None = None,
    ):
        validate_metadata(metadata)
        self.metadata = metadata
        self.input_size = int(metadata["input_size"])
        self.model_path = Path(model_path)
        self.onnx_path = Path(onnx_path) if onnx_path is not None else None
        requested = requested_backend(backend)
        self._keras: KerasModel | None = None
        self._onnx: OnnxModel | None = None
        if requested != "tensorflow":
            self._onnx = self._open_onnx(required=requested == "onnx")
        if self._onnx is None:
            self._keras = KerasModel(self.model_path, metadata)
        engine = self._onnx or self._keras
        self.backend = "onnx" if self._onnx is not None else "tensorflow"
        self.has_ood = engine.has_ood
        if "ood" in metadata and not self.has_ood:
            # The metadata promises a warning the model cannot give: refuse it
            # rather than silently show every image as in-distribution.
            raise ModelFileError("metadata has 'ood' but the model has no 'ood_distance' output")
        self.ood_threshold = float(metadata["ood"]["threshold"]) if "ood" in metadata else None
        if self._onnx is not None and self._onnx.gradcam_layer is not None:
            named = metadata.get("gradcam_layer")
            if named and named != self._onnx.gradcam_layer:
                raise ModelFileError(
                    f"gradcam_layer {named!r} is not the layer {self.onnx_path.name} explains "
                    f"({self._onnx.gradcam_layer!r}); export the ONNX file again"
                )
            self.gradcam_layer = self._onnx.gradcam_layer
        elif self._keras is not None:
            self.gradcam_layer = self._keras.gradcam_layer
        else:
            # Heat maps of this model come from TensorFlow, checked when first asked for.
            self.gradcam_layer = metadata.get("gradcam_layer")
        self.predict_batch(np.zeros((1, self.input_size, self.input_size, 3), dtype=np.uint8))  # warm up now

    def _open_onnx(self, *, required: bool) -> OnnxModel | None:
        """The ONNX model, or None to run on TensorFlow (ModelFileError if ``required``)."""
        path = self.onnx_path
        if path is None or not path.is_file():
            reason = "the model has no ONNX file" if path is None else f"{path} is missing"
            if required:
                raise ModelFileError(f"ONNX backend requested but {reason}")
            if path is not None:
                logger.warning("%s; running %s on TensorFlow", reason, self.version_label)
            return None
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            if required:
                raise ModelFileError(f"ONNX backend requested but onnxruntime cannot be imported: {exc}") from exc
            logger.warning("onnxruntime cannot be imported (%s); running %s on TensorFlow", exc, self.version_label)
            return None
        # A file that is present but unusable (damaged, for another input size,
        # exported from another .keras file) is an error to fix, not to hide.
        return OnnxModel(path, self.model_path, self.input_size)

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike, *, backend: str | None = None) -> Predictor:
        """The model in a folder as training wrote it (model.json, model.keras, model.onnx if exported)."""
        model_dir = Path(model_dir)
        metadata = read_metadata(model_dir)
        onnx_file = metadata.get("onnx_file")
        return cls(
            model_dir / metadata.get("file", "model.keras"),
            metadata,
            onnx_path=model_dir / onnx_file if onnx_file else None,
            backend=backend,
        )

    @property
    def model(self):
        """The Keras model (loads TensorFlow if this Predictor runs on ONNX)."""
        return self._keras_model().model

    def _keras_model(self) -> KerasModel:
        if self._keras is None:
            logger.info("Loading the Keras model of %s for heat maps", self.version_label)
            self._keras = KerasModel(self.model_path, self.metadata)
        return self._keras

    def preprocess(self, source) -> np.ndarray:
        """Exactly what training did to an image (ImageError for unusable input)."""
        return load_for_model(source, self.input_size, self.metadata["preprocessing"])

    @property
    def version_label(self) -> str:
        return f"{self.metadata['name']}-{self.metadata['version']}"

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 (N, S, S, 3) -> (probabilities (N,), OOD distances (N,) or None)."""
        engine = self._onnx if self._onnx is not None else self._keras
        return engine.run(batch)

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
        is used when the model has one). On ONNX the weighted map comes from
        the export's ``gradcam`` output (no autodiff needed, see
        training/onnx_export.py); models without it use TensorFlow.
        """
        if self._onnx is not None and self._onnx.gradcam_layer is not None:
            return gradcam_heatmap(self._onnx.gradcam_map(array), self.input_size)
        return self._keras_model().heatmap(array)
