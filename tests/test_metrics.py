"""/metrics built from the rows: the latency histogram and the failures by reason (skincare/metrics.py)."""

import io
import re
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from cases.services import add_lesion_image
from inference import services
from inference.models import Prediction

pytestmark = pytest.mark.django_db


@pytest.fixture
def scrape(client, settings):
    settings.SKINCARE_METRICS_TOKEN = "s3cret-token"

    def get():
        response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
        assert response.status_code == 200
        return response.content.decode()

    return get


def sample(text, name, **labels):
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if labels else ''} (\S+)$"
    found = re.search(pattern, text, re.M)
    assert found, f"{name} {labels} not in:\n{text}"
    return float(found.group(1))


def upload(owner, lesion, jpeg_bytes):
    image = add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic")
    return Prediction.objects.get(image=image, is_shadow=False)


def finish(prediction, *, after_seconds, finished_ago=timedelta(0), **fields):
    finished_at = timezone.now() - finished_ago
    Prediction.objects.filter(pk=prediction.pk).update(
        status=Prediction.Status.SUCCEEDED,
        queued_at=finished_at - timedelta(seconds=after_seconds),
        finished_at=finished_at,
        **fields,
    )


def test_the_latency_histogram_covers_clinical_predictions_finished_in_the_window(
    scrape, owner, lesion, jpeg_bytes, active_model
):
    for seconds in (0.2, 0.4, 0.7, 3, 45):
        finish(upload(owner, lesion, jpeg_bytes), after_seconds=seconds)
    finish(upload(owner, lesion, jpeg_bytes), after_seconds=0.3, finished_ago=timedelta(minutes=20))  # too old
    finish(upload(owner, lesion, jpeg_bytes), after_seconds=0.3, is_shadow=True)  # never shown: not counted
    upload(owner, lesion, jpeg_bytes)  # still pending: not counted

    text = scrape()
    assert "# TYPE skincare_prediction_latency_seconds histogram" in text
    buckets = {
        le: sample(text, "skincare_prediction_latency_seconds_bucket", le=le)
        for le in ("0.1", "0.25", "0.5", "1", "5", "60", "+Inf")
    }
    assert buckets == {"0.1": 0, "0.25": 1, "0.5": 2, "1": 3, "5": 4, "60": 5, "+Inf": 5}
    assert sample(text, "skincare_prediction_latency_seconds_gcount") == 5
    assert sample(text, "skincare_prediction_latency_seconds_gsum") == pytest.approx(49.3, abs=0.01)


def test_an_empty_window_gives_an_empty_histogram(scrape, db):
    text = scrape()
    assert sample(text, "skincare_prediction_latency_seconds_bucket", le="+Inf") == 0
    assert sample(text, "skincare_prediction_latency_seconds_gsum") == 0


def test_failures_are_counted_by_the_reason_the_worker_recorded(scrape, owner, lesion, jpeg_bytes, active_model):
    before = scrape()
    for reason in ("interrupted", "image_missing", "unreadable_image", "retries_exhausted", "other"):
        assert sample(before, "skincare_prediction_failures_total", reason=reason) == 0

    # Each failure made by the code path that makes it in production.
    missing = upload(owner, lesion, jpeg_bytes)
    default_storage.delete(missing.image.image.name)
    services.run_prediction(missing.pk)

    unreadable = upload(owner, lesion, jpeg_bytes)
    with default_storage.open(unreadable.image.image.name, "wb") as fh:
        fh.write(b"these bytes are no image")
    services.run_prediction(unreadable.pk)

    interrupted = [upload(owner, lesion, jpeg_bytes) for _ in range(2)]
    Prediction.objects.filter(pk__in=[p.pk for p in interrupted]).update(attempts=services.MAX_ATTEMPTS)
    for prediction in interrupted:
        services.run_prediction(prediction.pk)

    services.mark_failed(upload(owner, lesion, jpeg_bytes).pk, "Gave up after 6 attempts: storage timed out")
    services.mark_failed(upload(owner, lesion, jpeg_bytes).pk, "Something nobody foresaw")
    finish(upload(owner, lesion, jpeg_bytes), after_seconds=1)  # a success counts nowhere here

    text = scrape()
    assert "# TYPE skincare_prediction_failures_total counter" in text
    counts = {
        reason: sample(text, "skincare_prediction_failures_total", reason=reason)
        for reason in ("interrupted", "image_missing", "unreadable_image", "retries_exhausted", "other")
    }
    assert counts == {
        "interrupted": 2,
        "image_missing": 1,
        "unreadable_image": 1,
        "retries_exhausted": 1,
        "other": 1,
    }
    assert Prediction.objects.filter(status="failed").count() == 6
