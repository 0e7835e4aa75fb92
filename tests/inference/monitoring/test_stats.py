"""The monitoring statistics as plain computations: Wilson intervals, rates and the counting rules."""

import pytest

from cases.models import Review
from inference.models import Prediction
from inference.monitoring import Metrics, Rate, wilson_interval
from inference.monitoring.stats import outcome_counts, shadow_comparison, truth_counts


def test_it_gives_wilson_intervals_where_there_is_data():
    assert wilson_interval(0, 0) is None
    assert wilson_interval(2, 3) == pytest.approx((0.2077, 0.9385), abs=1e-4)
    assert wilson_interval(1, 2) == pytest.approx((0.0945, 0.9055), abs=1e-4)
    assert wilson_interval(0, 1) == pytest.approx((0.0, 0.7935), abs=1e-4)
    assert Metrics(positives=3, true_positives=2).sensitivity.interval_text == "20.8–93.9%"
    assert Metrics().sensitivity.percent == "—"


def test_a_rate_without_cases_has_no_value_and_no_interval():
    empty = Rate(0, 0)
    assert (empty.value, empty.interval, empty.percent, empty.interval_text) == (None, None, "—", "")
    assert Rate(3, 4).percent == "75.0%"


def test_metrics_add_up_field_by_field():
    total = Metrics(predictions=3, succeeded=2, failed=1, abstained=1) + Metrics(predictions=2, succeeded=1)
    assert total == Metrics(predictions=5, succeeded=3, failed=1, abstained=1)
    assert (total.in_progress, total.decisive) == (1, 2)


H = Review.Histopathology
MAL, BEN, UNC = Prediction.Label.MALIGNANT, Prediction.Label.BENIGN, Prediction.Label.UNCERTAIN


@pytest.mark.parametrize(
    "label, histopathology, expected",
    [
        (MAL, H.INVASIVE_MELANOMA, Metrics(positives=2, true_positives=2)),
        (BEN, H.MELANOMA_IN_SITU, Metrics(positives=2)),
        (UNC, H.INVASIVE_MELANOMA, Metrics(positives_abstained=2)),
        (BEN, H.BENIGN, Metrics(negatives=2, true_negatives=2)),
        (MAL, H.BENIGN, Metrics(negatives=2)),
        (UNC, H.BENIGN, Metrics(negatives_abstained=2)),
        (MAL, H.OTHER_MALIGNANT, Metrics()),
        (MAL, None, Metrics()),
    ],
)
def test_histopathology_counts_positives_negatives_and_abstentions(label, histopathology, expected):
    assert truth_counts(label, histopathology, 2) == expected


def outcome(status="succeeded", label=BEN, ood=False, verdict=None, histopathology=None):
    return {
        "status": status,
        "label": label,
        "out_of_distribution": ood,
        "verdict": verdict,
        "histopathology": histopathology,
    }


def test_each_outcome_adds_its_counts():
    assert outcome_counts(outcome(status="failed", label=""), 3) == Metrics(predictions=3, failed=3)
    assert outcome_counts(outcome(status="pending", label=""), 3) == Metrics(predictions=3)
    assert outcome_counts(outcome(label=UNC, ood=True), 1) == Metrics(
        predictions=1, succeeded=1, abstained=1, out_of_distribution=1
    )
    reviewed = outcome(label=MAL, verdict=Review.Verdict.AGREE, histopathology=H.INVASIVE_MELANOMA)
    assert outcome_counts(reviewed, 2) == Metrics(
        predictions=2, succeeded=2, reviewed=2, agreed=2, positives=2, true_positives=2
    )
    disagreed = outcome(verdict=Review.Verdict.DISAGREE)
    assert outcome_counts(disagreed, 1) == Metrics(predictions=1, succeeded=1, reviewed=1)


def test_a_shadow_comparison_sums_its_paired_rows():
    rows = [
        {"n": 2, "label": MAL, "active_label": MAL, "histopathology": H.BENIGN, "absolute_difference": 0.2},
        {"n": 1, "label": BEN, "active_label": UNC, "histopathology": H.INVASIVE_MELANOMA, "absolute_difference": 0.4},
        {"n": 1, "label": BEN, "active_label": BEN, "histopathology": None, "absolute_difference": None},
    ]
    comparison = shadow_comparison("shadow", "active", rows)
    assert (comparison.paired, comparison.labels_agreed) == (4, 3)
    assert comparison.label_agreement.percent == "75.0%"
    assert comparison.mean_absolute_difference == pytest.approx(0.6 / 4)
    assert comparison.cross_table == {
        BEN: {BEN: 1, MAL: 0, UNC: 0},
        MAL: {BEN: 0, MAL: 2, UNC: 0},
        UNC: {BEN: 1, MAL: 0, UNC: 0},
    }
    assert comparison.active_metrics == Metrics(negatives=2, positives_abstained=1)
    assert comparison.shadow_metrics == Metrics(negatives=2, positives=1)


def test_a_shadow_comparison_without_pairs_has_no_mean_difference():
    assert shadow_comparison("shadow", "active", []).mean_absolute_difference is None
