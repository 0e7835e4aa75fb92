"""Shadow mode: a shadow model predicts every new image too, and clinicians never see it
(portal pages, the worklist, the API, heatmaps)."""

import io

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from cases import services as case_services
from inference import services
from inference.models import ModelVersion, Prediction
from tests.api.conftest import token_client
from tests.conftest import BASELINE_DIR, png_bytes, register_shadow_model
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def shadow_model(active_model):
    """The baseline CNN in shadow mode beside the shipped model."""
    return register_shadow_model(BASELINE_DIR)


def upload(user, lesion, data):
    return case_services.add_lesion_image(uploader=user, lesion=lesion, file=io.BytesIO(data), modality="dermoscopic")


class TestRequestPrediction:
    def test_an_upload_queues_the_active_and_then_the_shadow_prediction(
        self,
        owner,
        lesion,
        jpeg_bytes,
        active_model,
        shadow_model,
        queued_predictions,
        django_capture_on_commit_callbacks,
    ):
        with django_capture_on_commit_callbacks(execute=True):
            image = upload(owner, lesion, jpeg_bytes)
        clinical = Prediction.objects.get(image=image, model_version=active_model)
        shadow = Prediction.objects.get(image=image, model_version=shadow_model)
        assert (clinical.is_shadow, shadow.is_shadow) == (False, True)
        assert (clinical.status, shadow.status) == ("pending", "pending")
        # The clinician's prediction goes to the worker first.
        assert queued_predictions == [(str(clinical.pk),), (str(shadow.pk),)]

    def test_without_a_shadow_model_there_is_one_prediction(self, owner, lesion, jpeg_bytes, active_model):
        image = upload(owner, lesion, jpeg_bytes)
        assert list(image.predictions.values_list("model_version", "is_shadow")) == [(active_model.pk, False)]

    def test_asking_again_creates_and_queues_nothing_new_once_finished(
        self, owner, lesion, jpeg_bytes, shadow_model, queued_predictions, django_capture_on_commit_callbacks
    ):
        image = upload(owner, lesion, jpeg_bytes)
        Prediction.objects.filter(image=image).update(status=Prediction.Status.SUCCEEDED)
        with django_capture_on_commit_callbacks(execute=True):
            returned = services.request_prediction(image)
        assert image.predictions.count() == 2
        assert not returned.is_shadow
        assert queued_predictions == []

    def test_a_request_for_an_older_version_gets_no_shadow_copy(self, owner, lesion, jpeg_bytes, shadow_model):
        old = ModelVersion.objects.create(
            name="old", version="0", file="models/old.keras", sha256="0" * 64, input_size=224,
            preprocessing="square-sog-v2", threshold=0.5,
        )  # fmt: skip
        image = upload(owner, lesion, jpeg_bytes)
        Prediction.objects.filter(image=image).delete()
        prediction = services.request_prediction(image, model_version=old)
        assert list(image.predictions.values_list("model_version", flat=True)) == [old.pk]
        assert not prediction.is_shadow

    def test_a_prediction_by_the_shadow_model_itself_is_a_shadow_one(self, owner, lesion, jpeg_bytes, shadow_model):
        image = upload(owner, lesion, jpeg_bytes)
        Prediction.objects.filter(image=image).delete()
        assert services.request_prediction(image, model_version=shadow_model).is_shadow


@pytest.fixture
def image(owner, lesion, jpeg_bytes, shadow_model):
    return upload(owner, lesion, jpeg_bytes)


@pytest.fixture
def clinical(image, active_model):
    """The active model's finished prediction: benign, low probability, no heatmap."""
    Prediction.objects.filter(image=image, model_version=active_model).update(
        status="succeeded", label="benign", probability_malignant=0.1234, confidence=0.8766
    )
    return Prediction.objects.get(image=image, model_version=active_model)


