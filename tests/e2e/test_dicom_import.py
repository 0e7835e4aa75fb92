"""A DICOM file of the right patient, uploaded through the API, is predicted by a real worker."""

import io
import time

import pytest
from rest_framework.test import APIClient

from api.tokens import issue_token
from cases import services
from inference.models import Prediction
from interop import dicom as export
from interop.record import case_of

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_matching_dicom_upload_gets_a_prediction_from_the_worker(worker, owner, lesion, jpeg_bytes, active_model):
    source = services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic"
    )
    with source.image.open("rb") as fh:
        dataset = export.build_dataset(case_of(source), fh.read())
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    buffer.name = "lesion.dcm"

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(user=owner, name='e2e')[1]}")
    response = client.post(
        f"/api/v1/lesions/{lesion.pk}/images", {"file": buffer, "modality": "dermoscopic"}, format="multipart"
    )
    assert response.status_code == 201, response.content
    image_id = response.json()["id"]

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        prediction = Prediction.objects.clinical().filter(image_id=image_id).first()
        if prediction is not None and prediction.status in ("succeeded", "failed"):
            break
        if worker.process.poll() is not None:
            pytest.fail(f"worker died:\n{worker.output()}")
        time.sleep(0.2)
    else:
        pytest.fail(f"no prediction in time; worker log:\n{worker.output()[-4000:]}")
    assert prediction.status == "succeeded", prediction.error
    assert prediction.model_version == active_model and prediction.label in ("benign", "malignant", "uncertain")
