"""The model a worker process holds: loaded lazily, once per process.

A model version's files live in (possibly remote) storage. The first task a
pool process runs for a version copies the model file, and its ONNX export
when it has one, to a local cache folder, checks each sha256 against the
registry, loads it, and keeps the Predictor for every later task. Nothing
here runs at import time.
"""

import logging
import os
import tempfile
import threading
from pathlib import Path

from django.conf import settings

from training.files import sha256_of

from .runtime import ModelFileError, Predictor

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_predictors: dict[tuple[str, str], Predictor] = {}  # keyed by (model file sha256, ONNX file sha256)
# A worker serves the active model (and, briefly around a switch, the old
# one): keep a couple in memory, not every version ever seen.
MAX_CACHED = 2


def _verified_copy(field_file, digest: str, suffix: str, what: str) -> Path:
    """A local copy of ``field_file`` named by its sha256, checked against ``digest``."""
    cache_dir = Path(settings.SKINCARE_MODEL_CACHE_DIR)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{digest}{suffix}"
    if target.exists() and sha256_of(target) == digest:
        return target
    # Write under a temporary name and rename, so a concurrent process never
    # loads a half-written file.
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, field_file.open("rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
        actual = sha256_of(tmp)
        if actual != digest:
            raise ModelFileError(f"stored {what} has sha256 {actual}, registry says {digest}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def local_copy(model_version) -> Path:
    """A verified local path to ``model_version``'s file, copied from storage if needed."""
    return _verified_copy(model_version.file, model_version.sha256, ".keras", f"file of {model_version}")


def local_onnx_copy(model_version) -> Path | None:
    """A verified local path to ``model_version``'s ONNX export; None when it has none."""
    if not model_version.onnx_file:
        return None
    if not model_version.onnx_sha256:
        raise ModelFileError(f"{model_version} has an ONNX file but no sha256 to check it against")
    return _verified_copy(model_version.onnx_file, model_version.onnx_sha256, ".onnx", f"ONNX file of {model_version}")


def get_predictor(model_version) -> Predictor:
    key = (model_version.sha256, model_version.onnx_sha256 or "")
    with _lock:
        predictor = _predictors.get(key)
        if predictor is not None:
            return predictor
        backend = settings.SKINCARE_INFERENCE_BACKEND
        path = local_copy(model_version)
        onnx_path = local_onnx_copy(model_version) if backend != "tensorflow" else None
        predictor = Predictor(path, model_version.metadata, onnx_path=onnx_path, backend=backend)
        logger.info("Loaded model %s on %s in process %s", model_version, predictor.backend, os.getpid())
        while len(_predictors) >= MAX_CACHED:
            _predictors.pop(next(iter(_predictors)))
        _predictors[key] = predictor
        return predictor
