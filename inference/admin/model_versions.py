"""Admin of model versions: registration by upload, activation, rollback and shadow mode.

Any active staff user may look (list, details, metrics, model card, plots,
activation history); only ML admins (``cases.permissions.is_ml_admin``) may
upload a model or switch which one is active or shadow: the other staff see
no buttons, and their POSTs are refused with 403. Nothing about a registered
model can be edited: a new file is a new version. Every switch goes through
``inference.registry`` and is written to the audit trail. Switches act on
the global model, or on a site model's own scope (its clinic, or its
clinic's device): activate, shadow, stop shadow, roll back, withdraw.

Why this module is long: one ModelAdmin is the registry's whole admin
(upload, the switches for both kinds of scope, their confirmation pages,
plots); its views share the same permission and scope rules, which would be
scattered if the class were split.
"""

import json
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from cases import permissions
from core.admin import HistoryAdmin, StaffViewMixin
from core.audit import AuditedAdminMixin, log_action, log_created

from .. import registry
from ..models import ModelActivation, ModelVersion

# The three numbers an admin compares versions by, as training writes them
# into model.json's "metrics" (older models nest them under "summary").
KEY_METRICS = [("roc_auc", "AUC"), ("sensitivity", "Sensitivity"), ("specificity", "Specificity")]
PLOTS = {"roc_curve": "ROC curve", "reliability_diagram": "Reliability diagram"}


def metric_summary(metrics: dict, key: str) -> dict | None:
    """{"mean", "sd", "ci95"} of one metric, whichever shape model.json gave it; None when absent."""
    if not isinstance(metrics, dict):
        return None
    value = metrics.get(key)
    if value is None and isinstance(metrics.get("summary"), dict):
        value = metrics["summary"].get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return {"mean": value}
    if isinstance(value, dict) and isinstance(value.get("mean"), int | float):
        return value
    return None


def metric_rows(metrics: dict) -> list[dict]:
    """Every metric with a mean, for the details table: the key ones first, then by name."""
    source = metrics.get("summary") if isinstance(metrics.get("summary"), dict) else metrics
    rank = {key: i for i, (key, _label) in enumerate(KEY_METRICS)}
    names = sorted(source if isinstance(source, dict) else [], key=lambda key: (rank.get(key, len(rank)), key))
    rows = []
    for key in names:
        summary = metric_summary(metrics, key)
        if summary is not None:
            ci = summary.get("ci95")
            ci = ci if isinstance(ci, list) and len(ci) == 2 else None
            rows.append({"name": key, "mean": summary["mean"], "sd": summary.get("sd"), "ci95": ci})
    return rows


class ModelUploadForm(forms.Form):
    archive = forms.FileField(
        label="Model folder (.zip)",
        help_text=(
            "The folder training wrote (model.json, model.keras, and optionally model.onnx, MODEL_CARD.md, "
            "evaluation.json, roc_curve.png, reliability_diagram.png), packed as a .zip. It is checked before "
            "anything is stored: it must load, and its input shape must match model.json."
        ),
    )
    activate = forms.BooleanField(required=False, label="Make it the active model once registered")


@dataclass(frozen=True)
class Switch:
    """One of the buttons: what it asks, what it does, how the audit trail words it."""

    title: str
    button: str
    for_one_version: bool


# Stop shadow and roll back act on a scope: the global one (no version in the
# URL) or the site scope of the version in the URL.
SWITCHES = {
    "activate": Switch("Activate this model", "Activate", True),
    "start_shadow": Switch("Run this model in shadow mode", "Start shadow mode", True),
    "stop_shadow": Switch("Stop shadow mode", "Stop shadow mode", False),
    "rollback": Switch("Roll back to the previous model", "Roll back", False),
    "withdraw": Switch("Withdraw this site model (the clinic goes back to the global model)", "Withdraw", True),
}


