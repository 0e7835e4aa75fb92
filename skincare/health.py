"""Health endpoints for load balancers and orchestrators (docs/operations.md).

``/healthz`` — liveness: the process answers; nothing else is touched, so a
database or broker outage never gets healthy web processes restarted.
``/readyz`` — readiness: the database, the broker and storage answer, and a
model is active. 200 with every check ``ok``, else 503; each check says how
long it took and, if it failed, the exception's type (never its message,
which may hold a URL with credentials).

``/metrics`` (Prometheus, skincare/metrics.py) is routed here too.

Served by a middleware placed first, before host validation, sessions and
authentication: a probe comes with the pod's address as its Host, carries no
cookie, and must not write a session row.
"""

import json
import logging
import time

from django.http import HttpResponse

logger = logging.getLogger(__name__)

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
METRICS_PATH = "/metrics"  # skincare/metrics.py
BROKER_TIMEOUT_SECONDS = 2


def check_database():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_broker():
    from celery import current_app

    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_SECONDS)


def check_storage():
    from django.core.files.storage import default_storage

    default_storage.exists("healthz-probe")  # a HEAD on S3, a stat locally: reachable or it raises


def check_active_model():
    from inference.models import ModelVersion

    if not ModelVersion.objects.filter(is_active=True).exists():
        raise LookupError("no active model: uploads wait (register and activate one)")


CHECKS = {
    "database": check_database,
    "broker": check_broker,
    "storage": check_storage,
    "active_model": check_active_model,
}


def readiness() -> tuple[bool, dict]:
    results = {}
    for name, check in CHECKS.items():
        t0 = time.perf_counter()
        try:
            check()
        except Exception as exc:
            detail = str(exc) if isinstance(exc, LookupError) else type(exc).__name__
            results[name] = {"ok": False, "error": detail}
            logger.warning("Readiness check %s failed: %s", name, detail)
        else:
            results[name] = {"ok": True}
        results[name]["ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return all(result["ok"] for result in results.values()), results


def _json(body, status):
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == LIVENESS_PATH:
            return _json({"status": "ok"}, 200)
        if request.path == METRICS_PATH:
            from .metrics import metrics_response

            return metrics_response(request)
        if request.path == READINESS_PATH:
            ready, checks = readiness()
            return _json({"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503)
        return self.get_response(request)
