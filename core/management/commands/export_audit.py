"""Export the audit trail for a date range, one JSON object per line (for a records request or an archive)."""

import json
import sys
from datetime import datetime, time, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from core.models import AuditEvent

FIELDS = [
    "id",
    "at",
    "user_id",
    "user__username",
    "action",
    "channel",
    "client_address",
    "model",
    "object_id",
    "object_ids",
    "object_repr",
    "description",
    "changes",
]


def _day(value: str):
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise CommandError(f"{value!r} is not a date like 2026-12-31.") from None


class Command(BaseCommand):
    help = "Write the audit events of a date range (inclusive, server time zone) as JSON lines."

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, type=_day, help="first day, YYYY-MM-DD")
        parser.add_argument("--until", required=True, type=_day, help="last day, YYYY-MM-DD")
        parser.add_argument("--out", help="file to write (default: standard output)")

    def handle(self, *args, since, until, out=None, **options):
        if until < since:
            raise CommandError("--until is before --since.")
        start = timezone.make_aware(datetime.combine(since, time.min))
        end = timezone.make_aware(datetime.combine(until + timedelta(days=1), time.min))
        events = AuditEvent.objects.filter(at__gte=start, at__lt=end).order_by("at", "id").values(*FIELDS)
        stream = open(out, "w", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
        count = 0
        try:
            for event in events.iterator(chunk_size=2000):
                stream.write(json.dumps(event, cls=DjangoJSONEncoder) + "\n")
                count += 1
        finally:
            if out:
                stream.close()
        self.stderr.write(f"{count} audit events from {since} to {until}.")
