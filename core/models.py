"""The foundation's one table: the audit trail.

Created by the ``cases`` app as ``cases_auditevent`` and moved here with a
state-only migration; the table keeps its name.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditEventQuerySet(models.QuerySet):
    """Append-only: the app may add events and read them, never change or delete them."""

    def update(self, **kwargs):
        raise PermissionError("Audit events are never changed.")

    def delete(self):
        raise PermissionError("Audit events are never deleted.")


class AuditEvent(models.Model):
    """One change made in the admin, or one read of patient data: who, when, which record, how.

    Append-only and field-level (old and new values), unlike Django's own
    LogEntry, which names changed fields but not their values. Written by
    ``core.audit``; nothing edits or deletes these rows.
    """

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        CHANGED = "changed", "Changed"
        DELETED = "deleted", "Deleted"
        ACTION = "action", "Admin action"
        READ = "read", "Read"
        REFUSED = "refused", "Refused read"

    class Channel(models.TextChoices):
        ADMIN = "admin", "Admin"
        PORTAL = "portal", "Portal"
        API = "api", "API"
        OTHER = "other", "Other"

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    action = models.CharField(max_length=10, choices=Action.choices)
    # "app_label.model", e.g. "cases.patient"; a string, not a foreign key,
    # so the trail outlives the rows it describes.
    model = models.CharField(max_length=100, db_index=True)
    object_id = models.CharField(max_length=64, db_index=True)
    object_repr = models.CharField(max_length=200)
    # {"field": [old, new], ...} for changes; a description for actions.
    changes = models.JSONField(default=dict, blank=True)
    description = models.CharField(max_length=300, blank=True)
    # Reads: which door, from which address, and for a list every id shown.
    channel = models.CharField(max_length=10, choices=Channel.choices, blank=True)
    client_address = models.GenericIPAddressField(null=True, blank=True)
    object_ids = models.JSONField(default=list, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        db_table = "cases_auditevent"
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.get_action_display()} {self.model} {self.object_repr} by {self.user} at {self.at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("Audit events are never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Audit events are never deleted.")


class FormSubmission(models.Model):
    """A one-time form token that has been used: a browser retry of the same form changes nothing twice.

    A form page carries a fresh random token (``core.submissions``); the view
    records (user, token) first, in the same transaction as the writes it
    guards. A second POST of the same form (a double click, a browser retry
    after a timeout) blocks on the unique index until the first commits, then
    finds the record and is sent where the first one went. If the first
    rolled back, the token is free again.
    """

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    token = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    # Where the first submission sent the browser.
    result_url = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "token"], name="one_use_per_form_token")]

    def __str__(self):
        return f"Form {self.token} by {self.user_id}"
