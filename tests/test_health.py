"""/healthz and /readyz (skincare/health.py)."""

import re

import pytest
from celery import current_app


def test_liveness_answers_whatever_the_host_and_touches_nothing(client):
    # No database access is allowed in this test: the probe must not need one.
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_ready_with_database_broker_storage_and_an_active_model(client, active_model):
    response = client.get("/readyz", HTTP_HOST="10.1.2.3")
    assert response.status_code == 200, response.json()
    assert {name for name, check in response.json()["checks"].items() if check["ok"]} == {
        "database",
        "broker",
        "storage",
        "active_model",
    }
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_not_ready_without_an_active_model(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["active_model"]["error"].startswith("no active model")


@pytest.mark.django_db
def test_not_ready_while_the_broker_is_unreachable_and_no_secret_is_shown(client, active_model, monkeypatch):
    unreachable = current_app.connection_for_write("redis://:hunter2@127.0.0.1:1/0")
    monkeypatch.setattr(current_app, "connection_for_write", lambda: unreachable)
    response = client.get("/readyz")
    assert response.status_code == 503
    broker = response.json()["checks"]["broker"]
    assert not broker["ok"] and "hunter2" not in response.content.decode()
    assert broker["ms"] < 5000


def test_metrics_are_off_without_a_token(client, settings):
    settings.SKINCARE_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404


@pytest.mark.django_db
def test_metrics_need_the_token_and_report_the_queue(client, settings, owner, lesion, jpeg_bytes, active_model):
    import io
    from datetime import timedelta

    from django.utils import timezone

    from cases.services import add_lesion_image
    from inference.models import Prediction

    settings.SKINCARE_METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401

    add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic")
    Prediction.objects.update(queued_at=timezone.now() - timedelta(minutes=5))
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token", HTTP_HOST="10.0.0.7:8000")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'skincare_predictions_unfinished{status="pending"} 1.0' in text
    assert "skincare_predictions_unsent 1.0" in text  # captured on commit in the test: never published
    oldest = float(re.search(r"^skincare_predictions_oldest_pending_seconds (\S+)$", text, re.M).group(1))
    assert 290 < oldest < 400
    assert f'skincare_active_model{{model="{active_model.label}"}} 1.0' in text
    assert 'skincare_queue_length{queue="inference"}' in text and "skincare_broker_up 1.0" in text
