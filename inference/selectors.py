"""Reads that show predictions beside the clinical record, for the portal and the API.

"The prediction a clinician sees" is defined here and only here: the newest
prediction of an image that is not a shadow model's. Every read starts from
``cases.permissions``.
"""

from django.db.models import (
    Case,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    Min,
    OuterRef,
    Prefetch,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from cases import permissions
from cases.models import Lesion, LesionImage, Review

from .models import Prediction


def clinical_predictions():
    """Predictions a clinician may see, newest first: never a shadow model's."""
    return Prediction.objects.clinical().select_related("model_version").order_by("-queued_at")


def recent_images_for(user, *, limit=50):
    """The latest images in ``user``'s clinics, each with its predictions."""
    return (
        permissions.images_visible_to(user)
        .select_related("lesion__patient")
        .prefetch_related(clinical_predictions_prefetch())
        .order_by("-uploaded_at")[:limit]
    )


def _latest_prediction():
    return Prediction.objects.clinical().filter(image=OuterRef("pk")).order_by("-queued_at")


def clinical_predictions_prefetch():
    """Prefetch an image's clinical predictions into ``image.predictions.all()``, newest first."""
    return Prefetch("predictions", queryset=clinical_predictions())


def latest_clinical_prediction(image):
    """The prediction a clinician sees for ``image`` (None before any is requested).

    Reads the prefetched list when ``clinical_predictions_prefetch`` was used
    (no query), else asks the database once.
    """
    cache = getattr(image, "_prefetched_objects_cache", {})
    if "predictions" in cache:
        predictions = list(image.predictions.all())
        return predictions[0] if predictions else None
    return clinical_predictions().filter(image=image).first()


# Worklist order as one number per prediction: its band times two, minus its
# probability of melanoma, so one correlated subquery both bands and ranks.
# Bands: malignant 0, uncertain 1, no label yet (pending, running, failed) 2,
# benign 3; an image without any prediction sorts with the unlabelled.
_BAND = Case(
    When(label=Prediction.Label.MALIGNANT, then=Value(0.0)),
    When(label=Prediction.Label.UNCERTAIN, then=Value(2.0)),
    When(label=Prediction.Label.BENIGN, then=Value(6.0)),
    default=Value(4.0),
    output_field=FloatField(),
)
_NO_PREDICTION_KEY = 5.0


def _latest_prediction_has(**fields):
    """The image's latest prediction matches ``fields`` (a semi-join the planner estimates well)."""
    clinical = Prediction.objects.clinical()
    newer = clinical.filter(image=OuterRef("image"), queued_at__gt=OuterRef("queued_at"))
    return Exists(clinical.filter(image=OuterRef("pk"), **fields).filter(~Exists(newer)))


# The earlier images the intake duplicate check named, as their warnings word them (one join, not a query per row).
INTAKE_MATCHES = ("duplicate_of__lesion", "possible_wrong_patient_of__lesion__patient")


def worklist_for(user, *, status="", risk="", clinic=None, uploaded_from=None, uploaded_to=None):
    """Images in ``user``'s clinics that nobody has reviewed yet, highest risk first.

    Malignant, then uncertain, then images still without a label (pending,
    running, failed, no model), then benign; within a band by probability of
    melanoma (highest first), then oldest upload first. Everything is read
    from each image's latest prediction.
    """
    latest = _latest_prediction()
    images = permissions.images_visible_to(user).filter(~Exists(Review.objects.filter(image=OuterRef("pk"))))
    if status == "none":
        images = images.filter(~Exists(Prediction.objects.clinical().filter(image=OuterRef("pk"))))
    elif status:
        images = images.filter(_latest_prediction_has(status=status))
    if risk:
        images = images.filter(_latest_prediction_has(label=risk))
    if clinic is not None:
        images = images.filter(lesion__patient__clinic=clinic)
    if uploaded_from:
        images = images.filter(uploaded_at__date__gte=uploaded_from)
    if uploaded_to:
        images = images.filter(uploaded_at__date__lte=uploaded_to)
    sort_key = latest.annotate(
        key=ExpressionWrapper(_BAND + Value(1.0) - Coalesce(F("probability_malignant"), Value(0.0)), FloatField())
    ).values("key")[:1]
    return (
        images.annotate(risk_key=Coalesce(Subquery(sort_key, output_field=FloatField()), Value(_NO_PREDICTION_KEY)))
        .select_related("lesion__patient__clinic", *INTAKE_MATCHES)
        .prefetch_related(clinical_predictions_prefetch())
        .order_by("risk_key", "uploaded_at", "pk")
    )


def next_in_worklist(user, *, after):
    """The worklist item after image ``after`` (in worklist order), else the top of the worklist.

    A reviewed image has left the worklist, so after a review this is the
    first image still waiting; None when nothing else waits.
    """
    worklist = worklist_for(user).exclude(pk=after.pk)
    current = worklist_for(user).filter(pk=after.pk).values("risk_key", "uploaded_at").first()
    if current is not None:
        key, uploaded = current["risk_key"], current["uploaded_at"]
        later = worklist.filter(
            Q(risk_key__gt=key)
            | Q(risk_key=key, uploaded_at__gt=uploaded)
            | Q(risk_key=key, uploaded_at=uploaded, pk__gt=after.pk)
        ).first()
        if later is not None:
            return later
    return worklist.first()


def worklist_counts(user):
    """How many unreviewed images per risk band (one query)."""
    latest = _latest_prediction()
    rows = (
        permissions.images_visible_to(user)
        .filter(~Exists(Review.objects.filter(image=OuterRef("pk"))))
        .annotate(prediction_label=Subquery(latest.values("label")[:1]))
        .values("prediction_label")
        .annotate(n=Count("pk"))
    )
    counts = {"malignant": 0, "uncertain": 0, "benign": 0, "unlabelled": 0}
    for row in rows:
        counts[row["prediction_label"] or "unlabelled"] += row["n"]
    counts["total"] = sum(counts.values())
    return counts


def lesions_of(patient):
    """A patient's lesions with their images (by capture date), predictions and reviews.

    ``first_captured_at`` is the earliest capture date of a lesion's images
    (None without images): a lesion is followed "since" then, not since the
    day it was entered.
    """
    return (
        Lesion.objects.filter(patient=patient)
        .annotate(first_captured_at=Min("images__captured_at"))
        .prefetch_related(
            Prefetch(
                "images",
                queryset=LesionImage.objects.order_by("captured_at", "uploaded_at")
                .select_related(*INTAKE_MATCHES)
                .prefetch_related(
                    clinical_predictions_prefetch(),
                    Prefetch("reviews", queryset=Review.objects.select_related("reviewer").order_by("created_at")),
                ),
            )
        )
        .order_by("created_at")
    )
