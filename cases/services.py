"""Every write to the clinical record goes through these functions.

Portal views, API views, the admin and management commands call them, so
validation, permission checks and the hand-over to inference happen the same
way whichever door a record came in by. Keyword-only arguments; each returns
the saved row or raises ValidationError / PermissionDenied.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Case, Func, IntegerField, Q, Value, When
from django.utils import timezone
from django.utils.module_loading import import_string

from core import quality
from core.files import delete_orphan_files
from core.images import check_upload, inspect_image, sanitize

from . import permissions
from .models import DEVICE_NAME_LENGTH, Lesion, LesionImage, Patient, Review, normalise_mrn, validate_device_name

logger = logging.getLogger(__name__)

IMAGE_FOLDER = "lesion-images"
# The per-clinic MRN constraint (cases.models.Patient) and older unique checks.
DUPLICATE_MRN_CODES = ("unique_together", "unique", "duplicate_mrn")


def _require_member(user, clinic):
    if not permissions.can_edit_clinic_records(user, clinic):
        raise PermissionDenied("You are not a member of this patient's clinic.")


def create_patient(*, user, clinic, **demographics) -> Patient:
    """Add a patient to ``clinic``; see ``_save_patient`` for the fields."""
    _require_member(user, clinic)
    return _save_patient(Patient(clinic=clinic), **demographics)


def update_patient(*, user, patient, **demographics) -> Patient:
    """Change a patient's demographics (the clinic never changes)."""
    _require_member(user, patient.clinic)
    return _save_patient(patient, **demographics)


def _save_patient(
    patient,
    *,
    medical_record_number,
    given_name,
    family_name,
    date_of_birth,
    sex=Patient.Sex.UNKNOWN,
    fitzpatrick_skin_type=None,
) -> Patient:
    if date_of_birth > timezone.localdate():
        raise ValidationError({"date_of_birth": "The date of birth is in the future."})
    patient.medical_record_number = normalise_mrn(medical_record_number)
    patient.given_name = given_name.strip()
    patient.family_name = family_name.strip()
    patient.date_of_birth = date_of_birth
    patient.sex = sex
    patient.fitzpatrick_skin_type = fitzpatrick_skin_type
    try:
        patient.full_clean()  # includes the per-clinic MRN uniqueness check
    except ValidationError as exc:
        # The constraint spans two fields, so Django files its error under
        # none; it is the MRN that a user has to change.
        errors = exc.update_error_dict({})
        duplicate = [e for e in errors.get(NON_FIELD_ERRORS, []) if e.code in DUPLICATE_MRN_CODES]
        if duplicate:
            errors[NON_FIELD_ERRORS] = [e for e in errors[NON_FIELD_ERRORS] if e not in duplicate]
            errors.setdefault("medical_record_number", []).extend(duplicate)
            errors = {field: messages for field, messages in errors.items() if messages}
        raise ValidationError(errors) from exc
    patient.save()
    return patient


def create_lesion(*, user, patient, anatomical_site, description="") -> Lesion:
    _require_member(user, patient.clinic)
    lesion = Lesion(patient=patient, anatomical_site=anatomical_site, description=description)
    lesion.full_clean()
    lesion.save()
    return lesion


