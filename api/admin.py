"""The admin of API device tokens: listed and revoked here, issued only by the API."""

from django.contrib import admin, messages
from django.utils import timezone

from cases import permissions
from core.admin import HistoryAdmin
from core.audit import log_action

from .models import DeviceToken
from .tokens import revoke_token


class TokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("usable", "Usable"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "usable":
            return queryset.filter(revoked_at__isnull=True, expires_at__gt=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


@admin.register(DeviceToken)
class DeviceTokenAdmin(HistoryAdmin):
    """API tokens: listed and revoked here, issued only by the API (the secret is shown once, there)."""

    list_display = [
        "name",
        "user",
        "prefix",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "revoked_reason",
        "usable",
    ]
    list_filter = [TokenStateFilter, "created_at", "expires_at"]
    list_select_related = ["user"]
    search_fields = ["name", "=prefix", "user__username"]
    date_hierarchy = "created_at"
    # Never the token hash or the credential fingerprint: not on the page, not in the trail.
    fields = ["user", "name", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at", "revoked_reason"]
    readonly_fields = fields
    audit_hidden_fields = ["token_hash", "credential_fingerprint"]
    actions = ["revoke"]

    @admin.display(boolean=True, description="Usable")
    def usable(self, obj):
        return obj.is_usable

    def has_revoke_permission(self, request):
        return permissions.can_edit_any_clinic_in_admin(request.user)

    @admin.action(permissions=["revoke"], description="Revoke selected tokens")
    def revoke(self, request, queryset):
        tokens = list(queryset.select_related("user"))
        refused = [t for t in tokens if not permissions.can_revoke_device_token_in_admin(request.user, t)]
        if refused:
            self.message_user(
                request,
                f"Nothing revoked: {len(refused)} of the selected tokens belong to users outside the clinics "
                "you administer.",
                messages.ERROR,
            )
            return None
        revoked = 0
        for token in tokens:
            if token.revoked_at is not None:
                continue
            revoke_token(token, reason="admin")
            log_action(
                user=request.user,
                obj=token,
                description="Revoked",
                changes={"revoked_at": [None, token.revoked_at.isoformat()]},
            )
            revoked += 1
        self.message_user(request, f"{revoked} token{'s' if revoked != 1 else ''} revoked.", messages.SUCCESS)
        return None
