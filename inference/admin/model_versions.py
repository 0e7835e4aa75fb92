"""Admin of model versions: registration, activation, rollback and shadow mode."""

from django.contrib import admin

from ..models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "is_active", "threshold", "input_size", "created_at", "activated_at"]
    list_filter = ["is_active", "name"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]

    def has_add_permission(self, request):
        return False  # registered with `manage.py register_model`, which validates the file
