"""How each model version performs in practice: the read-only queries behind the monitoring page.

Every number is counted by the database (a few grouped aggregate queries);
Python only adds counts up and turns them into rates (``stats``, where the
definitions are).
"""

from datetime import UTC, date, datetime

from django.db.models import Count, F, FloatField, OuterRef, Q, Subquery, Sum, UUIDField
from django.db.models.functions import Abs, Coalesce, TruncMonth

from cases.models import Patient, Review

from ..models import ModelVersion, Prediction
from .stats import (
    Metrics,
    MonitoringReport,
    MonthRow,
    SkinTypeRow,
    VersionRef,
    outcome_counts,
    shadow_comparison,
    version_totals,
)


def _latest_verdict():
    return Subquery(
        Review.objects.filter(prediction=OuterRef("pk")).order_by("-created_at", "-pk").values("verdict")[:1]
    )


def _histopathology():
    return Subquery(
        Review.objects.filter(image=OuterRef("image"))
        .exclude(histopathology_result="")
        .order_by("-created_at", "-pk")
        .values("histopathology_result")[:1]
    )


# What decides a prediction's contribution to every metric. Grouping by these
# (plus the row key) lets the database count, and runs each correlated
# subquery once per prediction rather than once per metric.
OUTCOME = ("status", "label", "out_of_distribution", "verdict", "histopathology")


def _grouped_metrics(queryset, key):
    """{key values: Metrics} for ``queryset`` grouped by the ``key`` fields. One query."""
    rows = queryset.values(*key, *OUTCOME).annotate(n=Count("pk")).order_by()
    grouped = {}
    for row in rows:
        group = tuple(row[name] for name in key)
        grouped[group] = grouped.get(group, Metrics()) + outcome_counts(row, row["n"])
    return grouped


def _month_bounds(queryset, *, start, end):
    # Months are UTC months, whatever the site's time zone.
    if start is not None:
        queryset = queryset.filter(queued_at__gte=_month_start(start))
    if end is not None:
        queryset = queryset.filter(queued_at__lt=_month_start(_next_month(end)))
    return queryset


def _month_start(day):
    return datetime(day.year, day.month, 1, tzinfo=UTC)


def _next_month(day):
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def clinical_predictions_for_monitoring(*, start=None, end=None, clinic=None, model_version=None):
    """Clinical predictions within the filters, annotated with ``verdict`` and ``histopathology``.

    ``start`` and ``end`` are dates whose month bounds the range (both
    inclusive, UTC months of ``queued_at``); ``clinic`` and ``model_version``
    are rows or None for all.
    """
    queryset = Prediction.objects.clinical()
    queryset = _month_bounds(queryset, start=start, end=end)
    if clinic is not None:
        queryset = queryset.filter(image__lesion__patient__clinic=clinic)
    if model_version is not None:
        queryset = queryset.filter(model_version=model_version)
    return queryset.annotate(verdict=_latest_verdict(), histopathology=_histopathology())


def _versions(ids):
    rows = ModelVersion.objects.filter(pk__in=set(ids)).order_by("created_at", "name", "version")
    return {
        row.pk: VersionRef(id=row.pk, label=row.label, is_active=row.is_active, is_shadow=row.is_shadow) for row in rows
    }


def _version_order(versions):
    return {pk: index for index, pk in enumerate(versions)}


def monthly_metrics(**filters):
    """[MonthRow] per model version and UTC month, oldest version and month first. One query (plus versions)."""
    grouped = _grouped_metrics(
        clinical_predictions_for_monitoring(**filters).annotate(month=TruncMonth("queued_at", tzinfo=UTC)),
        ("model_version", "month"),
    )
    versions = _versions(version for version, _ in grouped)
    order = _version_order(versions)
    return [
        MonthRow(version=versions[version], month=month.date(), metrics=metrics)
        for (version, month), metrics in sorted(grouped.items(), key=lambda item: (order[item[0][0]], item[0][1]))
    ]


