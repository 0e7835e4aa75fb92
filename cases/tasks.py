"""Housekeeping tasks of the clinical record."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from . import services


@shared_task(soft_time_limit=600, time_limit=660)
def delete_orphan_image_files_task():
    services.delete_orphan_image_files(older_than=timedelta(seconds=settings.SKINCARE_ORPHAN_FILE_SECONDS))
