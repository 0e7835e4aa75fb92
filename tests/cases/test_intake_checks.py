"""What add_lesion_image records about a photo at intake: the quality gate and near-duplicates."""

import io

import pytest
from PIL import Image, ImageFilter

from cases import services
from cases.models import LesionImage
from core import quality
from inference.models import Prediction
from tests.factories import LesionFactory, PatientFactory

pytestmark = pytest.mark.django_db


def add(owner, lesion, data, modality="dermoscopic"):
    return services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(data), modality=modality)


def jpeg(img, **kwargs):
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", **kwargs)
    return out.getvalue()


@pytest.fixture
def blurred_bytes(jpeg_bytes):
    return jpeg(Image.open(io.BytesIO(jpeg_bytes)).filter(ImageFilter.GaussianBlur(6)), quality=92)


def test_a_blurred_upload_is_stored_with_its_findings_and_still_predicted(owner, lesion, blurred_bytes, active_model):
    image = add(owner, lesion, blurred_bytes)
    image.refresh_from_db()
    assert "blurred" in image.quality_findings
    assert image.quality_message.startswith("Image quality: retake recommended — too blurred")
    assert image.retake_recommended
    assert set(image.quality_measures) >= {"sharpness", "clipped", "lesion_area", "light_gradient"}
    assert Prediction.objects.filter(image=image, status="pending").exists()


def test_a_good_photo_has_no_findings_and_a_hash(owner, lesion, jpeg_bytes):
    image = add(owner, lesion, jpeg_bytes)
    image.refresh_from_db()
    assert (image.quality_findings, image.quality_message, image.retake_recommended) == ([], "", False)
    assert len(image.perceptual_hash) == 64
    assert image.duplicate_of is None and image.possible_wrong_patient_of is None


def test_a_dermoscopic_photo_recorded_as_clinical_keeps_its_modality(owner, lesion, jpeg_bytes):
    image = add(owner, lesion, jpeg_bytes, modality="clinical")
    assert image.modality == LesionImage.Modality.CLINICAL


def test_the_same_photo_again_for_the_patient_is_flagged_with_date_and_lesion(owner, patient, lesion, jpeg_bytes):
    first = add(owner, lesion, jpeg_bytes)
    other_lesion = LesionFactory(patient=patient)
    img = Image.open(io.BytesIO(jpeg_bytes))
    # Re-encoded at half size: not byte-identical, the same picture.
    again = add(owner, other_lesion, jpeg(img.resize((img.width // 2, img.height // 2)), quality=70))
    assert again.duplicate_of == first
    assert again.possible_wrong_patient_of is None
    message = again.duplicate_message
    assert f"Already uploaded on {first.uploaded_at:%Y-%m-%d}" in message
    assert lesion.get_anatomical_site_display().lower() in message


def test_nearly_the_same_photo_for_another_patient_of_the_clinic_is_a_possible_wrong_patient(
    owner, clinic, lesion, jpeg_bytes
):
    first = add(owner, lesion, jpeg_bytes)
    other = LesionFactory(patient=PatientFactory(clinic=clinic))
    image = add(owner, other, jpeg_bytes)
    assert image.possible_wrong_patient_of == first
    assert image.duplicate_of is None
    assert first.lesion.patient.medical_record_number in image.wrong_patient_message


def test_another_clinics_images_are_never_matched(owner, lesion, jpeg_bytes, outsider):
    elsewhere = outsider.clinics.get()
    add(outsider, LesionFactory(patient=PatientFactory(clinic=elsewhere)), jpeg_bytes)
    image = add(owner, lesion, jpeg_bytes)
    assert image.duplicate_of is None and image.possible_wrong_patient_of is None


def test_distinct_lesions_are_not_flagged(owner, lesion, demo_image_paths):
    images = [add(owner, lesion, path.read_bytes()) for path in demo_image_paths[:6]]
    assert all(image.duplicate_of is None for image in images)
    assert all(image.quality_findings == [] for image in images)


def test_an_upload_is_measured_as_the_backfill_measures_its_stored_file(owner, lesion, demo_image_paths):
    # A phone-sized JPEG, which the upload check decodes at reduced scale and the gate measures from that decode.
    photo = Image.open(demo_image_paths[1]).convert("RGB").resize((1600, 1200))
    image = add(owner, lesion, jpeg(photo, quality=90))
    with image.image.open("rb") as fh:
        stored = quality.gate_image(fh.read())
    assert image.quality_measures == quality.measure(stored)
    assert image.quality_measures["version"] == quality.MEASURES_VERSION
    assert image.perceptual_hash == quality.perceptual_hash(stored)
