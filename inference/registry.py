"""The model registry's writes: registering, activating, rolling back and shadowing model versions.

Every door (``manage.py register_model``, the admin) goes through here, so
validation and the one-active-model rule hold whichever is used. Nothing
here imports TensorFlow: whether a model file loads is checked by
``python -m inference validate`` in a child process, so that a crafted or
huge file can neither crash the web process nor fill its memory.
"""

import io
import json
import logging
import os
import re
import stat
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from training.files import sha256_of

from .models import ModelActivation, ModelVersion
from .runtime import METADATA_FILE, ModelFileError, validate_metadata

logger = logging.getLogger(__name__)

# Limits on an uploaded model folder (.zip). The shipped model folder is
# about 12 MB in 18 files; these leave room for larger networks while
# refusing zip bombs.
MAX_ARCHIVE_BYTES = 300 * 1024 * 1024
MAX_UNPACKED_BYTES = 300 * 1024 * 1024
MAX_ARCHIVE_FILES = 500
# Beside the model: what the admin shows.
MODEL_CARD_FILE = "MODEL_CARD.md"
EVALUATION_FILE = "evaluation.json"
PLOT_FILES = {"roc_curve": "roc_curve.png", "reliability_diagram": "reliability_diagram.png"}
MAX_TEXT_BYTES = 2 * 1024 * 1024
MAX_PLOT_BYTES = 20 * 1024 * 1024
MAX_PLOT_PIXELS = 8000 * 8000
# Loading the shipped model takes about 10 s from a cold start (most of it
# importing TensorFlow). The admin waits for the check inside one request,
# and gunicorn kills a request after 60 s (docker/Dockerfile).
CHECK_TIMEOUT_SECONDS = getattr(settings, "SKINCARE_MODEL_CHECK_SECONDS", 50)
# Names become storage paths (models/<name>-<version>/...).
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --- registration ------------------------------------------------------------


def register_model_upload(*, upload, user, activate=False) -> tuple[ModelVersion, bool]:
    """Register a model folder uploaded as a .zip (files at its root or under one top folder).

    The archive is unpacked into a temporary folder with limits on size,
    file count and paths, then registered like a folder on disk. Raises
    ValidationError with a readable reason; nothing is stored then, and the
    active model stays as it was.
    """
    size = _size_of(upload)
    if size > MAX_ARCHIVE_BYTES:
        raise ValidationError(f"The archive is {size / 1e6:.0f} MB; the limit is {MAX_ARCHIVE_BYTES / 1e6:.0f} MB.")
    with tempfile.TemporaryDirectory(prefix="model-upload-") as tmp:
        model_dir = unpack_model_archive(upload, Path(tmp))
        return register_model_version(model_dir=model_dir, activate=activate, user=user)


def _size_of(upload) -> int:
    upload.seek(0, io.SEEK_END)
    size = upload.tell()
    upload.seek(0)
    return size


def _damaged():
    return ValidationError(
        "The upload is not a zip archive, or it is damaged (truncated?). "
        "Upload the model folder (model.json, model.keras, ...) packed as a .zip."
    )


def unpack_model_archive(upload, target: Path) -> Path:
    """Extract the model folder in ``upload`` (a .zip) under ``target``; return the folder holding model.json."""
    try:
        archive = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError):
        raise _damaged() from None
    with archive:
        members = [m for m in archive.infolist() if not _ignorable(m.filename)]
        if len(members) > MAX_ARCHIVE_FILES:
            raise ValidationError(f"The archive holds {len(members)} files; the limit is {MAX_ARCHIVE_FILES}.")
        if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
            raise ValidationError(f"The archive unpacks to more than {MAX_UNPACKED_BYTES / 1e6:.0f} MB.")
        paths = [_safe_member_path(m) for m in members]
        root = _model_root(paths)
        budget = MAX_UNPACKED_BYTES
        try:
            for member, path in zip(members, paths, strict=True):
                if member.is_dir() or not path.parts:
                    continue
                destination = target.joinpath(*path.parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(destination, "wb") as out:
                    # The headers' sizes were checked above; count what is
                    # really written too, in case a header lies.
                    for chunk in iter(lambda src=src: src.read(1 << 20), b""):
                        budget -= len(chunk)
                        if budget < 0:
                            raise ValidationError(
                                f"The archive unpacks to more than {MAX_UNPACKED_BYTES / 1e6:.0f} MB."
                            )
                        out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError):
            raise _damaged() from None
        except OSError as exc:  # e.g. a file and a folder of the same name
            raise ValidationError(f"The archive cannot be unpacked: {exc.strerror or exc}.") from None
    return target.joinpath(*root.parts)


