"""Temperature scaling, threshold and uncertainty band (synthetic data, no TF)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training import calibration
from training.metrics import binary_metrics, expected_calibration_error


def synthetic(n=4000, seed=0, overconfidence=3.0):
    """Labels drawn from a true logit; the 'model' reports that logit x3 (overconfident)."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(0, 2.0, n)
    y = (rng.random(n) < calibration.sigmoid(true_logit)).astype(int)
    return true_logit * overconfidence, y


def test_temperature_recovers_overconfidence_and_reduces_ece():
    logits, y = synthetic()
    t = calibration.fit_temperature(logits, y)
    assert 2.4 < t < 3.6
    before = expected_calibration_error(y, calibration.sigmoid(logits))
    after = expected_calibration_error(y, calibration.apply_temperature(logits, t))
    assert after < before / 2
    assert calibration.nll(logits, y, t) < calibration.nll(logits, y)


def test_temperature_keeps_ranking():
    logits, y = synthetic(seed=1)
    t = calibration.fit_temperature(logits, y)
    p0 = calibration.sigmoid(logits)
    p1 = calibration.apply_temperature(logits, t)
    assert np.array_equal(np.argsort(p0, kind="stable"), np.argsort(p1, kind="stable"))


@pytest.mark.parametrize("floor", [0.8, 0.9, 0.95])
def test_threshold_meets_sensitivity_floor_and_is_the_highest_such(floor):
    logits, y = synthetic(seed=2, overconfidence=1.0)
    prob = calibration.sigmoid(logits)
    t = calibration.choose_threshold(y, prob, floor)
    assert binary_metrics(y, prob, t)["sensitivity"] >= floor
    # any higher threshold (next larger malignant score) breaks the floor
    higher = np.sort(prob[(y == 1) & (prob > t)])
    if len(higher):
        assert binary_metrics(y, prob, higher[0])["sensitivity"] < floor


def test_band_contains_threshold_and_meets_targets_when_possible():
    logits, y = synthetic(seed=3, overconfidence=1.0)
    prob = calibration.sigmoid(logits)
    t = calibration.choose_threshold(y, prob, 0.9)
    band = calibration.choose_band(y, prob, t, 0.9, 0.9, max_share=0.6)
    assert band["lo"] <= t < band["hi"]
    assert band["targets_met"]
    assert band["sensitivity_outside"] >= 0.9 and band["specificity_outside"] >= 0.9
    assert band["share_in_band"] <= 0.6
    rates = calibration.band_rates(y, prob, band["lo"], band["hi"])
    assert rates["share_in_band"] == pytest.approx(band["share_in_band"])


def test_band_respects_share_cap_when_targets_unreachable():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 2000)
    prob = rng.random(2000)  # uninformative scores
    t = calibration.choose_threshold(y, prob, 0.9)
    band = calibration.choose_band(y, prob, t, 0.99, 0.99, max_share=0.15)
    assert band["lo"] <= t < band["hi"]
    assert not band["targets_met"]
    assert band["share_in_band"] <= 0.15 + 1e-9


def separable(n=4000, seed=5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, np.where(y == 1, rng.beta(6, 2, n), rng.beta(2, 6, n))


def test_a_referral_specificity_floor_raises_the_lower_edge():
    y, prob = separable()
    t = calibration.choose_threshold(y, prob, 0.9)
    free = calibration.choose_band(y, prob, t, 0.97, 0.97, max_share=0.3)
    floor = free["referral_specificity"] + 0.05
    held = calibration.choose_band(y, prob, t, 0.97, 0.97, max_share=0.3, min_referral_specificity=floor)
    assert free["targets_met"] and not held["targets_met"]  # the floor wins over the outside targets
    assert held["lo"] > free["lo"] and held["lo"] <= t < held["hi"]
    assert held["referral_specificity"] >= floor
    # referral = malignant or uncertain: the rates are those of p >= lo
    benign, melanoma = prob[y == 0], prob[y == 1]
    assert held["referral_specificity"] == pytest.approx((benign < held["lo"]).mean())
    assert held["referral_sensitivity"] == pytest.approx((melanoma >= held["lo"]).mean())
    assert held["referral_sensitivity"] >= (melanoma >= t).mean()


def test_an_unreachable_referral_floor_is_ignored_not_fatal():
    y, prob = separable(seed=6)
    t = calibration.choose_threshold(y, prob, 0.9)
    plain = calibration.choose_band(y, prob, t, 0.9, 0.9, max_share=0.3)
    # lo <= t, so no band refers fewer benign lesions than the threshold itself does
    impossible = calibration.choose_band(y, prob, t, 0.9, 0.9, max_share=0.3, min_referral_specificity=1.0)
    assert (impossible["lo"], impossible["hi"]) == (plain["lo"], plain["hi"])


def test_a_band_exists_when_melanoma_scores_saturate_at_one():
    # Well-separated cases: the calibrated melanoma scores are exactly 1.0, and so is the threshold.
    y = np.array([0] * 8 + [1] * 4)
    prob = np.array([0.01 * i for i in range(8)] + [1.0] * 4)
    threshold = calibration.choose_threshold(y, prob, 0.9)
    assert threshold == 1.0
    band = calibration.choose_band(y, prob, threshold)
    assert band["lo"] <= threshold < band["hi"]


def test_the_site_adaptation_minimums_import_without_scipy():
    # The admin's site-adaptation form (web process) reads training.adapt's case minimums; the runtime
    # image has no scipy (requirements/runtime.txt), so this chain must not import it.
    code = "import sys, training.adapt; print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))"
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_nested_band_rates_choose_on_other_folds_and_score_the_held_out_one():
    y, prob = separable(seed=7)
    folds = np.arange(len(y)) % 4
    nested = calibration.nested_band_rates(
        y, prob, folds, 0.9, target_sensitivity=0.95, target_specificity=0.95, max_share=0.2
    )
    assert [r["fold"] for r in nested] == [0, 1, 2, 3]
    for r in nested:
        held = folds == r["fold"]
        t = calibration.choose_threshold(y[~held], prob[~held], 0.9)
        band = calibration.choose_band(y[~held], prob[~held], t, 0.95, 0.95, 0.2)
        assert (r["lo"], r["hi"]) == (band["lo"], band["hi"])
        assert r["referral_specificity"] == pytest.approx((prob[held & (y == 0)] < r["lo"]).mean())
    summary = calibration.with_nested({"lo": 0.1}, nested)["nested"]
    assert summary["referral_sensitivity"] == pytest.approx(np.mean([r["referral_sensitivity"] for r in nested]))
