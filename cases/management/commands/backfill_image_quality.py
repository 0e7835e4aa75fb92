"""Measure images stored before the intake quality gate (docs/image-quality.md).

Images stored before the gate, or measured by an older version of its
measures (``core.quality.MEASURES_VERSION``), get their quality measures and
findings, perceptual hash and near-duplicate links, as an upload now would.
Batched (one query per batch of rows); an image already measured by this
version is not selected again, so a second run changes nothing. Like
``sanitize_stored_images`` it records no audit events: it adds derived
measures, not clinical data, and logs each image it changes.
"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from cases import services
from training.preprocessing import ImageError


class Command(BaseCommand):
    help = "Record quality measures, perceptual hashes and near-duplicates of images stored before the quality gate."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=200)

    def handle(self, *args, batch_size, **options):
        changed = unreadable = total = 0
        images = services.images_needing_quality_backfill().select_related("lesion__patient")
        for image in images.iterator(chunk_size=batch_size):
            total += 1
            try:
                changed += services.backfill_image_quality(image=image)
            except (ValidationError, ImageError, OSError) as exc:
                unreadable += 1
                self.stderr.write(f"{image.id}: not measured: {exc}")
        self.stdout.write(f"{changed} of {total} images needing it measured; {unreadable} could not be read.")
        if unreadable:
            raise SystemExit(1)
