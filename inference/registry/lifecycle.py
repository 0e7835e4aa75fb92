"""The model registry's writes: registering, activating, rolling back and shadowing model versions.

Every door (``manage.py register_model``, the admin) goes through here, so
validation and the one-active-model rule hold whichever is used. A model is
registered only after its folder has been read and checked (``folder``) and
it has been proved to load in a child process (``load_check``); an upload is
first unpacked safely (``archive``).
"""

import logging
import tempfile
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.audit import log_action

from ..models import ModelActivation, ModelVersion
from . import sites
from .archive import check_archive_size, unpack_model_archive
from .folder import PLOT_FILES, Artifacts, ModelFile, read_artifacts, read_model_file
from .load_check import run_load_check

logger = logging.getLogger(__name__)


# --- registration ------------------------------------------------------------


def register_model_upload(*, upload, user, activate=False) -> tuple[ModelVersion, bool]:
    """Register a model folder uploaded as a .zip (files at its root or under one top folder).

    The archive is unpacked into a temporary folder with limits on size,
    file count and paths, then registered like a folder on disk. Raises
    ValidationError with a readable reason; nothing is stored then, and the
    active model stays as it was.
    """
    check_archive_size(upload)
    with tempfile.TemporaryDirectory(prefix="model-upload-") as tmp:
        model_dir = unpack_model_archive(upload, Path(tmp))
        return register_model_version(model_dir=model_dir, activate=activate, user=user)


def register_model_version(
    *, model_dir, activate=False, user=None, clinic=None, device_model=""
) -> tuple[ModelVersion, bool]:
    """Register the model in ``model_dir`` (model.json, the model file, and what training wrote beside it).

    Stores the model file and its sha256, the ONNX export when model.json
    names one (its sha256 checked when given), the model card, evaluation
    and its two plots. Proves in a child process that the model loads, takes
    the input shape its metadata says and gives finite outputs (see
    ``load_check`` for the one seam that replaces this check). Idempotent:
    the same name, version and file return the existing row. Raises
    ValidationError with a readable reason; then nothing is stored.

    ``clinic`` (and optionally ``device_model``) registers a site model
    (``python -m training adapt``) for that clinic's images only; without
    them the version is global.
    """
    if device_model and clinic is None:
        raise ValidationError("A device model scope needs a clinic.")
    model_dir = Path(model_dir)
    model = read_model_file(model_dir)
    metadata, digest = model.metadata, model.sha256

    existing = ModelVersion.objects.filter(name=model.name, version=model.version).first()
    if existing is not None:
        if existing.sha256 != digest:
            raise ValidationError(
                f"{existing} is already registered with a different file; give the new model a new version."
            )
        if (existing.clinic_id, existing.device_model) != (getattr(clinic, "pk", None), device_model or ""):
            raise ValidationError(f"{existing} is already registered for {existing.scope_label}.")
        if activate:
            existing = activate_model_version(existing, user=user)
        return existing, False

    artifacts = read_artifacts(model_dir, metadata)
    run_load_check(model_dir)

    version = ModelVersion(
        name=model.name,
        version=model.version,
        sha256=digest,
        input_size=metadata["input_size"],
        preprocessing=metadata["preprocessing"],
        threshold=float(metadata["threshold"]),
        metrics=metadata.get("metrics", {}),
        metadata=metadata,
        onnx_sha256=artifacts.onnx_sha256,
        model_card=artifacts.model_card,
        evaluation=artifacts.evaluation,
        registered_by=user,
        clinic=clinic,
        device_model=device_model or "",
    )
    _save_with_files(version, model, artifacts)
    logger.info("Registered model %s (sha256 %s)", version, digest[:12])
    if activate:
        version = activate_model_version(version, user=user)
    return version, True


def _save_with_files(version: ModelVersion, model: ModelFile, artifacts: Artifacts) -> None:
    """Store the files in storage, then save the row; on any failure, leave no orphan files."""
    stored = []
    try:
        with open(model.path, "rb") as fh:
            version.file.save(f"{version.label}-{model.sha256[:12]}.keras", File(fh), save=False)
        stored.append(version.file)
        if artifacts.onnx_path is not None:
            with open(artifacts.onnx_path, "rb") as fh:
                version.onnx_file.save("model.onnx", File(fh), save=False)
            stored.append(version.onnx_file)
        for field, data in artifacts.plots.items():
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
            raise ValidationError(
                f"{version.name}-{version.version} was registered by someone else at the same moment."
            ) from None
        raise


