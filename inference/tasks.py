"""Celery tasks of the inference app: thin, bounded, idempotent.

They take ids, call a service and return nothing. This module is imported by
the worker's parent process before it forks: it must not import TensorFlow.

The time limits below are read from the worker's own settings when it
imports this module: messages are sent by name (inference.queueing) and
carry none. Acknowledgement (skincare/settings/base.py): late, so a message
whose pool process died, or was killed at the hard time limit, is delivered
again; that delivery finds the row leased by the dead run and does nothing,
and the sweeper queues the row again once the lease has expired.
"""

import logging
import uuid
from datetime import timedelta

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from . import leases, services, sweeper

logger = logging.getLogger(__name__)

MAX_RETRIES = 5
# Between retries once the database has been unreachable through MAX_RETRIES.
DB_WAIT = 60


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    acks_on_failure_or_timeout=False,
    soft_time_limit=settings.SKINCARE_INFERENCE_SOFT_TIME_LIMIT,
    time_limit=settings.SKINCARE_INFERENCE_TIME_LIMIT,
    max_retries=MAX_RETRIES,
)
def run_prediction_task(self, prediction_id, lease_token=None):
    # A retry carries its run's lease token, so it can take its own lease
    # back; a first delivery, or a duplicate, gets a new one.
    token = lease_token or str(uuid.uuid4())
    try:
        services.run_prediction(prediction_id, lease_token=token)
    except (services.TransientError, DatabaseError, SoftTimeLimitExceeded) as exc:
        if self.request.retries >= MAX_RETRIES and isinstance(exc, (OperationalError, InterfaceError)):
            # The database is unreachable, which is not the prediction's
            # fault. Keep the message alive (one more retry each time, a
            # minute apart) rather than drop it: a row no run could start is
            # pending with sent_at set, and no sweeper rule would find it.
            logger.error("Prediction %s: database unreachable: %s; retrying in %ss", prediction_id, exc, DB_WAIT)
            leases.extend(prediction_id, token, seconds=DB_WAIT + leases.lease_seconds())
            raise self.retry(
                exc=exc, countdown=DB_WAIT, max_retries=self.request.retries + 1, kwargs={"lease_token": token}
            ) from exc
        if self.request.retries >= MAX_RETRIES:
            if isinstance(exc, DatabaseError):
                # Not the prediction's fault: hand the row back (pending, or
                # with a lease that expires) for the sweeper once the
                # database is back, rather than failing it.
                leases.release(prediction_id, token)
                logger.error("Prediction %s: database unreachable through every retry: %s", prediction_id, exc)
                return
            services.mark_failed(prediction_id, f"Gave up after {MAX_RETRIES + 1} attempts: {exc}", lease_token=token)
            return
        # Exponential backoff: 2, 4, 8, 16, 32 s (capped, see settings.SKINCARE_RETRY_BACKOFF_MAX_SECONDS).
        countdown = min(2 ** (self.request.retries + 1), settings.SKINCARE_RETRY_BACKOFF_MAX_SECONDS)
        logger.warning("Prediction %s: %s; retrying in %ss", prediction_id, exc, countdown)
        # The lease outlives the wait, so no other delivery starts the row meanwhile.
        leases.extend(prediction_id, token, seconds=countdown + leases.lease_seconds())
        try:
            retry = self.retry(exc=exc, countdown=countdown, kwargs={"lease_token": token}, throw=False)
        except Exception as publish_error:
            # The broker refused the retry: hand the row back for the sweeper.
            logger.warning("Prediction %s: retry not sent (%s)", prediction_id, publish_error)
            leases.release(prediction_id, token)
            return
        raise retry from exc


@shared_task(soft_time_limit=30, time_limit=60)
def sweep_predictions_task():
    sweeper.sweep()


@shared_task(soft_time_limit=600, time_limit=660)
def delete_orphan_heatmap_files_task():
    sweeper.delete_orphan_heatmap_files(older_than=timedelta(seconds=settings.SKINCARE_ORPHAN_FILE_SECONDS))


@shared_task(soft_time_limit=30, time_limit=60)
def requeue_stale_predictions_task():
    """The old schedule's name, kept for beat databases that still list it: sweeps instead."""
    sweeper.sweep()


@shared_task(acks_late=False, soft_time_limit=3600, time_limit=3900)
def adapt_site_model_task(job_id):
    """Routed to the ``training`` queue (CELERY_TASK_ROUTES); see inference.site_jobs."""
    from . import site_jobs

    site_jobs.run_site_adaptation(job_id)
