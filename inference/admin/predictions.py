"""Admin review of predictions: what the model said, and what clinicians made of it."""

from django.contrib import admin

from ..models import Prediction


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "model_version", "status", "label", "probability_malignant", "queued_at"]
    list_filter = ["status", "label", "model_version"]
    list_select_related = ["image", "model_version"]
    date_hierarchy = "queued_at"
    readonly_fields = [f.name for f in Prediction._meta.fields]

    # Predictions are the record of what a model said: read-only.
    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
