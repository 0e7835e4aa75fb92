"""Site adaptation jobs in the admin: their status and progress lines, read-only.

A job of a clinic is seen by staff who may see that clinic (ML admins: all);
jobs are started by ``inference.site_jobs.request_site_adaptation``.
"""

from django.contrib import admin

from cases import permissions
from core.admin import HistoryAdmin

from ..models import SiteAdaptationJob


@admin.register(SiteAdaptationJob)
class SiteAdaptationJobAdmin(HistoryAdmin):
    list_display = ["created_at", "clinic", "status", "last_progress", "model_version", "requested_by"]
    list_filter = ["status"]
    list_select_related = ["clinic", "model_version", "requested_by"]
    fields = [
        "clinic",
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

    @admin.display(description="Progress")
    def last_progress(self, obj):
        lines = obj.progress.strip().splitlines()
        return lines[-1] if lines else "—"
