"""Reduce an uploaded image to its pixels before it is stored.

A phone photo carries far more than the lesion: EXIF with GPS position and
device serial numbers, XMP and IPTC with owner names, comments, embedded
thumbnails and previews (MPF), PNG text chunks, animation frames, and
sometimes a whole second file appended after the image's end (a polyglot).
``sanitize_image`` keeps only what is needed to show the pixels as the
camera meant them (the ICC colour profile, JFIF density, Adobe's colour
transform flag) and drops the rest, so that the one stored file is the one
every door serves; nothing is stripped at serve time.

Cuts are lossless (whole JPEG segments, whole PNG chunks). Pixels are
re-encoded only where that cannot be avoided: an EXIF orientation other
than "upright" (the tag goes with the EXIF, so the pixels must be turned,
as the model sees them), or a file the segment walk cannot follow but
Pillow can decode.
"""

import io
import re
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

# EXIF tags read before the EXIF is dropped: the device's make and model only
# (its serial numbers, owner name and position are never read or kept).
_EXIF_MAKE, _EXIF_MODEL, _EXIF_ORIENTATION = 0x010F, 0x0110, 0x0112
DEVICE_FIELD_LENGTH = 100

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG chunks that describe pixels or colour; everything else is dropped.
_PNG_KEEP = {
    b"IHDR",
    b"PLTE",
    b"IDAT",
    b"IEND",
    b"tRNS",
    b"gAMA",
    b"cHRM",
    b"sRGB",
    b"iCCP",
    b"cICP",
    b"sBIT",
    b"pHYs",
    b"bKGD",
}
_PNG_NAMES = {
    b"tEXt": "text",
    b"zTXt": "text",
    b"iTXt": "text",
    b"eXIf": "exif",
    b"tIME": "timestamp",
    b"acTL": "animation",
    b"fcTL": "animation",
    b"fdAT": "animation",
}


@dataclass(frozen=True)
class Sanitized:
    """The bytes to store, and what was taken out of the upload to get them."""

    data: bytes
    removed: tuple[str, ...]
    device_make: str = ""
    device_model: str = ""


class SanitizeError(ValueError):
    """The file cannot be taken apart or decoded; it must be refused."""


def sanitize_image(data: bytes, image_format: str) -> Sanitized:
    """``data`` (a JPEG or PNG that ``core.images`` accepted) reduced to its first frame's pixels."""
    exif = _read_exif(data)
    make, model = _device(exif, _EXIF_MAKE), _device(exif, _EXIF_MODEL)
    removed = []
    if image_format == "JPEG":
        cut = _cut_jpeg
    elif image_format == "PNG":
        cut = _cut_png
    else:
        raise SanitizeError(f"cannot sanitize {image_format} images")
    try:
        clean = cut(data, removed)
    except SanitizeError:
        # A file Pillow decodes but our walk cannot follow (a damaged
        # marker, say): decoding and encoding it again keeps only pixels.
        clean = None
        removed.append("unparsed-structure")
    turn = exif.get(_EXIF_ORIENTATION) in range(2, 9)
    if clean is None or turn:
        # The orientation tag leaves with the EXIF, so the pixels are turned
        # upright here, as the model sees them. Lossy for JPEG (quality 95):
        # the one case where pixels are re-encoded.
        clean = _cut_again(_reencode(data, image_format), image_format)
        if turn:
            removed.append("orientation")
    return Sanitized(data=clean, removed=tuple(dict.fromkeys(removed)), device_make=make, device_model=model)


def _read_exif(data: bytes) -> Image.Exif | dict:
    try:
        # Damaged EXIF is common and harmless here (it is about to be dropped):
        # Pillow's warnings about it would only be noise in the logs.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                return img.getexif()
    except Exception:
        return {}


def _device(exif, tag) -> str:
    value = exif.get(tag)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return ""
    printable = "".join(ch for ch in value if ch.isprintable())
    return printable.strip()[:DEVICE_FIELD_LENGTH]


def _reencode(data: bytes, image_format: str) -> bytes:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # damaged EXIF, as in _read_exif
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                icc = img.info.get("icc_profile")
                img = ImageOps.exif_transpose(img)
                out = io.BytesIO()
                if image_format == "PNG":
                    img.save(out, format="PNG", icc_profile=icc)
                else:
                    if img.mode not in ("L", "RGB", "CMYK"):
                        img = img.convert("RGB")
                    img.save(out, format="JPEG", quality=95, icc_profile=icc)
                return out.getvalue()
    except Exception as exc:
        raise SanitizeError(f"the image data is damaged or truncated: {exc}") from exc


def _cut_again(data: bytes, image_format: str) -> bytes:
    """Pillow's own output, walked once more so no metadata it wrote can slip through."""
    return (_cut_jpeg if image_format == "JPEG" else _cut_png)(data, [])


