"""The mobile flow over the REST API against a real worker: sign in, create a
patient and a lesion, upload a photo, poll until its prediction is there,
review it."""

import time
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from cases.models import LesionImage, Review
from inference.models import Prediction

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_token_patient_lesion_upload_poll_review(worker, owner, clinic, jpeg_bytes, active_model):
    client = APIClient()
    signed_in = client.post(
        "/api/v1/auth/tokens", {"username": "owner", "password": "correct horse battery", "device_name": "e2e"}
    )
    assert signed_in.status_code == 201, signed_in.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {signed_in.json()['token']}")

    patient = client.post(
        "/api/v1/patients",
        {"medical_record_number": "E2E-1", "given_name": "Eve", "family_name": "Tu", "date_of_birth": "1970-05-06"},
    )
    assert patient.status_code == 201, patient.content
    lesion = client.post(f"/api/v1/patients/{patient.json()['id']}/lesions", {"anatomical_site": "upper_extremity"})
    assert lesion.status_code == 201, lesion.content

    client_id = str(uuid.uuid4())
    form = {
        "file": SimpleUploadedFile("p.jpg", jpeg_bytes, "image/jpeg"),
        "modality": "dermoscopic",
        "client_id": client_id,
    }
    uploaded = client.post(f"/api/v1/lesions/{lesion.json()['id']}/images", form, format="multipart")
    assert uploaded.status_code == 201, uploaded.content
    image_url = f"/api/v1/images/{uploaded.json()['id']}"

    # Poll as an app would: cheap 304s until something changes.
    etag, body, not_modified = None, None, 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        response = client.get(image_url, **({"HTTP_IF_NONE_MATCH": etag} if etag else {}))
        if response.status_code == 304:
            not_modified += 1
        else:
            assert response.status_code == 200
            etag, body = response["ETag"], response.json()
            if body["prediction"]["status"] in ("succeeded", "failed"):
                break
        if worker.process.poll() is not None:
            pytest.fail(f"worker died:\n{worker.output()}")
        time.sleep(0.2)
    else:
        pytest.fail(f"no prediction in time; worker log:\n{worker.output()[-4000:]}")
    prediction = body["prediction"]
    assert prediction["status"] == "succeeded", prediction
    assert prediction["label"] in ("benign", "malignant", "uncertain")
    assert 0.0 <= prediction["probability_malignant"] <= 1.0
    assert prediction["model_version"] == active_model.label

    # A retry of the upload (same client id) changes nothing.
    form["file"] = SimpleUploadedFile("p.jpg", jpeg_bytes, "image/jpeg")
    retry = client.post(f"/api/v1/lesions/{lesion.json()['id']}/images", form, format="multipart")
    assert retry.status_code == 201 and retry.json()["id"] == uploaded.json()["id"]
    assert LesionImage.objects.count() == 1 and Prediction.objects.count() == 1

    review = client.post(f"{image_url}/reviews", {"verdict": "agree", "final_diagnosis": "nevus"})
    assert review.status_code == 201, review.content
    assert Review.objects.get().prediction_id == uuid.UUID(prediction["id"])
    assert client.get(f"{image_url}/reviews").json()["count"] == 1
