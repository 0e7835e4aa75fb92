"""Registering a model folder uploaded as a .zip: safe unpacking, its limits, and clear refusals."""

import io
import json
import stat
import zipfile

import pytest
from django.core.exceptions import ValidationError

from inference import registry
from inference.models import ModelVersion
from inference.registry import archive
from inference.runtime import read_metadata
from tests.conftest import edit_metadata
from training.files import sha256_of

from .helpers import shipped_label, stored_model_files, with_file, with_metadata, zip_folder, zip_of

pytestmark = pytest.mark.django_db


def test_a_zip_of_the_shipped_model_folder_is_registered(model_dir, admin_user):
    upload = io.BytesIO(zip_folder(model_dir))
    version, created = registry.register_model_upload(upload=upload, user=admin_user, activate=True)
    assert created and version.is_active and version.registered_by == admin_user
    assert version.sha256 == sha256_of(model_dir / "model.keras")
    shipped_auc = json.loads((model_dir / "model.json").read_text())["metrics"]["roc_auc"]["mean"]
    assert 0.9 < version.metrics["roc_auc"]["mean"] == shipped_auc
    assert version.model_card.startswith((model_dir / "MODEL_CARD.md").read_text()[:40])
    assert version.roc_curve.name and version.reliability_diagram.name
    metadata = read_metadata(model_dir)
    if metadata.get("onnx_file"):
        assert version.onnx_sha256 == metadata.get("onnx_sha256", version.onnx_sha256)
        assert version.onnx_file.name


def test_files_may_sit_at_the_root_of_the_zip(model_dir, admin_user):
    upload = io.BytesIO(zip_folder(model_dir, top=None, extra={"__MACOSX/._model.json": b"junk"}))
    version, created = registry.register_model_upload(upload=upload, user=admin_user)
    assert created and version.label == shipped_label(model_dir) and not version.is_active


def symlink_zip(model_dir):
    data = zip_folder(model_dir)
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a") as archive_file:
        link = zipfile.ZipInfo("model/evil")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive_file.writestr(link, "/etc/passwd")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "make_upload, message",
    [
        (lambda d: b"just some text, not a zip", "not a zip archive, or it is damaged"),
        (lambda d: (data := zip_folder(d))[: len(data) // 2], "not a zip archive, or it is damaged"),
        (lambda d: zip_of({"model/model.keras": b"PK"}), "no model.json"),
        (lambda d: zip_of({"a/model.json": b"{}", "b/model.keras": b""}), "no model.json"),
        (lambda d: zip_of({"../model.json": b"{}"}), "unsafe path"),
        (lambda d: zip_of({"/tmp/model.json": b"{}"}), "unsafe path"),
        (lambda d: symlink_zip(d), "symbolic link"),
        (lambda d: with_metadata(d, file="missing.keras"), "names the model file 'missing.keras'"),
        (lambda d: with_file(d, "model.keras", b"a text file renamed .keras\n"), "is not a Keras model"),
    ],
    ids=[
        "not-a-zip",
        "truncated-zip",
        "no-model-json",
        "two-top-folders",
        "dot-dot-path",
        "absolute-path",
        "symlink",
        "model-json-names-a-missing-file",
        "text-file-renamed-keras",
    ],
)
def test_bad_uploads_are_refused_with_a_clear_message_and_the_active_model_stays(
    active_model, model_copy, make_upload, message
):
    files_before = stored_model_files()
    edit_metadata(model_copy, version="upload")
    with pytest.raises(ValidationError, match=message):
        registry.register_model_upload(upload=io.BytesIO(make_upload(model_copy)), user=None, activate=True)
    assert ModelVersion.objects.active() == active_model
    assert ModelVersion.objects.count() == 1
    assert stored_model_files() == files_before


def test_a_model_with_the_wrong_input_shape_is_refused(active_model, baseline_copy):
    edit_metadata(baseline_copy, input_size=224)
    with pytest.raises(ValidationError, match="takes 64×64 images but model.json says 224"):
        registry.register_model_upload(upload=io.BytesIO(zip_folder(baseline_copy)), user=None, activate=True)
    assert ModelVersion.objects.active() == active_model and ModelVersion.objects.count() == 1


def test_archives_over_the_limits_are_refused_before_unpacking(model_dir, monkeypatch):
    data = zip_folder(model_dir)
    monkeypatch.setattr(archive, "MAX_ARCHIVE_FILES", 3)
    with pytest.raises(ValidationError, match="files; the limit is 3"):
        registry.register_model_upload(upload=io.BytesIO(data), user=None)
    monkeypatch.setattr(archive, "MAX_ARCHIVE_FILES", 500)
    monkeypatch.setattr(archive, "MAX_UNPACKED_BYTES", 1_000_000)
    with pytest.raises(ValidationError, match="unpacks to more than"):
        registry.register_model_upload(upload=io.BytesIO(data), user=None)
    monkeypatch.setattr(archive, "MAX_ARCHIVE_BYTES", 1000)
    with pytest.raises(ValidationError, match="the limit is"):
        registry.register_model_upload(upload=io.BytesIO(data), user=None)
    assert not ModelVersion.objects.exists()


def test_a_zip_bomb_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(archive, "MAX_UNPACKED_BYTES", 10_000)
    data = zip_of({"model/model.json": b"{}", "model/big.bin": b"\0" * 50_000})
    with pytest.raises(ValidationError, match="unpacks to more than"):
        registry.unpack_model_archive(io.BytesIO(data), tmp_path)