def _ignorable(name: str) -> bool:
    # What macOS's "Compress" adds beside the folder.
    parts = name.replace("\\", "/").split("/")
    return parts[0] == "__MACOSX" or parts[-1] == ".DS_Store"


def _safe_member_path(member: zipfile.ZipInfo) -> PurePosixPath:
    name = member.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in path.parts:
        raise ValidationError(f"The archive holds an unsafe path ({member.filename!r}); it was not unpacked.")
    if stat.S_ISLNK(member.external_attr >> 16):
        raise ValidationError(f"The archive holds a symbolic link ({member.filename!r}); it was not unpacked.")
    if member.flag_bits & 0x1:
        raise ValidationError("The archive is encrypted; upload an unencrypted .zip.")
    return PurePosixPath(*[part for part in path.parts if part not in ("", ".")])


def _model_root(paths: list[PurePosixPath]) -> PurePosixPath:
    """Where model.json is: the archive's root, or its one top folder."""
    if PurePosixPath(METADATA_FILE) in paths:
        return PurePosixPath()
    tops = {path.parts[0] for path in paths if path.parts}
    if len(tops) == 1:
        top = PurePosixPath(tops.pop())
        if top / METADATA_FILE in paths:
            return top
    raise ValidationError(
        f"The archive has no {METADATA_FILE}, neither at its root nor in one top folder: "
        "upload a model folder as written by training."
    )


def register_model_version(*, model_dir, activate=False, user=None) -> tuple[ModelVersion, bool]:
    """Register the model in ``model_dir`` (model.json, the model file, and what training wrote beside it).

    Stores the model file and its sha256, the ONNX export when model.json
    names one (its sha256 checked when given), the model card, evaluation
    and its two plots. Proves in a child process that the model loads, takes
    the input shape its metadata says and gives finite outputs. Idempotent:
    the same name, version and file return the existing row. Raises
    ValidationError with a readable reason; then nothing is stored.
    """
    model_dir = Path(model_dir)
    metadata = _read_metadata(model_dir)
    name, version_name = metadata["name"], str(metadata["version"])
    model_path = _member(model_dir, metadata.get("file", "model.keras"), "model file")
    digest = sha256_of(model_path)

    existing = ModelVersion.objects.filter(name=name, version=version_name).first()
    if existing is not None:
        if existing.sha256 != digest:
            raise ValidationError(
                f"{existing} is already registered with a different file; give the new model a new version."
            )
        if activate:
            existing = activate_model_version(existing, user=user)
        return existing, False

    onnx_path, onnx_digest = _onnx_file(model_dir, metadata)
    card = _text(model_dir / MODEL_CARD_FILE)
    evaluation = _evaluation(model_dir / EVALUATION_FILE)
    plots = {field: _png(model_dir / filename) for field, filename in PLOT_FILES.items()}
    check_model_loads(model_dir)

    version = ModelVersion(
        name=name,
        version=version_name,
        sha256=digest,
        input_size=metadata["input_size"],
        preprocessing=metadata["preprocessing"],
        threshold=float(metadata["threshold"]),
        metrics=metadata.get("metrics", {}),
        metadata=metadata,
        onnx_sha256=onnx_digest,
        model_card=card,
        evaluation=evaluation,
        registered_by=user,
    )
    stored = []
    try:
        with open(model_path, "rb") as fh:
            version.file.save(f"{version.label}-{digest[:12]}.keras", File(fh), save=False)
        stored.append(version.file)
        if onnx_path is not None:
            with open(onnx_path, "rb") as fh:
                version.onnx_file.save("model.onnx", File(fh), save=False)
            stored.append(version.onnx_file)
        for field, data in plots.items():
            if data is not None:
                getattr(version, field).save(PLOT_FILES[field], ContentFile(data), save=False)
                stored.append(getattr(version, field))
        with transaction.atomic():
            version.save()
    except BaseException as exc:
        # The row was not saved: leave no orphan files in storage.
        for field_file in stored:
            field_file.storage.delete(field_file.name)
        if isinstance(exc, IntegrityError):
            raise ValidationError(f"{name}-{version_name} was registered by someone else at the same moment.") from None
        raise
    logger.info("Registered model %s (sha256 %s)", version, digest[:12])
    if activate:
        version = activate_model_version(version, user=user)
    return version, True


