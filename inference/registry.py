"""The model registry's writes: registering a model version, activating it.

Every door (``manage.py register_model``, the admin) goes through here, so
validation and the one-active-model rule hold whichever is used.
"""

import json
import logging
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from .models import ModelVersion
from .runtime import METADATA_FILE, ModelFileError, Predictor, sha256_of, validate_metadata

logger = logging.getLogger(__name__)


def register_model_version(*, model_dir, activate=False, user=None) -> tuple[ModelVersion, bool]:
    """Register the model in ``model_dir`` (model.json + model file).

    Loads it once to prove it works and that its input shape matches its
    metadata. Idempotent: the same name, version and file return the
    existing row. Raises ValidationError with a readable reason.
    """
    model_dir = Path(model_dir)
    try:
        metadata = json.loads((model_dir / METADATA_FILE).read_text())
        validate_metadata(metadata)
    except FileNotFoundError:
        raise ValidationError(f"{model_dir / METADATA_FILE} not found.") from None
    except (json.JSONDecodeError, ModelFileError) as exc:
        raise ValidationError(f"Invalid model metadata: {exc}") from None
    model_path = model_dir / metadata.get("file", "model.keras")
    if not model_path.is_file():
        raise ValidationError(f"{model_path} not found.")
    digest = sha256_of(model_path)

    existing = ModelVersion.objects.filter(name=metadata["name"], version=str(metadata["version"])).first()
    if existing is not None:
        if existing.sha256 != digest:
            raise ValidationError(
                f"{existing} is already registered with a different file; give the new model a new version."
            )
        if activate:
            activate_model_version(existing)
        return existing, False

    try:
        Predictor(model_path, metadata)
    except ModelFileError as exc:
        raise ValidationError(f"The model cannot be used: {exc}") from None

    with transaction.atomic():
        version = ModelVersion(
            name=metadata["name"],
            version=str(metadata["version"]),
            sha256=digest,
            input_size=metadata["input_size"],
            preprocessing=metadata["preprocessing"],
            threshold=float(metadata["threshold"]),
            metrics=metadata.get("metrics", {}),
            metadata=metadata,
            registered_by=user,
        )
        with open(model_path, "rb") as fh:
            version.file.save(f"{version.label}-{digest[:12]}.keras", File(fh), save=False)
        version.save()
    if activate:
        activate_model_version(version)
    return version, True


def activate_model_version(version: ModelVersion) -> ModelVersion:
    """Make ``version`` the one active model, atomically.

    Locks every model row so that two simultaneous activations serialise;
    the partial unique index guarantees at most one active even so.
    """
    with transaction.atomic():
        list(ModelVersion.objects.select_for_update().order_by("pk"))
        ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        ModelVersion.objects.filter(pk=version.pk).update(is_active=True, activated_at=timezone.now())
    version.refresh_from_db()
    logger.info("Activated model %s", version)
    return version
