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


def test_postgresql_counts_the_bits_between_two_hashes_as_quality_hamming_does(owner, lesion, jpeg_bytes):
    import random

    from django.db.models import Value

    row = LesionImage.objects.filter(pk=add(owner, lesion, jpeg_bytes).pk)  # the expression needs a row to run on
    rng = random.Random(0)
    hashes = ["0" * 64, "f" * 64, "0" * 63 + "1", "8" + "0" * 63]
    hashes += [f"{rng.getrandbits(256):064x}" for _ in range(20)]
    for a in hashes:
        for b in hashes[:6]:
            (distance,) = row.annotate(d=services.HammingDistance(Value(a), Value(b))).values_list("d", flat=True)
            assert distance == quality.hamming(a, b)


def test_the_database_scan_finds_the_same_nearest_images_as_the_python_scan(owner, clinic, patient, lesion, jpeg_bytes):
    # A clinic with near and exact copies for this patient and for another one, and unrelated images.
    other_patient = PatientFactory(clinic=clinic)
    img = Image.open(io.BytesIO(jpeg_bytes))
    copies = [jpeg(img.resize((img.width // k, img.height // k)), quality=q) for k, q in ((1, 95), (2, 70), (3, 50))]
    for data in copies:
        add(owner, lesion, data)
        add(owner, LesionFactory(patient=other_patient), data)
    probe = quality.perceptual_hash(quality.gate_image(copies[1]))
    candidates = LesionImage.objects.filter(lesion__patient__clinic_id=clinic.pk).exclude(perceptual_hash="")
    in_sql = services._near_duplicates(patient, probe)
    assert in_sql == services._nearest_in_python(candidates, patient, probe)
    assert in_sql[0] is not None and in_sql[1] is not None
    assert in_sql[0].lesion.patient == patient and in_sql[1].lesion.patient == other_patient
    # Nothing within the distance: neither scan names an image.
    far = "".join("f" if c == "0" else "0" for c in f"{int(probe, 16):064x}")
    assert (
        services._near_duplicates(patient, far) == (None, None) == services._nearest_in_python(candidates, patient, far)
    )