def _read_metadata(model_dir: Path) -> dict:
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


def _member(model_dir: Path, filename, what: str) -> Path:
    """``filename`` from model.json as a file directly inside ``model_dir``."""
    if not isinstance(filename, str) or not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
        raise ValidationError(f"Invalid model metadata: the {what} must be a file name in the model folder.")
    path = model_dir / filename
    if path.is_symlink() or not path.is_file():
        raise ValidationError(f"{METADATA_FILE} names the {what} {filename!r}, which is not in the model folder.")
    return path


def _onnx_file(model_dir: Path, metadata: dict) -> tuple[Path | None, str]:
    if not metadata.get("onnx_file"):
        return None, ""
    path = _member(model_dir, metadata["onnx_file"], "ONNX file")
    digest = sha256_of(path)
    expected = metadata.get("onnx_sha256")
    if expected and expected != digest:
        raise ValidationError(
            f"{path.name} has sha256 {digest[:12]}…, but {METADATA_FILE} says {str(expected)[:12]}…: "
            "the ONNX file is not the one exported with this model."
        )
    return path, digest


def _text(path: Path) -> str:
    if not path.is_file():
        return ""
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise ValidationError(f"{path.name} is larger than {MAX_TEXT_BYTES // 1024 // 1024} MB.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{path.name} is not UTF-8 text.") from None


def _evaluation(path: Path) -> dict:
    text = _text(path)
    if not text:
        return {}
    try:
        evaluation = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path.name} is not valid JSON ({exc}).") from None
    if not isinstance(evaluation, dict):
        raise ValidationError(f"{path.name} must hold a JSON object.")
    return evaluation


def _png(path: Path) -> bytes | None:
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


def check_model_loads(model_dir: Path) -> dict:
    """Run ``python -m inference validate`` on ``model_dir`` in a child process; its report, or ValidationError.

    The child loads the model with Keras' safe mode and the worker's
    Predictor, compares its input shape with model.json and runs it once.
    """
    command = [sys.executable, "-m", "inference", "validate", str(model_dir)]
    # No GPU for a check: a web server's child must not claim the memory of
    # a GPU that workers use.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        proc = subprocess.run(
            command,
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise ValidationError(
            f"Loading the model took longer than {CHECK_TIMEOUT_SECONDS} s; it was not registered."
        ) from None
    report = _last_json_object(proc.stdout)
    if proc.returncode == 0 and report.get("ok"):
        return report
    logger.warning("Model check of %s failed (exit %s): %s", model_dir, proc.returncode, proc.stderr[-2000:])
    if "reason" not in report:
        raise ValidationError(
            f"Checking the model stopped without an answer (exit status {proc.returncode}): "
            "the model cannot be used and was not registered."
        )
    raise ValidationError(_check_failure_message(report, str(model_dir)))


