import pytest

from cases.models import LesionImage, Review
from inference.models import Prediction

from .conftest import assert_error
from .test_images import upload

pytestmark = pytest.mark.django_db

REVIEW = {"verdict": "disagree", "final_diagnosis": "melanoma", "biopsy_requested": True, "notes": "irregular border"}


@pytest.fixture
def image(owner_api, lesion, jpeg_bytes, active_model):
    return LesionImage.objects.get(pk=upload(owner_api, lesion, jpeg_bytes).json()["id"])


def test_clinicians_review_through_the_service(owner_api, colleague_api, outsider_api, colleague, image):
    url = f"/api/v1/images/{image.pk}/reviews"
    response = colleague_api.post(url, REVIEW)
    assert response.status_code == 201, response.content
    body = response.json()
    review = Review.objects.get(pk=body["id"])
    assert review.reviewer == colleague and review.prediction == Prediction.objects.get(image=image)
    assert body["reviewer"] == "colleague" and body["prediction"] == str(review.prediction_id)
    assert owner_api.post(url, {"verdict": "agree", "final_diagnosis": "nevus"}).status_code == 201

    listed = owner_api.get(url).json()
    assert [r["reviewer"] for r in listed["results"]] == ["colleague", "owner"] and listed["count"] == 2
    assert_error(outsider_api.get(url), 404, "not_found")
    assert_error(outsider_api.post(url, REVIEW), 404, "not_found")
    assert Review.objects.count() == 2


def test_bad_reviews_are_400(owner_api, image):
    url = f"/api/v1/images/{image.pk}/reviews"
    error = assert_error(owner_api.post(url, {"verdict": "maybe", "final_diagnosis": "nevus"}), 400, "validation_error")
    assert "verdict" in error["fields"]
    error = assert_error(owner_api.post(url, {**REVIEW, "reviewer": "someone"}), 400, "validation_error")
    assert error["fields"] == {"reviewer": ["Unknown field."]}
    assert not Review.objects.exists()
