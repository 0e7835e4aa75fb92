"""Who may see what: the one place that scopes clinical records to a user.

Portal views, API querysets and the image-bytes view all start here. A user
sees a record only through membership of the record's clinic; anything else
is reported as "not found" (404), never "forbidden", so that the existence
of another clinic's patient is not disclosed.
"""

from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils.crypto import salted_hmac

from core.roles import can_view_admin  # noqa: F401  (re-exported: doors ask this module)

from .models import Clinic, Lesion, LesionImage, Membership, Patient, Review


def clinics_of(user):
    if not user.is_authenticated or not user.is_active:
        return Clinic.objects.none()
    return Clinic.objects.filter(memberships__user=user)


def visible_clinic_ids(user):
    """The ids of ``user``'s clinics, as a subquery to filter any clinical row by."""
    # A subquery, not a join, so that a user in several clinics never sees
    # a row twice.
    return clinics_of(user).values("pk")


def patients_visible_to(user):
    return Patient.objects.filter(clinic__in=visible_clinic_ids(user))


def lesions_visible_to(user):
    return Lesion.objects.filter(patient__clinic__in=visible_clinic_ids(user))


def images_visible_to(user):
    return LesionImage.objects.filter(lesion__patient__clinic__in=visible_clinic_ids(user))


def reviews_visible_to(user):
    return Review.objects.filter(image__lesion__patient__clinic__in=visible_clinic_ids(user))


def get_or_404(queryset, pk):
    """``queryset.get(pk=pk)``, or 404 for anything missing or malformed."""
    try:
        return queryset.get(pk=pk)
    except (queryset.model.DoesNotExist, ValidationError, ValueError, TypeError):
        # A malformed UUID is just another record this user cannot see.
        raise Http404("No such record.") from None


def get_patient_or_404(user, pk):
    return get_or_404(patients_visible_to(user), pk)


def get_lesion_or_404(user, pk):
    return get_or_404(lesions_visible_to(user).select_related("patient"), pk)


def get_image_or_404(user, pk):
    return get_or_404(images_visible_to(user).select_related("lesion__patient"), pk)


def admin_scope(user, queryset, clinic_path, *, model_review=False):
    """The rows of ``queryset`` that admin pages show ``user`` (least privilege).

    Superusers see every clinic. ML admins reviewing models (predictions and
    the images behind them, ``model_review``) see every clinic, with patients
    pseudonymised (``may_identify_patients``). Everyone else sees the clinics
    they belong to. ``clinic_path`` leads from a row to its clinic ("pk" for
    clinics themselves).
    """
    if not user.is_authenticated or not user.is_active:
        return queryset.none()
    if user.is_superuser or (model_review and is_ml_admin(user)):
        return queryset
    return queryset.filter(**{f"{clinic_path}__in": visible_clinic_ids(user)})


def may_identify_patients(user, clinic_id) -> bool:
    """Names and MRNs: superusers and members of the patient's clinic; others get ``pseudonym``."""
    if not user.is_authenticated or not user.is_active:
        return False
    return user.is_superuser or Membership.objects.filter(user=user, clinic_id=clinic_id).exists()


def pseudonym(patient_id) -> str:
    """A stable stand-in for a patient that reveals nothing (keyed with the secret key)."""
    return "P-" + salted_hmac("skincare.patient-pseudonym", str(patient_id)).hexdigest()[:10].upper()


def can_edit_clinic_records(user, clinic):
    """Clinicians and clinic admins of ``clinic`` may add patients, images and reviews."""
    return Membership.objects.filter(user=user, clinic=clinic, user__is_active=True).exists()


# Roles in the Django admin. A role comes from Membership.role (clinic
# admins) and from the "ML admins" group (model registry), never from model
# permissions assigned by hand, so what a staff user may do follows from
# where they work.

ML_ADMINS_GROUP = "ML admins"


def is_ml_admin(user):
    """May register, activate, shadow and roll back model versions (superusers always may)."""
    return bool(user.is_authenticated and user.is_active and user.has_perm("inference.activate_modelversion"))


def is_clinic_admin(user, clinic):
    if not user.is_authenticated or not user.is_active or clinic is None:
        return False
    return Membership.objects.filter(user=user, clinic=clinic, role=Membership.Role.CLINIC_ADMIN).exists()


def clinics_administered_by(user):
    """Clinics whose records ``user`` may edit in the admin (every clinic for a superuser)."""
    if not user.is_authenticated or not user.is_active:
        return Clinic.objects.none()
    if user.is_superuser:
        return Clinic.objects.all()
    return Clinic.objects.filter(memberships__user=user, memberships__role=Membership.Role.CLINIC_ADMIN)


def can_edit_in_admin(user, clinic):
    """May add, change and delete ``clinic``'s clinical records in the admin."""
    if not user.is_authenticated or not user.is_active:
        return False
    return user.is_superuser or is_clinic_admin(user, clinic)


def can_edit_any_clinic_in_admin(user):
    """Sees the admin's add and change forms at all (a superuser or the admin of some clinic)."""
    return clinics_administered_by(user).exists()


def can_revoke_device_token_in_admin(user, token):
    """Superusers, and administrators of a clinic the token's owner belongs to."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(user_id=token.user_id, clinic__in=clinics_administered_by(user)).exists()
