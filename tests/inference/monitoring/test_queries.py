"""The monitoring queries on the hand-worked world of world.py: counts per version, month and skin type,
the rates built on them, the filters, and the shadow comparison."""

from datetime import date
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from inference.models import Prediction
from inference.monitoring import (
    LABELS,
    Metrics,
    clinical_predictions_for_monitoring,
    monitoring_report,
    monthly_metrics,
    shadow_comparisons,
    skin_type_metrics,
    version_totals,
)

from .world import FEB, JAN, V0_JANUARY, V1_FEBRUARY, V1_JANUARY, World, at, metrics_by_month, predict

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return World()


def test_it_counts_clinical_predictions_per_version_and_month(world):
    rows = monthly_metrics()
    assert [(row.version.label, row.month) for row in rows] == [
        ("melanoma-cnn-0", JAN),
        ("melanoma-cnn-1", JAN),
        ("melanoma-cnn-1", FEB),
    ]
    assert metrics_by_month(rows) == {
        ("melanoma-cnn-0", JAN): V0_JANUARY,
        ("melanoma-cnn-1", JAN): V1_JANUARY,
        ("melanoma-cnn-1", FEB): V1_FEBRUARY,
    }


def test_it_never_counts_shadow_predictions_as_clinical_rows(world):
    assert all(not row.version.is_shadow for row in monthly_metrics())
    assert all(not row.version.is_shadow for row in skin_type_metrics())


def test_it_computes_agreement_sensitivity_and_specificity_rates(world):
    january, february = (row.metrics for row in monthly_metrics(model_version=world.v1))
    assert (january.agreement.hits, january.agreement.n) == (3, 4)
    assert january.agreement.percent == "75.0%"
    assert (january.sensitivity.hits, january.sensitivity.n) == (1, 2)
    assert (january.specificity.hits, january.specificity.n) == (1, 1)
    assert january.positives_abstained == 1
    assert (february.agreement.hits, february.agreement.n) == (2, 4)
    assert (february.specificity.hits, february.specificity.n) == (1, 2)


def test_it_uses_the_latest_review_for_agreement_and_the_latest_recorded_histopathology(world):
    # Image 7: disagree then agree (counts as agree), benign recorded last: a false positive.
    # Image 12: agree with benign, then disagree with no result: disagree, still benign.
    annotated = {p.image_id: (p.verdict, p.histopathology) for p in clinical_predictions_for_monitoring()}
    assert annotated[world.images[7].pk] == ("agree", "benign")
    assert annotated[world.images[12].pk] == ("disagree", "benign")
    assert annotated[world.images[9].pk] == (None, None)
    rows = monthly_metrics(start=FEB, end=FEB, clinic=world.clinic_a, model_version=world.v1)
    assert len(rows) == 1
    february = rows[0].metrics
    assert (february.reviewed, february.agreed) == (3, 1)
    assert (february.negatives, february.true_negatives) == (2, 1)
    # Image 8's "other malignancy" is neither positive nor negative.
    assert (february.positives, february.positives_abstained) == (0, 0)


def test_it_sums_months_into_version_totals(world):
    totals = {total.version.label: total.metrics for total in version_totals(monthly_metrics())}
    assert totals == {"melanoma-cnn-0": V0_JANUARY, "melanoma-cnn-1": V1_JANUARY + V1_FEBRUARY}
    v1 = totals["melanoma-cnn-1"]
    assert (v1.predictions, v1.succeeded, v1.failed, v1.abstained, v1.out_of_distribution) == (13, 10, 2, 2, 1)
    assert (v1.agreement.hits, v1.agreement.n) == (5, 8)
    assert (v1.sensitivity.hits, v1.sensitivity.n) == (2, 3)
    assert (v1.specificity.hits, v1.specificity.n) == (2, 3)
    assert v1.in_progress == 1
    assert v1.decisive == 8


def test_it_filters_by_clinic(world):
    rows = monthly_metrics(clinic=world.clinic_b)
    assert metrics_by_month(rows) == {
        ("melanoma-cnn-1", FEB): Metrics(
            predictions=1, succeeded=1, reviewed=1, agreed=1, positives=1, true_positives=1
        ),
    }


def test_it_filters_by_month_range_in_utc_months(world):
    assert {row.month for row in monthly_metrics(start=FEB)} == {FEB}
    assert {row.month for row in monthly_metrics(end=JAN)} == {JAN}
    assert monthly_metrics(start=date(2026, 3, 1)) == []
    # Image 6 was queued late on 31 January UTC: January, even where it was already February.
    with timezone.override(ZoneInfo("Pacific/Auckland")):
        january = metrics_by_month(monthly_metrics(end=JAN))[("melanoma-cnn-1", JAN)]
    assert january == V1_JANUARY


