"""File helpers with no heavy imports (standard library only).

``sha256_of(path)`` is the one file checksum of the training package (model
files, the ONNX export's source, backbone weights); it imports nothing beyond
``hashlib``, so ``inference`` and the torch-only ``convert_backbone`` steps can
use it without pulling in NumPy or TensorFlow.
"""

from __future__ import annotations

import hashlib
import os

CHUNK = 1 << 20


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
