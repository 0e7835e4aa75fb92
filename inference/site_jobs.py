"""Site adaptation as background work: ``python -m training adapt`` on the ``training`` queue.

``request_site_adaptation`` (ML admins; the admin's "Add site adaptation job"
form) records a SiteAdaptationJob and sends it, by task name and on commit, to
``inference.tasks.adapt_site_model_task``, which ``CELERY_TASK_ROUTES`` puts on
the ``training`` queue (a worker of its own: ``celery -A skincare worker -Q
training -c 1``), so a run of minutes never delays predictions.

The cases are the clinic's own: its images (of one device model, if one is
named) whose latest review carries a histopathology result, melanoma (in situ
or invasive) or benign, as the local validation report counts them. A request
with fewer than ``training adapt``'s minimum is refused at once, with the
counts; one open (queued or running) job per site at a time. (A folder of
``benign/`` and ``malignant/`` images on the training worker may be given
instead, as ``data_dir``.)

``run_site_adaptation`` exports those images to a folder beside the output,
runs the adaptation with the shipped model as base, appends its progress
lines to the job (the admin shows them), deletes the export, and registers
the result as the site's model (not activated: activation stays a separate,
gated step).
"""

import logging
import shutil
from datetime import timedelta
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, Subquery, Value
from django.db.models.functions import Concat
from django.utils import timezone

from cases.models import Clinic, LesionImage, Review
from cases.permissions import is_ml_admin
from core.audit import log_action

from .models import SiteAdaptationJob
from .registry import register_model_version
from .runtime import shipped_model_dir

logger = logging.getLogger(__name__)

ADAPT_TASK = "inference.tasks.adapt_site_model_task"
MALIGNANT = (Review.Histopathology.MELANOMA_IN_SITU, Review.Histopathology.INVASIVE_MELANOMA)
BENIGN = (Review.Histopathology.BENIGN,)
# adapt_site_model_task's hard time limit, and a margin: a job "running" for
# longer than this has lost its worker (killed, restarted) and never finishes.
LOST_AFTER = timedelta(seconds=3900 + 600)


def minimum_cases() -> tuple[int, int]:
    """(melanomas, benign lesions) ``training adapt`` needs (docs/site-adaptation.md, "How much data")."""
    from training.adapt import MIN_BENIGN, MIN_MALIGNANT

    return MIN_MALIGNANT, MIN_BENIGN


def local_cases(clinic, device_model=""):
    """The clinic's images (of ``device_model`` when given) labelled by their latest review's histopathology.

    Annotated ``histopathology``; only melanoma and benign results.
    """
    latest = Subquery(
        Review.objects.filter(image=OuterRef("pk")).order_by("-created_at", "-pk").values("histopathology_result")[:1]
    )
    images = LesionImage.objects.filter(lesion__patient__clinic=clinic)
    if device_model:
        images = images.filter(device_model=device_model)
    return images.annotate(histopathology=latest).filter(histopathology__in=[*MALIGNANT, *BENIGN])


def count_local_cases(clinic, device_model="") -> tuple[int, int]:
    """(melanomas, benign lesions) among ``local_cases``."""
    labels = list(local_cases(clinic, device_model).values_list("histopathology", flat=True))
    malignant = sum(1 for label in labels if label in MALIGNANT)
    return malignant, len(labels) - malignant


def _scope(clinic, device_model) -> str:
    return f"{clinic}" + (f" / {device_model}" if device_model else "")


def request_site_adaptation(*, clinic, user, device_model="", data_dir=None) -> SiteAdaptationJob:
    """Queue an adaptation of the shipped model to ``clinic`` (and ``device_model``); audited.

    Raises PermissionDenied for anyone but an ML admin, and ValidationError
    (nothing recorded, nothing sent) when the site has too few local cases,
    when a job for the same site is already queued or running, or when
    ``data_dir`` is not a folder.
    """
    if user is None or not is_ml_admin(user):
        raise PermissionDenied("Only ML admins may adapt a model to a site.")
    device_model = (device_model or "").strip()
    scope = _scope(clinic, device_model)
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise ValidationError(f"{data_dir} is not a folder on the training worker.")
    else:
        malignant, benign = count_local_cases(clinic, device_model)
        need_malignant, need_benign = minimum_cases()
        if malignant < need_malignant or benign < need_benign:
            raise ValidationError(
                f"Too few local cases for {scope}: {malignant} melanoma{'s' if malignant != 1 else ''} and "
                f"{benign} benign lesion{'s' if benign != 1 else ''} with a histopathology result on their latest "
                f"review; adaptation needs at least {need_malignant} and {need_benign}."
            )
    with transaction.atomic():
        # One request at a time per clinic: the check below then sees any job
        # a concurrent request has just created.
        Clinic.objects.select_for_update().filter(pk=clinic.pk).first()
        _fail_lost_jobs(clinic, device_model)
        open_job = SiteAdaptationJob.objects.filter(
            clinic=clinic, device_model=device_model, status__in=SiteAdaptationJob.OPEN
        ).first()
        if open_job is not None:
            raise ValidationError(
                f"A site adaptation for {scope} is already {open_job.get_status_display().lower()} "
                f"(requested {timezone.localtime(open_job.created_at):%Y-%m-%d %H:%M}); wait for it to finish."
            )
        try:
            with transaction.atomic():
                job = SiteAdaptationJob.objects.create(
                    clinic=clinic,
                    device_model=device_model,
                    data_dir=str(data_dir) if data_dir is not None else "",
                    requested_by=user,
                )
        except IntegrityError:  # the constraint, should the lock ever be bypassed
            raise ValidationError(f"A site adaptation for {scope} is already queued or running.") from None
        log_action(
            user=user,
            obj=job,
            description=f"Site adaptation requested for {scope}"[:300],
            changes={"status": [None, job.status]},
        )
        job_id = str(job.pk)

        def send_adaptation():
            current_app.send_task(ADAPT_TASK, args=[job_id])

        transaction.on_commit(send_adaptation, robust=True)
    return job


