"""A lesion image as a DICOM VL Photographic Image object (pydicom), for PACS and VNA archives.

Identifiers: the patient's MRN (issuer: the clinic), UIDs derived from our
UUIDs under the ``2.25`` root (ISO/IEC 9834-8), so the same image always
exports with the same UIDs. Pixel data: the stored image decoded upright
(as the portal shows it and the model saw it), uncompressed, explicit VR
little endian. Anatomic region: SNOMED CT (``interop.codes``).
"""

import io
import uuid

from PIL import Image, ImageOps
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from cases import terminology as codes

from .record import Case

VL_PHOTOGRAPHIC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.4"
SEX = {"female": "F", "male": "M", "other": "O"}
UID_NAMESPACE = uuid.UUID("6f1c3f0e-8a55-4d0c-9a43-4b8d7c1e2a10")


def uid_for(pk) -> str:
    """A DICOM UID made of a UUID (``2.25.<the UUID as one integer>``)."""
    return f"2.25.{uuid.UUID(str(pk)).int}"


def derived_uid(kind, pk) -> str:
    return uid_for(uuid.uuid5(UID_NAMESPACE, f"{kind}:{pk}"))


def pixels_of(data: bytes) -> Image.Image:
    """The stored image as the pixels every export shares: upright, RGB (or greyscale)."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    return image if image.mode == "L" else image.convert("RGB")


def _da(value):
    return value.strftime("%Y%m%d")


def _tm(value):
    return value.strftime("%H%M%S")


def build_dataset(case: Case, data: bytes) -> Dataset:
    image, lesion, patient = case.image, case.lesion, case.patient
    pixels = pixels_of(data)
    captured = image.captured_at

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = VL_PHOTOGRAPHIC_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = uid_for(image.pk)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names as written
    ds.SOPClassUID = VL_PHOTOGRAPHIC_IMAGE_STORAGE
    ds.SOPInstanceUID = uid_for(image.pk)
    # Patient
    ds.PatientName = f"{patient.family_name}^{patient.given_name}"
    ds.PatientID = patient.medical_record_number
    ds.IssuerOfPatientID = patient.clinic.name[:64]
    ds.PatientBirthDate = _da(patient.date_of_birth)
    ds.PatientSex = SEX.get(patient.sex, "")
    # Study: one per image (each capture is its own visit here); series likewise.
    ds.StudyInstanceUID = derived_uid("study", image.pk)
    ds.StudyDate = _da(captured)
    ds.StudyTime = _tm(captured)
    ds.StudyID = str(image.pk)[:16]
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Skin lesion image"
    ds.SeriesInstanceUID = derived_uid("series", image.pk)
    ds.SeriesNumber = 1
    ds.Modality = "XC"
    ds.SeriesDescription = image.get_modality_display()
    # Equipment: the capture device as the upload recorded it.
    ds.Manufacturer = getattr(image, "device_make", "") or ""
    ds.ManufacturerModelName = getattr(image, "device_model", "") or ""
    # Image
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ContentDate = _da(captured)
    ds.ContentTime = _tm(captured)
    ds.AcquisitionDateTime = captured.strftime("%Y%m%d%H%M%S%z")
    ds.ImageComments = f"{lesion.get_anatomical_site_display()} lesion; {image.get_modality_display()}"
    ds.AcquisitionContextSequence = Sequence([])
    site = codes.body_site(lesion.anatomical_site)
    if site is not None:
        region = Dataset()
        region.CodeValue = site.code
        region.CodingSchemeDesignator = codes.SNOMED_DICOM
        region.CodeMeaning = site.display
        ds.AnatomicRegionSequence = Sequence([region])
    else:
        ds.AnatomicRegionSequence = Sequence([])
    if image.image_format == "JPEG":
        # The pixels went through JPEG once, before they reached us.
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    else:
        ds.LossyImageCompression = "00"
    # Pixels
    ds.Rows, ds.Columns = pixels.height, pixels.width
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if pixels.mode == "L":
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
    else:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    raw = pixels.tobytes()
    ds.PixelData = raw + (b"\0" if len(raw) % 2 else b"")
    return ds


def export_bytes(case: Case) -> bytes:
    with case.image.image.open("rb") as fh:
        data = fh.read()
    buffer = io.BytesIO()
    build_dataset(case, data).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def export_filename(case: Case) -> str:
    return f"image-{case.image.pk}.dcm"
