"""Writes of the inference app: requesting, running and re-queuing predictions,
and registering model versions.

``request_prediction`` is what ``cases.services.add_lesion_image`` calls for
every stored image (the ``SKINCARE_IMAGE_STORED_HOOK`` setting). The task
module stays thin and calls ``run_prediction``; work is sent to it through
``inference.queueing``, by name, so this module never imports the tasks.
"""

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from cases.models import LesionImage
from training.preprocessing import ImageError

from . import leases, permissions
from .models import ModelVersion, Prediction, heatmap_path
from .queueing import send_prediction_on_commit
from .runtime import heatmap_png, with_image_quality

logger = logging.getLogger(__name__)


MAX_ATTEMPTS = 6


class TransientError(Exception):
    """Worth retrying: storage or database briefly unavailable."""


def request_prediction(image, *, model_version=None):
    """Create the pending Prediction for ``image`` and queue it once the transaction commits.

    The model is the image's site's: the active model of its clinic for its
    acquisition device, else of its clinic, else the global active model
    (``ModelVersion.objects.for_site``); the prediction records which.
    Idempotent: asking twice for the same (image, model version) returns the
    existing row and queues nothing new unless it is still unfinished. With
    no active model the image waits; registering and activating a model and
    running the sweeper picks it up. While a shadow model exists, a request
    for the active model also creates the shadow model's prediction
    (``is_shadow``, never shown to clinicians), queued after the active one
    so that clinicians never wait behind it. Returns the requested model's
    prediction.
    """
    clinic_id = image.lesion.patient.clinic_id
    # The acquisition device named at upload, else read from its EXIF (blank when unknown).
    device_model = image.device_model
    # The site's model when its clinic (and device) has one, else the global one.
    active, shadow = ModelVersion.objects.for_site(clinic_id, device_model)
    model_version = model_version or active
    if model_version is None:
        logger.warning("No active model: image %s waits for one", image.pk)
        return None

    def get_or_queue(version, *, is_shadow):
        prediction, created = Prediction.objects.get_or_create(
            image=image, model_version=version, defaults={"is_shadow": is_shadow}
        )
        if created or prediction.status in (Prediction.Status.PENDING, Prediction.Status.RUNNING):
            send_prediction_on_commit(prediction.pk)
        return prediction

    prediction = get_or_queue(model_version, is_shadow=model_version == shadow)
    if shadow is not None and model_version == active:
        get_or_queue(shadow, is_shadow=True)
    return prediction


def run_prediction(prediction_id, *, lease_token=None) -> Prediction | None:
    """Compute and store one prediction. Safe to run any number of times, concurrently too.

    A succeeded or failed prediction is left as it is, and so is one leased
    by another live run (a duplicate delivery): neither counts as an
    attempt. Otherwise this run takes the lease (``inference.leases``),
    renews it while it works and stores the result only if it still holds
    it. ``lease_token``: the token of an earlier run of the same task (a
    retry), which may take its own lease back. An unreadable image marks the
    prediction failed with the reason; storage and database hiccups raise
    TransientError / DatabaseError for the task to retry.
    """
    token = str(lease_token or uuid.uuid4())
    prediction = _claim(prediction_id, token)
    if prediction is None or prediction.status != Prediction.Status.RUNNING or str(prediction.lease_token) != token:
        return prediction
    with leases.Heartbeat(prediction.pk, token):
        return _compute(prediction, token)


# Why a prediction failed, from the start of the error it stores (the
# messages below and in inference.tasks): /metrics counts failures by these
# reasons (skincare/metrics.py). Anything else counts as "other".
FAILURE_REASONS = {
    "Abandoned after": "interrupted",  # killed at the hard time limit, or lost, MAX_ATTEMPTS times
    "The image file is missing": "image_missing",
    "The image cannot be analysed": "unreadable_image",
    "Gave up after": "retries_exhausted",  # storage (or another transient fault) through every retry
}


