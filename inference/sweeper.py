"""The sweeper: brings back predictions whose work was lost, within seconds, and nothing else.

Beat runs ``sweep`` every ``SKINCARE_SWEEP_SECONDS`` (10 s). It re-sends a
prediction only when its work is provably lost, never one merely waiting
behind a backlog (that would only make the backlog longer):

1. **Expired lease** — a running row whose run stopped renewing its lease
   (``inference.leases``): the worker was killed (hard time limit, SIGKILL,
   out of memory, machine gone) or cannot reach the database. The row goes
   back to pending and is sent again.
2. **Never sent** — a pending row with no ``sent_at``: the broker never
   accepted its message (it was down during the upload, or the web process
   died between commit and publish; ``inference.queueing`` records every
   accepted publish). A short grace covers the instant between commit and
   publish.
3. **Broker lost its data** — Redis restarted without persistence or was
   flushed: every message it held is gone. Detected by a marker key the
   sweeper keeps in the broker's database; when it is missing, every pending
   row sent before now is sent again, and the marker is set back.

Why these proofs rather than scanning the queue for each pending id: a scan
costs O(backlog) every sweep (and message bodies are encoded, so Redis cannot
search them), exactly when the system is busiest. Here each sweep is two
small indexed queries (partial indexes on running/unsent rows) and one Redis
GET. A duplicate message — say the broker accepted a publish whose
``sent_at`` was then not recorded — is harmless: the second delivery finds
the row leased or finished and does nothing.

Images that arrived while no model was active get a prediction too, at most
every ``ORPHAN_CHECK_SECONDS`` (that query reads every image).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cases.models import LesionImage
from core.files import delete_orphan_files

from .models import ModelVersion, Prediction
from .queueing import BROKER_MARKER_KEY, redis_broker, send_now

logger = logging.getLogger(__name__)

BATCH = 500
ORPHAN_CHECK_SECONDS = 300
ORPHAN_CHECK_KEY = "skincare:orphan-image-check"


def sweep() -> dict[str, int]:
    """One pass of the sweeper; returns how many rows each rule sent again."""
    counts = {"expired_leases": 0, "never_sent": 0, "broker_lost": 0, "images_without_prediction": 0}
    broker = redis_broker()
    counts["expired_leases"] = _send_all(_reclaim_expired_leases())
    grace = timedelta(seconds=settings.SKINCARE_UNSENT_GRACE_SECONDS)
    unsent = list(Prediction.objects.never_sent(grace=grace).order_by("queued_at").values_list("pk", flat=True)[:BATCH])
    counts["never_sent"] = _send_all(unsent)
    if broker is not None:
        counts["broker_lost"] = _resend_if_broker_lost(broker)
    counts["images_without_prediction"] = _predict_images_without_prediction(broker)
    if any(counts.values()):
        logger.warning("Sweeper sent again: %s", counts)
    return counts


def _reclaim_expired_leases() -> list:
    now = timezone.now()
    expired = Prediction.objects.expired_leases(now=now)
    # Rows running since before leases existed: presumed dead one lease after their start.
    legacy = Prediction.objects.filter(
        status=Prediction.Status.RUNNING,
        lease_expires_at__isnull=True,
        started_at__lt=now - timedelta(seconds=settings.SKINCARE_PREDICTION_LEASE_SECONDS),
    )
    if not (expired.exists() or legacy.exists()):
        return []  # the usual case: no transaction, no lock
    with transaction.atomic():
        ids = list(expired.select_for_update(skip_locked=True).values_list("pk", flat=True)[:BATCH])
        ids += list(legacy.select_for_update(skip_locked=True).values_list("pk", flat=True)[:BATCH])
        Prediction.objects.filter(pk__in=ids).update(
            status=Prediction.Status.PENDING, queued_at=now, sent_at=None, lease_token=None, lease_expires_at=None
        )
    for pk in ids:
        logger.warning("Prediction %s: its run's lease expired; queued again", pk)
    return ids


def _send_all(ids) -> int:
    sent = 0
    for pk in ids:
        if not send_now(pk):
            break  # the broker is down: the rows stay unsent, the next sweep tries again
        sent += 1
    return sent


def _resend_if_broker_lost(broker) -> int:
    try:
        if broker.get(BROKER_MARKER_KEY) is not None:
            return 0
    except Exception as exc:
        logger.warning("Sweeper cannot read the broker marker: %s", exc)
        return 0
    now = timezone.now()
    pending = Prediction.objects.filter(status=Prediction.Status.PENDING, sent_at__lt=now)
    ids = list(pending.values_list("pk", flat=True))
    sent = _send_all(ids)
    if sent == len(ids):
        broker.set(BROKER_MARKER_KEY, now.isoformat())
        if ids:
            logger.warning("The broker lost its messages (marker gone): %d pending predictions sent again", sent)
    return sent


def _predict_images_without_prediction(broker) -> int:
    from .services import request_prediction

    active = ModelVersion.objects.active()
    if active is None:
        return 0
    if broker is not None:
        try:
            if not broker.set(ORPHAN_CHECK_KEY, "1", nx=True, ex=ORPHAN_CHECK_SECONDS):
                return 0
        except Exception:
            return 0
    cutoff = timezone.now() - timedelta(seconds=settings.SKINCARE_UNSENT_GRACE_SECONDS)
    count = 0
    for image in LesionImage.objects.filter(predictions__isnull=True, uploaded_at__lt=cutoff)[:BATCH]:
        with transaction.atomic():
            request_prediction(image, model_version=active)
        count += 1
    return count


HEATMAP_FOLDER = "heatmaps"


def delete_orphan_heatmap_files(*, older_than: timedelta) -> list[str]:
    """Delete heatmap files no prediction names (a run killed after storing its file, before its UPDATE)."""
    return delete_orphan_files(
        folder=HEATMAP_FOLDER,
        referenced=lambda paths: set(Prediction.objects.filter(heatmap__in=paths).values_list("heatmap", flat=True)),
        older_than=older_than,
    )
