"""Strip identifying metadata (EXIF with GPS and device serials, XMP, IPTC,
comments, PNG text chunks) from image bytes before they leave the server.

Stored files stay exactly as uploaded (their sha256 is on record); what is
served is a copy without metadata. JPEG and PNG are rewritten segment by
segment, so pixels are never re-encoded, except for a JPEG whose EXIF
orientation rotates it: that one is re-encoded upright, so that the served
image looks as the model saw it once the orientation tag is gone.
"""

import io
import struct

from PIL import Image, ImageOps

# JPEG segments kept: APP0 (JFIF), APP2 (ICC colour profile), APP14 (Adobe
# colour transform). Every other APPn (APP1 = EXIF/XMP, APP13 = IPTC) and
# COM are dropped.
_KEEP_APP = {0xE0, 0xE2, 0xEE}
# PNG chunks that carry text, EXIF or timestamps.
_DROP_PNG = {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def strip_metadata(data: bytes, image_format: str) -> bytes:
    if image_format == "JPEG":
        if _exif_orientation(data) not in (None, 1):
            return _reencode_upright(data)
        try:
            return _strip_jpeg(data)
        except ValueError:
            return _reencode_upright(data)
    if image_format == "PNG":
        try:
            return _strip_png(data)
        except ValueError:
            return _reencode_upright(data, image_format="PNG")
    return data


def _exif_orientation(data: bytes):
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.getexif().get(0x0112)
    except Exception:
        return None


def _reencode_upright(data: bytes, image_format: str = "JPEG") -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        img = ImageOps.exif_transpose(img)
        out = io.BytesIO()
        if image_format == "PNG":
            img.save(out, format="PNG")
        else:
            icc = img.info.get("icc_profile")
            img.convert("RGB").save(out, format="JPEG", quality=95, icc_profile=icc)
        return out.getvalue()


def _strip_jpeg(data: bytes) -> bytes:
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    out = [b"\xff\xd8"]
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise ValueError("bad marker")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is image data
            out.append(data[pos:])
            return b"".join(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out.append(data[pos : pos + 2])
            pos += 2
            continue
        if pos + 4 > len(data):
            raise ValueError("truncated")
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        end = pos + 2 + length
        if end > len(data):
            raise ValueError("truncated segment")
        is_app = 0xE0 <= marker <= 0xEF
        if not ((is_app and marker not in _KEEP_APP) or marker == 0xFE):
            out.append(data[pos:end])
        pos = end
    raise ValueError("no image data")


def _strip_png(data: bytes) -> bytes:
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG")
    out = [_PNG_SIGNATURE]
    pos = len(_PNG_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("truncated")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ValueError("truncated chunk")
        if kind not in _DROP_PNG:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            break
    return b"".join(out)