def _last_json_object(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        return value if isinstance(value, dict) else {}
    return {}


def _check_failure_message(report: dict, model_dir: str) -> str:
    # The child's messages name the temporary folder of an upload: meaningless to the admin.
    detail = str(report.get("error", "")).replace(model_dir + os.sep, "").replace(model_dir, "the model folder")
    detail = detail if len(detail) <= 400 else detail[:400] + "…"
    reason = report["reason"]
    if reason == "not_keras":
        return f"The file {report.get('file', 'model.keras')} is not a Keras model ({detail})."
    if reason == "input_shape":
        shape, size = report.get("input_shape"), report.get("input_size")
        if isinstance(shape, list) and len(shape) == 4 and shape[1] == shape[2] and shape[3] == 3:
            return f"The model takes {shape[1]}×{shape[2]} images but {METADATA_FILE} says {size}."
        return f"The model's input shape is {shape}; {METADATA_FILE} says images of {size}×{size} with 3 channels."
    if reason == "not_finite":
        return "The model's output on a blank image is not a finite number: it cannot be used."
    if reason == "onnx":
        return f"The ONNX export {report.get('file', 'model.onnx')} cannot be used: {detail}"
    if reason == "metadata":
        return f"Invalid model metadata: {detail}"
    return f"The model cannot be used: {detail}"


# --- activation, rollback, shadow -----------------------------------------


def _locked_versions() -> list[ModelVersion]:
    # Locking every row, always in pk order, makes concurrent switches (two
    # admins clicking at once) run one after the other without deadlock;
    # each then sees what the one before it did.
    return list(ModelVersion.objects.select_for_update().order_by("pk"))


def _make_active(target: ModelVersion, current: ModelVersion | None, *, user, action) -> None:
    if current is not None:
        ModelVersion.objects.filter(pk=current.pk).update(is_active=False)
    # A promoted shadow stops being the shadow: one row cannot be both.
    ModelVersion.objects.filter(pk=target.pk).update(is_active=True, is_shadow=False, activated_at=timezone.now())
    ModelActivation.objects.create(model_version=target, action=action, previous=current, by=user)


def activate_model_version(version: ModelVersion, *, user) -> ModelVersion:
    """Make ``version`` the one active model, atomically; records a ModelActivation.

    Activating the active model changes nothing and records nothing.
    Promoting the shadow model ends its shadow mode. Workers need no
    signal: each loads a version by its sha256 on its first prediction.
    """
    with transaction.atomic():
        versions = _locked_versions()
        target = next((v for v in versions if v.pk == version.pk), None)
        if target is None:
            raise ValidationError("This model version no longer exists.")
        current = next((v for v in versions if v.is_active), None)
        if current != target:
            _make_active(target, current, user=user, action=ModelActivation.Action.ACTIVATED)
            logger.info("Activated model %s (was %s)", target, current)
    target.refresh_from_db()
    return target


def rollback_target() -> tuple[ModelVersion | None, ModelVersion | None]:
    """(the active version, the version a rollback would bring back); either may be None."""
    current = ModelVersion.objects.active()
    if current is None:
        return None, None
    # The last time the current version was activated, this one was live.
    last = (
        ModelActivation.objects.filter(model_version=current, action=ModelActivation.Action.ACTIVATED)
        .select_related("previous")
        .first()
    )
    return current, last.previous if last else None


def rollback_model_version(*, user) -> ModelVersion:
    """Re-activate the version that was active before the current one; records ``rolled_back``.

    Raises ValidationError when there is nothing to roll back to.
    """
    with transaction.atomic():
        _locked_versions()
        current, previous = rollback_target()
        if current is None:
            raise ValidationError("No model is active: there is nothing to roll back.")
        if previous is None:
            raise ValidationError(f"There is no earlier active model to roll back to from {current}.")
        _make_active(previous, current, user=user, action=ModelActivation.Action.ROLLED_BACK)
    logger.info("Rolled back from model %s to %s", current, previous)
    previous.refresh_from_db()
    return previous


def start_shadow(version: ModelVersion, *, user) -> ModelVersion:
    """Make ``version`` the shadow model (replacing any other); records ``shadow_started``.

    From then on every new image gets a prediction by it as well, hidden
    from clinicians. The active model cannot be the shadow.
    """
    with transaction.atomic():
        versions = _locked_versions()
        target = next((v for v in versions if v.pk == version.pk), None)
        if target is None:
            raise ValidationError("This model version no longer exists.")
        if target.is_active:
            raise ValidationError(f"{target} is the active model; it cannot also be the shadow model.")
        current = next((v for v in versions if v.is_shadow), None)
        if current != target:
            if current is not None:
                ModelVersion.objects.filter(pk=current.pk).update(is_shadow=False)
            ModelVersion.objects.filter(pk=target.pk).update(is_shadow=True)
            ModelActivation.objects.create(
                model_version=target, action=ModelActivation.Action.SHADOW_STARTED, previous=current, by=user
            )
            logger.info("Shadow model is now %s (was %s)", target, current)
    target.refresh_from_db()
    return target


def stop_shadow(*, user) -> ModelVersion:
    """End shadow mode; records ``shadow_stopped``. Raises ValidationError when no model is in shadow mode."""
    with transaction.atomic():
        versions = _locked_versions()
        current = next((v for v in versions if v.is_shadow), None)
        if current is None:
            raise ValidationError("No model is in shadow mode.")
        ModelVersion.objects.filter(pk=current.pk).update(is_shadow=False)
        ModelActivation.objects.create(
            model_version=current, action=ModelActivation.Action.SHADOW_STOPPED, previous=current, by=user
        )
    logger.info("Shadow mode of %s stopped", current)
    current.refresh_from_db()
    return current
