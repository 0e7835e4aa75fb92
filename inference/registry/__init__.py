"""The model registry: every way in for a model version, and every switch between versions.

- ``archive``: a model folder uploaded as a .zip, unpacked safely.
- ``folder``: reading a model folder and checking what is in it.
- ``load_check``: proving in a child process that the model loads (``python -m inference validate``).
- ``lifecycle``: registering, activating, rolling back and shadowing versions.

Nothing here imports TensorFlow. The functions other modules use are
re-exported here (``from inference import registry; registry.activate_model_version(...)``).
"""

from .archive import unpack_model_archive
from .lifecycle import (
    activate_model_version,
    register_model_upload,
    register_model_version,
    rollback_model_version,
    rollback_target,
    start_shadow,
    stop_shadow,
    withdraw_site_model,
)
from .load_check import check_model_loads

__all__ = [
    "activate_model_version",
    "check_model_loads",
    "register_model_upload",
    "register_model_version",
    "rollback_model_version",
    "rollback_target",
    "start_shadow",
    "stop_shadow",
    "unpack_model_archive",
    "withdraw_site_model",
]
