"""Admin building blocks every app uses, and the admin of the audit trail, users and groups.

Roles in the admin come from where people work, not from model permissions
assigned by hand (see ``cases.permissions``): any active staff user may look
at every page (read-only) unless a role says more, so the ModelAdmins of
every app override ``has_*_permission``. Every change made in the admin is
written to the audit trail (``core.audit``).
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.db import models
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst

from .access import user_access_changed
from .audit import HIDDEN, AuditedAdminMixin
from .models import AuditEvent
from .roles import can_view_admin


class StaffViewMixin:
    """Any active staff user may see the page; editing is decided by role (see the module docstring)."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        widget = getattr(field, "widget", None)
        # The admin's split date/time inputs have no <label> of their own
        # (axe: label); name each after its field.
        inner = getattr(getattr(widget, "widget", widget), "widgets", None)
        if isinstance(db_field, models.DateTimeField) and inner and len(inner) == 2:
            name = capfirst(db_field.verbose_name)
            inner[0].attrs["aria-label"] = f"{name}: date"
            inner[1].attrs["aria-label"] = f"{name}: time"
        return field

    def has_module_permission(self, request):
        return can_view_admin(request.user)

    def has_view_permission(self, request, obj=None):
        return can_view_admin(request.user)


class HistoryAdmin(AuditedAdminMixin, StaffViewMixin, admin.ModelAdmin):
    """A record of what happened: viewable by staff, never added, changed or deleted in the admin."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(HistoryAdmin):
    list_display = ["at", "user", "action", "model", "object_link", "description", "changed_fields"]
    list_filter = ["action", "model", ("user", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["=object_id", "object_repr", "description"]
    date_hierarchy = "at"
    fields = ["at", "user", "action", "model", "object_id", "object_repr", "description", "changes_table"]
    readonly_fields = fields

    def history_view(self, request, object_id, extra_context=None):
        # The trail of the trail would always be empty.
        return admin.ModelAdmin.history_view(self, request, object_id, extra_context)

    @admin.display(description="Object", ordering="object_repr")
    def object_link(self, obj):
        return format_html('{} <span class="quiet">({})</span>', obj.object_repr, obj.object_id)

    @admin.display(description="Changed fields")
    def changed_fields(self, obj):
        return ", ".join(sorted(obj.changes)) if isinstance(obj.changes, dict) else ""

    @admin.display(description="Changes")
    def changes_table(self, obj):
        if not obj.changes:
            return "—"
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            ((name, _show(values[0]), _show(values[1])) for name, values in sorted(obj.changes.items())),
        )
        return format_html("<table><thead><tr><th>Field</th><th>Old</th><th>New</th></tr></thead>{}</table>", rows)


def _show(value):
    if value is None:
        return "—"
    if value == HIDDEN:
        return "(hidden)"
    return str(value)


# Users and groups keep Django's own admin (superusers and holders of the
# auth permissions only), audited like everything else: who joined the ML
# admins group, or had a password reset, is part of the trail.
User = get_user_model()
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdminMixin, UserAdmin):
    """Deactivating a user, or setting their password, ends their device tokens at once (core.access)."""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        user_access_changed(obj)

    def user_change_password(self, request, id, form_url=""):
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:  # saved
            user_access_changed(User.objects.get(pk=id))
        return response


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdminMixin, GroupAdmin):
    pass