# --- activation, rollback, shadow -----------------------------------------


def _locked_versions() -> list[ModelVersion]:
    # Locking every row, always in pk order, makes concurrent switches (two
    # admins clicking at once) run one after the other without deadlock;
    # each then sees what the one before it did.
    return list(ModelVersion.objects.select_for_update().order_by("pk"))


def _same_scope(a: ModelVersion, b: ModelVersion) -> bool:
    return (a.clinic_id, a.device_model) == (b.clinic_id, b.device_model)


def _make_active(target: ModelVersion, current: ModelVersion | None, *, user, action) -> None:
    if current is not None:
        ModelVersion.objects.filter(pk=current.pk).update(is_active=False)
    # A promoted shadow stops being the shadow: one row cannot be both.
    ModelVersion.objects.filter(pk=target.pk).update(is_active=True, is_shadow=False, activated_at=timezone.now())
    ModelActivation.objects.create(model_version=target, action=action, previous=current, by=user)


def activate_model_version(version: ModelVersion, *, user) -> ModelVersion:
    """Make ``version`` the one active model of its scope, atomically; records a ModelActivation.

    The scope is global, or a clinic (and device) for a site model; each
    scope has one active model. A site model is activated only by an ML
    admin and only with a local cross-validated sensitivity >= 0.90
    (``sites.check_activation``: PermissionDenied / ValidationError), and
    the switch is audited. Activating the active model changes nothing and
    records nothing. Promoting the shadow model ends its shadow mode.
    Workers need no signal: each loads a version by its sha256 on its first
    prediction.
    """
    with transaction.atomic():
        versions = _locked_versions()
        target = next((v for v in versions if v.pk == version.pk), None)
        if target is None:
            raise ValidationError("This model version no longer exists.")
        sites.check_activation(target, user)
        current = next((v for v in versions if v.is_active and _same_scope(v, target)), None)
        if current != target:
            _make_active(target, current, user=user, action=ModelActivation.Action.ACTIVATED)
            if target.is_site_model:
                log_action(
                    user=user,
                    obj=target,
                    description=f"Activated for {target.scope_label}"[:300],
                    changes={
                        "is_active": [False, True],
                        "replaced": [str(current) if current else "global", str(target)],
                    },
                )
            logger.info("Activated model %s for %s (was %s)", target, target.scope_label, current)
    target.refresh_from_db()
    return target


def withdraw_site_model(version: ModelVersion, *, user) -> ModelVersion:
    """Deactivate the active site model ``version``: its clinic (and device) goes back to the global model.

    ML admins only; atomic; records ``site_withdrawn`` and an audit event.
    Raises ValidationError when ``version`` is not an active site model.
    """
    sites.check_site_switch(user)
    with transaction.atomic():
        versions = _locked_versions()
        target = next((v for v in versions if v.pk == version.pk), None)
        if target is None or not target.is_site_model or not target.is_active:
            raise ValidationError(f"{version} is not an active site model.")
        ModelVersion.objects.filter(pk=target.pk).update(is_active=False)
        ModelActivation.objects.create(
            model_version=target, action=ModelActivation.Action.SITE_WITHDRAWN, previous=target, by=user
        )
        log_action(
            user=user,
            obj=target,
            description=f"Withdrawn from {target.scope_label}: back to the global model"[:300],
            changes={"is_active": [True, False]},
        )
    logger.info("Withdrew site model %s from %s", target, target.scope_label)
    target.refresh_from_db()
    return target


def _in_scope_of(versions, scope: ModelVersion | None, **state) -> ModelVersion | None:
    """The version of ``scope``'s scope (global when None) with ``state`` (``is_active=True``...)."""
    key = (None, "") if scope is None else (scope.clinic_id, scope.device_model)
    for v in versions:
        if (v.clinic_id, v.device_model) == key and all(getattr(v, k) == val for k, val in state.items()):
            return v
    return None


def _audit_site_switch(user, version: ModelVersion, description: str, changes: dict) -> None:
    # Global switches are audited by the admin that asked for them; a site
    # model's by the registry, whichever door asked.
    if version.is_site_model:
        log_action(user=user, obj=version, description=description[:300], changes=changes)


