"""Leases: which run is working on a prediction, for how much longer.

A run that starts a prediction takes its lease: a random token and an
expiry (``SKINCARE_PREDICTION_LEASE_SECONDS`` ahead) on the row. While it
works, a heartbeat thread renews the lease every third of that time, so a
slow first model load or a long heatmap never loses it. A run that dies —
its pool process killed at the hard time limit, SIGKILLed, its machine gone —
stops renewing, the lease expires, and the sweeper (``inference.sweeper``)
queues the row again within a lease plus a sweep interval.

The lease also settles duplicate deliveries: a second delivery that finds
the row leased by a live run does nothing (it is not an attempt), and a run
stores its result only while it still holds the lease (or the row was handed
back to pending), so one prediction is never computed into the row twice.
"""

import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q
from django.utils import timezone

from .models import Prediction

logger = logging.getLogger(__name__)


def lease_seconds() -> int:
    return settings.SKINCARE_PREDICTION_LEASE_SECONDS


def expiry(seconds: float | None = None):
    return timezone.now() + timedelta(seconds=lease_seconds() if seconds is None else seconds)


def is_live(prediction, *, now=None) -> bool:
    """Whether ``prediction`` (a running row) is held by a run that is still renewing its lease."""
    now = now or timezone.now()
    if prediction.lease_expires_at is not None:
        return prediction.lease_expires_at > now
    # A row started before leases existed: live for one lease after its start.
    return prediction.started_at is not None and prediction.started_at > now - timedelta(seconds=lease_seconds())


def owned_by(token) -> Q:
    """Rows a run holding ``token`` may still write its outcome to.

    Its own running row, or one the sweeper handed back to pending after the
    lease expired (the result is as good as a new run's, and the message the
    sweeper sent will then find it finished).
    """
    return Q(status=Prediction.Status.RUNNING, lease_token=token) | Q(status=Prediction.Status.PENDING)


def extend(prediction_id, token, *, seconds: float) -> bool:
    """Keep the lease for ``seconds`` more (a retry waiting for its countdown); best effort."""
    try:
        return bool(
            Prediction.objects.filter(pk=prediction_id, status=Prediction.Status.RUNNING, lease_token=token).update(
                lease_expires_at=expiry(seconds)
            )
        )
    except DatabaseError as exc:
        logger.warning("Prediction %s: cannot extend the lease (%s); it will expire and be swept", prediction_id, exc)
        return False


def release(prediction_id, token) -> bool:
    """Give the row back as pending and never sent, for the sweeper to queue again; best effort.

    Used when a run gives up for a reason that is not the prediction's fault
    (the database stayed unreachable through every retry). Should the
    database still be down, the row keeps its lease, which expires: the
    sweeper queues it either way once the database is back.
    """
    try:
        return bool(
            Prediction.objects.filter(pk=prediction_id)
            .filter(owned_by(token))
            .update(
                status=Prediction.Status.PENDING,
                sent_at=None,
                queued_at=timezone.now(),
                lease_token=None,
                lease_expires_at=None,
            )
        )
    except DatabaseError as exc:
        logger.warning("Prediction %s: cannot release the lease (%s); it will expire and be swept", prediction_id, exc)
        return False


class Heartbeat:
    """Renews a run's lease from a background thread while the ``with`` block runs.

    The thread uses its own database connection and closes it when done. If
    the lease is found lost (another run took the row over after it
    expired), ``lost`` is set; the run's final conditional UPDATE then
    stores nothing.
    """

    def __init__(self, prediction_id, token, *, seconds: float | None = None):
        self.prediction_id = prediction_id
        self.token = token
        self.seconds = lease_seconds() if seconds is None else seconds
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{prediction_id}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=5)
        return False

    def _run(self):
        try:
            while not self._stop.wait(self.seconds / 3):
                self.renew()
        finally:
            connection.close()

    def renew(self) -> bool:
        try:
            renewed = Prediction.objects.filter(
                pk=self.prediction_id, status=Prediction.Status.RUNNING, lease_token=self.token
            ).update(lease_expires_at=expiry(self.seconds))
        except DatabaseError as exc:
            logger.warning("Prediction %s: lease not renewed (%s)", self.prediction_id, exc)
            return False
        if not renewed:
            self.lost = True
            logger.warning("Prediction %s: lease lost; this run will store nothing", self.prediction_id)
            self._stop.set()
        return bool(renewed)
