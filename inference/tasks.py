"""Celery tasks of the inference app: thin, bounded, idempotent.

They take ids, call a service and return nothing. This module is imported by
the worker's parent process before it forks: it must not import TensorFlow.
"""

import logging
from datetime import timedelta

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError

from . import services

logger = logging.getLogger(__name__)

MAX_RETRIES = 5


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.SKINCARE_INFERENCE_SOFT_TIME_LIMIT,
    time_limit=settings.SKINCARE_INFERENCE_TIME_LIMIT,
    max_retries=MAX_RETRIES,
)
def run_prediction_task(self, prediction_id):
    try:
        services.run_prediction(prediction_id)
    except (services.TransientError, DatabaseError, SoftTimeLimitExceeded) as exc:
        if self.request.retries >= MAX_RETRIES:
            services.mark_failed(prediction_id, f"Gave up after {MAX_RETRIES + 1} attempts: {exc}")
            return
        # Exponential backoff: 2, 4, 8, 16, 32 s (capped at 5 minutes).
        countdown = min(2 ** (self.request.retries + 1), 300)
        logger.warning("Prediction %s: %s; retrying in %ss", prediction_id, exc, countdown)
        raise self.retry(exc=exc, countdown=countdown) from exc


@shared_task(soft_time_limit=120, time_limit=180)
def requeue_stale_predictions_task():
    services.requeue_stale_predictions(older_than=timedelta(seconds=settings.SKINCARE_STALE_PREDICTION_SECONDS))


@shared_task(acks_late=False, soft_time_limit=3600, time_limit=3900)
def adapt_site_model_task(job_id):
    """Routed to the ``training`` queue (CELERY_TASK_ROUTES); see inference.site_jobs."""
    from . import site_jobs

    site_jobs.run_site_adaptation(job_id)
