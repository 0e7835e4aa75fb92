from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from cases.services import delete_orphan_image_files


class Command(BaseCommand):
    help = "Delete stored image files that no image row refers to (rolled-back uploads)."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=settings.SKINCARE_ORPHAN_FILE_SECONDS, metavar="SECONDS")

    def handle(self, *args, older_than, **options):
        deleted = delete_orphan_image_files(older_than=timedelta(seconds=older_than))
        self.stdout.write(f"Deleted {len(deleted)} orphan files.")
