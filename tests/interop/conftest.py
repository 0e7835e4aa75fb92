"""A demo-like case: a patient with a lesion, an image classified by a registered model, a heatmap."""

import datetime
import io

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from cases import services
from cases.models import AnatomicalSite
from inference.models import ModelVersion, Prediction
from tests.api.conftest import token_client
from tests.factories import PatientFactory

METRICS = {
    "roc_auc": {"mean": 0.965021, "sd": 0.003317, "ci95": [0.961584, 0.968157]},
    "sensitivity": {"mean": 0.900131, "sd": 0.01265, "ci95": [0.891128, 0.908432]},
    "specificity": {"mean": 0.911311, "sd": 0.003365, "ci95": [0.903206, 0.918778]},
}


@pytest.fixture
def model_version(db):
    return ModelVersion.objects.create(
        name="mobilenet-v2-melanoma",
        version="2",
        file="models/mobilenet-v2-melanoma-2/model.keras",
        sha256="a" * 64,
        input_size=224,
        preprocessing="square-sog-v2",
        threshold=0.412169,
        metrics=METRICS,
        is_active=True,
    )


@pytest.fixture
def demo_patient(clinic):
    return PatientFactory(
        clinic=clinic,
        medical_record_number="MRN-0001",
        given_name="Ada",
        family_name="Lovelace",
        date_of_birth=datetime.date(1961, 12, 10),
        sex="female",
        fitzpatrick_skin_type=2,
    )


def _heatmap_png(size):
    buffer = io.BytesIO()
    Image.new("RGBA", size, (255, 0, 0, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def demo_image(owner, demo_patient, model_version, jpeg_bytes):
    """A dermoscopic image of a back lesion whose prediction finished: malignant, 0.83."""
    lesion = services.create_lesion(
        user=owner, patient=demo_patient, anatomical_site=AnatomicalSite.POSTERIOR_TORSO, description="Pigmented"
    )
    image = services.add_lesion_image(
        uploader=owner,
        lesion=lesion,
        file=io.BytesIO(jpeg_bytes),
        modality="dermoscopic",
        captured_at=timezone.now() - datetime.timedelta(days=3),
    )
    prediction = Prediction.objects.get(image=image, model_version=model_version)
    prediction.status = Prediction.Status.SUCCEEDED
    prediction.probability_malignant = 0.83
    prediction.label = Prediction.Label.MALIGNANT
    prediction.confidence = 0.66
    prediction.out_of_distribution = False
    prediction.finished_at = timezone.now()
    prediction.heatmap.save("heatmap.png", ContentFile(_heatmap_png((image.width, image.height))), save=False)
    prediction.save()
    return image


def sign_review(reviewer, image, diagnosis="melanoma", **extra):
    return services.add_review(
        reviewer=reviewer, image=image, verdict="agree", final_diagnosis=diagnosis, biopsy_requested=True, **extra
    )


@pytest.fixture
def owner_api(owner):
    return token_client(owner)


@pytest.fixture
def outsider_api(outsider):
    return token_client(outsider)
