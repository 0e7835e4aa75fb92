"""The real Celery app, plus fault injection driven by files, for tests/faults only.

Workers of the fault tests run ``celery -A tests.faults.faultapp``. In the
folder named by ``SKINCARE_FAULT_DIR``, after a run has taken its lease and
before it loads the model (the middle of a task):

- ``hang``: one run (the first to take the file) sleeps, ignoring the soft
  time limit, until the hard time limit kills its pool process;
- ``kill-worker``: one run SIGKILLs its whole worker, parent and pool;
- ``kill-pool``: one run SIGKILLs its pool process (the parent lives on);
- ``slow``: every run sleeps this many seconds (the file's content).
"""

import os
import signal
import time
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded

from inference import worker_cache
from skincare.celery import app  # noqa: F401  (the app this module stands for)

FAULT_DIR = Path(os.environ.get("SKINCARE_FAULT_DIR", "/nonexistent"))
_real_get_predictor = worker_cache.get_predictor


def _take(name: str) -> bool:
    """Whether this process took the one-shot fault ``name`` (atomically: one taker only)."""
    try:
        os.rename(FAULT_DIR / name, FAULT_DIR / f"{name}.taken-{os.getpid()}")
    except FileNotFoundError:
        return False
    return True


def get_predictor(model_version):
    if _take("hang"):
        end = time.monotonic() + 600
        while time.monotonic() < end:
            try:
                time.sleep(0.1)
            except SoftTimeLimitExceeded:
                pass  # stuck in code that ignores the soft limit: only the hard one ends it
    if _take("kill-worker"):
        os.killpg(os.getpgrp(), signal.SIGKILL)
    if _take("kill-pool"):
        os.kill(os.getpid(), signal.SIGKILL)
    slow = FAULT_DIR / "slow"
    if slow.exists():
        time.sleep(float(slow.read_text() or 1))
    return _real_get_predictor(model_version)


worker_cache.get_predictor = get_predictor
