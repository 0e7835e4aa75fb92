"""Rewrite images stored before uploads were sanitized (docs/security.md).

Since uploads are sanitized on arrival, every door serves stored bytes as
they are; images stored earlier may still carry EXIF (GPS, serials), XMP,
comments, extra frames or trailing data. This command rewrites each such
file once; an already clean file is left alone, so running it again changes
nothing.
"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from cases import services
from cases.models import LesionImage


class Command(BaseCommand):
    help = "Strip metadata, extra frames and trailing data from lesion images stored before uploads were sanitized."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=200)

    def handle(self, *args, batch_size, **options):
        changed = unreadable = total = 0
        for image in LesionImage.objects.order_by("uploaded_at", "id").iterator(chunk_size=batch_size):
            total += 1
            try:
                changed += services.sanitize_stored_image(image=image)
            except (ValidationError, OSError) as exc:
                unreadable += 1
                self.stderr.write(f"{image.id}: not rewritten: {exc}")
        self.stdout.write(f"{changed} of {total} images rewritten; {unreadable} could not be read.")
        if unreadable:
            raise SystemExit(1)
