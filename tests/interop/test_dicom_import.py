"""DICOM import: API and portal uploads take a single-frame DICOM file of the right patient.

Anything else is refused with its reason, and nothing is stored.
"""

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless

from cases.models import AnatomicalSite, LesionImage
from interop import dicom as export
from interop.record import case_of
from tests.api.conftest import assert_error
from tests.factories import LesionFactory, PatientFactory

pytestmark = pytest.mark.django_db


def exported(image):
    with image.image.open("rb") as fh:
        return export.build_dataset(case_of(image), fh.read())


def as_file(ds, name="image.dcm"):
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    buffer.name = name
    return buffer


def upload(client, lesion, file):
    return client.post(
        f"/api/v1/lesions/{lesion.pk}/images", {"file": file, "modality": "dermoscopic"}, format="multipart"
    )


def stored_pixels(image):
    with image.image.open("rb") as fh:
        return np.asarray(Image.open(fh).convert("RGB"))


def test_api_upload_of_an_exported_image_round_trips(owner_api, demo_image):
    ds = exported(demo_image)
    response = upload(owner_api, demo_image.lesion, as_file(ds))
    assert response.status_code == 201, response.content
    image = LesionImage.objects.get(pk=response.json()["id"])
    assert image.image_format == "PNG"
    assert image.captured_at.replace(microsecond=0) == demo_image.captured_at.replace(microsecond=0)
    assert np.array_equal(stored_pixels(image), ds.pixel_array)
    assert image.predictions.count() == 1  # the same ingest path: its prediction is requested


def test_mismatched_patient_is_refused_and_nothing_stored(owner_api, owner, demo_image, clinic):
    other = LesionFactory(patient=PatientFactory(clinic=clinic), anatomical_site=AnatomicalSite.POSTERIOR_TORSO)
    before = LesionImage.objects.count()
    error = assert_error(upload(owner_api, other, as_file(exported(demo_image))), 400, "validation_error")
    assert "MRN-0001" in error["message"] and "Nothing was stored" in error["message"]
    assert LesionImage.objects.count() == before


def test_mismatched_site_is_refused(owner_api, demo_image, demo_patient):
    arm = LesionFactory(patient=demo_patient, anatomical_site=AnatomicalSite.UPPER_EXTREMITY)
    error = assert_error(upload(owner_api, arm, as_file(exported(demo_image))), 400, "validation_error")
    assert "skin structure of back" in error["message"]


@pytest.mark.parametrize("damage", ["multiframe", "no_pixels", "compressed", "not_dicom_at_all"])
def test_bad_dicom_is_refused_with_a_reason(owner_api, demo_image, damage):
    ds = exported(demo_image)
    if damage == "multiframe":
        ds.NumberOfFrames = 2
        expected = "2 frames"
    elif damage == "no_pixels":
        del ds.PixelData
        expected = "no image"
    elif damage == "compressed":
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 not really jpeg 2000"])
        expected = "cannot be decoded"
    file = as_file(ds)
    if damage == "not_dicom_at_all":
        data = file.getvalue()
        file = io.BytesIO(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
        file.name = "broken.dcm"
        expected = "no image"  # pydicom reads what it can; without pixels it is refused
        assert data
    before = LesionImage.objects.count()
    error = assert_error(upload(owner_api, demo_image.lesion, file), 400, "validation_error")
    assert expected in error["message"], error
    assert LesionImage.objects.count() == before


def test_portal_upload_takes_dicom(client, owner, demo_image):
    client.force_login(owner)
    lesion = demo_image.lesion
    response = client.post(
        f"/patients/{lesion.patient_id}/upload",
        {
            "lesion": str(lesion.pk),
            "modality": "dermoscopic",
            "captured_on": "2026-01-02",
            "images": [as_file(exported(demo_image))],
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert lesion.images.count() == 2


def test_portal_upload_refuses_another_patients_dicom(client, owner, demo_image, clinic):
    client.force_login(owner)
    other = PatientFactory(clinic=clinic)
    lesion = LesionFactory(patient=other, anatomical_site=AnatomicalSite.POSTERIOR_TORSO)
    response = client.post(
        f"/patients/{other.pk}/upload",
        {
            "lesion": str(lesion.pk),
            "modality": "dermoscopic",
            "captured_on": "2026-01-02",
            "images": [as_file(exported(demo_image))],
        },
    )
    assert response.status_code == 200
    assert "Nothing was stored" in response.content.decode()
    assert lesion.images.count() == 0


def test_grey_dicom_is_accepted(owner_api, demo_image):
    ds = exported(demo_image)
    grey = np.asarray(Image.fromarray(ds.pixel_array).convert("L"))
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    del ds.PlanarConfiguration
    ds.PixelData = grey.tobytes()
    response = upload(owner_api, demo_image.lesion, as_file(ds))
    assert response.status_code == 201, response.content
    assert pydicom  # imported for the reader's side effects in other tests


def test_jpeg_baseline_dicom_is_decoded(owner_api, demo_image):
    from pydicom.uid import JPEGBaseline8Bit

    ds = exported(demo_image)
    buffer = io.BytesIO()
    Image.fromarray(ds.pixel_array).save(buffer, format="JPEG", quality=95)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PixelData = encapsulate([buffer.getvalue()])
    response = upload(owner_api, demo_image.lesion, as_file(ds))
    assert response.status_code == 201, response.content
