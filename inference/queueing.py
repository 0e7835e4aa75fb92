"""Sending prediction work to the broker, once the rows it names have committed.

By task name, not by importing ``inference.tasks``: the tasks call the
services, so the services must not import the tasks (no import cycle). It
also means the message carries no time limits of the sender's: the worker's
own task settings govern them.
"""

import logging

from celery import current_app
from django.db import transaction

logger = logging.getLogger(__name__)

RUN_PREDICTION_TASK = "inference.tasks.run_prediction_task"


def send_prediction_on_commit(prediction_id) -> None:
    """Queue ``prediction_id`` for a worker when the current transaction commits.

    A rolled-back upload never reaches a worker, and a worker never looks
    for a row that is not committed yet. ``robust``: should the broker be
    unreachable, the other on-commit hooks of the transaction still run and
    the prediction stays pending for the sweeper to send again.
    """
    prediction_id = str(prediction_id)

    # A named function, not functools.partial: a robust hook's failure is
    # logged under the function's __qualname__, which a partial lacks.
    def send_prediction():
        current_app.send_task(RUN_PREDICTION_TASK, args=[prediction_id])

    transaction.on_commit(send_prediction, robust=True)