def add_lesion_image(
    *,
    uploader,
    lesion,
    file,
    modality=LesionImage.Modality.DERMOSCOPIC,
    captured_at=None,
    device_make="",
    device_model="",
) -> LesionImage:
    """Validate and store an image of ``lesion``; request its prediction on commit.

    ``file`` is any readable binary file (an UploadedFile, a File, BytesIO),
    or the ``core.images.CheckedImage`` a form already made of it. Only the
    sanitized bytes are stored (metadata, extra frames and trailing data
    removed; see core/imagemeta.py), and the row's sha256, size and
    dimensions describe them. The acquisition device is the one the uploader
    named (``device_make``/``device_model``), else the make and model in the
    upload's EXIF (read before it is dropped): the person knows which
    dermatoscope sat on the phone, the EXIF only the phone. Raises
    ValidationError (keyed by this function's argument names, so every door
    shows it as it is) for anything that is not a usable JPEG or PNG, and
    PermissionDenied if ``uploader`` is not in the patient's clinic; in both
    cases nothing is stored and nothing is queued.
    """
    _require_member(uploader, lesion.patient.clinic_id)  # the id: no query for the clinic row
    now = timezone.now()
    if captured_at is None:
        captured_at = now
    elif captured_at > now + timedelta(minutes=5):  # allow for a phone's clock drift
        raise ValidationError({"captured_at": "The capture date is in the future."})
    if modality not in LesionImage.Modality.values:
        raise ValidationError({"modality": f"Unknown modality {modality!r}."})
    named = clean_device(device_make=device_make, device_model=device_model)
    try:
        checked = check_upload(file)
    except ValidationError as exc:
        raise ValidationError({"file": exc.error_list}) from exc
    data, info = checked.data, checked.info
    pixels = checked.pixels if checked.pixels is not None else quality.gate_image(data)
    assessment, phash = _assess(pixels, modality)

    image = LesionImage(
        lesion=lesion,
        image_format=info.format,
        modality=modality,
        captured_at=captured_at,
        uploaded_by=uploader,
        sha256=info.sha256,
        width=info.width,
        height=info.height,
        byte_size=info.byte_size,
        metadata_removed=list(checked.removed),
        device_make=named[0] if any(named) else checked.device_make,
        device_model=named[1] if any(named) else checked.device_model,
        quality_measures=assessment.measures,
        quality_findings=assessment.findings,
        perceptual_hash=phash,
    )
    stored_name = None
    try:
        with transaction.atomic():
            image.duplicate_of, image.possible_wrong_patient_of = _near_duplicates(lesion.patient, phash)
            image.image.save("upload", ContentFile(data), save=False)
            stored_name = image.image.name
            image.save()
            _image_stored(image)
    except BaseException:
        # Our own transaction failed: take the file with it. (If an outer
        # transaction rolls back later, the orphan sweeper removes the file.)
        # But never the file of a row that exists: an exception can also
        # come after the commit (an on-commit hook), and deleting then
        # would lose a stored image.
        if stored_name and not _row_exists(image):
            default_storage.delete(stored_name)
        raise
    logger.info(
        "Stored image %s (%sx%s, %s bytes; quality findings %s)",
        image.id,
        info.width,
        info.height,
        info.byte_size,
        ", ".join(assessment.findings) or "none",
    )
    return image


def _assess(img, modality: str):
    """The quality gate's verdict and the perceptual hash of an image decoded as ``quality.gate_image`` decodes.

    At intake that is the upload check's own decode (``CheckedImage.pixels``),
    so the bytes are decoded once; a backfill decodes the stored bytes the
    same way, so both measure the same pixels.
    """
    return quality.assess(img, modality), quality.perceptual_hash(img)


def _near_duplicates(patient, phash, *, before=None):
    """(an earlier image of ``patient``, one of another patient of its clinic) nearly the same as ``phash``.

    Only the patient's own clinic is searched, so no other clinic's record is
    ever named. The nearest match of each kind, or None. Two simultaneous
    uploads of one picture do not see each other (neither has committed):
    the gate is a safety net for the common mistake, not a constraint.
    ``before``: the stored image being checked late; only images uploaded
    before it count.
    """
    candidates = LesionImage.objects.filter(lesion__patient__clinic_id=patient.clinic_id)
    if before is not None:  # a stored image (backfill): only what was uploaded before it
        candidates = candidates.filter(uploaded_at__lt=before.uploaded_at).exclude(pk=before.pk)
    # With what the messages name (the match's lesion, and its patient's MRN), no query each.
    candidates = candidates.exclude(perceptual_hash="").select_related("lesion__patient")
    if connection.vendor != "postgresql":
        return _nearest_in_python(candidates, patient, phash)
    # Every upload compares its hash with every image of the clinic. Fetched
    # here, the rows cost the web process ~5 us each (233 ms of CPU per upload
    # at 50,000 images); compared in PostgreSQL, ~1.5 us each of the
    # database's time and a constant ~4 ms here (bench/duplicate_scan.py).
    # One scan: the nearest image of each kind (DISTINCT ON the kind, nearest first).
    nearest = (
        candidates.annotate(
            distance=HammingDistance("perceptual_hash", Value(phash)),
            same_patient=Case(When(lesion__patient_id=patient.pk, then=True), default=False),
        )
        .filter(distance__lte=quality.MAX_DUPLICATE_DISTANCE)
        .order_by("same_patient", "distance", "uploaded_at", "pk")
        .distinct("same_patient")
    )
    found = {image.same_patient: image for image in nearest}
    return found.get(True), found.get(False)


