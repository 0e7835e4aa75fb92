"""The clinical record: clinics, patients, lesions, images and reviews.

Rows are addressed by UUID everywhere a user can see an identifier, so a URL
never reveals how many patients a clinic has or invites guessing the next.
Clinical rows are protected from cascading deletes: losing an image because
a lesion was deleted by mistake is not acceptable.
"""

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Trim, Upper
from django.utils import timezone

from core.quality import retake_message

# As long as core.imagemeta keeps an EXIF make or model (DEVICE_FIELD_LENGTH).
DEVICE_NAME_LENGTH = 100


def validate_device_name(value):
    """A device make or model as a person types it: one line of printable text."""
    if any(not ch.isprintable() for ch in value):
        raise ValidationError("Use printable characters only (no line breaks or control characters).")


class Clinic(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="clinics")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    """A user's place in a clinic. Membership is what grants access to records."""

    class Role(models.TextChoices):
        CLINICIAN = "clinician", "Clinician"
        CLINIC_ADMIN = "clinic_admin", "Clinic administrator"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.CLINICIAN)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "clinic"], name="one_membership_per_clinic"),
        ]

    def __str__(self):
        return f"{self.user} in {self.clinic} ({self.get_role_display()})"


# What a user may set on a patient (cases.services.create_patient and
# update_patient take these keywords); the clinic never changes.
PATIENT_DEMOGRAPHICS = (
    "medical_record_number",
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "fitzpatrick_skin_type",
)


def normalise_mrn(value: str) -> str:
    """An MRN as stored: surrounding whitespace removed, upper case.

    MRNs are identifiers typed by people: " mrn-0001 " and "MRN-0001" name
    the same record, so they are stored (and made unique per clinic) as one.
    """
    return (value or "").strip().upper()


class Patient(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "female", "Female"
        MALE = "male", "Male"
        OTHER = "other", "Other"
        UNKNOWN = "unknown", "Unknown"

    class Fitzpatrick(models.IntegerChoices):
        I = 1, "I"  # noqa: E741 - the clinical name of the type
        II = 2, "II"
        III = 3, "III"
        IV = 4, "IV"
        V = 5, "V"
        VI = 6, "VI"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="patients")
    medical_record_number = models.CharField(max_length=64)
    given_name = models.CharField(max_length=150)
    family_name = models.CharField(max_length=150)
    date_of_birth = models.DateField()
    sex = models.CharField(max_length=10, choices=Sex.choices, default=Sex.UNKNOWN)
    fitzpatrick_skin_type = models.PositiveSmallIntegerField(choices=Fitzpatrick.choices, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["family_name", "given_name"]
        constraints = [
            # On the normalised value, so no write that skips clean() can
            # store a second " mrn-0001 " beside "MRN-0001".
            models.UniqueConstraint(
                "clinic",
                Upper(Trim("medical_record_number")),
                name="unique_normalised_mrn_per_clinic",
                violation_error_code="duplicate_mrn",
                violation_error_message="Another patient in this clinic has this MRN.",
            ),
        ]

    def __str__(self):
        return f"{self.family_name}, {self.given_name} ({self.medical_record_number})"

    def clean(self):
        self.medical_record_number = normalise_mrn(self.medical_record_number)


class AnatomicalSite(models.TextChoices):
    """The ISIC Archive's general anatomical sites, so records map onto its data."""

    HEAD_NECK = "head_neck", "Head/neck"
    UPPER_EXTREMITY = "upper_extremity", "Upper extremity"
    LOWER_EXTREMITY = "lower_extremity", "Lower extremity"
    ANTERIOR_TORSO = "anterior_torso", "Anterior torso"
    POSTERIOR_TORSO = "posterior_torso", "Posterior torso"
    LATERAL_TORSO = "lateral_torso", "Lateral torso"
    PALMS_SOLES = "palms_soles", "Palms/soles"
    ORAL_GENITAL = "oral_genital", "Oral/genital"
    UNKNOWN = "unknown", "Unknown"


class Lesion(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="lesions")
    anatomical_site = models.CharField(max_length=20, choices=AnatomicalSite.choices)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.get_anatomical_site_display()} lesion of {self.patient}"


def lesion_image_path(instance, filename):
    # The stored name is the row's UUID: the uploaded file name may carry a
    # patient's name and must never reach storage keys or URLs.
    extension = {"JPEG": "jpg", "PNG": "png"}.get(instance.image_format, "bin")
    return f"lesion-images/{instance.id}.{extension}"


