"""Fixtures shared by the whole suite: three users around one patient, real
images from demo/images, and the shipped model registered in the database."""

import io
import json
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files import File
from PIL import Image

from inference.models import ModelVersion
from inference.runtime import read_metadata, sha256_of, shipped_model_dir

from .factories import ClinicFactory, LesionFactory, MembershipFactory, PatientFactory, UserFactory

DEMO_IMAGES = Path(settings.BASE_DIR) / "demo" / "images"


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    """Each test stores files in its own folder, so file assertions are exact."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "media", "base_url": None},
        },
    }
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def clinic(db):
    return ClinicFactory(name="Northside Dermatology")


@pytest.fixture
def owner(clinic):
    """The clinician who uploads in these tests."""
    return MembershipFactory(clinic=clinic, user=UserFactory(username="owner")).user


@pytest.fixture
def colleague(clinic):
    return MembershipFactory(clinic=clinic, user=UserFactory(username="colleague")).user


@pytest.fixture
def outsider(db):
    """A clinician of another clinic: must never see the owner's records."""
    return MembershipFactory(clinic=ClinicFactory(name="Elsewhere"), user=UserFactory(username="outsider")).user


@pytest.fixture
def patient(clinic):
    return PatientFactory(clinic=clinic)


@pytest.fixture
def lesion(patient):
    return LesionFactory(patient=patient)


@pytest.fixture
def demo_image_paths():
    return sorted(DEMO_IMAGES.glob("*/*.jpg"))


@pytest.fixture
def jpeg_bytes(demo_image_paths):
    return demo_image_paths[0].read_bytes()


def png_bytes(size=(64, 48), mode="RGB", color=(120, 80, 60)):
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def model_dir():
    """The shipped model folder (models/ACTIVE): tests run the real model."""
    path = shipped_model_dir()
    assert (path / "model.json").is_file(), f"shipped model missing at {path}"
    return path


@pytest.fixture
def active_model(db, model_dir):
    """The shipped model as the active ModelVersion (registered without re-loading it)."""
    metadata = read_metadata(model_dir)
    model_file = model_dir / metadata.get("file", "model.keras")
    version = ModelVersion(
        name=metadata["name"],
        version=str(metadata["version"]),
        sha256=sha256_of(model_file),
        input_size=metadata["input_size"],
        preprocessing=metadata["preprocessing"],
        threshold=metadata["threshold"],
        metrics=metadata.get("metrics", {}),
        metadata=metadata,
        is_active=True,
    )
    with model_file.open("rb") as fh:
        version.file.save("model.keras", File(fh), save=False)
    version.save()
    return version


@pytest.fixture
def model_copy(tmp_path, model_dir):
    """A writable copy of the shipped model folder, to corrupt or edit."""
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    return target


def edit_metadata(folder: Path, **changes):
    path = folder / "model.json"
    metadata = json.loads(path.read_text())
    metadata.update(changes)
    path.write_text(json.dumps(metadata))


@pytest.fixture
def mocker_delay(monkeypatch):
    """Record prediction ids handed to the broker instead of sending them."""
    from inference.tasks import run_prediction_task

    sent = []
    monkeypatch.setattr(run_prediction_task, "delay", lambda *args, **kwargs: sent.append(args))
    return sent