# --- JPEG ------------------------------------------------------------------

_SOI, _EOI, _SOS, _COM = 0xD8, 0xD9, 0xDA, 0xFE


def _cut_jpeg(data: bytes, removed: list) -> bytes:
    if data[:2] != b"\xff\xd8":
        raise SanitizeError("not a JPEG")
    out = [b"\xff\xd8"]
    pos = 2
    while True:
        marker, pos = _next_marker(data, pos)
        if marker == _EOI:
            out.append(b"\xff\xd9")
            if data[pos:]:
                removed.append("trailing-data")
            return b"".join(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
            out.append(bytes([0xFF, marker]))
            continue
        if pos + 2 > len(data):
            raise SanitizeError("truncated segment")
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        end = pos + length
        if length < 2 or end > len(data):
            raise SanitizeError("truncated segment")
        payload = data[pos + 2 : end]
        kept = _keep_jpeg_segment(marker, payload, removed)
        if kept is not None:
            out.append(bytes([0xFF, marker]) + struct.pack(">H", len(kept) + 2) + kept)
        pos = end
        if marker == _SOS:
            scan_end = _scan_end(data, pos)
            out.append(data[pos:scan_end])
            pos = scan_end


def _next_marker(data: bytes, pos: int) -> tuple[int, int]:
    if pos + 2 > len(data) or data[pos] != 0xFF:
        raise SanitizeError("no image end")
    while pos + 1 < len(data) and data[pos + 1] == 0xFF:  # fill bytes
        pos += 1
    if pos + 1 >= len(data):
        raise SanitizeError("no image end")
    return data[pos + 1], pos + 2


# The end of a scan: a 0xFF followed by a marker byte, that is anything but a
# stuffed zero, a restart marker (RST0-7) or another 0xFF (fill). One regex
# search, rather than a Python step per 0xFF byte of the entropy-coded data.
_SCAN_END = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")


def _scan_end(data: bytes, pos: int) -> int:
    """Where a scan's entropy-coded data ends: the first marker other than a stuffed byte or a restart."""
    found = _SCAN_END.search(data, pos)
    if found is None:
        raise SanitizeError("no image end")
    return found.start()


def _keep_jpeg_segment(marker: int, payload: bytes, removed: list) -> bytes | None:
    """The payload to write (possibly trimmed), or None to drop the segment and record why."""
    if marker == 0xE0 and payload.startswith(b"JFIF\x00") and len(payload) >= 14:
        if payload[12:14] != b"\x00\x00":
            removed.append("thumbnail")  # JFIF's own RGB thumbnail: keep the header, no thumbnail
        return payload[:12] + b"\x00\x00"
    if marker == 0xE2 and payload.startswith(b"ICC_PROFILE\x00"):
        return payload
    if marker == 0xEE and payload.startswith(b"Adobe"):
        return payload  # tells decoders whether CMYK/YCC colours are transformed
    if 0xE0 <= marker <= 0xEF:
        removed.append(_app_name(marker, payload))
        return None
    if 0xF0 <= marker <= 0xFD:
        removed.append("jpeg-extension")  # JPEG-LS and other extensions: no decoder here reads them
        return None
    if marker == _COM:
        removed.append("comment")
        return None
    return payload  # frame, Huffman, quantisation, restart interval, scan headers


def _app_name(marker: int, payload: bytes) -> str:
    if marker == 0xE1 and payload.startswith(b"Exif\x00"):
        return "exif"
    if marker == 0xE1 and payload.startswith(b"http://ns.adobe.com/"):
        return "xmp"
    if marker == 0xED:
        return "iptc"
    if marker == 0xE2 and payload.startswith(b"MPF\x00"):
        return "mpf"
    if marker == 0xE0 and payload.startswith(b"JFXX\x00"):
        return "thumbnail"
    return f"app{marker - 0xE0}"


# --- PNG -------------------------------------------------------------------


def _cut_png(data: bytes, removed: list) -> bytes:
    if not data.startswith(_PNG_SIGNATURE):
        raise SanitizeError("not a PNG")
    out = [_PNG_SIGNATURE]
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 12 > len(data):
            raise SanitizeError("no image end")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise SanitizeError("truncated chunk")
        if kind in _PNG_KEEP:
            out.append(data[pos:end])
        else:
            removed.append(_PNG_NAMES.get(kind) or _png_chunk_name(kind))
        pos = end
        if kind == b"IEND":
            if data[pos:]:
                removed.append("trailing-data")
            return b"".join(out)


def _png_chunk_name(kind: bytes) -> str:
    name = kind.decode("latin-1")
    return f"png-{name}" if name.isascii() and name.isalpha() else "png-unknown"
