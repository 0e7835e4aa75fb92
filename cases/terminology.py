"""The terminologies of the clinical record (FHIR, PDF and DICOM share them): SNOMED CT for body sites and diagnoses.

Body sites come from DICOM PS3.16 (CID 4029 "Dermatology Anatomic Site" and
CID 4031 "Common Anatomic Regions"), which code each region in SNOMED CT;
the concept ids below are the ones those context groups list (as shipped in
pydicom's ``pydicom.sr`` concept dictionary). Diagnoses are SNOMED CT
disorder concepts. A site or diagnosis without one SNOMED CT concept that
means exactly it (oral *or* genital; "other"; "undetermined") is sent as
text only: a wrong code is worse than none. docs/interoperability.md lists
every mapping.
"""

from dataclasses import dataclass

from .models import AnatomicalSite, Review

SNOMED = "http://snomed.info/sct"
# DICOM's designator for SNOMED CT in coded sequences.
SNOMED_DICOM = "SCT"


@dataclass(frozen=True)
class Code:
    code: str
    display: str
    system: str = SNOMED


# ISIC general anatomical site -> SNOMED CT body structure (DICOM CID 4029 / 4031).
BODY_SITES = {
    AnatomicalSite.HEAD_NECK: Code("774007", "Head and neck structure"),  # CID 4031
    AnatomicalSite.UPPER_EXTREMITY: Code("371311000", "Skin structure of upper limb"),  # CID 4029
    AnatomicalSite.LOWER_EXTREMITY: Code("371304004", "Skin structure of lower limb"),  # CID 4029
    AnatomicalSite.ANTERIOR_TORSO: Code("181491009", "Skin structure of anterior trunk"),  # CID 4029
    AnatomicalSite.POSTERIOR_TORSO: Code("66643007", "Skin structure of back"),  # CID 4029
    AnatomicalSite.LATERAL_TORSO: Code("58602004", "Flank structure"),  # CID 4031
    # Palms and soles together have no concept of their own: the limb is
    # the narrowest concept holding both (CID 4031 "Extremity").
    AnatomicalSite.PALMS_SOLES: Code("66019005", "Limb structure"),
    # Oral or genital: no single concept; text only.
    AnatomicalSite.ORAL_GENITAL: None,
    AnatomicalSite.UNKNOWN: None,
}

# A clinician's final diagnosis -> SNOMED CT disorder.
DIAGNOSES = {
    Review.Diagnosis.MELANOMA: Code("372244006", "Malignant melanoma"),
    Review.Diagnosis.NEVUS: Code("400096001", "Melanocytic nevus"),
    Review.Diagnosis.BASAL_CELL_CARCINOMA: Code("254701007", "Basal cell carcinoma of skin"),
    Review.Diagnosis.SQUAMOUS_CELL_CARCINOMA: Code("254651007", "Squamous cell carcinoma of skin"),
    Review.Diagnosis.ACTINIC_KERATOSIS: Code("201101007", "Actinic keratosis"),
    Review.Diagnosis.SEBORRHEIC_KERATOSIS: None,
    Review.Diagnosis.DERMATOFIBROMA: None,
    Review.Diagnosis.VASCULAR: None,
    Review.Diagnosis.OTHER: None,
    Review.Diagnosis.UNDETERMINED: None,
}


def body_site(site: str) -> Code | None:
    return BODY_SITES.get(site)


def site_of_code(code: str) -> str | None:
    """The AnatomicalSite a SNOMED CT body-site code stands for (None when it is not one of ours)."""
    return next((site for site, known in BODY_SITES.items() if known is not None and known.code == code), None)


def diagnosis(value: str) -> Code | None:
    return DIAGNOSES.get(value)