def _claim(prediction_id, token) -> Prediction | None:
    """Take the lease of ``prediction_id`` for ``token``, or say why not (the row as it is)."""
    with transaction.atomic():
        prediction = (
            Prediction.objects.select_for_update()
            .select_related("image", "model_version")
            .filter(pk=prediction_id)
            .first()
        )
        if prediction is None:
            logger.warning("Prediction %s no longer exists", prediction_id)
            return None
        if prediction.status in (Prediction.Status.SUCCEEDED, Prediction.Status.FAILED):
            return prediction
        if (
            prediction.status == Prediction.Status.RUNNING
            and str(prediction.lease_token) != token
            and leases.is_live(prediction)
        ):
            logger.info("Prediction %s is leased by a live run: this delivery does nothing", prediction_id)
            return prediction
        if prediction.attempts >= MAX_ATTEMPTS:
            # Each attempt was cut short (a worker killed at the hard time
            # limit, or lost): stop the message from cycling forever.
            return _finish_failed(prediction, f"Abandoned after {prediction.attempts} interrupted attempts.")
        prediction.status = Prediction.Status.RUNNING
        prediction.started_at = timezone.now()
        prediction.attempts = F("attempts") + 1
        prediction.lease_token = token
        prediction.lease_expires_at = leases.expiry()
        prediction.save(update_fields=["status", "started_at", "attempts", "lease_token", "lease_expires_at"])
        prediction.refresh_from_db(fields=["attempts", "lease_token"])
    return prediction