class HammingDistance(Func):
    """PostgreSQL: the bits that differ between two perceptual hashes (64 hex digits), as ``quality.hamming``."""

    arity = 2
    output_field = IntegerField()

    def as_postgresql(self, compiler, connection, **extra_context):
        (a, a_params), (b, b_params) = (compiler.compile(e) for e in self.get_source_expressions())
        bits = f"bit({quality.HASH_BITS})"
        return f"bit_count(('x' || {a})::{bits} # ('x' || {b})::{bits})", (*a_params, *b_params)


def _nearest_in_python(candidates, patient, phash):
    """``_near_duplicates`` on databases without ``bit_count`` (SQLite: the embedded default's small archives)."""
    best = {True: (None, quality.MAX_DUPLICATE_DISTANCE + 1), False: (None, quality.MAX_DUPLICATE_DISTANCE + 1)}
    rows = candidates.order_by("uploaded_at", "pk").values_list("pk", "perceptual_hash", "lesion__patient_id")
    for pk, other_hash, patient_id in rows.iterator(chunk_size=2000):
        distance = quality.hamming(phash, other_hash)
        same_patient = patient_id == patient.pk
        if distance < best[same_patient][1]:
            best[same_patient] = (pk, distance)
    same, other = best[True][0], best[False][0]
    return (
        candidates.get(pk=same) if same else None,
        candidates.get(pk=other) if other else None,
    )


def clean_device(*, device_make="", device_model="") -> tuple[str, str]:
    """(make, model) as given, stripped; ValidationError keyed by field for what cannot be stored."""
    errors, cleaned = {}, []
    for name, value in (("device_make", device_make), ("device_model", device_model)):
        value = (value or "").strip()
        try:
            if len(value) > DEVICE_NAME_LENGTH:
                raise ValidationError(f"At most {DEVICE_NAME_LENGTH} characters (this has {len(value)}).")
            validate_device_name(value)
        except ValidationError as exc:
            errors[name] = exc.error_list
        cleaned.append(value)
    if errors:
        raise ValidationError(errors)
    return cleaned[0], cleaned[1]


def _row_exists(image) -> bool:
    """Whether ``image``'s row is in the database as this connection sees it; True when unsure."""
    try:
        return LesionImage.objects.filter(pk=image.pk).exists()
    except Exception:
        logger.exception("Cannot tell whether image %s was stored: its file is kept", image.pk)
        return True  # an orphan file is swept later; a deleted one is lost for good


def sanitize_stored_image(*, image) -> bool:
    """Rewrite an image stored before uploads were sanitized; True if its bytes changed.

    The new file replaces the old one (whose name and sha256 go); the row's
    sha256, size, dimensions and removal record then describe the new bytes.
    An EXIF rotation is applied to the pixels, so the model's view of the
    image is unchanged. Run by ``manage.py sanitize_stored_images``.
    """
    with image.image.open("rb") as fh:
        original = fh.read()
    clean = sanitize(original)
    if clean.data == original:
        return False
    info = inspect_image(clean.data)
    old_name = image.image.name
    with transaction.atomic():
        image.image.save("upload", ContentFile(clean.data), save=False)
        image.sha256, image.byte_size = info.sha256, info.byte_size
        image.width, image.height = info.width, info.height
        image.metadata_removed = list(dict.fromkeys([*image.metadata_removed, *clean.removed]))
        image.device_make = image.device_make or clean.device_make
        image.device_model = image.device_model or clean.device_model
        image.save()
        transaction.on_commit(lambda: default_storage.delete(old_name))
    logger.info("Sanitized stored image %s (removed %s)", image.id, ", ".join(clean.removed))
    return True


