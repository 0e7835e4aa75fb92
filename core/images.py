"""The one definition of an acceptable image, and the one check every upload passes.

Uses Pillow only (no model runtime): the web process must stay light. Every
door (portal, API, admin, management commands) hands its file to
``cases.services.add_lesion_image``, which checks it here; a door that
validates a form first (so that each bad file gets its own message) passes
the ``CheckedImage`` it got on to the service, so each upload is decoded once.
"""

import hashlib
from dataclasses import dataclass
from io import BytesIO

from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image

from training.preprocessing import ImageError, open_image


@dataclass(frozen=True)
class ImageFormat:
    name: str  # as Pillow names it
    media_type: str
    extension: str


# The allow-list: what may be uploaded, stored and served.
FORMATS = {
    "JPEG": ImageFormat("JPEG", "image/jpeg", "jpg"),
    "PNG": ImageFormat("PNG", "image/png", "png"),
}


# For a file input's ``accept`` attribute: the same list, as media types.
ACCEPT = ",".join(kind.media_type for kind in FORMATS.values())


def media_type_of(image_format: str) -> str:
    known = FORMATS.get(image_format)
    return known.media_type if known else "application/octet-stream"


def extension_of(image_format: str) -> str:
    known = FORMATS.get(image_format)
    return known.extension if known else "bin"


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    sha256: str
    byte_size: int


@dataclass(frozen=True)
class CheckedImage:
    """An upload that passed ``check_upload``: its bytes and what they are."""

    name: str
    data: bytes
    info: ImageInfo


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
    if image_format not in FORMATS:
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


def check_upload(file) -> CheckedImage:
    """Read and check ``file`` (any readable binary file, or an already ``CheckedImage``).

    Raises ValidationError with the reason; nothing is stored here.
    """
    if isinstance(file, CheckedImage):
        return file
    data = read_upload(file)
    return CheckedImage(name=getattr(file, "name", "") or "", data=data, info=inspect_image(data))
