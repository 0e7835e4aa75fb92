"""/healthz and /readyz (skincare/health.py)."""

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
