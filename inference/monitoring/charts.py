"""The monitoring page's charts, as data for inline SVG (no JavaScript, nothing from a CDN).

Built from a ``MonitoringReport`` (``stats``); each chart carries a table of
the same numbers for screen readers and for anyone who prefers to read them.
The template (admin/inference/monitoring/_chart.html) only places what is
computed here.
"""

from dataclasses import dataclass

from ..models import Prediction
from .stats import LABELS

PLOT_HEIGHT, PLOT_WIDTH_MIN = 180, 300
TOP, RIGHT, BAR, GAP = 14, 12, 22, 18
CHAR_WIDTH = 6.5  # px per character at the charts' 11px font, to leave room for labels
SERIES_COLOURS = 6  # .series-0 … .series-5 in the page's stylesheet; more series reuse them


def _n(value):
    return f"{value:.1f}"


@dataclass(frozen=True)
class Chart:
    """Everything the template needs to draw one chart and its table; coordinates are preformatted strings."""

    id: str
    title: str
    description: str
    width: str
    height: str
    left: str
    tick_x: str
    plot_right: str
    baseline: str
    series: list  # [(css class, name)]
    ticks: list  # [{"y", "label"}]
    # [{"x", "y", "width", "height", "css", "title", "whisker": {"x", "cap_left", "cap_right", "y1", "y2"} or None}]
    bars: list
    group_labels: list  # [{"x", "y", "text"}], drawn slanted under each group
    columns: list  # the table of the same numbers
    rows: list


class _Frame:
    """The plot area: room on the left and below for group labels slanted at 30°."""

    def __init__(self, group_labels, bars_per_group, tick_label_chars):
        longest = max((len(label) for label in group_labels), default=0) * CHAR_WIDTH
        self.left = max(tick_label_chars * CHAR_WIDTH + 12, 0.87 * longest - GAP + 4)
        self.baseline = TOP + PLOT_HEIGHT
        self.height = self.baseline + 0.5 * longest + 24
        self.group_width = bars_per_group * BAR + GAP
        self.width = self.left + max(PLOT_WIDTH_MIN, len(group_labels) * self.group_width + GAP) + RIGHT

    def group_x(self, index):
        return self.left + GAP + index * self.group_width

    def y(self, fraction):
        return self.baseline - fraction * PLOT_HEIGHT

    def chart(self, *, ticks, group_labels, **fields):
        return Chart(
            width=_n(self.width),
            height=_n(self.height),
            left=_n(self.left),
            tick_x=_n(self.left - 6),
            plot_right=_n(self.width - RIGHT),
            baseline=_n(self.baseline),
            ticks=[{"y": _n(self.y(fraction)), "label": label} for fraction, label in ticks],
            group_labels=[
                {
                    "x": _n(self.group_x(index) + self.group_width / 2 - GAP / 2),
                    "y": _n(self.baseline + 14),
                    "text": text,
                }
                for index, text in enumerate(group_labels)
            ],
            **fields,
        )


def _series(names):
    return [(f"series-{index % SERIES_COLOURS}", name) for index, name in enumerate(names)]


def _rate_cell(rate):
    if rate.value is None:
        return "— (n = 0)"
    return f"{rate.percent} ({rate.hits}/{rate.n}; 95% CI {rate.interval_text})"


def rate_chart(*, chart_id, title, description, series, groups, group_heading="Group"):
    """Grouped bars of rates (0–100%) with Wilson 95% whiskers.

    ``groups``: [(label, [Rate or None per series])]; no bar where there is
    no rate or its n is 0.
    """
    frame = _Frame([label for label, _ in groups], len(series), tick_label_chars=4)
    bars = []
    for index, (group_label, rates) in enumerate(groups):
        for s, rate in enumerate(rates):
            if rate is None or rate.value is None:
                continue
            x = frame.group_x(index) + s * BAR
            low, high = rate.interval
            bars.append(
                {
                    "x": _n(x + 2),
                    "y": _n(frame.y(rate.value)),
                    "width": _n(BAR - 4),
                    "height": _n(rate.value * PLOT_HEIGHT),
                    "css": f"series-{s % SERIES_COLOURS}",
                    "title": f"{group_label}, {series[s]}: {_rate_cell(rate)}",
                    "whisker": {
                        "x": _n(x + BAR / 2),
                        "cap_left": _n(x + BAR / 2 - 4),
                        "cap_right": _n(x + BAR / 2 + 4),
                        "y1": _n(frame.y(low)),
                        "y2": _n(frame.y(high)),
                    },
                }
            )
    return frame.chart(
        id=chart_id,
        title=title,
        description=description,
        series=_series(series),
        ticks=[(t / 4, f"{25 * t}%") for t in range(5)],
        bars=bars,
        group_labels=[label for label, _ in groups],
        columns=[group_heading, *series],  # never an empty header cell (axe: empty-table-header)
        rows=[[label, *("—" if rate is None else _rate_cell(rate) for rate in rates)] for label, rates in groups],
    )


