"""Prometheus metrics at ``/metrics`` (docs/operations.md), read from the database and the broker at scrape time.

Every value is computed when Prometheus scrapes, from PostgreSQL and Redis,
so any web process gives the whole system's numbers and nothing needs
prometheus_client's multiprocess mode (gunicorn workers, prefork pools).
Each query is cheap: the sweeper's partial indexes, the (status,
queued_at) index for the last hour and the (status, finished_at) index for
the latency window and the failures.

The two distributions are built from the rows too, not observed in
processes. A prediction is stored by a worker process on another machine
than the web process that is scraped; multiprocess mode shares files
between the processes of one host only, loses its counts with each deploy
and needs every worker scraped on a port of its own. The rows are the truth
and outlive every process:

- ``skincare_prediction_latency_seconds`` is a *gauge histogram*: the
  distribution of request → stored times of the clinical predictions that
  finished in the last ``LATENCY_WINDOW`` (``histogram_quantile`` applies to
  its buckets directly, without ``rate``);
- ``skincare_prediction_failures_total{reason}`` counts the failed
  predictions in the database by reason (``inference.services.FAILURE_REASONS``);
  it grows with each failure (``increase()`` works), and drops only when an
  admin re-runs a failed prediction, which Prometheus reads as a counter reset.

Off unless ``SKINCARE_METRICS_TOKEN`` is set; then a scrape must send it as
``Authorization: Bearer <token>``.
"""

import hmac
from datetime import timedelta

from django.conf import settings
from django.db.models import Case, Count, DurationField, ExpressionWrapper, F, Min, Q, Sum, Value, When
from django.http import HttpResponse, HttpResponseNotFound
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
)

METRICS_PATH = "/metrics"
QUEUES = ("inference", "default")
LATENCY_WINDOW = timedelta(minutes=15)
# Seconds. The targets sit at 1 s (a prediction under load) and 300 s (the
# "predictions waiting" alert's region); the longest are a backlog's.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


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

        yield latency_histogram(now)
        yield failures_by_reason()

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


def latency_histogram(now) -> GaugeHistogramMetricFamily:
    """Request → stored times of the clinical predictions that finished in the last LATENCY_WINDOW: one query."""
    from inference.models import Prediction

    latency = ExpressionWrapper(F("finished_at") - F("queued_at"), output_field=DurationField())
    finished = Prediction.objects.filter(
        status=Prediction.Status.SUCCEEDED, finished_at__gte=now - LATENCY_WINDOW, is_shadow=False
    ).annotate(latency=latency)
    counts = finished.aggregate(
        total=Count("pk"),
        seconds=Sum("latency"),
        **{f"le_{i}": Count("pk", filter=Q(latency__lte=timedelta(seconds=b))) for i, b in enumerate(LATENCY_BUCKETS)},
    )
    buckets = [(f"{bound:g}", counts[f"le_{i}"]) for i, bound in enumerate(LATENCY_BUCKETS)]
    buckets.append(("+Inf", counts["total"]))
    return GaugeHistogramMetricFamily(
        "skincare_prediction_latency_seconds",
        f"Upload (or re-run) to prediction stored, clinical predictions finished in the last "
        f"{LATENCY_WINDOW.total_seconds() / 60:g} minutes.",
        buckets=buckets,
        gsum_value=counts["seconds"].total_seconds() if counts["seconds"] else 0.0,
    )


def failures_by_reason() -> CounterMetricFamily:
    """Failed predictions in the database, by reason (inference.services.FAILURE_REASONS): one query."""
    from inference.models import Prediction
    from inference.services import FAILURE_REASONS

    reason = Case(
        *(When(error__startswith=prefix, then=Value(name)) for prefix, name in FAILURE_REASONS.items()),
        default=Value("other"),
    )
    counts = dict(
        Prediction.objects.filter(status=Prediction.Status.FAILED)
        .annotate(reason=reason)
        .values_list("reason")
        .annotate(n=Count("pk"))
        .values_list("reason", "n")
    )
    failures = CounterMetricFamily("skincare_prediction_failures", "Failed predictions, by reason.", labels=["reason"])
    for name in (*dict.fromkeys(FAILURE_REASONS.values()), "other"):
        failures.add_metric([name], counts.get(name, 0))
    return failures


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
