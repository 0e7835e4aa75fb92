"""Loading a model file and running it: shared by the worker and the CLI.

No Django here. TensorFlow is imported only when a Predictor is built, which
happens lazily in the process that will use it: a Celery pool child, never
its parent (TensorFlow's thread pools do not survive fork(), and a model
loaded before forking deadlocks the prefork pool).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.preprocessing import PREPROCESSING_ID, load_for_model

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
    if metadata["preprocessing"] != PREPROCESSING_ID:
        # A model trained with other preprocessing would be fed images it
        # never learned from: refuse rather than predict quietly wrong.
        raise ModelFileError(
            f"model expects preprocessing {metadata['preprocessing']!r}, this code provides {PREPROCESSING_ID!r}"
        )
    size = metadata["input_size"]
    if not isinstance(size, int) or not 16 <= size <= 1024:
        raise ModelFileError(f"input_size {size!r} is not a sensible image size")
    if not 0.0 < float(metadata["threshold"]) < 1.0:
        raise ModelFileError("threshold must lie strictly between 0 and 1")


@dataclass(frozen=True)
class Result:
    probability_malignant: float
    label: str
    confidence: float
    preprocess_ms: float
    inference_ms: float


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


class Predictor:
    """A loaded model plus its metadata; call ``predict_sources`` or ``predict_batch``."""

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
        model = self.model
        # One traced graph for any batch size: no per-call retracing and none
        # of model.predict()'s per-call set-up cost.
        self._forward = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec(expected, tf.float32)],
            reduce_retracing=True,
        )
        self.predict_batch(np.zeros((1, *expected[1:]), dtype=np.uint8))  # trace now, not on the first image

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike) -> Predictor:
        metadata = read_metadata(model_dir)
        return cls(Path(model_dir) / metadata.get("file", "model.keras"), metadata)

    @property
    def version_label(self) -> str:
        return f"{self.metadata['name']}-{self.metadata['version']}"

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) -> float64 (N,) probabilities of melanoma."""
        out = self._forward(batch.astype(np.float32)).numpy()
        return out.reshape(len(batch)).astype(np.float64)

    def predict_arrays(self, arrays, preprocess_ms: float = 0.0) -> list[Result]:
        """Predict preprocessed uint8 arrays and apply the model's decision rule."""
        t0 = time.perf_counter()
        probabilities = self.predict_batch(np.stack(arrays))
        inference_ms = (time.perf_counter() - t0) * 1000 / len(arrays)
        results = []
        for p in probabilities:
            p = float(np.clip(p, 0.0, 1.0))
            label, confidence = decide(p, self.metadata)
            results.append(Result(p, label, confidence, preprocess_ms, inference_ms))
        return results

    def predict_sources(self, sources) -> list[Result]:
        """Preprocess and predict paths/bytes/files (ImageError propagates)."""
        t0 = time.perf_counter()
        arrays = [load_for_model(src, self.input_size) for src in sources]
        preprocess_ms = (time.perf_counter() - t0) * 1000 / len(arrays)
        return self.predict_arrays(arrays, preprocess_ms)

    def predict_source(self, source) -> Result:
        return self.predict_sources([source])[0]