@pytest.fixture
def shadow(image, shadow_model):
    """The shadow model's finished prediction, which would put the image at the top of the worklist."""
    prediction = Prediction.objects.get(image=image, model_version=shadow_model)
    prediction.heatmap.save("heatmap.png", ContentFile(png_bytes()), save=False)
    Prediction.objects.filter(pk=prediction.pk).update(
        status="succeeded",
        label="malignant",
        probability_malignant=0.9876,
        confidence=0.9876,
        heatmap=prediction.heatmap.name,
    )
    prediction.refresh_from_db()
    return prediction


def assert_hidden(content: str, shadow):
    assert str(shadow.pk) not in content
    assert shadow.model_version.label not in content  # "baseline-cnn-1"
    assert "0.99" not in content
    assert 'data-label="malignant"' not in content


class TestPortal:
    @pytest.fixture
    def signed_in(self, client, owner):
        client.force_login(owner)
        return client

    def test_the_image_page_and_its_status_fragment_show_only_the_clinical_prediction(
        self, signed_in, image, clinical, shadow
    ):
        for url in [reverse("portal:image-detail", args=[image.pk]), reverse("portal:image-status", args=[image.pk])]:
            content = signed_in.get(url).content.decode()
            assert 'data-label="benign"' in content and "0.12" in content
            assert_hidden(content, shadow)
        detail = signed_in.get(reverse("portal:image-detail", args=[image.pk])).content.decode()
        assert clinical.model_version.label in detail

    def test_the_patient_page_shows_only_the_clinical_prediction(self, signed_in, image, clinical, shadow):
        content = signed_in.get(reverse("portal:patient-detail", args=[image.lesion.patient_id])).content.decode()
        assert 'data-label="benign"' in content
        assert_hidden(content, shadow)

    def test_the_worklist_ranks_and_counts_by_the_clinical_prediction(self, signed_in, image, clinical, shadow):
        content = signed_in.get("/").content.decode()
        assert str(image.pk) in content
        assert_hidden(content, shadow)
        assert str(image.pk) not in signed_in.get("/?risk=malignant").content.decode()
        assert str(image.pk) in signed_in.get("/?risk=benign").content.decode()

    def test_while_the_clinical_prediction_is_pending_the_shadow_result_stays_hidden(self, signed_in, image, shadow):
        content = signed_in.get(reverse("portal:image-detail", args=[image.pk])).content.decode()
        assert 'data-status="pending"' in content
        assert_hidden(content, shadow)

    def test_the_shadow_heatmap_is_404_in_the_portal(self, client, owner, colleague, image, shadow):
        for user in (owner, colleague):
            client.force_login(user)
            assert client.get(reverse("portal:prediction-heatmap", args=[shadow.pk])).status_code == 404


class TestApi:
    def test_image_detail_and_list_show_only_the_clinical_prediction(self, owner, image, clinical, shadow):
        api = token_client(owner)
        body = api.get(f"/api/v1/images/{image.pk}").json()
        assert body["prediction"]["id"] == str(clinical.pk)
        assert body["prediction"]["label"] == "benign"
        assert body["prediction"]["model_version"] == clinical.model_version.label
        listed = api.get(f"/api/v1/lesions/{image.lesion_id}/images").json()
        rows = listed["results"] if isinstance(listed, dict) else listed
        assert [row["prediction"]["id"] for row in rows] == [str(clinical.pk)]
        assert str(shadow.pk) not in str(body) + str(listed)

    def test_the_shadow_heatmap_url_is_404_for_everybody(self, owner, colleague, outsider, image, shadow):
        superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
        # A device token needs a clinic (api/tokens.py): the superuser is in the image's.
        MembershipFactory(user=superuser, clinic=image.lesion.patient.clinic)
        url = reverse("api:prediction-heatmap", args=[shadow.pk])
        for user in (owner, colleague, outsider, superuser):
            response = token_client(user).get(url)
            assert response.status_code == 404, user
