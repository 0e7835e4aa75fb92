"""The one definition of an acceptable image, and the one check every upload passes.

An accepted upload is reduced to its pixels (``core.imagemeta``) before
anything else sees it: what ``check_upload`` returns, and what is stored and
served, is the sanitized file, and ``ImageInfo`` describes those bytes.

Uses Pillow only (no model runtime): the web process must stay light. Every
door (portal, API, admin, management commands) hands its file to
``cases.services.add_lesion_image``, which checks it here; a door that
validates a form first (so that each bad file gets its own message) passes
the ``CheckedImage`` it got on to the service, so each upload is decoded once:
the check's decode, at the reduced scale the quality gate measures
(``core.quality``), is kept in ``CheckedImage.pixels`` for the gate and the
perceptual hash.
"""

import hashlib
import warnings
from dataclasses import dataclass, field
from io import BytesIO

from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image

from training.preprocessing import MAX_PIXELS, ImageError, decode_reduced, verify_decodes

from . import quality
from .imagemeta import Sanitized, SanitizeError, sanitize_image


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
    data: bytes  # the sanitized bytes, the only ones ever stored
    info: ImageInfo
    # What sanitizing took out of the upload, and the device it names.
    removed: tuple[str, ...] = ()
    device_make: str = ""
    device_model: str = ""
    # The upload check's decode of ``data``, upright RGB, reduced (JPEG DCT
    # scaling) to no less than the quality gate's working size
    # (``core.quality.gate_image``): what the gate and the hash measure, so
    # the bytes are not decoded again. Not part of what the upload is.
    pixels: Image.Image | None = field(default=None, repr=False, compare=False)


def size_text(size: int) -> str:
    """A byte count as people read it, in binary units ("25 MiB"): the one
    wording of a size limit for pages, messages and docs."""
    for unit, scale in (("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def upload_limit_text() -> str:
    """The per-file upload limit (SKINCARE_MAX_UPLOAD_BYTES), as pages and messages state it."""
    return size_text(settings.SKINCARE_MAX_UPLOAD_BYTES)


def read_upload(file) -> bytes:
    """Read an uploaded file whole, refusing empty or oversized ones first."""
    limit = settings.SKINCARE_MAX_UPLOAD_BYTES
    size = getattr(file, "size", None)
    if size is not None and size > limit:
        raise ValidationError(
            f"The file is {size_text(size)}; the limit is {upload_limit_text()}.",
            code="file_too_large",
        )
    file.seek(0)
    data = file.read(limit + 1)
    if not data:
        raise ValidationError("The file is empty.", code="empty_file")
    if len(data) > limit:
        raise ValidationError(f"The file exceeds the {upload_limit_text()} limit.", code="file_too_large")
    return data


def probe_format(data: bytes) -> str:
    """The allowed format ``data`` claims to be, from its header alone (nothing decoded yet)."""
    try:
        # Pillow warns about damaged metadata while reading headers; the
        # metadata is about to be dropped, so the warnings are only noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(BytesIO(data)) as probe:
                image_format, (width, height) = probe.format, probe.size
    except Image.DecompressionBombError:
        raise ValidationError("The image has too many pixels to be processed safely.", code="too_many_pixels") from None
    except Exception:
        image_format, width, height = None, 0, 0
    if image_format not in FORMATS:
        raise ValidationError("The file is not a JPEG or PNG image.", code="unsupported_format")
    if width * height > MAX_PIXELS:
        # Refused before sanitizing, which may decode the pixels.
        raise ValidationError("The image has too many pixels to be processed safely.", code="too_many_pixels")
    return image_format


def inspect_image(data: bytes) -> ImageInfo:
    """Decode ``data`` (catching truncation and decompression bombs) and describe it.

    The one decode of an upload (``training.preprocessing.verify_decodes``:
    a JPEG's every block is decoded, at 1/8 scale); it runs on the bytes
    that will be stored, and reads their format from the same open.
    """
    try:
        image_format, width, height = verify_decodes(data)
    except ImageError as exc:
        raise ValidationError(f"The image cannot be used: {exc}.", code="invalid_image") from exc
    return _describe(data, image_format, width, height)


def inspect_and_keep(data: bytes) -> tuple[ImageInfo, Image.Image]:
    """``inspect_image`` whose decode is kept for the quality gate: (info, pixels at the gate's scale).

    The same checks (every JPEG block decoded, at the reduced scale
    ``training.preprocessing.decode_reduced`` picks), so an upload is
    decoded once for both.
    """
    try:
        image_format, width, height, pixels = decode_reduced(data, quality.DECODE_SIDE)
    except ImageError as exc:
        raise ValidationError(f"The image cannot be used: {exc}.", code="invalid_image") from exc
    return _describe(data, image_format, width, height), pixels


def _describe(data: bytes, image_format: str, width: int, height: int) -> ImageInfo:
    if image_format not in FORMATS:
        raise ValidationError("The file is not a JPEG or PNG image.", code="unsupported_format")
    return ImageInfo(
        format=image_format,
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
        byte_size=len(data),
    )


def sanitize(data: bytes) -> Sanitized:
    """``data`` reduced to its pixels (``core.imagemeta``); ValidationError if that is impossible."""
    try:
        return sanitize_image(data, probe_format(data))
    except SanitizeError as exc:
        raise ValidationError(f"The image cannot be used: {exc}.", code="invalid_image") from exc


def check_upload(file) -> CheckedImage:
    """Read, sanitize and check ``file`` (any readable binary file, or an already ``CheckedImage``).

    Raises ValidationError with the reason; nothing is stored here.
    """
    if isinstance(file, CheckedImage):
        return file
    return check_image_bytes(read_upload(file), name=getattr(file, "name", "") or "")


def check_image_bytes(data: bytes, *, name: str = "") -> CheckedImage:
    """``check_upload`` for bytes already read (``read_upload``): a door that looked at them first reads once.

    The header is read, the metadata cut out byte-wise (no re-encoding unless
    an EXIF rotation must be applied), and the one decode runs on the
    sanitized bytes, so what is stored is known to be a usable image.
    """
    clean = sanitize(data)
    info, pixels = inspect_and_keep(clean.data)
    return CheckedImage(
        name=name,
        data=clean.data,
        info=info,
        removed=clean.removed,
        device_make=clean.device_make,
        device_model=clean.device_model,
        pixels=pixels,
    )
