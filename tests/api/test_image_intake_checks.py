"""The API returns the intake checks: quality findings, near-duplicates, and why a label is uncertain."""

import io

import pytest
from PIL import Image, ImageFilter

from cases import services
from inference import services as inference_services
from inference.models import Prediction
from tests.factories import LesionFactory, PatientFactory

from .test_images import upload

pytestmark = pytest.mark.django_db


def blurred(data):
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).filter(ImageFilter.GaussianBlur(6)).save(out, "JPEG", quality=92)
    return out.getvalue()


def test_an_upload_answers_with_its_quality_findings(owner_api, lesion, jpeg_bytes, active_model):
    body = upload(owner_api, lesion, blurred(jpeg_bytes)).json()
    assert body["quality"]["retake_recommended"] is True
    assert "blurred" in body["quality"]["findings"]
    assert body["quality"]["message"].startswith("Image quality: retake recommended — too blurred")
    assert 0 <= body["quality"]["measures"]["clipped"] <= 1


def test_a_good_upload_passes_and_the_modality_defaults_to_dermoscopic(owner_api, lesion, jpeg_bytes):
    response = owner_api.post(
        f"/api/v1/lesions/{lesion.pk}/images",
        {"file": io.BytesIO(jpeg_bytes)},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["modality"] == "dermoscopic"
    assert body["quality"] | {"measures": None} == {
        "retake_recommended": False,
        "message": "",
        "findings": [],
        "measures": None,
    }
    assert (body["duplicate_of"], body["possible_wrong_patient_of"]) == (None, None)


def test_a_repeat_upload_names_the_earlier_image(owner_api, owner, patient, lesion, jpeg_bytes):
    first = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes))
    body = upload(owner_api, LesionFactory(patient=patient), jpeg_bytes).json()
    assert body["duplicate_of"]["id"] == str(first.pk)
    assert body["duplicate_of"]["lesion"] == str(lesion.pk)
    assert body["duplicate_message"].startswith(f"Already uploaded on {first.uploaded_at:%Y-%m-%d}")


def test_the_same_photo_for_another_patient_of_the_clinic_is_a_possible_wrong_patient(
    owner_api, owner, clinic, lesion, jpeg_bytes
):
    first = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes))
    other = LesionFactory(patient=PatientFactory(clinic=clinic))
    body = upload(owner_api, other, jpeg_bytes).json()
    assert body["possible_wrong_patient_of"] == {
        "id": str(first.pk),
        "lesion": str(lesion.pk),
        "patient": str(lesion.patient_id),
        "uploaded_at": body["possible_wrong_patient_of"]["uploaded_at"],
    }
    assert "wrong-patient" in body["wrong_patient_message"]
    # Read back later, the image says the same.
    again = owner_api.get(f"/api/v1/images/{body['id']}").json()
    assert again["possible_wrong_patient_of"]["id"] == str(first.pk)


def test_a_prediction_says_why_it_is_uncertain(owner_api, owner, lesion, jpeg_bytes, active_model):
    image = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(blurred(jpeg_bytes)))
    inference_services.run_prediction(Prediction.objects.get(image=image).pk)
    prediction = owner_api.get(f"/api/v1/images/{image.pk}").json()["prediction"]
    assert (prediction["label"], prediction["uncertain"]) == ("uncertain", True)
    assert prediction["uncertain_reasons"][-1] == "image_quality"


def test_the_schema_documents_the_intake_fields(owner_api):
    schema = owner_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]
    image = components["Image"]["properties"]
    for field in ("quality", "duplicate_of", "duplicate_message", "possible_wrong_patient_of", "wrong_patient_message"):
        assert field in image
    quality = components["ImageQuality"]["properties"]
    assert set(quality) == {"retake_recommended", "message", "findings", "measures"}
    assert "uncertain_reasons" in components["Prediction"]["properties"]
