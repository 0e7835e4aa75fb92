"""Sending prediction work to the broker, once the rows it names have committed.

By task name, not by importing ``inference.tasks``: the tasks call the
services, so the services must not import the tasks (no import cycle). It
also means the message carries no time limits of the sender's: the worker's
own task settings govern them.

Every successful publish is recorded on the row (``Prediction.sent_at``), so
that the sweeper can tell a message that never reached the broker from one
waiting behind a backlog (inference/sweeper.py).
"""

import logging
import time

from celery import current_app
from django.db import transaction
from django.utils import timezone

from .models import Prediction

logger = logging.getLogger(__name__)

RUN_PREDICTION_TASK = "inference.tasks.run_prediction_task"
# A key the sweeper keeps in the Redis broker's database: gone means the
# broker lost its data (restarted without persistence, flushed), and with it
# every message it held.
BROKER_MARKER_KEY = "skincare:broker-marker"


def send_prediction_on_commit(prediction_id) -> None:
    """Queue ``prediction_id`` for a worker when the current transaction commits.

    A rolled-back upload never reaches a worker, and a worker never looks
    for a row that is not committed yet. Should the broker be unreachable,
    the commit (and the upload) still succeeds: the failure is logged, the
    row stays pending with no ``sent_at``, and the sweeper sends it once the
    broker is back. ``robust`` keeps any other failure from reaching the
    caller or the transaction's other on-commit hooks.
    """
    prediction_id = str(prediction_id)

    # A named function, not functools.partial: a robust hook's failure is
    # logged under the function's __qualname__, which a partial lacks.
    def send_prediction():
        _send(prediction_id)

    transaction.on_commit(send_prediction, robust=True)


# After a publish that failed slowly (the broker hangs rather than refuses:
# a partition, an overloaded Redis), this process leaves the broker alone for
# a while: an upload of many images then waits for one timeout, not one per
# image. The rows stay unsent; the sweeper sends them. A publish refused at
# once costs little, so it does not stop the next one from trying.
SLOW_PUBLISH_SECONDS = 1.0
BROKER_BACKOFF_SECONDS = 10.0
_broker_down_until = 0.0


def _send(prediction_id: str, *, backoff: bool = True) -> bool:
    global _broker_down_until
    if backoff and time.monotonic() < _broker_down_until:
        logger.warning("Broker hanging a moment ago: prediction %s stays pending; the sweeper sends it", prediction_id)
        return False
    started = time.monotonic()
    try:
        current_app.send_task(RUN_PREDICTION_TASK, args=[prediction_id])
    except Exception as exc:  # kombu's OperationalError, a timeout, a refused connection
        if time.monotonic() - started >= SLOW_PUBLISH_SECONDS:
            _broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
        logger.warning("Broker unreachable (%s): prediction %s stays pending; the sweeper sends it", exc, prediction_id)
        return False
    try:
        Prediction.objects.filter(pk=prediction_id).update(sent_at=timezone.now())
    except Exception as exc:  # the database gone a moment after the commit, most likely
        # Sent but not recorded: the sweeper sends it once more, which a
        # lease makes harmless (the second delivery does nothing).
        logger.warning("Prediction %s sent, but sent_at not recorded: %s", prediction_id, exc)
    return True


def send_now(prediction_id) -> bool:
    """Publish at once (no transaction to wait for), whatever an earlier failure; True when the broker accepted it.

    The sweeper's way: it runs only when the broker delivered it, so it
    tries the broker even if this process saw it down a moment ago.
    """
    return _send(str(prediction_id), backoff=False)


def redis_broker():
    """A client of the Redis database the broker uses; None for any other broker."""
    url = current_app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
