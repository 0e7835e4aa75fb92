"""Hostile and metadata-laden image files, and byte-level checks of what a door serves.

Every file here is a valid image that a browser or Pillow opens; what makes
each one bad is what rides along with the pixels.
"""

import io
import struct
import zipfile

from PIL import Image, ImageCms

# Strings planted in metadata: none may appear in a stored or served file.
SECRETS = [
    b"SERIAL-12345",
    b"LENS-SERIAL-9",
    b"Jane Owner",
    b"PhoneMaker",
    b"Pixel Secret",
    b"taken at home",
    b"xmp-secret",
    b"iptc-secret",
    b"png-text-secret",
    b"<script>",
    b"secret.txt",
]
RED, BLUE = (220, 20, 20), (20, 20, 220)


def two_colour(size=(60, 40)):
    """Left half red, right half blue: which way is up is visible in the pixels."""
    img = Image.new("RGB", size, BLUE)
    img.paste(RED, (0, 0, size[0] // 2, size[1]))
    return img


def laden_exif(orientation=6):
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0110] = "Pixel Secret"  # Model
    exif[0x0112] = orientation
    exif[0x013B] = "Jane Owner"  # Artist
    ifd = exif.get_ifd(0x8769)
    ifd[0xA430] = "Jane Owner"  # CameraOwnerName
    ifd[0xA431] = "SERIAL-12345"  # BodySerialNumber
    ifd[0xA435] = "LENS-SERIAL-9"  # LensSerialNumber
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (51.0, 30.0, 12.5), "W", (0.0, 7.0, 39.0)
    return exif


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def laden_jpeg(orientation=6, tail=b"") -> bytes:
    """A phone photo at its worst: EXIF (GPS, serials, owner), XMP, IPTC, a comment, ICC, rotated."""
    buffer = io.BytesIO()
    two_colour().save(
        buffer,
        format="JPEG",
        quality=95,
        exif=laden_exif(orientation),
        comment=b"taken at home",
        icc_profile=srgb_profile(),
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/">xmp-secret</x:xmpmeta>',
    )
    data = buffer.getvalue()
    iptc = _segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0ciptc-secret\x00")
    return data[:2] + iptc + data[2:] + tail


def plain_jpeg(size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    two_colour(size).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def plain_png(size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    two_colour(size).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("secret.txt", "patient list")
    return buffer.getvalue()


def jpeg_with_zip() -> bytes:
    """A JPEG that is also a zip archive (unzip reads from the end)."""
    return plain_jpeg() + zip_bytes()


def png_with_html() -> bytes:
    """A PNG with an HTML page after IEND (a polyglot a sniffing browser might render)."""
    return plain_png() + b"<html><body><script>alert(document.cookie)</script></body></html>"


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import zlib

    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_text() -> bytes:
    """tEXt, zTXt, iTXt, eXIf, tIME and a private chunk, all before IEND."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "png-text-secret")
    info.add_text("Author", "Jane Owner", zip=True)
    info.add_itxt("Description", "taken at home")
    buffer = io.BytesIO()
    exif = laden_exif(orientation=1)
    two_colour((64, 48)).save(buffer, format="PNG", pnginfo=info, exif=exif)
    data = buffer.getvalue()
    iend = data.rindex(b"IEND") - 4
    extra = _png_chunk(b"tIME", b"\x07\xea\x0c\x01\x00\x00\x00") + _png_chunk(b"prVt", b"SERIAL-12345")
    return data[:iend] + extra + data[iend:]


def animated_png(frames=40) -> bytes:
    images = [Image.new("RGB", (48, 48), (i * 5 % 256, 40, 200 - i * 3 % 200)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="PNG", save_all=True, append_images=images[1:], duration=40, loop=0)
    return buffer.getvalue()


# --- Byte-level checks of a sanitized file -------------------------------------

JPEG_ALLOWED_APP = {0xE0, 0xE2, 0xEE}


def jpeg_segments(data: bytes):
    """(marker, payload) of each segment up to the first scan, and where the first EOI ends."""
    assert data[:2] == b"\xff\xd8"
    pos, segments = 2, []
    while data[pos + 1] != 0xDA:
        marker = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segments.append((marker, data[pos + 4 : pos + 2 + length]))
        pos += 2 + length
    return segments


def png_chunks(data: bytes):
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return kinds


def assert_clean(data: bytes):
    """No metadata, one frame, nothing after the image's end, upright (no orientation tag)."""
    for secret in SECRETS:
        assert secret not in data, secret
    for marker in (b"Exif\x00", b"http://ns.adobe.com", b"Photoshop 3.0", b"MPF\x00", b"PK\x03\x04"):
        assert marker not in data, marker
    if data.startswith(b"\xff\xd8"):
        for marker, payload in jpeg_segments(data):
            assert marker != 0xFE and not (0xE0 <= marker <= 0xEF and marker not in JPEG_ALLOWED_APP), hex(marker)
            if marker == 0xE2:
                assert payload.startswith(b"ICC_PROFILE\x00")
        assert data.endswith(b"\xff\xd9")
    else:
        kinds = png_chunks(data)  # walking to the end proves there is nothing after IEND
        assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and kinds.count(b"IEND") == 1
        assert not {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME", b"acTL", b"fcTL", b"fdAT", b"prVt"} & set(kinds)
    with Image.open(io.BytesIO(data)) as img:
        assert not img.getexif()
        assert getattr(img, "n_frames", 1) == 1
        img.load()


def assert_upright_two_colour(data: bytes):
    """The 60x40 red|blue image with orientation 6, turned upright: 40x60, red on top."""
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        assert img.size == (40, 60)
        top, bottom = img.getpixel((20, 10)), img.getpixel((20, 50))
        assert top[0] > 150 and top[2] < 100, top
        assert bottom[2] > 150 and bottom[0] < 100, bottom
