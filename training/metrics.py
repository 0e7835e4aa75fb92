"""Binary classification metrics for P(malignant) predictions (numpy/sklearn).

Label 1 is malignant (melanoma), the positive class throughout: sensitivity is
the share of melanomas flagged, specificity the share of benign lesions passed.

scikit-learn is imported only by the training-side functions that need it:
the web process imports ``roc_auc`` and ``expected_calibration_error`` for the
site validation report, and its image (docs/deployment.md) has numpy only.
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = (
    "roc_auc",
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "brier",
    "ece",
)


def roc_auc(y_true, prob) -> float:
    """ROC-AUC in numpy: the chance that a random melanoma scores above a random benign lesion (ties half).

    The Mann-Whitney U statistic from average ranks, equal to sklearn's
    ``roc_auc_score`` (tests/training/test_training_metrics.py). NaN unless both classes occur.
    """
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, dtype=float)
    n_pos = int((y_true == 1).sum())
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    values, inverse, counts = np.unique(prob, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1  # 1-based rank of each distinct value's first occurrence
    average_rank = first_rank + (counts - 1) / 2.0
    rank_sum = average_rank[inverse][y_true == 1].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def expected_calibration_error(y_true, prob, n_bins: int = 10) -> float:
    """ECE of P(malignant) over ``n_bins`` equal-width probability bins.

    Sum over bins of (share of samples in bin) * |observed malignant rate -
    mean predicted probability|. Bins are [0, .1), [.1, .2), ..., [.9, 1.0];
    empty bins contribute nothing.
    """
    y_true = np.asarray(y_true, dtype=float)
    prob = np.asarray(prob, dtype=float)
    # clip so that p == 1.0 falls in the last bin rather than an 11th one
    bins = np.minimum((prob * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(y_true[mask].mean() - prob[mask].mean())
    return float(ece)


def binary_metrics(y_true, prob, threshold: float = 0.5) -> dict[str, float]:
    """All METRIC_NAMES for one set of predictions; positive iff prob >= threshold.

    Ratios with an empty denominator (e.g. precision with no positive
    predictions) are reported as 0.0; ROC-AUC is NaN when only one class is
    present.
    """
    y_true = np.asarray(y_true).astype(int).ravel()
    prob = np.asarray(prob, dtype=float).ravel()
    pred = (prob >= threshold).astype(int)
    tp = int(((pred == 1) & (y_true == 1)).sum())
    tn = int(((pred == 0) & (y_true == 0)).sum())
    fp = int(((pred == 1) & (y_true == 0)).sum())
    fn = int(((pred == 0) & (y_true == 1)).sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else 0.0

    sensitivity = ratio(tp, tp + fn)
    specificity = ratio(tn, tn + fp)
    precision = ratio(tp, tp + fp)
    return {
        "roc_auc": roc_auc(y_true, prob),
        "accuracy": ratio(tp + tn, len(y_true)),
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": precision,
        "f1": ratio(2 * precision * sensitivity, precision + sensitivity) if precision + sensitivity else 0.0,
        "brier": float(np.mean((prob - y_true) ** 2)),
        "ece": expected_calibration_error(y_true, prob),
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
    }


def youden_threshold(y_true, prob) -> float:
    """The probability cut-off maximising sensitivity + specificity - 1."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(np.asarray(y_true).astype(int), np.asarray(prob, dtype=float))
    # thresholds[0] is +inf (nothing flagged); never pick it.
    j = tpr[1:] - fpr[1:]
    return float(thresholds[1:][int(np.argmax(j))])


def summarise(per_fold: list[dict[str, float]], names=METRIC_NAMES) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (ddof=1) across folds per metric."""
    out = {}
    for name in names:
        values = np.array([fold[name] for fold in per_fold], dtype=float)
        out[name] = {
            "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        }
    return out


# How each metric is named in reports and model cards.
METRIC_LABELS = {
    "roc_auc": "ROC-AUC",
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "sensitivity": "Sensitivity (recall)",
    "specificity": "Specificity",
    "precision": "Precision (PPV)",
    "f1": "F1",
    "brier": "Brier score (lower is better)",
    "ece": "ECE, 10 bins (lower is better)",
}


def format_mean_sd(summary: dict | None, name: str) -> str:
    """``"0.966 ± 0.004"`` for ``summary[name]`` (a :func:`summarise` entry), or ``"n/a"`` if it has none."""
    if not summary or name not in summary or summary[name].get("mean") is None:
        return "n/a"
    return f"{summary[name]['mean']:.3f} ± {summary[name]['sd']:.3f}"
