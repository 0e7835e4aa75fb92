"""DICOM uploads: a single-frame image file whose pixels enter through the ordinary ingest path.

``add_image_upload`` is what the upload doors call: a JPEG or PNG goes
straight to ``services.add_lesion_image``; a DICOM file is read here (one
frame, 8 bits, uncompressed or a compression pydicom decodes), its pixels
re-encoded as a lossless PNG and handed to the same service, so they get
exactly the checks, storage and prediction any upload gets. The file's
patient must be the lesion's patient (PatientID = MRN, and the birth date
when both have one) and its coded anatomic region, when it has one of
ours, the lesion's site; otherwise it is refused with the reason and
nothing is stored.
"""

import io
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.utils import timezone

from core.images import CheckedImage, check_image_bytes, check_upload, read_upload

from . import services, terminology

PREAMBLE = 128
MAGIC = b"DICM"


@dataclass(frozen=True)
class DicomUpload:
    """A DICOM file read and converted: its pixels as a checked PNG, and what it says about itself."""

    name: str
    checked: CheckedImage
    patient_id: str
    birth_date: str
    site: str | None
    captured_at: datetime | None


def is_dicom(data: bytes) -> bool:
    return data[PREAMBLE : PREAMBLE + 4] == MAGIC


def _refuse(message, code):
    raise ValidationError(message, code=code)


def _datetime(ds):
    """When the picture was taken, from the most precise attribute the file has."""
    candidates = [
        str(ds.get("AcquisitionDateTime", "") or ""),
        f"{ds.get('ContentDate', '')}{str(ds.get('ContentTime', ''))[:6]}",
        f"{ds.get('StudyDate', '')}{str(ds.get('StudyTime', ''))[:6]}",
        str(ds.get("StudyDate", "") or ""),
    ]
    for text in candidates:
        head, offset = text[:14].split(".")[0], text[14:].split(".")[-1] if "." in text[14:] else text[14:]
        for pattern, length in (("%Y%m%d%H%M%S", 14), ("%Y%m%d", 8)):
            if len(head) < length:
                continue
            try:
                moment = datetime.strptime(head[:length], pattern)
                if length == 14 and offset[:1] in ("+", "-") and len(offset) >= 5:
                    return datetime.strptime(head[:length] + offset[:5], pattern + "%z")
            except ValueError:
                continue
            return timezone.make_aware(moment)
    return None


def _site(ds):
    for item in getattr(ds, "AnatomicRegionSequence", []) or []:
        if getattr(item, "CodingSchemeDesignator", "") in ("SCT", "SNM3", "SRT") and getattr(item, "CodeValue", ""):
            return terminology.site_of_code(str(item.CodeValue))
    return None


def _pixels(ds):
    from PIL import Image

    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        _refuse(f"This DICOM file holds {frames} frames; upload one image per file.", "dicom_multiframe")
    if int(getattr(ds, "BitsAllocated", 8)) != 8 or int(getattr(ds, "BitsStored", 8)) != 8:
        _refuse("Only 8-bit DICOM images (photographs) are accepted.", "dicom_bit_depth")
    photometric = str(getattr(ds, "PhotometricInterpretation", ""))
    try:
        array = ds.pixel_array  # pydicom converts YCbCr to RGB
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the same refusal
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax))
        _refuse(f"The DICOM pixel data ({name}) cannot be decoded here: {exc}", "dicom_undecodable")
    if photometric == "MONOCHROME1":
        array = 255 - array
    if array.ndim == 2:
        return Image.fromarray(array, mode="L")
    if array.ndim == 3 and array.shape[2] == 3:
        return Image.fromarray(array, mode="RGB")
    return _refuse(f"Unsupported DICOM image layout {photometric} {tuple(array.shape)}.", "dicom_layout")


def read_dicom_upload(file) -> DicomUpload:
    """Read and convert a DICOM upload; ValidationError, with the reason, for anything unusable."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    data = read_upload(file)
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, TypeError, KeyError, OSError) as exc:
        _refuse(f"This DICOM file cannot be read: {exc}", "dicom_invalid")
    if "PixelData" not in ds:
        _refuse("This DICOM file holds no image (no pixel data).", "dicom_no_image")
    image = _pixels(ds)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    buffer.name = "dicom.png"
    name = getattr(file, "name", "") or "upload.dcm"
    return DicomUpload(
        name=name,
        checked=check_upload(buffer),
        patient_id=str(getattr(ds, "PatientID", "") or "").strip(),
        birth_date=str(getattr(ds, "PatientBirthDate", "") or "").strip(),
        site=_site(ds),
        captured_at=_datetime(ds),
    )


def check_belongs_to(upload: DicomUpload, lesion):
    patient = lesion.patient
    if upload.patient_id and upload.patient_id != patient.medical_record_number:
        _refuse(
            f"This DICOM file is for patient ID {upload.patient_id!r}, not {patient.medical_record_number!r} "
            f"({patient.given_name} {patient.family_name}). Nothing was stored.",
            "dicom_patient_mismatch",
        )
    if upload.birth_date and upload.birth_date != patient.date_of_birth.strftime("%Y%m%d"):
        _refuse(
            f"This DICOM file's birth date ({upload.birth_date}) is not the patient's "
            f"({patient.date_of_birth:%Y-%m-%d}). Nothing was stored.",
            "dicom_patient_mismatch",
        )
    if upload.site and lesion.anatomical_site not in (upload.site, "unknown"):
        _refuse(
            f"This DICOM file shows the {terminology.BODY_SITES[upload.site].display.lower()}, "
            f"not this lesion's site ({lesion.get_anatomical_site_display()}). Nothing was stored.",
            "dicom_site_mismatch",
        )


def prepare_upload(file):
    """What a door hands on for one uploaded file: a ``DicomUpload`` for DICOM, else the checked image."""
    if isinstance(file, CheckedImage | DicomUpload):
        return file
    data = read_upload(file)
    if is_dicom(data):
        file.seek(0)
        return read_dicom_upload(file)
    return check_image_bytes(data, name=getattr(file, "name", "") or "")


def add_image_upload(*, uploader, lesion, file, modality, captured_at=None, device_make="", device_model=""):
    """``services.add_lesion_image`` for any accepted upload, DICOM included (its date wins when it has one)."""
    device = {"device_make": device_make, "device_model": device_model}
    try:
        prepared = prepare_upload(file)
        if isinstance(prepared, DicomUpload):
            check_belongs_to(prepared, lesion)
    except ValidationError as exc:
        raise ValidationError({"file": exc.error_list}) from exc
    if isinstance(prepared, DicomUpload):
        return services.add_lesion_image(
            uploader=uploader,
            lesion=lesion,
            file=prepared.checked,
            modality=modality,
            captured_at=prepared.captured_at or captured_at,
            **device,
        )
    return services.add_lesion_image(
        uploader=uploader, lesion=lesion, file=prepared, modality=modality, captured_at=captured_at, **device
    )
