"""Idempotent creates: a retry with the same key gets the first answer.

The record of a (user, key) is inserted *first*, in the same transaction as
the create itself. A concurrent request with the same key blocks on the
unique index until that transaction ends: if it committed, the waiter reads
the stored answer and replays it; if it rolled back (the create failed),
the waiter goes ahead as if it were first. So no key ever yields two rows.

Failed requests (4xx) are not recorded: correcting the request and retrying
with the same key is allowed.
"""

import hashlib
import json
from datetime import timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import serializers
from rest_framework.response import Response

from .errors import IdempotencyKeyReused
from .models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def key_from(request, fallback=None) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return fallback
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise serializers.ValidationError(
            {HEADER: [f"Must be 1 to {MAX_KEY_LENGTH} printable ASCII characters (a UUID is a good choice)."]}
        )
    return key


def fingerprint(request, payload) -> str:
    text = json.dumps([request.method, request.path, payload], sort_keys=True, cls=DjangoJSONEncoder)
    return hashlib.sha256(text.encode()).hexdigest()


def idempotent(request, *, key, payload, perform) -> Response:
    """Run ``perform() -> (status, body)`` at most once per (user, key)."""
    if key is None:
        with transaction.atomic():
            status, body = perform()
        return Response(body, status=status)
    request_hash = fingerprint(request, payload)
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    user=request.user, key=key, fingerprint=request_hash, status_code=0, response_body=""
                )
        except IntegrityError:
            # Someone (maybe a request still in flight a moment ago) used the key first.
            record = IdempotencyRecord.objects.get(user=request.user, key=key)
            if record.fingerprint != request_hash:
                raise IdempotencyKeyReused() from None
            body = json.loads(record.response_body)
            return Response(body, status=record.status_code, headers={"Idempotent-Replayed": "true"})
        status, body = perform()
        record.status_code = status
        record.response_body = json.dumps(body, cls=DjangoJSONEncoder)
        record.save(update_fields=["status_code", "response_body"])
    return Response(body, status=status)


def delete_expired_records(*, older_than: timedelta) -> int:
    """Forget answers older than ``older_than``: a retry after that creates anew.

    Clients retry within minutes or hours; keeping every answer forever would
    only grow the table (and keep copies of response bodies).
    """
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted
