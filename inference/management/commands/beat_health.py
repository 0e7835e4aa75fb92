"""Exit 0 if celery beat is sending the stale-prediction sweep, 1 otherwise: a container health check.

Beat keeps its schedule in the database (django-celery-beat's
DatabaseScheduler), and writes each entry's ``last_run_at`` there when it
syncs, at least every ``SYNC_SECONDS``. So the sweep's ``last_run_at`` is
never older than one sync plus one sweep interval while beat runs; older
means beat is stopped or wedged, and no lost prediction would be re-sent
(docs/operations.md). A database it cannot reach fails the check as well.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

SWEEP_ENTRY = "sweep-predictions"
# django_celery_beat.schedulers.DatabaseScheduler.sync_every
SYNC_SECONDS = 180


class Command(BaseCommand):
    help = "Check that celery beat sent the stale-prediction sweep recently; exit 1 if not."

    def add_arguments(self, parser):
        parser.add_argument(
            "--max-age",
            type=float,
            metavar="SECONDS",
            help="how old the sweep's last run may be (default: one beat sync plus two sweep intervals)",
        )

    def handle(self, *args, max_age=None, **options):
        from django_celery_beat.models import PeriodicTask

        if max_age is None:
            max_age = SYNC_SECONDS + 2 * settings.SKINCARE_SWEEP_SECONDS
        try:
            task = PeriodicTask.objects.filter(name=SWEEP_ENTRY).first()
        except Exception as exc:
            raise CommandError(f"cannot read beat's schedule: {type(exc).__name__}") from exc
        if task is None:
            raise CommandError(f"beat has not stored its schedule yet (no {SWEEP_ENTRY!r} entry)")
        reference = task.last_run_at or task.date_changed
        age = (timezone.now() - reference).total_seconds()
        if age > max_age:
            raise CommandError(
                f"{SWEEP_ENTRY} last sent {age:.0f} s ago (more than {max_age:g} s): beat is not running"
            )
        self.stdout.write(f"{SWEEP_ENTRY} last sent {age:.0f} s ago: ok")
