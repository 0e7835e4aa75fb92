"""The prediction a clinician sees, and the reads built on it (worklist, counts, timelines)."""

import io
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cases import services
from cases.models import LesionImage
from inference import selectors
from inference.models import ModelVersion, Prediction
from tests.factories import LesionFactory

pytestmark = pytest.mark.django_db


def add_image(owner, lesion, jpeg_bytes):
    return services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic")


def finish(image, *, label, probability, **fields):
    Prediction.objects.filter(image=image, is_shadow=False).update(
        status="succeeded", label=label, probability_malignant=probability, finished_at=timezone.now(), **fields
    )


@pytest.fixture
def three_images(owner, lesion, jpeg_bytes, active_model):
    images = [add_image(owner, lesion, jpeg_bytes) for _ in range(3)]
    finish(images[0], label="benign", probability=0.05)
    finish(images[1], label="malignant", probability=0.70)
    finish(images[2], label="uncertain", probability=0.40)
    return images


class TestLatestClinicalPrediction:
    def test_it_is_the_newest_non_shadow_prediction(self, owner, lesion, jpeg_bytes, active_model):
        image = add_image(owner, lesion, jpeg_bytes)
        clinical = Prediction.objects.get(image=image, model_version=active_model)
        # A shadow prediction queued later must never be what a clinician sees.
        other = ModelVersion.objects.get(pk=active_model.pk)
        other.pk, other.version, other.is_active = uuid.uuid4(), "shadow-test", False
        other.save(force_insert=True)
        Prediction.objects.create(image=image, model_version=other, is_shadow=True)
        assert selectors.latest_clinical_prediction(image) == clinical

    def test_it_reads_the_prefetched_list_without_a_query(self, owner, lesion, jpeg_bytes, active_model):
        add_image(owner, lesion, jpeg_bytes)
        image = LesionImage.objects.prefetch_related(selectors.clinical_predictions_prefetch()).get()
        with CaptureQueriesContext(connection) as queries:
            prediction = selectors.latest_clinical_prediction(image)
        assert prediction is not None and len(queries) == 0

    def test_it_is_none_before_any_prediction(self, owner, lesion, jpeg_bytes):
        assert selectors.latest_clinical_prediction(add_image(owner, lesion, jpeg_bytes)) is None


class TestWorklist:
    def test_it_orders_malignant_uncertain_then_benign(self, owner, three_images):
        benign, malignant, uncertain = three_images
        assert list(selectors.worklist_for(owner)) == [malignant, uncertain, benign]

    def test_it_filters_by_risk_and_hides_reviewed_images(self, owner, three_images):
        benign, malignant, uncertain = three_images
        services.add_review(reviewer=owner, image=malignant, verdict="agree", final_diagnosis="melanoma")
        assert list(selectors.worklist_for(owner)) == [uncertain, benign]
        assert list(selectors.worklist_for(owner, risk="benign")) == [benign]

    def test_it_shows_nothing_to_an_outsider(self, outsider, three_images):
        assert list(selectors.worklist_for(outsider)) == []

    def test_counts_match_the_bands(self, owner, three_images, jpeg_bytes, lesion):
        add_image(owner, lesion, jpeg_bytes)  # still pending: unlabelled
        assert selectors.worklist_counts(owner) == {
            "malignant": 1,
            "uncertain": 1,
            "benign": 1,
            "unlabelled": 1,
            "total": 4,
        }


def test_a_patients_timeline_lists_each_lesions_images_by_capture_date(owner, patient, jpeg_bytes, active_model):
    first, second = LesionFactory(patient=patient), LesionFactory(patient=patient)
    late = add_image(owner, first, jpeg_bytes)
    early = services.add_lesion_image(
        uploader=owner,
        lesion=first,
        file=io.BytesIO(jpeg_bytes),
        modality="clinical",
        captured_at=timezone.now() - timezone.timedelta(days=30),
    )
    lesions = list(selectors.lesions_of(patient))
    assert lesions == [first, second]
    assert list(lesions[0].images.all()) == [early, late]
    assert list(lesions[1].images.all()) == []
