"""Which inference runtime runs a model, and with how many threads.

Plain configuration (arguments and environment variables); the runtimes
themselves live in ``onnx_backend`` and ``keras_backend``.
"""

from __future__ import annotations

import os

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