def _count_ticks(largest):
    step = max(1, -(-largest // 4))  # whole numbers, at most five gridlines
    return list(range(0, 4 * step + 1, step))


def count_chart(*, chart_id, title, description, series, groups, group_heading="Group"):
    """Stacked bars of counts: ``groups`` is [(label, [count per series])]."""
    ticks = _count_ticks(max((sum(counts) for _, counts in groups), default=0))
    top = ticks[-1]
    frame = _Frame([label for label, _ in groups], 1, tick_label_chars=len(str(top)))
    bars = []
    for index, (group_label, counts) in enumerate(groups):
        below = 0
        for s, count in enumerate(counts):
            if count:
                bars.append(
                    {
                        "x": _n(frame.group_x(index)),
                        "y": _n(frame.y((below + count) / top)),
                        "width": _n(BAR),
                        "height": _n(count / top * PLOT_HEIGHT),
                        "css": f"series-{s % SERIES_COLOURS}",
                        "title": f"{group_label}, {series[s]}: {count}",
                        "whisker": None,
                    }
                )
            below += count
    return frame.chart(
        id=chart_id,
        title=title,
        description=description,
        series=_series(series),
        ticks=[(t / top, str(t)) for t in ticks],
        bars=bars,
        group_labels=[label for label, _ in groups],
        columns=[group_heading, *series, "Total"],
        rows=[[label, *counts, sum(counts)] for label, counts in groups],
    )


def report_charts(report):
    """The charts of the per-version and per-month numbers."""
    if not report.months:
        return []
    months = sorted({row.month for row in report.months})
    versions = [total.version for total in report.versions]
    by_month = {(row.version, row.month): row.metrics for row in report.months}
    return [
        rate_chart(
            chart_id="agreement-chart",
            title="Agreement with clinicians per month",
            description="Share of reviewed predictions the clinician agreed with, per model version and month, "
            "with Wilson 95% intervals.",
            series=[version.label for version in versions],
            group_heading="Month",
            groups=[
                (f"{month:%Y-%m}", [_agreement(by_month.get((version, month))) for version in versions])
                for month in months
            ],
        ),
        rate_chart(
            chart_id="accuracy-chart",
            title="Sensitivity and specificity against histopathology per model version",
            description="Sensitivity and specificity of each model version over the selected months, "
            "with Wilson 95% intervals; abstentions left out.",
            series=["Sensitivity", "Specificity"],
            group_heading="Model version",
            groups=[
                (total.version.label, [total.metrics.sensitivity, total.metrics.specificity])
                for total in report.versions
            ],
        ),
        count_chart(
            chart_id="outcomes-chart",
            title="Prediction outcomes per model version and month",
            description="Clinical predictions stacked by outcome: benign or malignant, uncertain (abstained), "
            "failed, still pending or running.",
            series=["Benign or malignant", "Uncertain (abstained)", "Failed", "Pending or running"],
            group_heading="Model version and month",
            groups=[
                (
                    f"{row.version.label} {row.month:%Y-%m}",
                    [row.metrics.decisive, row.metrics.abstained, row.metrics.failed, row.metrics.in_progress],
                )
                for row in report.months
            ],
        ),
    ]


def _agreement(metrics):
    # A version with no predictions in a month has no rate at all.
    return None if metrics is None else metrics.agreement


def comparison_chart(comparison, index):
    active = f"{comparison.active.label} (active)"
    shadow = f"{comparison.shadow.label} (shadow)"
    return rate_chart(
        chart_id=f"shadow-chart-{index}",
        title=f"{shadow} against {active} on the same images",
        description="Sensitivity and specificity of each model on the paired images with a histopathology "
        "result, with Wilson 95% intervals.",
        series=[active, shadow],
        group_heading="Measure",
        groups=[
            ("Sensitivity", [comparison.active_metrics.sensitivity, comparison.shadow_metrics.sensitivity]),
            ("Specificity", [comparison.active_metrics.specificity, comparison.shadow_metrics.specificity]),
        ],
    )


# Short names for the cross-table's headers.
LABEL_NAMES = {
    Prediction.Label.BENIGN: "Benign",
    Prediction.Label.MALIGNANT: "Malignant",
    Prediction.Label.UNCERTAIN: "Uncertain",
}


def cross_table_rows(comparison):
    """The 3×3 label table as rows: [active label name, count per shadow label…, total]."""
    table = comparison.cross_table
    return [
        [LABEL_NAMES[active], *(table[active][shadow] for shadow in LABELS), sum(table[active].values())]
        for active in LABELS
    ]
