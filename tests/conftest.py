"""Fixtures shared by the whole suite: three users around one patient, real
images from demo/images, and the shipped model registered in the database."""

import io
import json
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from PIL import Image

from inference.models import ModelVersion
from inference.registry import register_model_version, start_shadow
from inference.registry.load_check import assume_model_loads
from inference.runtime import shipped_model_dir

from . import admin_helpers
from .factories import ClinicFactory, LesionFactory, MembershipFactory, PatientFactory, UserFactory

DEMO_IMAGES = Path(settings.BASE_DIR) / "demo" / "images"


@pytest.fixture(scope="session", autouse=True)
def _prepared_process():
    """What manage.py, wsgi and Celery do at start (KERAS_HOME, TF log level, embedded folders)."""
    from skincare.environment import prepare_process

    prepare_process()


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


# The admin roles (see tests/admin_helpers.py).
@pytest.fixture
def superuser(db):
    return admin_helpers.superuser()


@pytest.fixture
def ml_admin(db):
    return admin_helpers.ml_admin()


@pytest.fixture
def clinic_admin(clinic):
    """Staff, and administrator of the owner's clinic and of nothing else."""
    return admin_helpers.clinic_admin(clinic)


@pytest.fixture
def plain_staff(clinic):
    """Staff with no admin role, a clinician of the owner's clinic: may look at its records, not change them."""
    return admin_helpers.plain_staff(clinic)


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


def register_model(model_dir, *, activate=True) -> ModelVersion:
    """``model_dir`` registered by the real registry (``register_model_version``), without its load check.

    The child-process load check costs seconds per model; it is skipped
    through the seam the registry offers for this (the SKINCARE_MODEL_LOAD_CHECK
    setting, see inference/registry/load_check.py) and tested on its own in
    tests/inference/registry/. The models registered here are loaded for real
    wherever a test predicts with them.
    """
    with override_settings(SKINCARE_MODEL_LOAD_CHECK=assume_model_loads):
        version, _ = register_model_version(model_dir=model_dir, activate=activate)
    return version


def register_shadow_model(model_dir) -> ModelVersion:
    """``model_dir`` registered (as ``register_model``) and put in shadow mode by the registry."""
    return start_shadow(register_model(model_dir, activate=False), user=None)


@pytest.fixture
def active_model(db, model_dir):
    """The shipped model as the active ModelVersion."""
    return register_model(model_dir)


SYNTHETIC_SIZE = 32
# A black image lies at distance 0, a white one far beyond this threshold;
# the demo images fall either side of it. (Flat images are flagged anyway by
# the runtime's quality gate, whatever the model's distance.)
SYNTHETIC_OOD_THRESHOLD = 1.2


def build_synthetic_model(folder: Path) -> Path:
    """A tiny model with the v2 contract: dict outputs probability + ood_distance,
    a "logit" layer, and a named conv activation for Grad-CAM."""
    import keras

    layers = keras.layers
    inputs = keras.Input((SYNTHETIC_SIZE, SYNTHETIC_SIZE, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(
        4,
        3,
        padding="same",
        activation="relu",
        name="head_relu",
        kernel_initializer=keras.initializers.GlorotUniform(7),
    )(x)
    features = layers.GlobalAveragePooling2D()(x)
    # Every feature is evidence for the positive class, so the Grad-CAM
    # weights are positive and the map follows the activations.
    logit = layers.Dense(
        1, name="logit", kernel_initializer="ones", bias_initializer=keras.initializers.Constant(-1.0)
    )(features)
    probability = layers.Activation("sigmoid", name="probability")(logit)
    # Squared distance in a projected feature space, as a Mahalanobis
    # distance is after whitening: sum of squares via Multiply + a ones Dense.
    projected = layers.Dense(4, name="ood_projection", kernel_initializer="identity")(features)
    squared = layers.Multiply()([projected, projected])
    distance = layers.Dense(1, name="ood_distance", kernel_initializer="ones", bias_initializer="zeros")(squared)
    model = keras.Model(inputs, {"probability": probability, "ood_distance": distance})

    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    metadata = {
        "format_version": 1,
        "name": "synthetic",
        "version": "2",
        "file": "model.keras",
        "input_size": SYNTHETIC_SIZE,
        "preprocessing": "square-resize-v1",
        "threshold": 0.5,
        "temperature": 1.0,
        "uncertain_band": [0.45, 0.55],
        "ood": {"threshold": SYNTHETIC_OOD_THRESHOLD, "method": "test", "components": 4, "train_pass_rate": 0.95},
        "gradcam_layer": "head_relu",
    }
    (folder / "model.json").write_text(json.dumps(metadata))
    return folder


@pytest.fixture(scope="session")
def synthetic_model_dir(tmp_path_factory):
    """A read-only folder holding the synthetic two-output model; copy it to change it."""
    return build_synthetic_model(tmp_path_factory.mktemp("synthetic") / "model")


@pytest.fixture
def synthetic_model(db, synthetic_model_dir):
    """The synthetic two-output model as the active ModelVersion."""
    return register_model(synthetic_model_dir)


BASELINE_DIR = Path(settings.BASE_DIR) / "models" / "baseline-cnn-v1"


@pytest.fixture
def baseline_model(db):
    """The first shipped model (one output, no OOD detector) as the active ModelVersion."""
    return register_model(BASELINE_DIR)


@pytest.fixture
def baseline_copy(tmp_path):
    """A writable copy of the single-output baseline model folder."""
    target = tmp_path / "baseline"
    shutil.copytree(BASELINE_DIR, target)
    return target


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
def queued_predictions(monkeypatch):
    """Prediction ids sent to the broker, as ``(id,)`` tuples, instead of sending them.

    Only what actually reaches the broker edge is recorded: callbacks still
    run on commit (use ``django_capture_on_commit_callbacks(execute=True)``
    in a test transaction), so a rolled-back upload records nothing.
    """
    from celery import current_app

    from inference.queueing import RUN_PREDICTION_TASK

    sent = []

    def send_task(name, args=(), **options):
        assert name == RUN_PREDICTION_TASK, name
        sent.append(tuple(args))

    monkeypatch.setattr(current_app, "send_task", send_task)
    return sent
