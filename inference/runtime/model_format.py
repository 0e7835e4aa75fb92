"""A model folder as training writes it: where the shipped one is, and its model.json.

``read_metadata`` reads and ``validate_metadata`` checks what this code needs
of model.json; anything it cannot honour raises ModelFileError with the
reason. No Django and no model runtime here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from training.preprocessing import PIPELINES

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO_ROOT / "models"
METADATA_FILE = "model.json"
SUPPORTED_FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model file or its metadata cannot be used; the message says why."""


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
