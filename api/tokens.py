"""Issuing, checking and revoking device tokens.

A token is ``skc_<prefix>.<secret>``. The prefix is public (it finds the
row); only the sha256 of the whole token is stored, compared in constant
time. Tokens expire after ``SKINCARE_API_TOKEN_DAYS`` days.
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .models import DeviceToken

SCHEME = "skc_"
# Writing last_used_at on every request would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(*, user, name) -> tuple[DeviceToken, str]:
    """Create a token for ``user``; returns the row and the token text (shown once)."""
    prefix = secrets.token_hex(6)
    token = f"{SCHEME}{prefix}.{secrets.token_urlsafe(32)}"
    row = DeviceToken.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        token_hash=_hash(token),
        expires_at=timezone.now() + timedelta(days=settings.SKINCARE_API_TOKEN_DAYS),
    )
    return row, token


def find_token(token: str) -> DeviceToken | None:
    """The usable token row for ``token``, or None (unknown, wrong, revoked or expired)."""
    if not token.startswith(SCHEME) or "." not in token:
        return None
    prefix = token[len(SCHEME) :].split(".", 1)[0]
    row = DeviceToken.objects.select_related("user").filter(prefix=prefix).first()
    if row is None or not hmac.compare_digest(row.token_hash, _hash(token)):
        return None
    if not row.is_usable:
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        DeviceToken.objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return row


def revoke_token(row: DeviceToken) -> None:
    if row.revoked_at is None:
        row.revoked_at = timezone.now()
        row.save(update_fields=["revoked_at"])
