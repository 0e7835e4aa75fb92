"""Predictions as clinicians see them: the heatmap view and the home page's warnings."""

import io
import uuid

import pytest
from django.urls import reverse

from cases import services
from inference import services as inference_services
from inference.models import OUT_OF_DISTRIBUTION_WARNING, Prediction

pytestmark = pytest.mark.django_db


@pytest.fixture
def prediction(owner, lesion, jpeg_bytes, synthetic_model):
    image = services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic"
    )
    return inference_services.run_prediction(Prediction.objects.get(image=image).pk)


def heatmap_url(prediction):
    return reverse("portal:prediction-heatmap", args=[prediction.pk])


class TestHeatmapView:
    def test_it_serves_the_png_privately_to_a_colleague(self, client, colleague, prediction):
        client.force_login(colleague)
        response = client.get(heatmap_url(prediction))
        assert response.status_code == 200
        assert response["Content-Type"] == "image/png"
        assert response["Cache-Control"] == "private, no-store, max-age=0, no-cache, must-revalidate"  # as every door
        with prediction.heatmap.open("rb") as fh:
            assert b"".join(response.streaming_content) == fh.read()

    def test_it_is_404_for_an_outsider(self, client, outsider, prediction):
        client.force_login(outsider)
        assert client.get(heatmap_url(prediction)).status_code == 404

    def test_it_is_404_for_an_unknown_prediction(self, client, owner):
        client.force_login(owner)
        assert client.get(reverse("portal:prediction-heatmap", args=[uuid.uuid4()])).status_code == 404

    def test_it_is_404_when_there_is_no_heatmap(self, client, owner, prediction):
        Prediction.objects.filter(pk=prediction.pk).update(heatmap="")
        client.force_login(owner)
        assert client.get(heatmap_url(prediction)).status_code == 404

    def test_it_requires_login(self, client, prediction):
        response = client.get(heatmap_url(prediction))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("portal:login"))

    def test_there_is_no_public_media_url(self, client, owner, prediction):
        client.force_login(owner)
        assert client.get(f"/media/{prediction.heatmap.name}").status_code == 404


class TestHome:
    @pytest.mark.parametrize("flagged", [True, False, None])
    def test_the_warning_shows_only_for_flagged_predictions(self, client, owner, prediction, flagged):
        Prediction.objects.filter(pk=prediction.pk).update(out_of_distribution=flagged)
        client.force_login(owner)
        page = client.get("/").content.decode()
        assert (OUT_OF_DISTRIBUTION_WARNING in page) is bool(flagged)

    def test_the_image_page_overlays_the_heatmap(self, client, owner, prediction):
        client.force_login(owner)
        page = client.get(reverse("portal:image-detail", args=[prediction.image.pk])).content.decode()
        assert heatmap_url(prediction) in page


def test_the_admin_shows_a_prediction_with_its_new_fields(admin_client, prediction):
    response = admin_client.get(reverse("admin:inference_prediction_change", args=[prediction.pk]))
    assert response.status_code == 200
    assert prediction.heatmap.name in response.content.decode()
