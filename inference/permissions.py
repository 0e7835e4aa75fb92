"""Who may see and act on predictions: the clinical scopes of ``cases.permissions``, applied to predictions.

A prediction (and its heatmap) shows the patient's image, so it has the
image's scope. Shadow-model predictions are for admins comparing models,
never for clinicians: to them such a row does not exist.
"""

from cases.permissions import clinics_administered_by, get_or_404, is_ml_admin, visible_clinic_ids

from .models import Prediction


def predictions_visible_to(user):
    return Prediction.objects.clinical().filter(image__lesion__patient__clinic__in=visible_clinic_ids(user))


def get_prediction_or_404(user, pk):
    return get_or_404(predictions_visible_to(user), pk)


def can_act_on_predictions_in_admin(user, predictions):
    """Re-run or flag predictions: ML admins any, clinic admins only their own clinics' images."""
    if is_ml_admin(user):
        return True
    if not user.is_authenticated or not user.is_active:
        return False
    ids = [prediction.pk for prediction in predictions]
    outside = Prediction.objects.filter(pk__in=ids).exclude(
        image__lesion__patient__clinic__in=clinics_administered_by(user)
    )
    return not outside.exists()
