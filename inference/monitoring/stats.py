"""How each model version performs in practice: the statistics, as plain computations.

Counts add up (``Metrics``), rates carry a Wilson 95% interval (``Rate``),
and each outcome counts by the rules below; the database queries that feed
them are in ``queries``. The definitions, also shown on the page:

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
from datetime import date

from cases.models import Review

from ..models import Prediction

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


def truth_counts(label, histopathology, n):
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


def outcome_counts(row, n):
    """What ``n`` clinical predictions add to the metrics, given their outcome in ``row``.

    ``row`` holds ``status``, ``label``, ``out_of_distribution``, ``verdict``
    (of the latest review, or None) and ``histopathology`` (``queries.OUTCOME``).
    """
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
    ) + truth_counts(row["label"], row["histopathology"], n)


def version_totals(month_rows):
    """[VersionTotal]: the month rows summed per version, in the same order."""
    totals = {}
    for row in month_rows:
        totals[row.version] = totals.get(row.version, Metrics()) + row.metrics
    return [VersionTotal(version=version, metrics=metrics) for version, metrics in totals.items()]


def shadow_comparison(shadow, active, rows):
    """A ShadowComparison from rows of paired counts: ``n``, ``label``, ``active_label``,
    ``histopathology`` and ``absolute_difference`` (summed over the ``n`` pairs)."""
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
        active_metrics += truth_counts(row["active_label"], row["histopathology"], n)
        shadow_metrics += truth_counts(row["label"], row["histopathology"], n)
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
