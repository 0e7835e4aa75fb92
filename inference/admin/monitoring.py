"""The model monitoring page (an admin view with charts).

This module only wires the request to the numbers and the charts: it reads
the filters, asks ``inference.monitoring`` for the report and its charts
(``monitoring.charts``), and renders them.
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from cases import permissions
from cases.models import Clinic

from ..models import ModelVersion
from ..monitoring import LABELS, monitoring_report
from ..monitoring.charts import LABEL_NAMES, comparison_chart, cross_table_rows, report_charts

MONTH_FORMAT = "%Y-%m"


class MonthInput(forms.DateInput):
    input_type = "month"

    def __init__(self):
        super().__init__(format=MONTH_FORMAT)


class MonitoringFilterForm(forms.Form):
    start = forms.DateField(label="From month", required=False, input_formats=[MONTH_FORMAT], widget=MonthInput())
    end = forms.DateField(label="To month", required=False, input_formats=[MONTH_FORMAT], widget=MonthInput())
    clinic = forms.ModelChoiceField(Clinic.objects.order_by("name"), required=False, empty_label="All clinics")
    model_version = forms.ModelChoiceField(
        ModelVersion.objects.order_by("-created_at"), required=False, empty_label="All model versions"
    )

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and start > end:
            raise forms.ValidationError("The first month comes after the last one.")
        return cleaned


def monitoring_view(request):
    """Staff only (``cases.permissions.can_view_admin``); filters come in the query string."""
    if not permissions.can_view_admin(request.user):
        raise PermissionDenied
    form = MonitoringFilterForm(request.GET or None)
    report = None
    if not form.is_bound:
        report = monitoring_report()
    elif form.is_valid():
        report = monitoring_report(**form.cleaned_data)
    context = {
        **admin.site.each_context(request),
        "title": "Model monitoring",
        "form": form,
        "report": report,
        "charts": report_charts(report) if report is not None else [],
        "comparisons": [
            (comparison, cross_table_rows(comparison), comparison_chart(comparison, index))
            for index, comparison in enumerate(report.shadow if report is not None else [])
        ],
        "label_names": [LABEL_NAMES[label] for label in LABELS],
    }
    return TemplateResponse(request, "admin/inference/monitoring/index.html", context)


# Included at admin/inference/monitoring/ by skincare/urls.py, ahead of the
# admin's own URLs. admin_view sends anyone who is not active staff to the
# admin's login page.
urlpatterns = [
    path("", admin.site.admin_view(monitoring_view), name="inference_monitoring"),
]
