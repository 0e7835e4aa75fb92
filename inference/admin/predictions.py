"""Admin review of predictions: what the model said, and what clinicians made of it.

One row per prediction with the image and heatmap as thumbnails (served by
admin-only views, never a public URL), the model's output and the latest
clinician review of the image. Predictions are the record of what a model
said: nobody edits or deletes them here. The actions (re-run with the active
model, flag for a specialist, export as CSV) each write to the audit trail.

About 400 lines, kept in one module: the list filters, the CSV helpers and
the admin are all the one review page, and each piece is small.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, Subquery
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from cases import permissions
from cases.models import Review
from core.admin import HistoryAdmin
from core.audit import log_action, log_actions
from core.files import private_file_response
from core.images import media_type_of

from .. import services
from ..models import Prediction
from .prediction_export import csv_rows
from .prediction_filters import (
    DisagreementFilter,
    FailedFilter,
    ProbabilityBandFilter,
    ReviewedFilter,
    ShadowFilter,
)


def choice_label(choices, value):
    if not value:
        return ""
    return dict(choices).get(value, value)


def _latest_review(field):
    reviews = Review.objects.filter(image=OuterRef("image")).order_by("-created_at", "-pk")
    return Subquery(reviews.values(field)[:1])


def with_latest_review(queryset):
    """Each prediction with its image's latest review (verdict, diagnosis, histopathology): three subqueries, no N+1."""
    return queryset.annotate(
        latest_verdict=_latest_review("verdict"),
        latest_final_diagnosis=_latest_review("final_diagnosis"),
        latest_histopathology=_latest_review("histopathology_result"),
    )


THUMBNAIL_SIZE = 64
PREVIEW_SIZE = 320


def thumbnail_box(image, size=THUMBNAIL_SIZE):
    """(width, height) that fit ``image`` in a ``size`` square at its own aspect ratio, never stretched."""
    scale = size / max(image.width, image.height, 1)
    return max(1, round(image.width * scale)), max(1, round(image.height * scale))


