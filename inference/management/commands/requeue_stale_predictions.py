from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from inference.services import requeue_stale_predictions


class Command(BaseCommand):
    help = "Queue again predictions left pending or running for too long."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=int,
            default=settings.SKINCARE_STALE_PREDICTION_SECONDS,
            metavar="SECONDS",
        )

    def handle(self, *args, older_than, **options):
        count = requeue_stale_predictions(older_than=timedelta(seconds=older_than))
        self.stdout.write(f"Re-queued {count} predictions.")
