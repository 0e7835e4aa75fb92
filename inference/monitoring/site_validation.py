"""The local validation report: how a model did on one clinic's biopsy-confirmed images.

The cases are the clinic's images that a model version predicted (clinical or
shadow) and whose latest review carries a histopathology result: melanoma (in
situ or invasive) is positive, benign negative; other malignancies and
non-diagnostic results are counted but left out (the model knows melanoma
only). Figures: ROC-AUC, sensitivity and specificity at the model's threshold
and of its referrals (malignant or uncertain) with Wilson intervals
(``stats.wilson_interval``), ECE, the uncertain and OOD shares, beside the
model's own cross-validated figures from its model.json. Fewer than
``MIN_PER_CLASS`` cases of either class: "too few cases to judge".
"""

from dataclasses import dataclass, field

import numpy as np
from django.db.models import OuterRef, Subquery

from cases.models import Review
from training.metrics import expected_calibration_error, roc_auc

from ..models import Prediction
from .stats import wilson_interval

MIN_PER_CLASS = 10
POSITIVE = (Review.Histopathology.MELANOMA_IN_SITU, Review.Histopathology.INVASIVE_MELANOMA)
NEGATIVE = (Review.Histopathology.BENIGN,)


@dataclass
class SiteValidation:
    version: object
    clinic: object
    n_melanoma: int = 0
    n_benign: int = 0
    n_excluded: int = 0  # other malignancy or non-diagnostic
    enough: bool = False
    figures: list = field(default_factory=list)  # (name, local value, (lo, hi) or None, model CV value)


def _latest_histopathology():
    return Subquery(
        Review.objects.filter(image=OuterRef("image"))
        .order_by("-created_at", "-pk")
        .values("histopathology_result")[:1]
    )


def _cv(metadata, key):
    site = (metadata or {}).get("site_adaptation", {}).get("cv", {})
    if key in site:
        return site[key]
    value = (metadata or {}).get("metrics", {}).get(key)
    return value.get("mean") if isinstance(value, dict) else None


def site_validation(version, clinic) -> SiteValidation:
    rows = list(
        Prediction.objects.filter(
            model_version=version, status=Prediction.Status.SUCCEEDED, image__lesion__patient__clinic=clinic
        )
        .annotate(histopathology=_latest_histopathology())
        .exclude(histopathology__isnull=True)
        .exclude(histopathology="")
        .values_list("probability_malignant", "label", "out_of_distribution", "histopathology")
    )
    report = SiteValidation(version=version, clinic=clinic)
    used = [r for r in rows if r[3] in POSITIVE or r[3] in NEGATIVE]
    report.n_excluded = len(rows) - len(used)
    y = np.array([1 if r[3] in POSITIVE else 0 for r in used], dtype=int)
    report.n_melanoma, report.n_benign = int(y.sum()), int((y == 0).sum())
    report.enough = report.n_melanoma >= MIN_PER_CLASS and report.n_benign >= MIN_PER_CLASS
    if not used:
        return report
    prob = np.array([r[0] for r in used], dtype=float)
    labels = [r[1] for r in used]
    called = prob >= float(version.threshold)
    referred = np.array([label != Prediction.Label.BENIGN for label in labels])
    meta = version.metadata

    def rate(hits, n):
        return (hits / n if n else None), wilson_interval(hits, n)

    figures = []
    if report.n_melanoma and report.n_benign:
        figures.append(("ROC-AUC", roc_auc(y, prob), None, _cv(meta, "roc_auc")))
    for name, hits, n, key in (
        ("Sensitivity at the threshold", int((called & (y == 1)).sum()), report.n_melanoma, "sensitivity"),
        ("Specificity at the threshold", int((~called & (y == 0)).sum()), report.n_benign, "specificity"),
        (
            "Referral sensitivity (uncertain referred)",
            int((referred & (y == 1)).sum()),
            report.n_melanoma,
            "referral_sensitivity",
        ),
        ("Referral specificity", int((~referred & (y == 0)).sum()), report.n_benign, "referral_specificity"),
    ):
        value, interval = rate(hits, n)
        figures.append((name, value, interval, _cv(meta, key)))
    figures.append(("ECE (10 bins)", float(expected_calibration_error(y, prob)), None, _cv(meta, "ece")))
    uncertain = sum(label == Prediction.Label.UNCERTAIN for label in labels)
    figures.append(("Uncertain share", *rate(uncertain, len(used)), None))
    ood = sum(bool(r[2]) for r in used)
    figures.append(("Out-of-distribution share", *rate(ood, len(used)), None))
    report.figures = figures
    return report