def _fail_lost_jobs(clinic, device_model) -> None:
    lost = SiteAdaptationJob.objects.filter(
        clinic=clinic,
        device_model=device_model,
        status=SiteAdaptationJob.Status.RUNNING,
        started_at__lt=timezone.now() - LOST_AFTER,
    )
    lost.update(
        status=SiteAdaptationJob.Status.FAILED,
        finished_at=timezone.now(),
        error="The worker stopped reporting: the run was lost (past the task's time limit).",
    )


def cancel_queued_job(job, *, user) -> bool:
    """Mark a job that has not started as failed (a worker that receives it then does nothing); audited.

    ML admins only. False when the job had already started or finished.
    """
    if user is None or not is_ml_admin(user):
        raise PermissionDenied("Only ML admins may cancel a site adaptation.")
    cancelled = SiteAdaptationJob.objects.filter(pk=job.pk, status=SiteAdaptationJob.Status.QUEUED).update(
        status=SiteAdaptationJob.Status.FAILED,
        finished_at=timezone.now(),
        error=f"Cancelled by {user.get_username()} before it started.",
    )
    if cancelled:
        log_action(user=user, obj=job, description="Site adaptation cancelled before it started")
    return bool(cancelled)


def _say(job_id):
    def progress(line: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        SiteAdaptationJob.objects.filter(pk=job_id).update(progress=Concat(F("progress"), Value(f"{stamp} {line}\n")))

    return progress


def export_local_cases(clinic, device_model, folder: Path) -> tuple[int, int]:
    """Write the site's cases as ``folder/benign/<image id>.<ext>`` and ``folder/malignant/...``.

    File names are image ids: no patient's name reaches the output's case list.
    """
    counts = {"benign": 0, "malignant": 0}
    for image in local_cases(clinic, device_model).only("pk", "image", "image_format"):
        label = "malignant" if image.histopathology in MALIGNANT else "benign"
        target = folder / label / f"{image.pk}.{'png' if image.image_format == 'PNG' else 'jpg'}"
        target.parent.mkdir(parents=True, exist_ok=True)
        with image.image.open("rb") as source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
        counts[label] += 1
    return counts["malignant"], counts["benign"]


def run_site_adaptation(job_id) -> SiteAdaptationJob:
    """Run one queued job (the task's body); a job that is no longer queued is left alone (idempotent)."""
    from training.adapt import AdaptConfig, AdaptError, run
    from training.site_model import BaseModelError

    out = Path(settings.VAR_DIR) / "site-models" / str(job_id)
    # Queued -> running in one statement: a second delivery, or a cancel that
    # came first, finds nothing to start.
    started = SiteAdaptationJob.objects.filter(pk=job_id, status=SiteAdaptationJob.Status.QUEUED).update(
        status=SiteAdaptationJob.Status.RUNNING, started_at=timezone.now(), out_dir=str(out)
    )
    job = SiteAdaptationJob.objects.select_related("clinic").get(pk=job_id)
    if not started:
        return job
    say = _say(job.pk)
    export = out.parent / f".{job.pk}-cases"
    fields = {}
    try:
        if job.data_dir:
            data = Path(job.data_dir)
        else:
            shutil.rmtree(export, ignore_errors=True)
            malignant, benign = export_local_cases(job.clinic, job.device_model, export)
            say(f"exported the site's cases: {malignant} melanomas, {benign} benign lesions")
            data = export
        config = AdaptConfig(
            base=shipped_model_dir(),
            data=data,
            out=out,
            site=_scope(job.clinic, job.device_model),
            command=f"site adaptation job {job.pk}",
            progress=say,
        )
        run(config)
        version, _ = register_model_version(
            model_dir=out, clinic=job.clinic, device_model=job.device_model, user=job.requested_by
        )
        fields.update(status=SiteAdaptationJob.Status.SUCCEEDED, model_version=version)
    except (AdaptError, BaseModelError, ValidationError) as exc:
        message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        fields.update(status=SiteAdaptationJob.Status.FAILED, error=message)
    except Exception as exc:
        logger.exception("Site adaptation job %s failed", job.pk)
        fields.update(status=SiteAdaptationJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
    finally:
        # Patient images never stay on the worker's disk longer than the run.
        shutil.rmtree(export, ignore_errors=True)
    fields["finished_at"] = timezone.now()
    SiteAdaptationJob.objects.filter(pk=job.pk).update(**fields)
    job.refresh_from_db()
    return job
