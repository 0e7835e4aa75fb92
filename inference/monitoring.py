"""How each model version performs in practice: read-only selectors for the monitoring page.

Every number is counted by the database (a few grouped aggregate queries);
Python only adds counts up and turns them into rates. The definitions, also
shown on the page:

- **Rows** are clinical (non-shadow) predictions, grouped by model version and
  by the UTC month in which the prediction was queued. Counts: predictions,
  succeeded, failed, abstained (label uncertain), flagged out of distribution.
- **Agreement**: among succeeded predictions that a clinician reviewed
  (``Review.prediction`` is the prediction the clinician saw; of several
  reviews the latest counts), the share with verdict "agree".
- **Histopathology** is a fact about the imaged lesion, so it is read per
  image: the latest review of the image that records a result. Melanoma in
  situ and invasive melanoma are positive, benign is negative; other
  malignancies, non-diagnostic and no result are left out.
  Sensitivity = labelled malignant among positives; specificity = labelled
  benign among negatives. Uncertain predictions are abstentions: left out of
  both and counted separately. Rates come with a Wilson 95% interval.
- **Fitzpatrick**: the same metrics per model version and skin type of the
  patient (I–VI, or not recorded).
- **Active vs shadow**: each succeeded shadow prediction is paired with the
  image's clinical prediction nearest in time (``request_prediction`` makes
  the two together, so that is the one made by the version active then);
  pairs count only when both succeeded.
"""

import math
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime

from django.db.models import Count, F, FloatField, OuterRef, Q, Subquery, Sum, UUIDField
from django.db.models.functions import Abs, Coalesce, TruncMonth

from cases.models import Patient, Review

from .models import ModelVersion, Prediction

Label = Prediction.Label
Histopathology = Review.Histopathology

POSITIVE_RESULTS = (Histopathology.MELANOMA_IN_SITU, Histopathology.INVASIVE_MELANOMA)
NEGATIVE_RESULTS = (Histopathology.BENIGN,)
LABELS = (Label.BENIGN, Label.MALIGNANT, Label.UNCERTAIN)

# 95% two-sided normal quantile.
Z_95 = 1.959963984540054


def wilson_interval(hits, n, z=Z_95):
    """The Wilson score interval for ``hits`` out of ``n``; None when n is 0.

    Unlike the normal approximation it stays inside [0, 1] and is honest at
    the small n a clinic sees in a month.
    """
    if n <= 0:
        return None
    p = hits / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


@dataclass(frozen=True)
class Rate:
    """``hits`` out of ``n``, with its Wilson 95% interval."""

    hits: int
    n: int

    @property
    def value(self):
        return self.hits / self.n if self.n else None

    @property
    def interval(self):
        return wilson_interval(self.hits, self.n)

    @property
    def percent(self):
        return "—" if self.value is None else f"{100 * self.value:.1f}%"

    @property
    def interval_text(self):
        if self.interval is None:
            return ""
        low, high = self.interval
        return f"{100 * low:.1f}–{100 * high:.1f}%"


