"""Who sees which predictions: the clinic's scope, and never a shadow model's."""

import io

import pytest

from cases import services
from inference import permissions as inference_permissions
from inference import services as inference_services
from inference.models import Prediction

pytestmark = pytest.mark.django_db


@pytest.fixture
def prediction(owner, lesion, jpeg_bytes, synthetic_model):
    image = services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic"
    )
    return inference_services.run_prediction(Prediction.objects.get(image=image).pk)


class TestScoping:
    @pytest.mark.parametrize("who, visible", [("owner", True), ("colleague", True), ("outsider", False)])
    def test_predictions_are_visible_only_within_the_clinic(self, request, prediction, who, visible):
        user = request.getfixturevalue(who)
        assert inference_permissions.predictions_visible_to(user).filter(pk=prediction.pk).exists() is visible
