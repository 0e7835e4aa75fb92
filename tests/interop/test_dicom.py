"""DICOM export: read back with pydicom, identifiers, codes and pixels match the served image."""

import io

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageOps

from interop import dicom

pytestmark = pytest.mark.django_db


def read_back(response):
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/dicom"
    return pydicom.dcmread(io.BytesIO(b"".join(response.streaming_content)))


def test_export_round_trip(owner_api, demo_image):
    ds = read_back(owner_api.get(f"/api/v1/images/{demo_image.pk}/dicom"))
    patient = demo_image.lesion.patient
    assert ds.SOPClassUID == dicom.VL_PHOTOGRAPHIC_IMAGE_STORAGE
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert str(ds.PatientName) == "Lovelace^Ada"
    assert ds.PatientID == "MRN-0001" and ds.IssuerOfPatientID == "Northside Dermatology"
    assert ds.PatientBirthDate == "19611210" and ds.PatientSex == "F"
    assert ds.Modality == "XC"
    assert ds.StudyDate == demo_image.captured_at.strftime("%Y%m%d")
    assert ds.SOPInstanceUID == dicom.uid_for(demo_image.pk)
    region = ds.AnatomicRegionSequence[0]
    assert (region.CodeValue, region.CodingSchemeDesignator) == ("66643007", "SCT")
    served = owner_api.get(f"/api/v1/images/{demo_image.pk}/file")
    expected = np.asarray(
        ImageOps.exif_transpose(Image.open(io.BytesIO(b"".join(served.streaming_content)))).convert("RGB")
    )
    assert ds.pixel_array.shape == expected.shape == (demo_image.height, demo_image.width, 3)
    assert np.array_equal(ds.pixel_array, expected)
    assert patient.pk  # identifiers checked above


def test_same_image_exports_same_uids(owner_api, demo_image):
    first = read_back(owner_api.get(f"/api/v1/images/{demo_image.pk}/dicom"))
    second = read_back(owner_api.get(f"/api/v1/images/{demo_image.pk}/dicom"))
    assert (first.StudyInstanceUID, first.SeriesInstanceUID) == (second.StudyInstanceUID, second.SeriesInstanceUID)
    assert all(len(uid) <= 64 for uid in (first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID))


def test_portal_export_and_other_clinic(client, owner, outsider, demo_image):
    client.force_login(owner)
    assert read_back(client.get(f"/images/{demo_image.pk}/dicom")).PatientID == "MRN-0001"
    client.force_login(outsider)
    assert client.get(f"/images/{demo_image.pk}/dicom").status_code == 404