def rollback_target(scope: ModelVersion | None = None) -> tuple[ModelVersion | None, ModelVersion | None]:
    """(the active version of ``scope``'s scope, the version a rollback would bring back); either may be None.

    ``scope`` is any version of a site's scope (a clinic, or a clinic's
    device); None means the global model. For a site, None as the second
    value means no earlier site model: withdrawing goes back to the global one.
    """
    current = _in_scope_of(ModelVersion.objects.filter(is_active=True), scope, is_active=True)
    if current is None:
        return None, None
    # The last time the current version was activated, this one was live.
    last = (
        ModelActivation.objects.filter(model_version=current, action=ModelActivation.Action.ACTIVATED)
        .select_related("previous")
        .first()
    )
    return current, last.previous if last else None


def rollback_model_version(*, user, scope: ModelVersion | None = None) -> ModelVersion:
    """Re-activate the version that was active before the current one of ``scope``'s scope; records ``rolled_back``.

    For a site (``scope`` a site model): ML admins only, and the earlier
    site model must still pass the activation gate; audited. Raises
    ValidationError when there is nothing to roll back to.
    """
    if scope is not None and scope.is_site_model:
        sites.check_site_switch(user)
    with transaction.atomic():
        _locked_versions()
        current, previous = rollback_target(scope)
        where = "" if scope is None or not scope.is_site_model else f" for {scope.scope_label}"
        if current is None:
            raise ValidationError(f"No model is active{where}: there is nothing to roll back.")
        if previous is None:
            hint = " Withdraw it to go back to the global model." if current.is_site_model else ""
            raise ValidationError(f"There is no earlier active model to roll back to from {current}{where}.{hint}")
        if previous.is_site_model:
            sites.check_activation(previous, user)
        _make_active(previous, current, user=user, action=ModelActivation.Action.ROLLED_BACK)
        _audit_site_switch(
            user,
            previous,
            f"Rolled back{where} from {current} to {previous}",
            {"is_active": [False, True], "replaced": [str(current), str(previous)]},
        )
    logger.info("Rolled back from model %s to %s", current, previous)
    previous.refresh_from_db()
    return previous


def start_shadow(version: ModelVersion, *, user) -> ModelVersion:
    """Make ``version`` the shadow model of its scope (replacing any other there); records ``shadow_started``.

    From then on every new image of that scope (all, or a clinic's, or a
    clinic's device's) gets a prediction by it as well, hidden from
    clinicians. The active model cannot be the shadow. A site model's shadow
    is started by ML admins only, and audited.
    """
    if version.is_site_model:
        sites.check_site_switch(user)
    with transaction.atomic():
        versions = _locked_versions()
        target = next((v for v in versions if v.pk == version.pk), None)
        if target is None:
            raise ValidationError("This model version no longer exists.")
        if target.is_active:
            raise ValidationError(f"{target} is the active model; it cannot also be the shadow model.")
        current = next((v for v in versions if v.is_shadow and _same_scope(v, target)), None)
        if current != target:
            if current is not None:
                ModelVersion.objects.filter(pk=current.pk).update(is_shadow=False)
            ModelVersion.objects.filter(pk=target.pk).update(is_shadow=True)
            ModelActivation.objects.create(
                model_version=target, action=ModelActivation.Action.SHADOW_STARTED, previous=current, by=user
            )
            _audit_site_switch(
                user,
                target,
                f"Shadow mode started for {target.scope_label} (previous shadow: {current or 'none'})",
                {"is_shadow": [False, True]},
            )
            logger.info("Shadow model of %s is now %s (was %s)", target.scope_label, target, current)
    target.refresh_from_db()
    return target


def stop_shadow(*, user, scope: ModelVersion | None = None) -> ModelVersion:
    """End shadow mode in ``scope``'s scope (global when None); records ``shadow_stopped``.

    A site's shadow is stopped by ML admins only, and audited. Raises
    ValidationError when no model is in shadow mode there.
    """
    if scope is not None and scope.is_site_model:
        sites.check_site_switch(user)
    with transaction.atomic():
        versions = _locked_versions()
        current = _in_scope_of(versions, scope, is_shadow=True)
        if current is None:
            where = "" if scope is None or not scope.is_site_model else f" for {scope.scope_label}"
            raise ValidationError(f"No model is in shadow mode{where}.")
        ModelVersion.objects.filter(pk=current.pk).update(is_shadow=False)
        ModelActivation.objects.create(
            model_version=current, action=ModelActivation.Action.SHADOW_STOPPED, previous=current, by=user
        )
        _audit_site_switch(
            user, current, f"Shadow mode stopped for {current.scope_label}", {"is_shadow": [True, False]}
        )
    logger.info("Shadow mode of %s stopped", current)
    current.refresh_from_db()
    return current
