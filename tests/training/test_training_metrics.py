"""Metrics on hand-made examples whose answers were worked out on paper."""

import math

import numpy as np
import pytest

from training.metrics import binary_metrics, expected_calibration_error, roc_auc, summarise, youden_threshold

# 4 melanomas, 4 benign. At 0.5: TP = 3 (0.9, 0.8, 0.7), FN = 1 (0.3),
# FP = 1 (0.6), TN = 3 (0.2, 0.1, 0.4).
Y = [1, 1, 1, 0, 0, 0, 0, 1]
P = [0.9, 0.8, 0.3, 0.2, 0.6, 0.1, 0.4, 0.7]


def test_confusion_based_metrics():
    m = binary_metrics(Y, P, threshold=0.5)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 1, 3)
    for name in ("accuracy", "sensitivity", "specificity", "precision", "f1", "balanced_accuracy"):
        assert m[name] == pytest.approx(0.75), name


def test_specificity_differs_from_sensitivity_when_threshold_moves():
    # At 0.65 the 0.6 benign is passed (specificity 4/4) and 0.3 still missed
    # (sensitivity 3/4); precision 3/3.
    m = binary_metrics(Y, P, threshold=0.65)
    assert m["specificity"] == pytest.approx(1.0)
    assert m["sensitivity"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(7 / 8)
    assert m["f1"] == pytest.approx(2 * 0.75 / 1.75)


def test_threshold_free_metrics():
    m = binary_metrics(Y, P)
    # 16 malignant/benign pairs; only 0.3 < 0.6 and 0.3 < 0.4 are misordered.
    assert m["roc_auc"] == pytest.approx(14 / 16)
    # squared errors .01 .04 .49 .04 .36 .01 .16 .09 sum to 1.2
    assert m["brier"] == pytest.approx(1.2 / 8)
    # one sample per bin, so ECE is the mean |y - p| = 2.6 / 8
    assert m["ece"] == pytest.approx(2.6 / 8)


def test_ece_with_shared_bins():
    # bin [0, .1): 4 samples, 1 malignant -> |0.25 - 0.05| * 4/6
    # bin [.9, 1]: 2 samples, both malignant -> |1 - 0.95| * 2/6
    y = [0, 0, 0, 1, 1, 1]
    p = [0.05, 0.05, 0.05, 0.05, 0.95, 0.95]
    assert expected_calibration_error(y, p) == pytest.approx(0.8 / 6 + 0.1 / 6)


def test_ece_perfectly_calibrated_and_probability_one():
    assert expected_calibration_error([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.0)
    # p == 1.0 belongs to the last bin, not an eleventh
    assert expected_calibration_error([1, 1], [1.0, 1.0]) == pytest.approx(0.0)


def test_empty_denominators_and_single_class():
    m = binary_metrics([0, 0, 1], [0.1, 0.2, 0.3], threshold=0.9)
    assert m["precision"] == 0.0 and m["sensitivity"] == 0.0 and m["f1"] == 0.0
    assert m["specificity"] == 1.0
    assert math.isnan(binary_metrics([1, 1], [0.2, 0.8])["roc_auc"])


def test_youden_threshold_separable():
    assert youden_threshold([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.5, 0.7, 0.9]) == pytest.approx(0.5)


def test_summary_mean_and_sample_sd():
    s = summarise([{"roc_auc": 1.0}, {"roc_auc": 2.0}, {"roc_auc": 3.0}], names=("roc_auc",))
    assert s["roc_auc"] == {"mean": pytest.approx(2.0), "sd": pytest.approx(1.0)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_roc_auc_equals_sklearns_with_ties(seed):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=200)
    prob = np.round(rng.random(200) * 0.6 + 0.3 * y, 1)  # rounded: many ties, within and across classes
    assert roc_auc(y, prob) == pytest.approx(roc_auc_score(y, prob), abs=1e-12)


def test_numpy_roc_auc_counts_a_tie_as_half_and_needs_both_classes():
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert roc_auc([0, 0, 1], [0.1, 0.9, 0.9]) == 0.75
    assert math.isnan(roc_auc([0, 0], [0.1, 0.2]))