def _compute(prediction, token) -> Prediction:
    from .worker_cache import get_predictor

    try:
        with prediction.image.image.open("rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return _finish_failed(prediction, "The image file is missing from storage.", token=token)
    except OSError as exc:
        raise TransientError(f"cannot read image from storage: {exc}") from exc

    predictor = get_predictor(prediction.model_version)
    try:
        t0 = time.perf_counter()
        array = predictor.preprocess(data)
        preprocess_ms = (time.perf_counter() - t0) * 1000
    except ImageError as exc:
        return _finish_failed(prediction, f"The image cannot be analysed: {exc}.", token=token)
    result = predictor.predict_arrays([array], preprocess_ms)[0]
    # The intake gate's findings (recorded on the image at upload) make the label uncertain.
    label, uncertain_reasons = with_image_quality(result.label, prediction.image.quality_findings)
    heatmap_name, heatmap_ms = _store_heatmap(prediction, predictor, array)

    try:
        previous_heatmap = Prediction.objects.filter(pk=prediction.pk).values_list("heatmap", flat=True).first()
        # One UPDATE stores the result and switches the row to this run's
        # heatmap file, and only while this run holds the lease.
        updated = (
            Prediction.objects.filter(pk=prediction.pk)
            .filter(leases.owned_by(token))
            .update(
                status=Prediction.Status.SUCCEEDED,
                probability_malignant=result.probability_malignant,
                label=label,
                uncertain_reasons=uncertain_reasons,
                confidence=result.confidence,
                error="",
                finished_at=timezone.now(),
                preprocess_ms=result.preprocess_ms,
                inference_ms=result.inference_ms,
                ood_distance=result.ood_distance,
                out_of_distribution=result.out_of_distribution,
                heatmap=heatmap_name,
                heatmap_ms=heatmap_ms,
                lease_token=None,
                lease_expires_at=None,
            )
        )
    except BaseException:
        _delete_quietly(heatmap_name)  # the row does not name it: never leave it behind
        raise
    prediction.refresh_from_db()
    if updated:
        logger.info("Prediction %s: %s p=%.3f", prediction.pk, label, result.probability_malignant)
        if previous_heatmap and previous_heatmap != heatmap_name:
            _delete_quietly(previous_heatmap)  # an earlier result's file, no longer named by the row
    else:
        # Another run holds the row now, or finished it first: ours would be an orphan.
        logger.info("Prediction %s: another run owns it; result discarded", prediction.pk)
        _delete_quietly(heatmap_name)
    return prediction


def _delete_quietly(name):
    if not name:
        return
    try:
        default_storage.delete(name)
    except Exception:
        logger.exception("Cannot delete %s", name)


def _store_heatmap(prediction, predictor, array) -> tuple[str, float | None]:
    """Compute and store the Grad-CAM overlay under a name of its own; ("", None) if that fails.

    An explanation is a nice-to-have beside the prediction, so any failure
    is logged and leaves the heatmap blank rather than failing the row. The
    name is new for every run (``heatmap_path``): nothing is deleted first,
    so a concurrent run's file is never removed under it.
    """
    try:
        t0 = time.perf_counter()
        png = heatmap_png(predictor.heatmap(array))
        heatmap_ms = (time.perf_counter() - t0) * 1000
        stored = prediction.heatmap.storage.save(heatmap_path(prediction, "heatmap.png"), ContentFile(png))
    except Exception:
        logger.exception("Prediction %s: no heatmap", prediction.pk)
        return "", None
    return stored, heatmap_ms


def _finish_failed(prediction, reason: str, *, token=None) -> Prediction:
    rows = Prediction.objects.filter(pk=prediction.pk).exclude(status=Prediction.Status.SUCCEEDED)
    if token is not None:
        rows = rows.filter(leases.owned_by(token))
    rows.update(
        status=Prediction.Status.FAILED,
        error=reason,
        finished_at=timezone.now(),
        lease_token=None,
        lease_expires_at=None,
    )
    logger.warning("Prediction %s failed: %s", prediction.pk, reason)
    prediction.refresh_from_db()
    return prediction


def mark_failed(prediction_id, reason: str, *, lease_token=None) -> None:
    """Give up on a prediction (retries exhausted); not one that another live run holds."""
    prediction = Prediction.objects.filter(pk=prediction_id).first()
    if prediction is not None:
        _finish_failed(prediction, reason, token=lease_token)


def requeue_stale_predictions(*, older_than: timedelta) -> int:
    """Queue again every prediction left pending/running for longer than ``older_than``.

    A blunt manual tool (``manage.py requeue_stale_predictions``): it cannot
    tell a lost message from one waiting behind a backlog, so beat runs
    ``inference.sweeper.sweep`` instead, which can.

    Also gives images that arrived while no model was active a prediction by
    the active one. Returns how many were queued.
    """
    count = 0
    for prediction in Prediction.objects.stale(older_than=older_than).only("pk"):
        with transaction.atomic():
            Prediction.objects.filter(pk=prediction.pk).update(
                status=Prediction.Status.PENDING,
                queued_at=timezone.now(),
                sent_at=None,
                lease_token=None,
                lease_expires_at=None,
            )
            send_prediction_on_commit(prediction.pk)
        count += 1
    if ModelVersion.objects.filter(is_active=True).exists():
        cutoff = timezone.now() - older_than
        orphans = LesionImage.objects.filter(predictions__isnull=True, uploaded_at__lt=cutoff)
        for image in orphans:
            with transaction.atomic():
                # Each image's own site model, else the global one.
                if request_prediction(image) is not None:
                    count += 1
    if count:
        logger.warning("Re-queued %d stale predictions", count)
    return count


@dataclass
class RerunOutcome:
    """What ``rerun_with_active_model`` did for one image."""

    QUEUED: ClassVar[str] = "queued"  # a new prediction, or a failed one reset to pending, sent to the worker
    ALREADY_QUEUED: ClassVar[str] = "already_queued"  # pending or running: the worker has it already
    ALREADY_DONE: ClassVar[str] = "already_done"  # the active model has already succeeded on this image
    PUBLISHED: ClassVar[str] = "published"  # the active model's shadow prediction, now shown to clinicians

    prediction: Prediction
    outcome: str
    # {"field": [old, new]} for what was changed on an existing row.
    changes: dict = field(default_factory=dict)


def rerun_with_active_model(*, predictions, user) -> list[RerunOutcome]:
    """Give each image behind ``predictions`` a prediction by the active model (its site's, else the global one).

    Idempotent, one outcome per image: an image the active model already
    succeeded on gets nothing new; a failed prediction of the active model is
    reset to pending and queued again; one still pending or running is left
    to the worker. A shadow prediction made earlier by the now-active model is
    published (``is_shadow`` cleared), so clinicians see it. New predictions
    go through ``request_prediction``, like every upload. Raises
    PermissionDenied unless ``user`` may act on every one of ``predictions``,
    ValidationError when no model is active.
    """
    predictions = list(predictions)
    if not permissions.can_act_on_predictions_in_admin(user, predictions):
        raise PermissionDenied("You may only re-run predictions of the clinics you administer.")
    if not ModelVersion.objects.filter(is_active=True).exists():
        raise ValidationError("No model is active: activate one before re-running predictions.")
    image_ids = list(dict.fromkeys(prediction.image_id for prediction in predictions))
    outcomes = []
    with transaction.atomic():
        for image in LesionImage.objects.filter(pk__in=image_ids).select_related("lesion__patient").order_by("pk"):
            # The image's site model when its clinic has one, else the global one (as request_prediction).
            active = ModelVersion.objects.for_site(image.lesion.patient.clinic_id, image.device_model)[0]
            if active is None:
                raise ValidationError(f"No model is active for the clinic of image {image.pk}.")
            existing = Prediction.objects.select_for_update().filter(image=image, model_version=active).first()
            if existing is None:
                outcomes.append(RerunOutcome(request_prediction(image, model_version=active), RerunOutcome.QUEUED))
                continue
            changes = {}
            if existing.is_shadow:
                changes["is_shadow"] = [True, False]
            if existing.status == Prediction.Status.FAILED:
                changes["status"] = [Prediction.Status.FAILED.value, Prediction.Status.PENDING.value]
                changes["error"] = [existing.error, ""]
            if changes:
                fields = {"is_shadow": False}
                if "status" in changes:
                    fields.update(
                        status=Prediction.Status.PENDING,
                        error="",
                        attempts=0,
                        queued_at=timezone.now(),
                        started_at=None,
                        finished_at=None,
                        sent_at=None,
                        lease_token=None,
                        lease_expires_at=None,
                    )
                Prediction.objects.filter(pk=existing.pk).update(**fields)
                existing.refresh_from_db()
            if existing.status == Prediction.Status.SUCCEEDED:
                outcome = RerunOutcome.PUBLISHED if changes else RerunOutcome.ALREADY_DONE
            elif "status" in changes:
                existing = request_prediction(image, model_version=active)
                outcome = RerunOutcome.QUEUED
            else:
                outcome = RerunOutcome.ALREADY_QUEUED
            outcomes.append(RerunOutcome(existing, outcome, changes))
    return outcomes


def flag_for_specialist(*, predictions, user) -> list[Prediction]:
    """Flag ``predictions`` for a specialist's review; returns those newly flagged.

    Idempotent: an already flagged prediction keeps who flagged it and when.
    Raises PermissionDenied unless ``user`` may act on every one of them.
    """
    predictions = list(predictions)
    if not permissions.can_act_on_predictions_in_admin(user, predictions):
        raise PermissionDenied("You may only flag predictions of the clinics you administer.")
    now = timezone.now()
    with transaction.atomic():
        flagged = list(
            Prediction.objects.select_for_update()
            .filter(pk__in=[p.pk for p in predictions], flagged_for_specialist=False)
            .order_by("pk")
        )
        Prediction.objects.filter(pk__in=[p.pk for p in flagged]).update(
            flagged_for_specialist=True, flagged_by=user, flagged_at=now
        )
    for prediction in flagged:
        prediction.flagged_for_specialist = True
        prediction.flagged_by = user
        prediction.flagged_at = now
    return flagged
