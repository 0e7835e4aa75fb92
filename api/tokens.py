"""Issuing, checking and revoking device tokens.

A token is ``skc_<prefix>.<secret>``. The prefix is public (it finds the
row); only the sha256 of the whole token is stored, compared in constant
time. Tokens expire after ``SKINCARE_API_TOKEN_DAYS`` days.

A token lasts only while its user is still entitled to it. Every use checks
(``_lost_entitlement``) that the user is active, that their password is the
one they had when the token was issued, and that they are still a member of
a clinic; if not, the token is revoked there and then, with the reason. This
covers every way those change (the portal's password form, a reset, the
admin's user and membership pages, ``manage.py changepassword``, a shell)
without signals. The code that changes them on purpose also calls
``user_access_changed`` (through ``core.access``), so the revocation is
recorded at once rather than at the token's next use.
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .models import DeviceToken, credential_fingerprint

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
        credential_fingerprint=credential_fingerprint(user),
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
    if row.revoked_at is not None or row.expires_at <= timezone.now():
        return None
    reason = _lost_entitlement(row)
    if reason:
        revoke_token(row, reason=reason)
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        DeviceToken.objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return row


def _lost_entitlement(row: DeviceToken) -> str:
    """Why ``row``'s user may no longer use it ("" while they may)."""
    user = row.user
    if not user.is_active:
        return "deactivated"
    if not hmac.compare_digest(row.credential_fingerprint, credential_fingerprint(user)):
        return "password_changed"
    if not user.memberships.exists():
        return "no_clinic"
    return ""


def revoke_token(row: DeviceToken, *, reason="user") -> None:
    if row.revoked_at is None:
        row.revoked_at = timezone.now()
        row.revoked_reason = reason
        row.save(update_fields=["revoked_at", "revoked_reason"])


def user_access_changed(user) -> int:
    """Revoke ``user``'s live tokens that they are no longer entitled to; returns how many."""
    revoked = 0
    for row in DeviceToken.objects.filter(user=user, revoked_at__isnull=True):
        row.user = user  # the caller's copy, with the change just made
        reason = _lost_entitlement(row)
        if reason:
            revoke_token(row, reason=reason)
            revoked += 1
    return revoked


def revoke_tokens_of(user, *, reason) -> int:
    """Revoke every live token of ``user`` now; returns how many."""
    return DeviceToken.objects.filter(user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=reason
    )