def images_needing_quality_backfill():
    """Images without a perceptual hash or measured by an older ``core.quality.MEASURES_VERSION``."""
    return LesionImage.objects.filter(
        Q(perceptual_hash="") | ~Q(quality_measures__version=quality.MEASURES_VERSION)
    ).order_by("uploaded_at", "id")


def backfill_image_quality(*, image) -> bool:
    """Measure a stored image as intake now would; True if anything was recorded.

    For images stored before the gate (or measured by an older version of
    it): the quality measures and findings, the perceptual hash, and, where
    none is recorded, the near-duplicates among images uploaded before it.
    Its predictions are left as they were made (a past result is not
    rewritten). An image already measured by this version is left alone,
    so running ``manage.py backfill_image_quality`` again changes nothing.
    """
    if image.perceptual_hash and image.quality_measures.get("version") == quality.MEASURES_VERSION:
        return False
    with image.image.open("rb") as fh:
        assessment, phash = _assess(quality.gate_image(fh.read()), image.modality)
    image.quality_measures, image.quality_findings, image.perceptual_hash = (
        assessment.measures,
        assessment.findings,
        phash,
    )
    fields = ["quality_measures", "quality_findings", "perceptual_hash"]
    if image.duplicate_of_id is None and image.possible_wrong_patient_of_id is None:
        image.duplicate_of, image.possible_wrong_patient_of = _near_duplicates(
            image.lesion.patient, phash, before=image
        )
        fields += ["duplicate_of", "possible_wrong_patient_of"]
    image.save(update_fields=fields)
    logger.info("Backfilled image quality of %s (findings %s)", image.id, ", ".join(assessment.findings) or "none")
    return True


def _image_stored(image):
    """Hand a just-saved image on, inside its transaction: by default, request its prediction.

    The one arrow from the clinical record towards inference, named in the
    ``SKINCARE_IMAGE_STORED_HOOK`` setting (``inference.services.request_prediction``)
    so that ``cases`` imports no app above it (docs/architecture.md). The hook
    runs inside the upload's transaction, so its rows commit or roll back
    with the image, and whatever it queues is sent on commit.
    """
    import_string(settings.SKINCARE_IMAGE_STORED_HOOK)(image)


def add_review(
    *, reviewer, image, verdict, final_diagnosis, biopsy_requested=False, histopathology_result="", notes=""
) -> Review:
    """Append a review of ``image``; earlier reviews are never changed."""
    _require_member(reviewer, image.lesion.patient.clinic)
    review = Review(
        image=image,
        # The prediction the clinician was shown: the newest non-shadow one
        # (inference.selectors.latest_clinical_prediction, read through the
        # reverse relation so that cases imports nothing from inference).
        prediction=image.predictions.clinical().order_by("-queued_at").first(),
        reviewer=reviewer,
        verdict=verdict,
        final_diagnosis=final_diagnosis,
        biopsy_requested=biopsy_requested,
        histopathology_result=histopathology_result,
        notes=notes,
    )
    review.full_clean()
    review.save()
    return review


def delete_orphan_image_files(*, older_than: timedelta) -> list[str]:
    """Delete stored image files that no row points to (an upload whose transaction rolled back)."""
    return delete_orphan_files(
        folder=IMAGE_FOLDER,
        referenced=lambda paths: set(LesionImage.objects.filter(image__in=paths).values_list("image", flat=True)),
        older_than=older_than,
    )
