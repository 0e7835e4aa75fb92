from django.contrib import admin

from .models import ModelVersion, Prediction


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "is_active", "threshold", "input_size", "created_at", "activated_at"]
    list_filter = ["is_active", "name"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]

    def has_add_permission(self, request):
        return False  # registered with `manage.py register_model`, which validates the file


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