def skin_type_metrics(**filters):
    """[SkinTypeRow] per model version and patient Fitzpatrick type (None: not recorded). One query (plus versions)."""
    grouped = _grouped_metrics(
        clinical_predictions_for_monitoring(**filters).annotate(
            skin_type=F("image__lesion__patient__fitzpatrick_skin_type")
        ),
        ("model_version", "skin_type"),
    )
    versions = _versions(version for version, _ in grouped)
    order = _version_order(versions)
    names = dict(Patient.Fitzpatrick.choices)

    def position(item):
        (version, skin_type), _ = item
        # Types I–VI in order, "not recorded" last.
        return order[version], skin_type is None, skin_type or 0

    return [
        SkinTypeRow(
            version=versions[version],
            skin_type=skin_type,
            skin_type_label=names.get(skin_type, "Not recorded"),
            metrics=metrics,
        )
        for (version, skin_type), metrics in sorted(grouped.items(), key=position)
    ]


def _paired_clinical():
    """The clinical prediction of the same image made with the shadow one.

    request_prediction creates both in one go, active model first: take the
    latest clinical prediction queued no later than the shadow one, or, if
    there is none (the clinical one was re-run later), the earliest after it.
    Plain comparisons of ``queued_at``, no date arithmetic, so that the query
    is the same on PostgreSQL and SQLite.
    """
    clinical = Prediction.objects.clinical().filter(image=OuterRef("image"))
    before = clinical.filter(queued_at__lte=OuterRef("queued_at")).order_by("-queued_at", "-pk")
    after = clinical.filter(queued_at__gt=OuterRef("queued_at")).order_by("queued_at", "pk")
    paired_id = Coalesce(Subquery(before.values("pk")[:1]), Subquery(after.values("pk")[:1]))
    return paired_id, Prediction.objects.filter(pk=OuterRef("paired_id"))


def shadow_comparisons(*, start=None, end=None, clinic=None, model_version=None):
    """[ShadowComparison] per (shadow version, active version), over succeeded pairs. One query (plus versions).

    The month range applies to the shadow prediction's ``queued_at``; a
    ``model_version`` keeps the comparisons in which it takes either side.
    """
    paired_id, paired = _paired_clinical()
    queryset = Prediction.objects.filter(is_shadow=True, status=Prediction.Status.SUCCEEDED)
    queryset = _month_bounds(queryset, start=start, end=end)
    if clinic is not None:
        queryset = queryset.filter(image__lesion__patient__clinic=clinic)
    queryset = (
        queryset.annotate(paired_id=paired_id)
        .annotate(
            # UUIDField, not the foreign key: SQLite returns a subquery's UUID as
            # bare hex otherwise, which would match no version.
            active_version=Subquery(paired.values("model_version")[:1], output_field=UUIDField()),
            active_status=Subquery(paired.values("status")[:1]),
            active_label=Subquery(paired.values("label")[:1]),
            active_probability=Subquery(paired.values("probability_malignant")[:1], output_field=FloatField()),
            histopathology=_histopathology(),
        )
        .filter(active_status=Prediction.Status.SUCCEEDED)
    )
    if model_version is not None:
        queryset = queryset.filter(Q(model_version=model_version) | Q(active_version=model_version.pk))
    rows = (
        queryset.values("model_version", "active_version", "label", "active_label", "histopathology")
        .annotate(
            n=Count("pk"),
            absolute_difference=Sum(Abs(F("probability_malignant") - F("active_probability"))),
        )
        .order_by()
    )
    groups = {}
    for row in rows:
        groups.setdefault((row["model_version"], row["active_version"]), []).append(row)
    versions = _versions(pk for pair in groups for pk in pair)
    order = _version_order(versions)
    return [
        shadow_comparison(versions[shadow], versions[active], group_rows)
        for (shadow, active), group_rows in sorted(groups.items(), key=lambda item: tuple(map(order.get, item[0])))
    ]


def monitoring_report(*, start=None, end=None, clinic=None, model_version=None):
    """Everything the monitoring page shows, for the given filters. A fixed number of queries."""
    filters = {"start": start, "end": end, "clinic": clinic, "model_version": model_version}
    months = monthly_metrics(**filters)
    return MonitoringReport(
        months=months,
        versions=version_totals(months),
        skin_types=skin_type_metrics(**filters),
        shadow=shadow_comparisons(**filters),
    )
