"""Housekeeping of the API's own tables."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from .idempotency import delete_expired_records


@shared_task(soft_time_limit=600, time_limit=660)
def delete_expired_idempotency_records_task():
    delete_expired_records(older_than=timedelta(days=settings.SKINCARE_IDEMPOTENCY_KEY_DAYS))
