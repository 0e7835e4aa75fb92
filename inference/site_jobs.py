"""Site adaptation as background work: ``python -m training adapt`` on the ``training`` queue.

``request_site_adaptation`` (ML admins) records a SiteAdaptationJob and sends
it, by task name and on commit, to ``inference.tasks.adapt_site_model_task``,
which ``CELERY_TASK_ROUTES`` puts on the ``training`` queue (a worker of its
own: ``celery -A skincare worker -Q training -c 1``), so a run of minutes
never delays predictions. ``run_site_adaptation`` runs the adaptation with the
shipped model as base, appends its progress lines to the job (the admin shows
them), and registers the result as the clinic's site model (not activated:
activation stays a separate, gated step).
"""

import logging
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from cases.permissions import is_ml_admin

from .models import SiteAdaptationJob
from .registry import register_model_version
from .runtime import shipped_model_dir

logger = logging.getLogger(__name__)

ADAPT_TASK = "inference.tasks.adapt_site_model_task"


def request_site_adaptation(*, clinic, data_dir, user) -> SiteAdaptationJob:
    if user is None or not is_ml_admin(user):
        raise PermissionDenied("Only ML admins may adapt a model to a site.")
    if not Path(data_dir).is_dir():
        raise ValidationError(f"{data_dir} is not a folder on the training worker.")
    job = SiteAdaptationJob.objects.create(clinic=clinic, data_dir=str(data_dir), requested_by=user)
    job_id = str(job.pk)

    def send_adaptation():
        current_app.send_task(ADAPT_TASK, args=[job_id])

    transaction.on_commit(send_adaptation, robust=True)
    return job


def _say(job_id):
    def progress(line: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        SiteAdaptationJob.objects.filter(pk=job_id).update(progress=Concat(F("progress"), Value(f"{stamp} {line}\n")))

    return progress


def run_site_adaptation(job_id) -> SiteAdaptationJob:
    from training.adapt import AdaptConfig, AdaptError, run
    from training.site_model import BaseModelError

    job = SiteAdaptationJob.objects.select_related("clinic").get(pk=job_id)
    if job.status != SiteAdaptationJob.Status.QUEUED:
        return job
    out = Path(settings.VAR_DIR) / "site-models" / str(job.pk)
    SiteAdaptationJob.objects.filter(pk=job.pk).update(
        status=SiteAdaptationJob.Status.RUNNING, started_at=timezone.now(), out_dir=str(out)
    )
    config = AdaptConfig(
        base=shipped_model_dir(),
        data=Path(job.data_dir),
        out=out,
        site=job.clinic.name,
        command=f"site adaptation job {job.pk}",
        progress=_say(job.pk),
    )
    fields = {"finished_at": None}
    try:
        run(config)
        version, _ = register_model_version(model_dir=out, clinic=job.clinic, user=job.requested_by)
        fields.update(status=SiteAdaptationJob.Status.SUCCEEDED, model_version=version)
    except (AdaptError, BaseModelError, ValidationError) as exc:
        message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        fields.update(status=SiteAdaptationJob.Status.FAILED, error=message)
    except Exception as exc:
        logger.exception("Site adaptation job %s failed", job.pk)
        fields.update(status=SiteAdaptationJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
    fields["finished_at"] = timezone.now()
    SiteAdaptationJob.objects.filter(pk=job.pk).update(**fields)
    job.refresh_from_db()
    return job