class LesionImage(models.Model):
    class Modality(models.TextChoices):
        DERMOSCOPIC = "dermoscopic", "Dermoscopic"
        CLINICAL = "clinical", "Clinical (close-up)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    lesion = models.ForeignKey(Lesion, on_delete=models.PROTECT, related_name="images")
    image = models.FileField(upload_to=lesion_image_path, max_length=255)
    image_format = models.CharField(max_length=10, editable=False)
    modality = models.CharField(max_length=20, choices=Modality.choices, default=Modality.DERMOSCOPIC)
    captured_at = models.DateTimeField()
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="uploaded_images")
    uploaded_at = models.DateTimeField(default=timezone.now, editable=False)
    sha256 = models.CharField(max_length=64, editable=False)
    width = models.PositiveIntegerField(editable=False)
    height = models.PositiveIntegerField(editable=False)
    byte_size = models.PositiveIntegerField(editable=False)
    # What was taken out of the upload before it was stored (core.imagemeta:
    # "exif", "xmp", "comment", "trailing-data", "animation", "orientation"...).
    metadata_removed = models.JSONField(default=list, blank=True, editable=False)
    # The acquisition device: as the uploader named it, else as the upload's
    # EXIF named it (never its serial numbers); a clinic admin may correct it.
    # The device model chooses a device-scoped site model (ModelVersion.for_site).
    device_make = models.CharField(
        max_length=DEVICE_NAME_LENGTH, blank=True, default="", validators=[validate_device_name]
    )
    device_model = models.CharField(
        max_length=DEVICE_NAME_LENGTH, blank=True, default="", validators=[validate_device_name]
    )
    # The intake quality gate (core/quality.py, docs/image-quality.md): what
    # was measured and what is wrong (keys of core.quality.REASONS; empty =
    # fit to score). Empty measures: stored before the gate existed.
    quality_measures = models.JSONField(default=dict, blank=True, editable=False)
    quality_findings = models.JSONField(default=list, blank=True, editable=False)
    # 256-bit perceptual hash (core.quality.perceptual_hash, 64 hex digits)
    # and, found with it at intake, an earlier image of this patient that is
    # nearly the same picture, or one of another patient of the same clinic
    # (a possible wrong-patient upload). Never across clinics.
    perceptual_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    duplicate_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )
    possible_wrong_patient_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )

    class Meta:
        ordering = ["captured_at"]
        indexes = [models.Index(fields=["sha256"]), models.Index(fields=["perceptual_hash"])]

    def __str__(self):
        return f"{self.get_modality_display()} image {self.id}"

    @property
    def retake_recommended(self) -> bool:
        return bool(self.quality_findings)

    @property
    def quality_message(self) -> str:
        """ "Image quality: retake recommended — too blurred", or "" for an image that passed."""
        return retake_message(self.quality_findings)

    @property
    def duplicate_message(self) -> str:
        other = self.duplicate_of
        if other is None:
            return ""
        return (
            f"Already uploaded on {timezone.localtime(other.uploaded_at):%Y-%m-%d} "
            f"for the {other.lesion.get_anatomical_site_display().lower()} lesion recorded "
            f"{timezone.localtime(other.lesion.created_at):%Y-%m-%d}."
        )

    @property
    def wrong_patient_message(self) -> str:
        other = self.possible_wrong_patient_of
        if other is None:
            return ""
        return (
            "Possible wrong-patient upload: nearly the same as an image of another patient of this clinic "
            f"(MRN {other.lesion.patient.medical_record_number}, uploaded "
            f"{timezone.localtime(other.uploaded_at):%Y-%m-%d}). Check that this is the right patient."
        )


class Review(models.Model):
    """A clinician's verdict on an image's prediction.

    Reviews are appended, never edited: a changed opinion is a new row, so
    the history of who decided what, and when, is always intact.
    """

    class Verdict(models.TextChoices):
        AGREE = "agree", "Agree with the model"
        DISAGREE = "disagree", "Disagree with the model"

    class Diagnosis(models.TextChoices):
        NEVUS = "nevus", "Melanocytic nevus"
        MELANOMA = "melanoma", "Melanoma"
        SEBORRHEIC_KERATOSIS = "seborrheic_keratosis", "Seborrheic keratosis"
        BASAL_CELL_CARCINOMA = "basal_cell_carcinoma", "Basal cell carcinoma"
        SQUAMOUS_CELL_CARCINOMA = "squamous_cell_carcinoma", "Squamous cell carcinoma"
        ACTINIC_KERATOSIS = "actinic_keratosis", "Actinic keratosis"
        DERMATOFIBROMA = "dermatofibroma", "Dermatofibroma"
        VASCULAR = "vascular", "Vascular lesion"
        OTHER = "other", "Other"
        UNDETERMINED = "undetermined", "Undetermined"

    class Histopathology(models.TextChoices):
        NONE = "", "No result"
        BENIGN = "benign", "Benign"
        MELANOMA_IN_SITU = "melanoma_in_situ", "Melanoma in situ"
        INVASIVE_MELANOMA = "invasive_melanoma", "Invasive melanoma"
        OTHER_MALIGNANT = "other_malignant", "Other malignancy"
        NON_DIAGNOSTIC = "non_diagnostic", "Non-diagnostic"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    image = models.ForeignKey(LesionImage, on_delete=models.PROTECT, related_name="reviews")
    # The prediction the clinician was looking at; null if none existed.
    prediction = models.ForeignKey(
        "inference.Prediction",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reviews",
    )
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    final_diagnosis = models.CharField(max_length=30, choices=Diagnosis.choices)
    biopsy_requested = models.BooleanField(default=False)
    histopathology_result = models.CharField(max_length=20, choices=Histopathology.choices, blank=True, default="")
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.get_verdict_display()} by {self.reviewer} on {self.created_at:%Y-%m-%d}"
