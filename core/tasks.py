"""Housekeeping of the foundation."""

from celery import shared_task

from . import submissions


@shared_task(soft_time_limit=120, time_limit=180)
def delete_old_form_submissions_task():
    submissions.delete_old()
