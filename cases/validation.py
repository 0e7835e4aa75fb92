"""Checks an uploaded image before anything is stored.

Uses Pillow only (no model runtime): the web process must stay light. The
same rules apply to every way an image comes in (portal, API, admin,
management commands), because all of them call cases.services.
"""

import hashlib
from dataclasses import dataclass
from io import BytesIO

from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image

from training.preprocessing import ImageError, open_image

ACCEPTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png"}


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    sha256: str
    byte_size: int


def read_upload(file) -> bytes:
    """Read an uploaded file whole, refusing empty or oversized ones first."""
    limit = settings.SKINCARE_MAX_UPLOAD_BYTES
    size = getattr(file, "size", None)
    if size is not None and size > limit:
        raise ValidationError(
            f"The file is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB.",
            code="file_too_large",
        )
    file.seek(0)
    data = file.read(limit + 1)
    if not data:
        raise ValidationError("The file is empty.", code="empty_file")
    if len(data) > limit:
        raise ValidationError(f"The file exceeds the {limit / 1e6:.0f} MB limit.", code="file_too_large")
    return data


def inspect_image(data: bytes) -> ImageInfo:
    """Decode ``data`` fully (catching truncation and decompression bombs)."""
    try:
        with Image.open(BytesIO(data)) as probe:
            image_format = probe.format
    except Image.DecompressionBombError:
        raise ValidationError("The image has too many pixels to be processed safely.", code="too_many_pixels") from None
    except Exception:
        image_format = None
    if image_format not in ACCEPTED_FORMATS:
        raise ValidationError("The file is not a JPEG or PNG image.", code="unsupported_format")
    try:
        img = open_image(data)
    except ImageError as exc:
        raise ValidationError(f"The image cannot be used: {exc}.", code="invalid_image") from exc
    return ImageInfo(
        format=image_format,
        width=img.width,
        height=img.height,
        sha256=hashlib.sha256(data).hexdigest(),
        byte_size=len(data),
    )
