"""How each model version performs in practice, for the monitoring page.

- ``stats``: the definitions, the counting rules and the rates (plain computations).
- ``queries``: the read-only database queries that feed them (a fixed number per report).
- ``charts``: the report drawn as inline-SVG chart data with tables of the same numbers.

The names other modules use are re-exported here (``from inference.monitoring import monitoring_report``).
"""

from .queries import (
    clinical_predictions_for_monitoring,
    monitoring_report,
    monthly_metrics,
    shadow_comparisons,
    skin_type_metrics,
)
from .stats import (
    LABELS,
    Metrics,
    MonitoringReport,
    MonthRow,
    Rate,
    ShadowComparison,
    SkinTypeRow,
    VersionRef,
    VersionTotal,
    version_totals,
    wilson_interval,
)

__all__ = [
    "LABELS",
    "Metrics",
    "MonitoringReport",
    "MonthRow",
    "Rate",
    "ShadowComparison",
    "SkinTypeRow",
    "VersionRef",
    "VersionTotal",
    "clinical_predictions_for_monitoring",
    "monitoring_report",
    "monthly_metrics",
    "shadow_comparisons",
    "skin_type_metrics",
    "version_totals",
    "wilson_interval",
]