def test_it_breaks_the_metrics_down_by_fitzpatrick_type(world):
    rows = skin_type_metrics(model_version=world.v1)
    by_type = {row.skin_type_label: row.metrics for row in rows}
    assert [row.skin_type_label for row in rows] == ["I", "II", "III", "IV", "V", "VI", "Not recorded"]
    assert by_type == {
        "I": Metrics(predictions=3, succeeded=3, reviewed=3, agreed=2, positives=1, true_positives=1,
                     negatives=2, true_negatives=1),
        "II": Metrics(predictions=2, succeeded=2, reviewed=2, agreed=1, positives=1, true_positives=0,
                      negatives=1, true_negatives=1),
        "III": Metrics(predictions=2, failed=1),
        "IV": Metrics(predictions=1, succeeded=1, reviewed=1, agreed=1, positives=1, true_positives=1),
        "V": Metrics(predictions=2, succeeded=1, failed=1, out_of_distribution=1),
        "VI": Metrics(predictions=2, succeeded=2, abstained=1, reviewed=1, agreed=0),
        "Not recorded": Metrics(predictions=1, succeeded=1, abstained=1, reviewed=1, agreed=1, positives_abstained=1),
    }  # fmt: skip
    assert [(row.version.label, row.skin_type) for row in skin_type_metrics(model_version=world.v0)] == [
        ("melanoma-cnn-0", 2)
    ]


def test_it_compares_the_shadow_model_with_the_active_one_on_the_same_images(world):
    (comparison,) = shadow_comparisons()
    assert (comparison.shadow.label, comparison.active.label) == ("melanoma-cnn-2", "melanoma-cnn-1")
    # Images 1, 2, 3, 4, 7, 8; image 5's clinical prediction and image 6's shadow one failed.
    assert comparison.paired == 6
    assert (comparison.label_agreement.hits, comparison.label_agreement.n) == (2, 6)
    # |Δp| = .1 + .1 + .4 + .1 + .4 + .3 = 1.4 over 6 images.
    assert comparison.mean_absolute_difference == pytest.approx(1.4 / 6)
    mal, ben, unc = Prediction.Label.MALIGNANT, Prediction.Label.BENIGN, Prediction.Label.UNCERTAIN
    assert comparison.cross_table == {
        ben: {ben: 1, mal: 1, unc: 1},
        mal: {ben: 1, mal: 1, unc: 0},
        unc: {ben: 0, mal: 1, unc: 0},
    }
    assert sum(sum(row.values()) for row in comparison.cross_table.values()) == comparison.paired
    assert list(comparison.cross_table) == list(LABELS)
    active, shadow = comparison.active_metrics, comparison.shadow_metrics
    assert (active.true_positives, active.positives, active.positives_abstained) == (1, 2, 1)
    assert (active.true_negatives, active.negatives) == (1, 2)
    assert (shadow.true_positives, shadow.positives, shadow.positives_abstained) == (3, 3, 0)
    assert (shadow.true_negatives, shadow.negatives) == (2, 2)


def test_it_filters_the_shadow_comparison_like_the_rest(world):
    (february,) = shadow_comparisons(start=FEB, end=FEB)
    assert february.paired == 2  # images 7 and 8
    assert (february.label_agreement.hits, february.shadow_metrics.true_negatives) == (0, 1)
    assert shadow_comparisons(clinic=world.clinic_b) == []
    assert shadow_comparisons(model_version=world.v0) == []
    assert [c.paired for c in shadow_comparisons(model_version=world.v2)] == [6]


def test_it_pairs_a_shadow_prediction_with_the_clinical_one_made_at_the_same_time(world):
    # Image 2 is re-run by v0 a month later: the pair stays v1's benign .1, made with the shadow one.
    predict(world.images[2], world.v0, at(2, 20), label=Prediction.Label.MALIGNANT, probability=0.99)
    comparisons = {c.active.label: c for c in shadow_comparisons()}
    assert list(comparisons) == ["melanoma-cnn-1"]
    assert comparisons["melanoma-cnn-1"].mean_absolute_difference == pytest.approx(1.4 / 6)


def test_the_report_is_empty_without_predictions(db):
    report = monitoring_report()
    assert report.is_empty
    assert (report.months, report.versions, report.skin_types, report.shadow) == ([], [], [], [])
