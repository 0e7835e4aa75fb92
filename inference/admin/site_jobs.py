"""Site adaptation jobs in the admin: starting one (ML admins), their status and progress lines.

A job of a clinic is seen by staff who may see that clinic (ML admins: all).
"Add site adaptation job" is the start button: a form (clinic, optional
device model) beside each clinic's count of biopsy-confirmed cases; the POST
goes through ``inference.site_jobs.request_site_adaptation``, which refuses
too few cases or a second open job for the same site with a form error, and
audits the request. Queued jobs can be cancelled (an action, ML admins).
Nothing else about a job is edited here.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from cases import permissions
from cases.models import DEVICE_NAME_LENGTH, Clinic, LesionImage, validate_device_name
from core.admin import HistoryAdmin

from .. import site_jobs
from ..models import SiteAdaptationJob


class StartAdaptationForm(forms.Form):
    clinic = forms.ModelChoiceField(queryset=Clinic.objects.none(), label="Clinic")
    device_model = forms.CharField(
        label="Device model (optional)",
        required=False,
        max_length=DEVICE_NAME_LENGTH,
        validators=[validate_device_name],
        help_text="Only this device's images, and a model for this device only. Blank: every device of the clinic.",
        widget=forms.TextInput(attrs={"list": "device-model-choices", "autocomplete": "off"}),
    )

    def __init__(self, *args, clinics, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["clinic"].queryset = clinics


def case_counts(clinics) -> list[dict]:
    """Per clinic, and per device model of it: biopsy-confirmed melanomas and benign lesions."""
    rows = []
    for clinic in clinics:
        devices = (
            LesionImage.objects.filter(lesion__patient__clinic=clinic)
            .exclude(device_model="")
            .values("device_model")
            .annotate(n=Count("pk"))
            .order_by("-n")[:20]
        )
        for device in ["", *(d["device_model"] for d in devices)]:
            malignant, benign = site_jobs.count_local_cases(clinic, device)
            if device and not (malignant or benign):
                continue
            rows.append({"clinic": clinic, "device_model": device, "malignant": malignant, "benign": benign})
    return rows


@admin.register(SiteAdaptationJob)
class SiteAdaptationJobAdmin(HistoryAdmin):
    list_display = ["created_at", "clinic", "device", "status", "last_progress", "model_version", "requested_by"]
    list_filter = ["status"]
    list_select_related = ["clinic", "model_version", "requested_by"]
    actions = ["cancel_queued"]
    fields = [
        "clinic",
        "device_model",
        "status",
        "data_dir",
        "out_dir",
        "progress",
        "error",
        "model_version",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return permissions.admin_scope(request.user, super().get_queryset(request), "clinic", model_review=True)

    def has_add_permission(self, request):
        return permissions.is_ml_admin(request.user)

    def has_cancel_permission(self, request):
        return permissions.is_ml_admin(request.user)

    @admin.display(description="Device", ordering="device_model")
    def device(self, obj):
        return obj.device_model or "all"

    @admin.display(description="Progress")
    def last_progress(self, obj):
        lines = obj.progress.strip().splitlines()
        return lines[-1] if lines else "—"

    @admin.action(description="Cancel the selected jobs that have not started", permissions=["cancel"])
    def cancel_queued(self, request, queryset):
        cancelled = sum(site_jobs.cancel_queued_job(job, user=request.user) for job in queryset)
        skipped = queryset.count() - cancelled
        self.message_user(request, f"Cancelled {cancelled} job{'s' if cancelled != 1 else ''}.")
        if skipped:
            self.message_user(request, f"{skipped} had already started or finished; left alone.", messages.WARNING)

    def add_view(self, request, form_url="", extra_context=None):
        """The start button: a clinic (and device), checked and queued by ``request_site_adaptation``."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        clinics = permissions.admin_scope(request.user, Clinic.objects.order_by("name"), "pk", model_review=True)
        if request.method == "POST":
            form = StartAdaptationForm(request.POST, clinics=clinics)
        else:
            form = StartAdaptationForm(initial={"clinic": request.GET.get("clinic")}, clinics=clinics)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                job = site_jobs.request_site_adaptation(
                    clinic=data["clinic"], device_model=data["device_model"], user=request.user
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                self.message_user(
                    request,
                    f"Queued: {job}. It runs on the training worker; its progress appears here.",
                    messages.SUCCESS,
                )
                return redirect(reverse("admin:inference_siteadaptationjob_change", args=[job.pk]))
        counts = case_counts(clinics)
        minimum = site_jobs.minimum_cases()
        context = {
            **self.admin_site.each_context(request),
            "title": "Adapt the model to a site",
            "opts": self.opts,
            "form": form,
            "counts": counts,
            "device_models": sorted({row["device_model"] for row in counts if row["device_model"]}),
            "min_malignant": minimum[0],
            "min_benign": minimum[1],
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/inference/siteadaptationjob/start.html", context)
