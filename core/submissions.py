"""One-time form tokens: a retried form submission does its writes once (``FormSubmission``)."""

import secrets
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import FormSubmission

# Long enough for a slow upload and a retry; kept this long, then forgotten.
KEEP_DAYS = 2


def new_token() -> str:
    return secrets.token_hex(16)


def claim(*, user, token) -> tuple[FormSubmission, bool]:
    """Record ``token`` as used by ``user``; returns (record, first). Call inside the guarded transaction.

    ``first`` is False when the token was used already (its record tells
    where that submission went): do nothing and send the browser there.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("claim a form token inside the transaction of the writes it guards")
    try:
        with transaction.atomic():
            return FormSubmission.objects.create(user=user, token=token), True
    except IntegrityError:
        return FormSubmission.objects.get(user=user, token=token), False


def delete_old(*, older_than: timedelta = timedelta(days=KEEP_DAYS)) -> int:
    deleted, _ = FormSubmission.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted
