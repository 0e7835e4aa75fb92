import io
import subprocess
import sys
from pathlib import Path

import pytest

from cases import services as case_services
from inference import services
from inference.models import Prediction
from inference.tasks import MAX_RETRIES, run_prediction_task

REPO = Path(__file__).resolve().parents[2]


def test_the_worker_parent_never_imports_tensorflow():
    # The prefork pool forks after importing every task module; TensorFlow
    # imported before that fork deadlocks the children.
    code = (
        "import os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'skincare.settings.test';"
        "import django; django.setup();"
        "from skincare.celery import app; app.loader.import_default_modules();"
        "assert 'inference.tasks.run_prediction_task' in app.tasks;"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["False", "False"]


@pytest.mark.django_db
def test_transient_errors_are_retried_then_the_prediction_fails_readably(
    owner, lesion, jpeg_bytes, active_model, monkeypatch
):
    image = case_services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic"
    )
    prediction = Prediction.objects.get(image=image)
    calls = []

    def flaky(prediction_id, lease_token=None):
        calls.append(prediction_id)
        raise services.TransientError("storage unavailable")

    monkeypatch.setattr(services, "run_prediction", flaky)
    run_prediction_task.apply(args=[str(prediction.pk)])  # eager: retries run inline

    assert len(calls) == MAX_RETRIES + 1
    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.FAILED
    assert "storage unavailable" in prediction.error


def test_the_task_is_bounded_and_acknowledged_late():
    assert run_prediction_task.acks_late and run_prediction_task.reject_on_worker_lost
    assert 0 < run_prediction_task.soft_time_limit < run_prediction_task.time_limit


def test_time_limits_acknowledgement_and_visibility_fit_together():
    from django.conf import settings

    task = run_prediction_task
    assert task.acks_late and task.reject_on_worker_lost and task.acks_on_failure_or_timeout is False
    assert settings.CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT is False
    # A message is held for at most the hard limit plus the longest retry countdown.
    held = task.time_limit + settings.SKINCARE_RETRY_BACKOFF_MAX_SECONDS
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > max(held, settings.HOUSEKEEPING_TIME_LIMIT)


def test_the_sweeper_runs_every_few_seconds_and_no_beat_message_outlives_its_interval():
    from django.conf import settings

    schedule = settings.CELERY_BEAT_SCHEDULE
    assert 5 <= schedule["sweep-predictions"]["schedule"] <= 15
    for name, entry in schedule.items():
        assert 0 < entry["options"]["expires"] <= entry["schedule"], name
        assert entry["options"]["expire_seconds"] >= 1, name
