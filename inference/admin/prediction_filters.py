"""The prediction review's list filters: probability band, shadow, reviewed, disagreement, failed."""

from django.contrib import admin
from django.db.models import Exists, OuterRef, Q

from cases.models import Review

from ..models import Prediction

# Probability of melanoma in bands: (key, label, lower bound or None, upper bound or None), upper exclusive.
PROBABILITY_BANDS = [
    ("lt20", "< 0.2", None, 0.2),
    ("20to50", "0.2 – 0.5", 0.2, 0.5),
    ("50to80", "0.5 – 0.8", 0.5, 0.8),
    ("ge80", "≥ 0.8", 0.8, None),
]


class ProbabilityBandFilter(admin.SimpleListFilter):
    title = "probability of melanoma"
    parameter_name = "probability"

    def lookups(self, request, model_admin):
        return [(key, label) for key, label, _low, _high in PROBABILITY_BANDS]

    def queryset(self, request, queryset):
        for key, _label, low, high in PROBABILITY_BANDS:
            if self.value() == key:
                if low is not None:
                    queryset = queryset.filter(probability_malignant__gte=low)
                if high is not None:
                    queryset = queryset.filter(probability_malignant__lt=high)
                return queryset
        return queryset


class YesNoFilter(admin.SimpleListFilter):
    """A filter with "Yes" and "No" whose condition is ``condition()``."""

    yes_label = "Yes"
    no_label = "No"

    def condition(self):
        raise NotImplementedError

    def lookups(self, request, model_admin):
        return [("yes", self.yes_label), ("no", self.no_label)]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(self.condition())
        if self.value() == "no":
            return queryset.exclude(self.condition())
        return queryset


class ShadowFilter(YesNoFilter):
    title = "shown to clinicians"
    parameter_name = "clinical"
    yes_label = "Clinical (shown to clinicians)"
    no_label = "Shadow model (hidden)"

    def condition(self):
        return Q(is_shadow=False)


class ReviewedFilter(YesNoFilter):
    title = "reviewed by a clinician"
    parameter_name = "reviewed"
    yes_label = "Reviewed"
    no_label = "Not reviewed"

    def condition(self):
        return Q(Exists(Review.objects.filter(image=OuterRef("image"))))


class DisagreementFilter(YesNoFilter):
    title = "clinician disagreed"
    parameter_name = "disagreement"
    yes_label = "A clinician disagreed"
    no_label = "No disagreement"

    def condition(self):
        return Q(Exists(Review.objects.filter(image=OuterRef("image"), verdict=Review.Verdict.DISAGREE)))


class FailedFilter(YesNoFilter):
    title = "failed"
    parameter_name = "failed"

    def condition(self):
        return Q(status=Prediction.Status.FAILED)
