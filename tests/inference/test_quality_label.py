"""A prediction of a photo the intake gate found unfit is labelled uncertain, and says why."""

import io

import pytest
from PIL import Image, ImageFilter

from cases import services as case_services
from inference import services
from inference.models import Prediction

pytestmark = pytest.mark.django_db


def upload(owner, lesion, data):
    return case_services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(data), modality="dermoscopic")


def blurred(data):
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).filter(ImageFilter.GaussianBlur(6)).save(out, "JPEG", quality=92)
    return out.getvalue()


def test_a_blurred_photo_is_scored_but_labelled_uncertain_for_image_quality(owner, lesion, jpeg_bytes, active_model):
    image = upload(owner, lesion, blurred(jpeg_bytes))
    prediction = services.run_prediction(Prediction.objects.get(image=image).pk)
    assert prediction.status == Prediction.Status.SUCCEEDED
    assert prediction.probability_malignant is not None  # still scored
    assert prediction.label == Prediction.Label.UNCERTAIN
    assert "image_quality" in prediction.uncertain_reasons


def test_a_good_photo_keeps_the_models_label(owner, lesion, jpeg_bytes, active_model):
    image = upload(owner, lesion, jpeg_bytes)
    prediction = services.run_prediction(Prediction.objects.get(image=image).pk)
    assert "image_quality" not in prediction.uncertain_reasons
    assert (prediction.label == "uncertain") == (prediction.uncertain_reasons == ["uncertain_band"])