@admin.register(Prediction)
class PredictionAdmin(HistoryAdmin):
    class Media:
        css = {"all": ["inference/admin.css"]}  # the previews' sizes: no inline styles (CSP)

    list_display = [
        "short_id",
        "image_thumbnail",
        "heatmap_thumbnail",
        "label",
        "probability",
        "model_version",
        "status",
        "is_shadow",
        "flagged_for_specialist",
        "verdict",
        "final_diagnosis",
        "histopathology",
        "queued_at",
    ]
    list_filter = [
        "status",
        "label",
        ProbabilityBandFilter,
        "model_version",
        ShadowFilter,
        ReviewedFilter,
        DisagreementFilter,
        FailedFilter,
        "flagged_for_specialist",
    ]
    list_select_related = ["model_version", "image__lesion__patient__clinic"]
    search_fields = ["=id", "=image__id", "image__lesion__patient__medical_record_number"]
    date_hierarchy = "queued_at"
    list_per_page = 50
    # The heatmap file is shown by name and preview, never as a media URL.
    readonly_fields = [
        "image_preview",
        "heatmap_preview",
        "latest_review",
        *[f.name if f.name != "heatmap" else "heatmap_file" for f in Prediction._meta.fields],
    ]
    actions = ["rerun_with_active_model", "flag_for_specialist", "export_csv"]

    def get_queryset(self, request):
        # ML admins review models across clinics (patients pseudonymised);
        # everyone else sees their own clinics' predictions.
        rows = permissions.admin_scope(
            request.user, super().get_queryset(request), "image__lesion__patient__clinic", model_review=True
        )
        return with_latest_review(rows)

    def get_search_fields(self, request):
        # An ML admin sees every clinic's predictions: searching them by MRN
        # would let them test for a patient they may not identify.
        if request.user.is_superuser or not permissions.is_ml_admin(request.user):
            return self.search_fields
        return [field for field in self.search_fields if "medical_record_number" not in field]

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<uuid:prediction_id>/image/", view(self.image_view), name="inference_prediction_image"),
            path("<uuid:prediction_id>/heatmap/", view(self.heatmap_view), name="inference_prediction_heatmap"),
            *super().get_urls(),
        ]

    # --- Bytes behind the thumbnails: staff only, never a public media URL.

    def image_view(self, request, prediction_id):
        if not permissions.can_view_admin(request.user):
            raise PermissionDenied
        prediction = get_object_or_404(self.get_queryset(request).select_related("image"), pk=prediction_id)
        return private_file_response(prediction.image.image, content_type=media_type_of(prediction.image.image_format))

    def heatmap_view(self, request, prediction_id):
        if not permissions.can_view_admin(request.user):
            raise PermissionDenied
        prediction = get_object_or_404(self.get_queryset(request), pk=prediction_id)
        return private_file_response(prediction.heatmap, content_type="image/png")

    # --- Columns.

    @admin.display(description="Prediction", ordering="pk")
    def short_id(self, obj):
        return str(obj.pk)[:8]

    @admin.display(description="Image")
    def image_thumbnail(self, obj):
        url = reverse("admin:inference_prediction_image", args=[obj.pk])
        width, height = thumbnail_box(obj.image)
        return format_html(
            '<img src="{}" alt="Lesion image" width="{}" height="{}" loading="lazy">', url, width, height
        )

    @admin.display(description="Heatmap")
    def heatmap_thumbnail(self, obj):
        if not obj.heatmap:
            return "—"
        url = reverse("admin:inference_prediction_heatmap", args=[obj.pk])
        # The heatmap is squared over the whole image: drawn in the image's
        # box, it takes the image's shape back.
        width, height = thumbnail_box(obj.image)
        return format_html('<img src="{}" alt="Heatmap" width="{}" height="{}" loading="lazy">', url, width, height)

    @admin.display(description="P(melanoma)", ordering="probability_malignant")
    def probability(self, obj):
        return "—" if obj.probability_malignant is None else f"{obj.probability_malignant:.3f}"

    @admin.display(description="Clinician's verdict", ordering="latest_verdict")
    def verdict(self, obj):
        return choice_label(Review.Verdict.choices, obj.latest_verdict) or "—"

    @admin.display(description="Final diagnosis", ordering="latest_final_diagnosis")
    def final_diagnosis(self, obj):
        return choice_label(Review.Diagnosis.choices, obj.latest_final_diagnosis) or "—"

    @admin.display(description="Histopathology", ordering="latest_histopathology")
    def histopathology(self, obj):
        return choice_label(Review.Histopathology.choices, obj.latest_histopathology) or "—"

    @admin.display(description="Image")
    def image_preview(self, obj):
        url = reverse("admin:inference_prediction_image", args=[obj.pk])
        width, height = thumbnail_box(obj.image, PREVIEW_SIZE)
        return format_html(
            '<img src="{}" alt="Lesion image" class="prediction-preview" width="{}" height="{}">', url, width, height
        )

    @admin.display(description="Heatmap")
    def heatmap_preview(self, obj):
        if not obj.heatmap:
            return "—"
        url = reverse("admin:inference_prediction_heatmap", args=[obj.pk])
        width, height = thumbnail_box(obj.image, PREVIEW_SIZE)
        return format_html(
            '<img src="{}" alt="Heatmap" class="prediction-preview" width="{}" height="{}">', url, width, height
        )

    @admin.display(description="Heatmap file")
    def heatmap_file(self, obj):
        return obj.heatmap.name or "—"

    @admin.display(description="Latest review of the image")
    def latest_review(self, obj):
        if not obj.latest_verdict:
            return "Not reviewed"
        return " · ".join(
            part
            for part in (
                choice_label(Review.Verdict.choices, obj.latest_verdict),
                choice_label(Review.Diagnosis.choices, obj.latest_final_diagnosis),
                choice_label(Review.Histopathology.choices, obj.latest_histopathology),
            )
            if part
        )

    # --- Actions.

    def has_rerun_permission(self, request):
        user = request.user
        return permissions.is_ml_admin(user) or permissions.can_edit_any_clinic_in_admin(user)

    has_flag_permission = has_rerun_permission

    def has_export_permission(self, request):
        return permissions.can_view_admin(request.user)

    @admin.action(permissions=["rerun"], description="Re-run with the active model")
    def rerun_with_active_model(self, request, queryset):
        try:
            outcomes = services.rerun_with_active_model(predictions=queryset, user=request.user)
        except PermissionDenied:
            return self._refuse(request, "re-run")
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return None
        counts = {}
        for outcome in outcomes:
            counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
            if outcome.prediction is not None:
                log_action(
                    user=request.user,
                    obj=outcome.prediction,
                    description=f"Re-run with the active model: {outcome.outcome.replace('_', ' ')}",
                    changes=outcome.changes,
                )
        self.message_user(request, _rerun_message(counts), messages.SUCCESS)
        return None

    @admin.action(permissions=["flag"], description="Flag for specialist review")
    def flag_for_specialist(self, request, queryset):
        try:
            flagged = services.flag_for_specialist(predictions=queryset, user=request.user)
        except PermissionDenied:
            return self._refuse(request, "flag")
        for prediction in flagged:
            log_action(
                user=request.user,
                obj=prediction,
                description="Flagged for specialist review",
                changes={"flagged_for_specialist": [False, True]},
            )
        already = queryset.count() - len(flagged)
        message = f"{len(flagged)} flagged for specialist review"
        if already:
            message += f"; {already} already flagged"
        self.message_user(request, message + ".", messages.SUCCESS)
        return None

    @admin.action(permissions=["export"], description="Export selected as CSV")
    def export_csv(self, request, queryset):
        rows = Prediction.objects.filter(pk__in=queryset.values("pk"))
        predictions = list(
            with_latest_review(rows)
            .select_related("model_version", "image__lesion__patient__clinic")
            .order_by("queued_at", "pk")
        )
        # Who took which patient data out of the system.
        log_actions(user=request.user, objects=predictions, description="Exported as CSV")
        response = StreamingHttpResponse(
            csv_rows(predictions, user=request.user), content_type="text/csv; charset=utf-8"
        )
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="predictions-{stamp}.csv"'
        response["Cache-Control"] = "private, no-store"
        return response

    def _refuse(self, request, verb):
        self.message_user(
            request,
            f"Nothing done: you may only {verb} predictions of images in clinics you administer.",
            messages.ERROR,
        )
        return None


def _rerun_message(counts):
    parts = [
        (services.RerunOutcome.QUEUED, "queued"),
        (services.RerunOutcome.PUBLISHED, "published from shadow"),
        (services.RerunOutcome.ALREADY_QUEUED, "already queued"),
        (services.RerunOutcome.ALREADY_DONE, "already done"),
    ]
    text = ", ".join(f"{counts.get(key, 0)} {label}" for key, label in parts if counts.get(key) or key == "queued")
    return f"Re-run with the active model: {text}."
