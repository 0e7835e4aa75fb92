"""A retried create returns the first answer: never a second row or prediction."""

import threading
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from api.models import IdempotencyRecord
from cases.models import LesionImage, Patient
from inference.models import Prediction

from ..conftest import png_bytes
from .conftest import assert_error, token_client
from .test_images import images_url, upload

pytestmark = pytest.mark.django_db


def test_same_key_same_upload_returns_the_first_result(owner_api, lesion, jpeg_bytes, active_model):
    key = str(uuid.uuid4())
    first = upload(owner_api, lesion, jpeg_bytes, HTTP_IDEMPOTENCY_KEY=key)
    second = upload(owner_api, lesion, jpeg_bytes, HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert LesionImage.objects.count() == 1 and Prediction.objects.count() == 1


def test_client_id_works_as_the_key(owner_api, lesion, jpeg_bytes, active_model):
    client_id = str(uuid.uuid4())
    first = upload(owner_api, lesion, jpeg_bytes, client_id=client_id)
    second = upload(owner_api, lesion, jpeg_bytes, client_id=client_id)
    assert first.json() == second.json()
    assert LesionImage.objects.count() == 1
    # A new photo gets a new id and a new image.
    assert upload(owner_api, lesion, jpeg_bytes, client_id=str(uuid.uuid4())).status_code == 201
    assert LesionImage.objects.count() == 2


def test_a_key_reused_for_a_different_request_is_422(owner_api, lesion, jpeg_bytes, active_model):
    key = str(uuid.uuid4())
    assert upload(owner_api, lesion, jpeg_bytes, HTTP_IDEMPOTENCY_KEY=key).status_code == 201
    other = upload(owner_api, lesion, png_bytes((200, 200)), name="b.png", HTTP_IDEMPOTENCY_KEY=key)
    error = assert_error(other, 422, "idempotency_key_reused")
    assert "different request" in error["message"]
    other_modality = upload(owner_api, lesion, jpeg_bytes, modality="clinical", HTTP_IDEMPOTENCY_KEY=key)
    assert_error(other_modality, 422, "idempotency_key_reused")
    assert LesionImage.objects.count() == 1


def test_keys_are_per_user(owner_api, colleague_api, lesion, jpeg_bytes, active_model):
    key = str(uuid.uuid4())
    a = upload(owner_api, lesion, jpeg_bytes, HTTP_IDEMPOTENCY_KEY=key).json()
    b = upload(colleague_api, lesion, jpeg_bytes, HTTP_IDEMPOTENCY_KEY=key).json()
    assert a["id"] != b["id"] and LesionImage.objects.count() == 2


def test_a_failed_request_is_not_recorded_and_may_be_retried(owner_api, lesion, jpeg_bytes, active_model):
    key = str(uuid.uuid4())
    assert upload(owner_api, lesion, b"garbage", HTTP_IDEMPOTENCY_KEY=key).status_code == 400
    assert not IdempotencyRecord.objects.exists()
    assert upload(owner_api, lesion, jpeg_bytes, HTTP_IDEMPOTENCY_KEY=key).status_code == 201


def test_a_bad_key_is_400(owner_api, lesion, jpeg_bytes):
    error = assert_error(upload(owner_api, lesion, jpeg_bytes, HTTP_IDEMPOTENCY_KEY="x" * 300), 400, "validation_error")
    assert "Idempotency-Key" in error["fields"]


def test_patient_creation_is_idempotent_too(owner_api, clinic):
    payload = {"medical_record_number": "I-1", "given_name": "A", "family_name": "B", "date_of_birth": "1990-02-03"}
    first = owner_api.post("/api/v1/patients", payload, HTTP_IDEMPOTENCY_KEY="k1")
    second = owner_api.post("/api/v1/patients", payload, HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == second.status_code == 201 and first.json() == second.json()
    assert Patient.objects.count() == 1
    assert_error(
        owner_api.post("/api/v1/patients", {**payload, "given_name": "C"}, HTTP_IDEMPOTENCY_KEY="k1"),
        422,
        "idempotency_key_reused",
    )


@pytest.mark.django_db(transaction=True)
def test_racing_retries_make_exactly_one_image_and_one_prediction(owner, lesion, jpeg_bytes, active_model):
    """Several threads send the same upload with the same key at once."""
    key = str(uuid.uuid4())
    clients = [token_client(owner, f"phone {i}") for i in range(4)]
    barrier = threading.Barrier(len(clients))
    responses = [None] * len(clients)

    def send(i):
        try:
            barrier.wait()
            payload = {"file": SimpleUploadedFile("a.jpg", jpeg_bytes, "image/jpeg"), "modality": "dermoscopic"}
            responses[i] = clients[i].post(images_url(lesion), payload, format="multipart", HTTP_IDEMPOTENCY_KEY=key)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(r is not None for r in responses)
    assert [r.status_code for r in responses] == [201] * len(clients), [r.content for r in responses]
    assert len({r.content for r in responses}) == 1
    assert LesionImage.objects.count() == 1
    assert Prediction.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1
    assert sum(r.get("Idempotent-Replayed") == "true" for r in responses) == len(clients) - 1


def test_answers_are_forgotten_after_the_retention_period(owner_api, lesion, jpeg_bytes, active_model):
    from datetime import timedelta

    from django.utils import timezone

    from api.idempotency import delete_expired_records

    key = str(uuid.uuid4())
    assert upload(owner_api, lesion, jpeg_bytes, HTTP_IDEMPOTENCY_KEY=key).status_code == 201
    assert delete_expired_records(older_than=timedelta(days=7)) == 0  # fresh: kept
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(days=8))
    assert delete_expired_records(older_than=timedelta(days=7)) == 1
    assert not IdempotencyRecord.objects.exists()
    assert LesionImage.objects.count() == 1  # the image itself stays
