"""Reading a model folder for registration, and checking everything in it short of loading the model.

A folder as training writes it: model.json, the model file, optionally its
ONNX export, and beside them the model card, evaluation.json and two plots.
Every problem is a ValidationError with a readable reason. Whether the model
itself loads is checked in a child process (``load_check``).
"""

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError

from training.files import sha256_of

from ..runtime import METADATA_FILE, ModelFileError, validate_metadata

# Beside the model: what the admin shows.
MODEL_CARD_FILE = "MODEL_CARD.md"
EVALUATION_FILE = "evaluation.json"
PLOT_FILES = {"roc_curve": "roc_curve.png", "reliability_diagram": "reliability_diagram.png"}
MAX_TEXT_BYTES = 2 * 1024 * 1024
MAX_PLOT_BYTES = 20 * 1024 * 1024
MAX_PLOT_PIXELS = 8000 * 8000
# Names become storage paths (models/<name>-<version>/...).
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ModelFile:
    """What identifies the model in a folder: its checked model.json, and its model file with its sha256."""

    metadata: dict
    path: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def version(self) -> str:
        return str(self.metadata["version"])


@dataclass(frozen=True)
class Artifacts:
    """What training wrote beside the model file, checked and read."""

    onnx_path: Path | None  # the ONNX export, when model.json names one
    onnx_sha256: str  # "" without one
    model_card: str  # "" without one
    evaluation: dict  # {} without one
    plots: dict  # {field: PNG bytes or None}, the fields of PLOT_FILES


def read_model_file(model_dir: Path) -> ModelFile:
    """model.json (checked) and the model file it names, with the file's sha256."""
    metadata = read_metadata(model_dir)
    path = member(model_dir, metadata.get("file", "model.keras"), "model file")
    return ModelFile(metadata=metadata, path=path, sha256=sha256_of(path))


def read_artifacts(model_dir: Path, metadata: dict) -> Artifacts:
    """The ONNX export (its sha256 checked when model.json gives one), model card, evaluation and plots."""
    onnx_path, onnx_digest = onnx_file(model_dir, metadata)
    return Artifacts(
        onnx_path=onnx_path,
        onnx_sha256=onnx_digest,
        model_card=text(model_dir / MODEL_CARD_FILE),
        evaluation=evaluation(model_dir / EVALUATION_FILE),
        plots={field: png(model_dir / filename) for field, filename in PLOT_FILES.items()},
    )


def read_metadata(model_dir: Path) -> dict:
    """model.json as the registry accepts it: what the runtime needs, and names safe for storage paths."""
    path = model_dir / METADATA_FILE
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationError(f"{METADATA_FILE} not found in the model folder.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"Invalid model metadata: {METADATA_FILE} is not valid JSON ({exc}).") from None
    if not isinstance(metadata, dict):
        raise ValidationError(f"Invalid model metadata: {METADATA_FILE} must hold a JSON object.")
    try:
        validate_metadata(metadata)
    except (ModelFileError, ValueError, TypeError) as exc:
        raise ValidationError(f"Invalid model metadata: {exc}") from None
    for key, limit in (("name", 100), ("version", 50)):
        value = str(metadata[key])
        if not SAFE_NAME.match(value) or len(value) > limit:
            raise ValidationError(
                f"Invalid model metadata: {key} {value!r} must be at most {limit} letters, digits, '.', '_' or '-'."
            )
    return metadata


def member(model_dir: Path, filename, what: str) -> Path:
    """``filename`` from model.json as a file directly inside ``model_dir``."""
    if not isinstance(filename, str) or not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
        raise ValidationError(f"Invalid model metadata: the {what} must be a file name in the model folder.")
    path = model_dir / filename
    if path.is_symlink() or not path.is_file():
        raise ValidationError(f"{METADATA_FILE} names the {what} {filename!r}, which is not in the model folder.")
    return path


def onnx_file(model_dir: Path, metadata: dict) -> tuple[Path | None, str]:
    """(the ONNX export, its sha256), or (None, "") when model.json names none."""
    if not metadata.get("onnx_file"):
        return None, ""
    path = member(model_dir, metadata["onnx_file"], "ONNX file")
    digest = sha256_of(path)
    expected = metadata.get("onnx_sha256")
    if expected and expected != digest:
        raise ValidationError(
            f"{path.name} has sha256 {digest[:12]}…, but {METADATA_FILE} says {str(expected)[:12]}…: "
            "the ONNX file is not the one exported with this model."
        )
    return path, digest


def text(path: Path) -> str:
    """A UTF-8 text file of at most MAX_TEXT_BYTES; "" when absent."""
    if not path.is_file():
        return ""
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise ValidationError(f"{path.name} is larger than {MAX_TEXT_BYTES // 1024 // 1024} MB.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{path.name} is not UTF-8 text.") from None


def evaluation(path: Path) -> dict:
    """evaluation.json as a JSON object; {} when absent."""
    content = text(path)
    if not content:
        return {}
    try:
        value = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path.name} is not valid JSON ({exc}).") from None
    if not isinstance(value, dict):
        raise ValidationError(f"{path.name} must hold a JSON object.")
    return value


def png(path: Path) -> bytes | None:
    """The plot's bytes after Pillow has checked that it is a whole PNG image; None when absent."""
    from PIL import Image

    if not path.is_file():
        return None
    if path.stat().st_size > MAX_PLOT_BYTES:
        raise ValidationError(f"{path.name} is larger than {MAX_PLOT_BYTES // 1024 // 1024} MB.")
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, (width, height) = image.format, image.size
            image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise ValidationError(f"{path.name} is not a valid PNG image.") from None
    if image_format != "PNG":
        raise ValidationError(f"{path.name} is not a PNG image (it is {image_format}).")
    if width * height > MAX_PLOT_PIXELS:
        raise ValidationError(f"{path.name} is {width}×{height} pixels; too large for a plot.")
    return data
