"""The monitoring charts as data: bars, whiskers, ticks and the tables beside them, from plain numbers."""

from datetime import date

import pytest

from inference.models import Prediction
from inference.monitoring import Metrics, MonitoringReport, MonthRow, Rate, VersionRef, VersionTotal
from inference.monitoring.charts import (
    PLOT_HEIGHT,
    SERIES_COLOURS,
    TOP,
    count_chart,
    cross_table_rows,
    rate_chart,
    report_charts,
)
from inference.monitoring.stats import shadow_comparison

BASELINE = TOP + PLOT_HEIGHT


def y(fraction):
    return float(f"{BASELINE - fraction * PLOT_HEIGHT:.1f}")


def test_a_rate_chart_draws_one_bar_with_its_whisker_per_rate_that_has_cases():
    chart = rate_chart(
        chart_id="c",
        title="T",
        description="D",
        series=["a", "b"],
        groups=[("2026-01", [Rate(1, 2), Rate(0, 0)]), ("2026-02", [None, Rate(3, 3)])],
    )
    assert len(chart.bars) == 2  # none for n = 0, none where there is no rate
    half, full = chart.bars
    assert (float(half["y"]), float(half["height"])) == (y(0.5), 0.5 * PLOT_HEIGHT)
    low, high = Rate(1, 2).interval
    assert (float(half["whisker"]["y1"]), float(half["whisker"]["y2"])) == (y(low), y(high))
    assert (half["css"], full["css"]) == ("series-0", "series-1")
    assert half["title"] == "2026-01, a: 50.0% (1/2; 95% CI 9.5–90.5%)"
    assert [tick["label"] for tick in chart.ticks] == ["0%", "25%", "50%", "75%", "100%"]
    assert chart.columns == ["Group", "a", "b"]
    assert chart.rows == [
        ["2026-01", "50.0% (1/2; 95% CI 9.5–90.5%)", "— (n = 0)"],
        ["2026-02", "—", "100.0% (3/3; 95% CI 43.9–100.0%)"],
    ]


def test_a_count_chart_stacks_the_counts_on_whole_number_ticks():
    chart = count_chart(
        chart_id="c", title="T", description="D", series=["x", "y", "z"], groups=[("g1", [3, 0, 4]), ("g2", [1, 1, 0])]
    )
    assert [tick["label"] for tick in chart.ticks] == ["0", "2", "4", "6", "8"]
    assert [(bar["title"], float(bar["height"])) for bar in chart.bars] == [
        ("g1, x: 3", 3 / 8 * PLOT_HEIGHT),
        ("g1, z: 4", 4 / 8 * PLOT_HEIGHT),
        ("g2, x: 1", 1 / 8 * PLOT_HEIGHT),
        ("g2, y: 1", 1 / 8 * PLOT_HEIGHT),
    ]
    assert float(chart.bars[1]["y"]) == y(7 / 8)  # on top of the 3 below it
    assert all(bar["whisker"] is None for bar in chart.bars)
    assert chart.rows == [["g1", 3, 0, 4, 7], ["g2", 1, 1, 0, 2]]


def test_series_beyond_the_stylesheets_colours_reuse_them():
    names = [f"v{index}" for index in range(SERIES_COLOURS + 1)]
    chart = rate_chart(chart_id="c", title="T", description="D", series=names, groups=[("g", [Rate(1, 1)] * 7)])
    assert chart.series[-1] == ("series-0", names[-1])


def test_an_empty_report_has_no_charts():
    assert report_charts(MonitoringReport()) == []


def test_the_report_gives_agreement_accuracy_and_outcome_charts():
    version = VersionRef(id=1, label="m-1", is_active=True, is_shadow=False)
    metrics = Metrics(predictions=4, succeeded=3, failed=1, abstained=1, reviewed=2, agreed=1)
    report = MonitoringReport(
        months=[MonthRow(version=version, month=date(2026, 1, 1), metrics=metrics)],
        versions=[VersionTotal(version=version, metrics=metrics)],
    )
    agreement, accuracy, outcomes = report_charts(report)
    assert (agreement.id, accuracy.id, outcomes.id) == ("agreement-chart", "accuracy-chart", "outcomes-chart")
    assert agreement.rows == [["2026-01", "50.0% (1/2; 95% CI 9.5–90.5%)"]]
    assert accuracy.rows == [["m-1", "— (n = 0)", "— (n = 0)"]]
    assert outcomes.rows == [["m-1 2026-01", 2, 1, 1, 0, 4]]


@pytest.mark.parametrize("shadow_label", list(Prediction.Label))
def test_the_cross_table_has_a_row_per_active_label_with_its_total(shadow_label):
    row = {"n": 2, "label": shadow_label, "active_label": Prediction.Label.MALIGNANT}
    comparison = shadow_comparison("s", "a", [{**row, "histopathology": None, "absolute_difference": 0.0}])
    rows = cross_table_rows(comparison)
    assert [r[0] for r in rows] == ["Benign", "Malignant", "Uncertain"]
    assert rows[1][-1] == 2 and rows[0][-1] == rows[2][-1] == 0