@admin.register(ModelVersion)
class ModelVersionAdmin(AuditedAdminMixin, StaffViewMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "version",
        "state",
        "auc",
        "sensitivity",
        "specificity",
        "short_sha256",
        "registered_by",
        "created_at",
        "activated_at",
    ]
    list_display_links = ["name", "version"]
    list_filter = ["is_active", "is_shadow", "name"]
    list_select_related = ["registered_by", "clinic"]
    search_fields = ["name", "version", "sha256"]
    date_hierarchy = "created_at"
    # Files are shown by name only: their URLs would bypass the staff check.
    fields = [
        "name",
        "version",
        "state",
        "sha256",
        "stored_file",
        "stored_onnx_file",
        "onnx_sha256",
        "input_size",
        "preprocessing",
        "threshold",
        "registered_by",
        "created_at",
        "activated_at",
    ]
    readonly_fields = fields

    # --- who may do what ---

    def has_add_permission(self, request):
        return permissions.is_ml_admin(request.user)

    def get_queryset(self, request):
        """Global models to all staff; a site model only to those who may see its clinic (ML admins: all)."""
        queryset = super().get_queryset(request)
        site_models = permissions.admin_scope(
            request.user, queryset.filter(clinic__isnull=False), "clinic", model_review=True
        )
        return queryset.filter(Q(clinic__isnull=True) | Q(pk__in=site_models.values("pk")))

    def has_change_permission(self, request, obj=None):
        return False  # a registered model is evidence of what produced predictions: never edited

    def has_delete_permission(self, request, obj=None):
        return False

    # --- columns ---

    @admin.display(description="State")
    def state(self, obj):
        scope = "" if obj.clinic_id is None else f" · site model of {obj.scope_label}"
        if obj.is_active:
            return format_html('<span class="model-badge model-active">{}</span>{}', "active", scope)
        if obj.is_shadow:
            return format_html('<span class="model-badge model-shadow">{}</span>{}', "shadow", scope)
        return "—" + scope

    def _metric(self, obj, key):
        summary = metric_summary(obj.metrics, key)
        return f"{summary['mean']:.3f}" if summary else "—"

    @admin.display(description="AUC")
    def auc(self, obj):
        return self._metric(obj, "roc_auc")

    @admin.display(description="Sensitivity")
    def sensitivity(self, obj):
        return self._metric(obj, "sensitivity")

    @admin.display(description="Specificity")
    def specificity(self, obj):
        return self._metric(obj, "specificity")

    @admin.display(description="sha256", ordering="sha256")
    def short_sha256(self, obj):
        return format_html('<code title="{}">{}</code>', obj.sha256, obj.sha256[:12])

    @admin.display(description="Model file")
    def stored_file(self, obj):
        return obj.file.name

    @admin.display(description="ONNX file")
    def stored_onnx_file(self, obj):
        return obj.onnx_file.name or "—"

    # --- pages ---

    def get_urls(self):
        def view(function):
            return self.admin_site.admin_view(function)

        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("rollback/", view(self.switch_view), {"switch": "rollback"}, name=f"{prefix}_rollback"),
            path("stop-shadow/", view(self.switch_view), {"switch": "stop_shadow"}, name=f"{prefix}_stop_shadow"),
            path(
                "<uuid:object_id>/activate/", view(self.switch_view), {"switch": "activate"}, name=f"{prefix}_activate"
            ),
            path(
                "<uuid:object_id>/withdraw/", view(self.switch_view), {"switch": "withdraw"}, name=f"{prefix}_withdraw"
            ),
            path(
                "<uuid:object_id>/site-rollback/",
                view(self.switch_view),
                {"switch": "rollback"},
                name=f"{prefix}_site_rollback",
            ),
            path(
                "<uuid:object_id>/site-stop-shadow/",
                view(self.switch_view),
                {"switch": "stop_shadow"},
                name=f"{prefix}_site_stop_shadow",
            ),
            path(
                "<uuid:object_id>/start-shadow/",
                view(self.switch_view),
                {"switch": "start_shadow"},
                name=f"{prefix}_start_shadow",
            ),
            path("<uuid:object_id>/plots/<str:plot>.png", view(self.plot_view), name=f"{prefix}_plot"),
            *super().get_urls(),
        ]

    def _url(self, name, *args):
        return reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args)

    def changelist_view(self, request, extra_context=None):
        context = {"is_ml_admin": permissions.is_ml_admin(request.user), **(extra_context or {})}
        if context["is_ml_admin"]:
            _, previous = registry.rollback_target()
            context.update(
                rollback_url=self._url("rollback") if previous else None,
                stop_shadow_url=self._url("stop_shadow") if ModelVersion.objects.shadow() else None,
            )
        return super().changelist_view(request, context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        version = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if version is not None:
            context.update(self._details(request, version))
        return super().change_view(request, object_id, form_url, context)

    def _details(self, request, version) -> dict:
        ml_admin = permissions.is_ml_admin(request.user)
        buttons = []
        if ml_admin:
            if not version.is_active:
                buttons.append(("Activate", self._url("activate", version.pk)))
            if not version.is_active and not version.is_shadow:
                buttons.append(("Start shadow mode", self._url("start_shadow", version.pk)))
            site = version.is_site_model
            if version.is_shadow:
                buttons.append(
                    (
                        "Stop shadow mode",
                        self._url("site_stop_shadow", version.pk) if site else self._url("stop_shadow"),
                    )
                )
            if version.is_active and registry.rollback_target(version if site else None)[1] is not None:
                buttons.append(("Roll back", self._url("site_rollback", version.pk) if site else self._url("rollback")))
            if version.is_active and site:
                buttons.append(("Withdraw (back to the global model)", self._url("withdraw", version.pk)))
        history = (
            ModelActivation.objects.filter(Q(model_version=version) | Q(previous=version))
            .select_related("model_version", "previous", "by")
            .order_by("-at", "-id")[:100]
        )
        return {
            "is_ml_admin": ml_admin,
            "switch_buttons": buttons,
            "key_metrics": [(label, metric_summary(version.metrics, key)) for key, label in KEY_METRICS],
            "metric_rows": metric_rows(version.metrics),
            "model_card": version.model_card,
            "evaluation_json": json.dumps(version.evaluation, indent=2) if version.evaluation else "",
            "plots": [
                (label, self._url("plot", version.pk, field))
                for field, label in PLOTS.items()
                if getattr(version, field)
            ],
            "activation_history": history,
        }

    def add_view(self, request, form_url="", extra_context=None):
        """The upload form: a zip of a model folder, validated and registered through the registry."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ModelUploadForm(request.POST, request.FILES) if request.method == "POST" else ModelUploadForm()
        if request.method == "POST" and form.is_valid():
            was_active = ModelVersion.objects.active()
            try:
                version, created = registry.register_model_upload(
                    upload=form.cleaned_data["archive"],
                    user=request.user,
                    activate=form.cleaned_data["activate"],
                )
            except ValidationError as exc:
                form.add_error("archive", exc)
            else:
                if created:
                    log_created(user=request.user, obj=version)
                    self.message_user(request, f"Registered {version} (sha256 {version.sha256[:12]}).")
                else:
                    self.message_user(request, f"{version} was already registered with this file.", messages.WARNING)
                if form.cleaned_data["activate"] and version != was_active:
                    description = f"Activated {version} on upload (previously active: {was_active or 'none'})"
                    log_action(
                        user=request.user, obj=version, description=description, changes={"is_active": [False, True]}
                    )
                    self.message_user(request, f"{version} is the active model.")
                return redirect(self._url("change", version.pk))
        context = {
            **self.admin_site.each_context(request),
            "title": "Register a model version",
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/inference/modelversion/upload.html", context)

    def switch_view(self, request, object_id=None, *, switch):
        """GET: a confirmation page; POST: activate, start or stop shadow mode, or roll back."""
        if not permissions.is_ml_admin(request.user):
            raise PermissionDenied
        spec = SWITCHES[switch]
        version = get_object_or_404(self.get_queryset(request), pk=object_id) if object_id else None
        # The scope switched: the version's site, else the global model.
        scope = version if version is not None and version.is_site_model else None
        active = ModelVersion.objects.active()
        shadow = ModelVersion.objects.shadow()
        if scope is not None:
            in_scope = ModelVersion.objects.in_scope(scope.clinic_id, scope.device_model)
            active = in_scope.filter(is_active=True).first()
            shadow = in_scope.filter(is_shadow=True).first()
        if request.method == "POST":
            return self._switch(request, switch, version, scope, active, shadow)
        _, rollback_to = registry.rollback_target(scope)
        context = {
            **self.admin_site.each_context(request),
            "title": spec.title,
            "opts": self.opts,
            "switch": spec,
            "version": version,
            "active": active,
            "shadow": shadow,
            "rollback_to": rollback_to,
            "scope_label": scope.scope_label if scope is not None else "",
            "cancel_url": self._url("change", version.pk) if version else self._url("changelist"),
        }
        return TemplateResponse(request, "admin/inference/modelversion/confirm_switch.html", context)

    def _switch(self, request, switch, version, scope, active, shadow):
        user = request.user
        try:
            if switch == "activate":
                if version == active:
                    raise ValidationError(f"{version} is already the active model.")
                changed = registry.activate_model_version(version, user=user)
                changes = {"is_active": [False, True]}
                description = f"Activated {changed} (previously active: {active or 'none'})"
            elif switch == "start_shadow":
                if version == shadow:
                    raise ValidationError(f"{version} is already the shadow model.")
                changed = registry.start_shadow(version, user=user)
                changes = {"is_shadow": [False, True]}
                description = f"Started shadow mode of {changed} (previous shadow: {shadow or 'none'})"
            elif switch == "withdraw":
                changed = registry.withdraw_site_model(version, user=user)
                changes = {"is_active": [True, False]}
                description = f"Withdrew {changed} from {changed.scope_label}"
            elif switch == "stop_shadow":
                changed = registry.stop_shadow(user=user, scope=scope)
                changes = {"is_shadow": [True, False]}
                description = f"Stopped shadow mode of {changed}"
            else:
                changed = registry.rollback_model_version(user=user, scope=scope)
                changes = {"is_active": [False, True]}
                description = f"Rolled back from {active} to {changed}"
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return redirect(self._url("change", version.pk) if version else self._url("changelist"))
        if not changed.is_site_model:  # site switches are audited by the registry itself
            log_action(user=user, obj=changed, description=description, changes=changes)
        self.message_user(request, description + ".")
        return redirect(self._url("change", changed.pk))

    def plot_view(self, request, object_id, plot):
        """An evaluation plot, to staff only (the file has no public URL)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if plot not in PLOTS:
            raise Http404
        version = get_object_or_404(self.get_queryset(request), pk=object_id)
        field_file = getattr(version, plot)
        if not field_file:
            raise Http404
        response = FileResponse(field_file.open("rb"), content_type="image/png")
        response["Cache-Control"] = "private, no-cache"
        return response


@admin.register(ModelActivation)
class ModelActivationAdmin(HistoryAdmin):
    """Which model was live or shadow, who switched it and when: append-only."""

    list_display = ["at", "action", "model_version", "previous", "by"]
    list_filter = ["action", "model_version"]
    list_select_related = ["model_version", "previous", "by"]
    date_hierarchy = "at"
    readonly_fields = ["at", "action", "model_version", "previous", "by"]
    fields = readonly_fields
