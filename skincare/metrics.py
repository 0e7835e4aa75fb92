"""Prometheus metrics at ``/metrics`` (docs/operations.md), read from the database and the broker at scrape time.

Every value is computed when Prometheus scrapes, from PostgreSQL and Redis,
so any web process gives the whole system's numbers and nothing needs
prometheus_client's multiprocess mode (gunicorn workers, prefork pools).
Each query is cheap: the sweeper's partial indexes, and the (status,
queued_at) index for the last hour.

Off unless ``SKINCARE_METRICS_TOKEN`` is set; then a scrape must send it as
``Authorization: Bearer <token>``.
"""

import hmac
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpResponse, HttpResponseNotFound
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily

METRICS_PATH = "/metrics"
QUEUES = ("inference", "default")


class SkincareCollector:
    def collect(self):
        from inference.models import ModelVersion, Prediction
        from inference.queueing import redis_broker

        now = timezone.now()
        unfinished = GaugeMetricFamily(
            "skincare_predictions_unfinished", "Predictions not finished yet, by status.", labels=["status"]
        )
        counts = dict(
            Prediction.objects.filter(status__in=["pending", "running"])
            .values_list("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        for status in ("pending", "running"):
            unfinished.add_metric([status], counts.get(status, 0))
        yield unfinished

        oldest = Prediction.objects.pending().aggregate(oldest=Min("queued_at"))["oldest"]
        yield GaugeMetricFamily(
            "skincare_predictions_oldest_pending_seconds",
            "Age of the oldest pending prediction (0 when none): alert when it grows.",
            value=(now - oldest).total_seconds() if oldest else 0,
        )
        grace = timedelta(seconds=settings.SKINCARE_UNSENT_GRACE_SECONDS)
        yield GaugeMetricFamily(
            "skincare_predictions_unsent",
            "Pending predictions the broker has not accepted (the sweeper sends them).",
            value=Prediction.objects.never_sent(grace=grace).count(),
        )
        yield GaugeMetricFamily(
            "skincare_predictions_expired_leases",
            "Running predictions whose run stopped renewing its lease (the sweeper queues them again).",
            value=Prediction.objects.expired_leases(now=now).count(),
        )
        recent = GaugeMetricFamily(
            "skincare_predictions_last_hour",
            "Predictions queued in the last hour, by status.",
            labels=["status"],
        )
        by_status = dict(
            Prediction.objects.filter(queued_at__gte=now - timedelta(hours=1))
            .values_list("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        for status in Prediction.Status.values:
            recent.add_metric([status], by_status.get(status, 0))
        yield recent

        active = ModelVersion.objects.active()
        model = GaugeMetricFamily("skincare_active_model", "1 for the active model version.", labels=["model"])
        if active is not None:
            model.add_metric([active.label], 1)
        yield model

        broker = redis_broker()
        if broker is not None:
            depth = GaugeMetricFamily("skincare_queue_length", "Messages waiting in a broker queue.", labels=["queue"])
            up = 1
            try:
                for queue in QUEUES:
                    depth.add_metric([queue], broker.llen(queue))
            except Exception:
                up = 0
            else:
                yield depth
            yield GaugeMetricFamily("skincare_broker_up", "1 when the broker answered this scrape.", value=up)


def metrics_response(request) -> HttpResponse:
    token = settings.SKINCARE_METRICS_TOKEN
    if not token:
        return HttpResponseNotFound()
    sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(sent.encode(), token.encode()):
        response = HttpResponse(status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SkincareCollector())
    response = HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
