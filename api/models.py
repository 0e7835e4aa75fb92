"""What the REST API keeps: device tokens and idempotency records.

Both tables were created by the ``cases`` app and keep their names
(``cases_devicetoken``, ``cases_idempotencyrecord``): the models moved here
with state-only migrations, so no row was touched.
"""

import hashlib
import hmac
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


def credential_fingerprint(user) -> str:
    """A digest of ``user``'s stored password hash: it changes whenever the password does.

    Reveals nothing the user table does not already hold (the hash is salted).
    """
    return hashlib.sha256(b"skincare-device-token\0" + (user.password or "").encode()).hexdigest()


class DeviceToken(models.Model):
    """A bearer token for one app installation (api/, docs/api.md).

    The token is ``<prefix>.<secret>``; only the public prefix (for lookup)
    and the sha256 of the whole token are stored, so a database leak reveals
    no usable token. The secret is shown once, when the token is created.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="device_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # A digest of the user's password hash when the token was issued
    # (api.tokens.credential_fingerprint): a password changed by any path
    # (portal, admin, reset, manage.py changepassword) no longer matches, and
    # the token is revoked on its next use.
    credential_fingerprint = models.CharField(max_length=64, blank=True, default="", editable=False)
    # Why the token was revoked: "user", "admin", "password_changed", "deactivated", "no_clinic".
    revoked_reason = models.CharField(max_length=32, blank=True, default="", editable=False)

    class Meta:
        db_table = "cases_devicetoken"
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}) of {self.user}"

    @property
    def is_usable(self):
        """Not revoked or expired, and its user active with the password it was issued under.

        (Whether the user is still in a clinic is checked when it is used: api.tokens.)
        """
        return (
            self.revoked_at is None
            and self.expires_at > timezone.now()
            and self.user.is_active
            and hmac.compare_digest(self.credential_fingerprint, credential_fingerprint(self.user))
        )


class IdempotencyRecord(models.Model):
    """The first response to a create request sent with an idempotency key.

    One row per (user, key), enforced by the database: a retry, even one
    racing the first request, finds this row and gets the same answer.
    """

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # sha256 of the request (method, path and payload, files by their hash).
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    # The JSON text as first sent (text, not jsonb, so a replay is byte-identical).
    response_body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        db_table = "cases_idempotencyrecord"
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="one_idempotency_record_per_user_and_key"),
        ]

    def __str__(self):
        return f"{self.key} of {self.user}"
