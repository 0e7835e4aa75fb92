"""Loading a model file and running it: shared by the worker and the CLI.

No Django here. The runtime (ONNX Runtime, or TensorFlow for models without
an ONNX export) is imported only when a Predictor is built, which happens
lazily in the process that will use it: a Celery pool child, never its
parent (neither runtime's thread pools survive fork(), and a model loaded
before forking deadlocks the prefork pool).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
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

logger = logging.getLogger(__name__)


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
    onnx_file = metadata.get("onnx_file")
    plain_name = isinstance(onnx_file, str) and Path(onnx_file).name == onnx_file and onnx_file not in ("", "..")
    if onnx_file is not None and not plain_name:
        raise ModelFileError(f"onnx_file {onnx_file!r} must be the name of a file beside model.json")


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


BACKENDS = ("auto", "onnx", "tensorflow")


def requested_backend(backend: str | None = None) -> str:
    """``backend``, else $SKINCARE_INFERENCE_BACKEND, else "auto" (ValueError for anything else)."""
    value = (backend or os.environ.get("SKINCARE_INFERENCE_BACKEND") or "auto").strip().lower()
    if value not in BACKENDS:
        raise ValueError(f"inference backend must be one of {', '.join(BACKENDS)}, not {value!r}")
    return value


# ONNX Runtime's intra-op threads for one process. MobileNetV2 at batch 1 stops
# scaling after a few threads, and the worker's pool processes (and other
# workers on the host) share the CPU: more processes, not more threads, is
# how inference scales.
MAX_DEFAULT_THREADS = 4


def inference_threads() -> int:
    """$SKINCARE_INFERENCE_THREADS, else the CPUs this process may use, at most MAX_DEFAULT_THREADS."""
    configured = os.environ.get("SKINCARE_INFERENCE_THREADS", "").strip()
    if configured:
        try:
            threads = int(configured)
        except ValueError:
            raise ValueError(f"SKINCARE_INFERENCE_THREADS must be a whole number, not {configured!r}") from None
        if threads < 1:
            raise ValueError("SKINCARE_INFERENCE_THREADS must be at least 1")
        return threads
    return max(1, min(len(os.sched_getaffinity(0)), MAX_DEFAULT_THREADS))


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
        self._keras: _KerasModel | None = None
        self._onnx: _OnnxModel | None = None
        if requested != "tensorflow":
            self._onnx = self._open_onnx(required=requested == "onnx")
        if self._onnx is None:
            self._keras = _KerasModel(self.model_path, metadata)
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

    def _open_onnx(self, *, required: bool) -> _OnnxModel | None:
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
        return _OnnxModel(path, self.model_path, self.input_size)

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

    def _keras_model(self) -> _KerasModel:
        if self._keras is None:
            logger.info("Loading the Keras model of %s for heat maps", self.version_label)
            self._keras = _KerasModel(self.model_path, self.metadata)
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


def _bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out, in) weights of a half-pixel-centre bilinear resize, as tf.image.resize does it."""
    centres = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    centres = np.clip(centres, 0, in_size - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, in_size - 1)
    frac = centres - low
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    weights[np.arange(out_size), low] += 1.0 - frac
    weights[np.arange(out_size), high] += frac
    return weights


def gradcam_heatmap(weighted: np.ndarray, size: int) -> np.ndarray:
    """Grad-CAM from its weighted feature map (h, w): ReLU, bilinear resize to (size, size), peak 1.

    The same steps, in the same order, as the TensorFlow Grad-CAM; an
    all-zero map stays zero.
    """
    cam = np.maximum(np.asarray(weighted, dtype=np.float64), 0.0)
    rows, cols = _bilinear_matrix(size, cam.shape[0]), _bilinear_matrix(size, cam.shape[1])
    heat = rows @ cam @ cols.T
    peak = heat.max()
    return (heat / peak if peak > 0 else np.zeros_like(heat)).astype(np.float32)


class _OnnxModel:
    """An ONNX export (training/onnx_export.py) on ONNX Runtime's CPU provider."""

    def __init__(self, path: Path, model_path: Path, input_size: int):
        import onnxruntime as ort

        from training.onnx_export import GRADCAM_LAYER, GRADCAM_OUTPUT, SOURCE_SHA256

        options = ort.SessionOptions()
        options.intra_op_num_threads = inference_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle threads sleep instead of busy-waiting after each run: between
        # images the process decodes JPEGs and encodes PNGs, and other workers
        # share the cores (spinning doubled single-image latency under load).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime raises its own types for a bad file
            raise ModelFileError(f"cannot load {path}: {exc}") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelFileError(f"{path.name} has {len(inputs)} inputs; expected one image")
        self.input_name = inputs[0].name
        shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape)
        if shape != (None, input_size, input_size, 3):
            raise ModelFileError(f"ONNX input shape is {shape}, metadata says {(None, input_size, input_size, 3)}")
        names = [o.name for o in self.session.get_outputs()]
        if "probability" not in names:
            raise ModelFileError(f"ONNX outputs are {names}; a 'probability' output is required")
        props = self.session.get_modelmeta().custom_metadata_map
        source = props.get(SOURCE_SHA256)
        if source:
            if not model_path.is_file():
                raise ModelFileError(f"{model_path} is missing")
            if sha256_of(model_path) != source:
                # A stale export would give another model's answers under this one's name.
                raise ModelFileError(f"{path.name} was not exported from {model_path.name}; export it again")
        self.has_ood = "ood_distance" in names
        self.gradcam_layer = props.get(GRADCAM_LAYER) if GRADCAM_OUTPUT in names else None
        self.outputs = ["probability"] + ["ood_distance"] * self.has_ood + [GRADCAM_OUTPUT] * bool(self.gradcam_layer)
        # The worker asks for an image's heat map right after its prediction:
        # keep the last batch's maps so that this costs no second forward pass.
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def _forward(self, batch: np.ndarray) -> dict:
        values = self.session.run(self.outputs, {self.input_name: batch.astype(np.float32)})
        return dict(zip(self.outputs, values, strict=True))

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self._forward(batch)
        probabilities = out["probability"].reshape(len(batch)).astype(np.float64)
        distances = out["ood_distance"].reshape(len(batch)).astype(np.float64) if self.has_ood else None
        if self.gradcam_layer is not None:
            self._last = (batch.copy(), out["gradcam"])
        return probabilities, distances

    def gradcam_map(self, array: np.ndarray) -> np.ndarray:
        """The export's ``gradcam`` output (h, w) for one image."""
        last = self._last
        if last is not None:
            for image, weighted in zip(*last, strict=True):
                if np.array_equal(image, array):
                    return weighted
        return self._forward(np.asarray(array)[None])["gradcam"][0]


class _KerasModel:
    """The Keras model on TensorFlow: forward pass and autodiff Grad-CAM."""

    def __init__(self, model_path: Path, metadata: dict):
        import keras
        import tensorflow as tf

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
        from training.onnx_export import default_gradcam_layer

        return default_gradcam_layer(self.model)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self._forward(batch.astype(np.float32))
        probabilities = out["probability"].numpy().reshape(len(batch)).astype(np.float64)
        distances = out["ood_distance"].numpy().reshape(len(batch)).astype(np.float64) if self.has_ood else None
        return probabilities, distances

    def heatmap(self, array: np.ndarray) -> np.ndarray:
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

        # Built and traced once per model, like the forward pass.
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
