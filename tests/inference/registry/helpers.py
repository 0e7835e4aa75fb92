"""Building model archives and version rows for the registry and model-version admin tests."""

import io
import json
import zipfile
from pathlib import Path

from django.core.files.storage import default_storage

from inference.models import ModelActivation, ModelVersion
from tests.conftest import edit_metadata


def zip_folder(folder: Path, *, top: str | None = "model", extra: dict | None = None) -> bytes:
    """``folder`` packed as a .zip, under one top folder (or at the root when ``top`` is None)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder).as_posix()
                archive.write(path, f"{top}/{name}" if top else name)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zip_of(members: dict) -> bytes:
    """A .zip holding ``members`` ({name: bytes})."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def with_metadata(folder, **changes):
    """``folder`` zipped after editing its model.json."""
    edit_metadata(folder, **changes)
    return zip_folder(folder)


def with_file(folder, name, data):
    """``folder`` zipped after writing ``data`` to its file ``name``."""
    (folder / name).write_bytes(data)
    return zip_folder(folder)


def stored_model_files():
    """Every file under models/ in storage (model files, ONNX exports, plots)."""
    found = []

    def walk(folder):
        try:
            folders, files = default_storage.listdir(folder)
        except FileNotFoundError:
            return
        found.extend(f"{folder}/{name}" for name in files)
        for sub in folders:
            walk(f"{folder}/{sub}")

    walk("models")
    return sorted(found)


def shipped_label(model_dir):
    metadata = json.loads((model_dir / "model.json").read_text())
    return f"{metadata['name']}-{metadata['version']}"


def make_version(label, *, is_active=False, is_shadow=False):
    """A registered version without a real file: switching never opens it."""
    return ModelVersion.objects.create(
        name="model",
        version=label,
        file=f"models/{label}.keras",
        sha256=label.ljust(64, "0"),
        input_size=224,
        preprocessing="square-sog-v2",
        threshold=0.5,
        is_active=is_active,
        is_shadow=is_shadow,
    )


def state():
    """(active label, shadow label) as the database has them."""
    active, shadow = ModelVersion.objects.active(), ModelVersion.objects.shadow()
    return (active.version if active else None, shadow.version if shadow else None)


def history():
    """(action, version, previous) of every ModelActivation, oldest first."""
    return [
        (row.action, row.model_version.version, row.previous.version if row.previous else None)
        for row in ModelActivation.objects.order_by("at", "id").select_related("model_version", "previous")
    ]
