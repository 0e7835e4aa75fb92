"""The model a worker process holds: loaded lazily, once per process.

A model version's file lives in (possibly remote) storage. The first task a
pool process runs for a version copies the file to a local cache folder,
checks its sha256 against the registry, loads it, and keeps the Predictor
for every later task. Nothing here runs at import time.
"""

import logging
import os
import tempfile
import threading
from pathlib import Path

from django.conf import settings

from .runtime import ModelFileError, Predictor, sha256_of

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_predictors: dict[str, Predictor] = {}  # keyed by model file sha256
# A worker serves the active model (and, briefly around a switch, the old
# one): keep a couple in memory, not every version ever seen.
MAX_CACHED = 2


def local_copy(model_version) -> Path:
    """A verified local path to ``model_version``'s file, copied from storage if needed."""
    cache_dir = Path(settings.SKINCARE_MODEL_CACHE_DIR)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{model_version.sha256}.keras"
    if target.exists() and sha256_of(target) == model_version.sha256:
        return target
    # Write under a temporary name and rename, so a concurrent process never
    # loads a half-written file.
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, model_version.file.open("rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
        digest = sha256_of(tmp)
        if digest != model_version.sha256:
            raise ModelFileError(
                f"stored file of {model_version} has sha256 {digest}, registry says {model_version.sha256}"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def get_predictor(model_version) -> Predictor:
    with _lock:
        predictor = _predictors.get(model_version.sha256)
        if predictor is not None:
            return predictor
        path = local_copy(model_version)
        logger.info("Loading model %s in process %s", model_version, os.getpid())
        predictor = Predictor(path, model_version.metadata)
        while len(_predictors) >= MAX_CACHED:
            _predictors.pop(next(iter(_predictors)))
        _predictors[model_version.sha256] = predictor
        return predictor
