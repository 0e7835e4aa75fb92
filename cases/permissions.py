"""Who may see what: the one place that scopes clinical records to a user.

Portal views, API querysets and the image-bytes view all start here. A user
sees a record only through membership of the record's clinic; anything else
is reported as "not found" (404), never "forbidden", so that the existence
of another clinic's patient is not disclosed.
"""

from django.core.exceptions import ValidationError
from django.http import Http404

from inference.models import Prediction

from .models import Clinic, Lesion, LesionImage, Membership, Patient, Review


def clinics_of(user):
    if not user.is_authenticated or not user.is_active:
        return Clinic.objects.none()
    return Clinic.objects.filter(memberships__user=user)


def _visible_clinic_ids(user):
    # A subquery, not a join, so that a user in several clinics never sees
    # a row twice.
    return clinics_of(user).values("pk")


def patients_visible_to(user):
    return Patient.objects.filter(clinic__in=_visible_clinic_ids(user))


def lesions_visible_to(user):
    return Lesion.objects.filter(patient__clinic__in=_visible_clinic_ids(user))


def images_visible_to(user):
    return LesionImage.objects.filter(lesion__patient__clinic__in=_visible_clinic_ids(user))


def reviews_visible_to(user):
    return Review.objects.filter(image__lesion__patient__clinic__in=_visible_clinic_ids(user))


def predictions_visible_to(user):
    # A prediction (and its heatmap) shows the patient's image: same scope.
    # Shadow-model predictions are for admins comparing models, never for
    # clinicians: to them such a row does not exist.
    return Prediction.objects.clinical().filter(image__lesion__patient__clinic__in=_visible_clinic_ids(user))


def _get_or_404(queryset, pk):
    try:
        return queryset.get(pk=pk)
    except (queryset.model.DoesNotExist, ValidationError, ValueError, TypeError):
        # A malformed UUID is just another record this user cannot see.
        raise Http404("No such record.") from None


def get_patient_or_404(user, pk):
    return _get_or_404(patients_visible_to(user), pk)


def get_lesion_or_404(user, pk):
    return _get_or_404(lesions_visible_to(user).select_related("patient"), pk)


def get_image_or_404(user, pk):
    return _get_or_404(images_visible_to(user).select_related("lesion__patient"), pk)


def get_prediction_or_404(user, pk):
    return _get_or_404(predictions_visible_to(user), pk)


def can_edit_clinic_records(user, clinic):
    """Clinicians and clinic admins of ``clinic`` may add patients, images and reviews."""
    return Membership.objects.filter(user=user, clinic=clinic, user__is_active=True).exists()
