"""A blurred upload through a real worker: stored, scored, labelled uncertain because of its quality."""

import io

import pytest
from PIL import Image, ImageFilter

from cases import services as case_services
from inference.models import Prediction

from .conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_blurred_upload_is_predicted_uncertain_by_the_worker(worker, owner, lesion, jpeg_bytes, active_model):
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg_bytes)).filter(ImageFilter.GaussianBlur(6)).save(out, "JPEG", quality=92)
    image = case_services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(out.getvalue()))
    assert image.modality == "dermoscopic"  # the default
    assert "blurred" in image.quality_findings

    def finished():
        return Prediction.objects.filter(image=image, status__in=["succeeded", "failed"]).exists()

    wait_for(finished, worker=worker)
    prediction = Prediction.objects.get(image=image)
    assert prediction.status == Prediction.Status.SUCCEEDED, prediction.error
    assert prediction.label == Prediction.Label.UNCERTAIN
    assert prediction.uncertain_reasons[-1] == "image_quality"