@dataclass(frozen=True)
class Metrics:
    """Counts for one group of clinical predictions; counts add up, so groups can be summed."""

    predictions: int = 0
    succeeded: int = 0
    failed: int = 0
    abstained: int = 0
    out_of_distribution: int = 0
    reviewed: int = 0
    agreed: int = 0
    # Decisive (benign or malignant) predictions on images with a positive
    # or negative histopathology result; abstentions on them apart.
    positives: int = 0
    true_positives: int = 0
    positives_abstained: int = 0
    negatives: int = 0
    true_negatives: int = 0
    negatives_abstained: int = 0

    def __add__(self, other):
        return Metrics(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def agreement(self):
        return Rate(self.agreed, self.reviewed)

    @property
    def sensitivity(self):
        return Rate(self.true_positives, self.positives)

    @property
    def specificity(self):
        return Rate(self.true_negatives, self.negatives)

    @property
    def in_progress(self):
        """Pending or running: neither succeeded nor failed yet."""
        return self.predictions - self.succeeded - self.failed

    @property
    def decisive(self):
        """Succeeded with a benign or malignant label."""
        return self.succeeded - self.abstained


@dataclass(frozen=True)
class VersionRef:
    id: object
    label: str
    is_active: bool
    is_shadow: bool


@dataclass(frozen=True)
class MonthRow:
    version: VersionRef
    month: date
    metrics: Metrics


@dataclass(frozen=True)
class VersionTotal:
    version: VersionRef
    metrics: Metrics


@dataclass(frozen=True)
class SkinTypeRow:
    version: VersionRef
    skin_type: int | None
    skin_type_label: str
    metrics: Metrics


@dataclass(frozen=True)
class ShadowComparison:
    """A shadow version against the active version on the images both predicted."""

    shadow: VersionRef
    active: VersionRef
    paired: int
    labels_agreed: int
    mean_absolute_difference: float | None
    # cross_table[active_label][shadow_label] = number of images, for every label in LABELS.
    cross_table: dict
    # Each model's counts against histopathology on the same paired images.
    active_metrics: Metrics
    shadow_metrics: Metrics

    @property
    def label_agreement(self):
        return Rate(self.labels_agreed, self.paired)


@dataclass(frozen=True)
class MonitoringReport:
    months: list = field(default_factory=list)  # [MonthRow], by version then month
    versions: list = field(default_factory=list)  # [VersionTotal], the months summed
    skin_types: list = field(default_factory=list)  # [SkinTypeRow], by version then type
    shadow: list = field(default_factory=list)  # [ShadowComparison]

    @property
    def is_empty(self):
        return not (self.months or self.shadow)


def _latest_verdict():
    return Subquery(
        Review.objects.filter(prediction=OuterRef("pk")).order_by("-created_at", "-pk").values("verdict")[:1]
    )


def _histopathology():
    return Subquery(
        Review.objects.filter(image=OuterRef("image"))
        .exclude(histopathology_result="")
        .order_by("-created_at", "-pk")
        .values("histopathology_result")[:1]
    )


# What decides a prediction's contribution to every metric. Grouping by these
# (plus the row key) lets the database count, and runs each correlated
# subquery once per prediction rather than once per metric.
OUTCOME = ("status", "label", "out_of_distribution", "verdict", "histopathology")


def _truth_counts(label, histopathology, n):
    """What ``n`` succeeded predictions labelled ``label`` add against the image's histopathology."""
    if histopathology in POSITIVE_RESULTS:
        if label == Label.UNCERTAIN:
            return Metrics(positives_abstained=n)
        return Metrics(positives=n, true_positives=n if label == Label.MALIGNANT else 0)
    if histopathology in NEGATIVE_RESULTS:
        if label == Label.UNCERTAIN:
            return Metrics(negatives_abstained=n)
        return Metrics(negatives=n, true_negatives=n if label == Label.BENIGN else 0)
    return Metrics()


def _outcome_counts(row, n):
    """What ``n`` clinical predictions with the OUTCOME values of ``row`` add to the metrics."""
    if row["status"] == Prediction.Status.FAILED:
        return Metrics(predictions=n, failed=n)
    if row["status"] != Prediction.Status.SUCCEEDED:
        return Metrics(predictions=n)
    reviewed = row["verdict"] is not None
    return Metrics(
        predictions=n,
        succeeded=n,
        abstained=n if row["label"] == Label.UNCERTAIN else 0,
        out_of_distribution=n if row["out_of_distribution"] else 0,
        reviewed=n if reviewed else 0,
        agreed=n if row["verdict"] == Review.Verdict.AGREE else 0,
    ) + _truth_counts(row["label"], row["histopathology"], n)


def _grouped_metrics(queryset, key):
    """{key values: Metrics} for ``queryset`` grouped by the ``key`` fields. One query."""
    rows = queryset.values(*key, *OUTCOME).annotate(n=Count("pk")).order_by()
    grouped = {}
    for row in rows:
        group = tuple(row[name] for name in key)
        grouped[group] = grouped.get(group, Metrics()) + _outcome_counts(row, row["n"])
    return grouped


def _month_bounds(queryset, *, start, end):
    # Months are UTC months, whatever the site's time zone.
    if start is not None:
        queryset = queryset.filter(queued_at__gte=_month_start(start))
    if end is not None:
        queryset = queryset.filter(queued_at__lt=_month_start(_next_month(end)))
    return queryset


def _month_start(day):
    return datetime(day.year, day.month, 1, tzinfo=UTC)


def _next_month(day):
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def clinical_predictions_for_monitoring(*, start=None, end=None, clinic=None, model_version=None):
    """Clinical predictions within the filters, annotated with ``verdict`` and ``histopathology``.

    ``start`` and ``end`` are dates whose month bounds the range (both
    inclusive, UTC months of ``queued_at``); ``clinic`` and ``model_version``
    are rows or None for all.
    """
    queryset = Prediction.objects.clinical()
    queryset = _month_bounds(queryset, start=start, end=end)
    if clinic is not None:
        queryset = queryset.filter(image__lesion__patient__clinic=clinic)
    if model_version is not None:
        queryset = queryset.filter(model_version=model_version)
    return queryset.annotate(verdict=_latest_verdict(), histopathology=_histopathology())


def _versions(ids):
    rows = ModelVersion.objects.filter(pk__in=set(ids)).order_by("created_at", "name", "version")
    return {
        row.pk: VersionRef(id=row.pk, label=row.label, is_active=row.is_active, is_shadow=row.is_shadow) for row in rows
    }


def _version_order(versions):
    return {pk: index for index, pk in enumerate(versions)}


def monthly_metrics(**filters):
    """[MonthRow] per model version and UTC month, oldest version and month first. One query (plus versions)."""
    grouped = _grouped_metrics(
        clinical_predictions_for_monitoring(**filters).annotate(month=TruncMonth("queued_at", tzinfo=UTC)),
        ("model_version", "month"),
    )
    versions = _versions(version for version, _ in grouped)
    order = _version_order(versions)
    return [
        MonthRow(version=versions[version], month=month.date(), metrics=metrics)
        for (version, month), metrics in sorted(grouped.items(), key=lambda item: (order[item[0][0]], item[0][1]))
    ]


def version_totals(month_rows):
    """[VersionTotal]: the month rows summed per version, in the same order."""
    totals = {}
    for row in month_rows:
        totals[row.version] = totals.get(row.version, Metrics()) + row.metrics
    return [VersionTotal(version=version, metrics=metrics) for version, metrics in totals.items()]


def skin_type_metrics(**filters):
    """[SkinTypeRow] per model version and patient Fitzpatrick type (None: not recorded). One query (plus versions)."""
    grouped = _grouped_metrics(
        clinical_predictions_for_monitoring(**filters).annotate(
            skin_type=F("image__lesion__patient__fitzpatrick_skin_type")
        ),
        ("model_version", "skin_type"),
    )
    versions = _versions(version for version, _ in grouped)
    order = _version_order(versions)
    names = dict(Patient.Fitzpatrick.choices)

    def position(item):
        (version, skin_type), _ = item
        # Types I–VI in order, "not recorded" last.
        return order[version], skin_type is None, skin_type or 0

    return [
        SkinTypeRow(
            version=versions[version],
            skin_type=skin_type,
            skin_type_label=names.get(skin_type, "Not recorded"),
            metrics=metrics,
        )
        for (version, skin_type), metrics in sorted(grouped.items(), key=position)
    ]


def _paired_clinical():
    """The clinical prediction of the same image made with the shadow one.

    request_prediction creates both in one go, active model first: take the
    latest clinical prediction queued no later than the shadow one, or, if
    there is none (the clinical one was re-run later), the earliest after it.
    Plain comparisons of ``queued_at``, no date arithmetic, so that the query
    is the same on PostgreSQL and SQLite.
    """
    clinical = Prediction.objects.clinical().filter(image=OuterRef("image"))
    before = clinical.filter(queued_at__lte=OuterRef("queued_at")).order_by("-queued_at", "-pk")
    after = clinical.filter(queued_at__gt=OuterRef("queued_at")).order_by("queued_at", "pk")
    paired_id = Coalesce(Subquery(before.values("pk")[:1]), Subquery(after.values("pk")[:1]))
    return paired_id, Prediction.objects.filter(pk=OuterRef("paired_id"))


def shadow_comparisons(*, start=None, end=None, clinic=None, model_version=None):
    """[ShadowComparison] per (shadow version, active version), over succeeded pairs. One query (plus versions).

    The month range applies to the shadow prediction's ``queued_at``; a
    ``model_version`` keeps the comparisons in which it takes either side.
    """
    paired_id, paired = _paired_clinical()
    queryset = Prediction.objects.filter(is_shadow=True, status=Prediction.Status.SUCCEEDED)
    queryset = _month_bounds(queryset, start=start, end=end)
    if clinic is not None:
        queryset = queryset.filter(image__lesion__patient__clinic=clinic)
    queryset = (
        queryset.annotate(paired_id=paired_id)
        .annotate(
            # UUIDField, not the foreign key: SQLite returns a subquery's UUID as
            # bare hex otherwise, which would match no version.
            active_version=Subquery(paired.values("model_version")[:1], output_field=UUIDField()),
            active_status=Subquery(paired.values("status")[:1]),
            active_label=Subquery(paired.values("label")[:1]),
            active_probability=Subquery(paired.values("probability_malignant")[:1], output_field=FloatField()),
            histopathology=_histopathology(),
        )
        .filter(active_status=Prediction.Status.SUCCEEDED)
    )
    if model_version is not None:
        queryset = queryset.filter(Q(model_version=model_version) | Q(active_version=model_version.pk))
    rows = (
        queryset.values("model_version", "active_version", "label", "active_label", "histopathology")
        .annotate(
            n=Count("pk"),
            absolute_difference=Sum(Abs(F("probability_malignant") - F("active_probability"))),
        )
        .order_by()
    )
    groups = {}
    for row in rows:
        groups.setdefault((row["model_version"], row["active_version"]), []).append(row)
    versions = _versions(pk for pair in groups for pk in pair)
    order = _version_order(versions)
    return [
        _comparison(versions[shadow], versions[active], group_rows)
        for (shadow, active), group_rows in sorted(groups.items(), key=lambda item: tuple(map(order.get, item[0])))
    ]


def _comparison(shadow, active, rows):
    cross_table = {active_label: dict.fromkeys(LABELS, 0) for active_label in LABELS}
    paired = agreed = 0
    absolute_difference = 0.0
    active_metrics = shadow_metrics = Metrics()
    for row in rows:
        n = row["n"]
        paired += n
        if row["label"] == row["active_label"]:
            agreed += n
        absolute_difference += row["absolute_difference"] or 0.0
        if row["active_label"] in cross_table and row["label"] in cross_table:
            cross_table[row["active_label"]][row["label"]] += n
        active_metrics += _truth_counts(row["active_label"], row["histopathology"], n)
        shadow_metrics += _truth_counts(row["label"], row["histopathology"], n)
    return ShadowComparison(
        shadow=shadow,
        active=active,
        paired=paired,
        labels_agreed=agreed,
        mean_absolute_difference=absolute_difference / paired if paired else None,
        cross_table=cross_table,
        active_metrics=active_metrics,
        shadow_metrics=shadow_metrics,
    )


def monitoring_report(*, start=None, end=None, clinic=None, model_version=None):
    """Everything the monitoring page shows, for the given filters. A fixed number of queries."""
    filters = {"start": start, "end": end, "clinic": clinic, "model_version": model_version}
    months = monthly_metrics(**filters)
    return MonitoringReport(
        months=months,
        versions=version_totals(months),
        skin_types=skin_type_metrics(**filters),
        shadow=shadow_comparisons(**filters),
    )
