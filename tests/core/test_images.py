"""The one image check: allow-list, size limit, full decode, and one decode per upload."""

import io

import pytest
from django.core.exceptions import ValidationError
from PIL import Image

from core import images, quality
from tests.conftest import png_bytes


def gif_bytes():
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(out, format="GIF")
    return out.getvalue()


def test_a_jpeg_is_checked_once_and_described(jpeg_bytes):
    checked = images.check_upload(io.BytesIO(jpeg_bytes))
    assert checked.data == jpeg_bytes
    assert (checked.info.format, checked.info.byte_size) == ("JPEG", len(jpeg_bytes))
    assert images.check_upload(checked) is checked  # a checked upload is not decoded again


@pytest.mark.parametrize(
    "data, code",
    [(b"", "empty_file"), (b"not an image", "unsupported_format"), (gif_bytes(), "unsupported_format")],
)
def test_it_refuses_what_is_not_a_usable_jpeg_or_png(data, code):
    with pytest.raises(ValidationError) as error:
        images.check_upload(io.BytesIO(data))
    assert error.value.code == code


def test_a_truncated_png_is_refused():
    with pytest.raises(ValidationError) as error:
        images.check_upload(io.BytesIO(png_bytes()[:-40]))
    assert error.value.code == "invalid_image"


def test_an_oversized_file_is_refused_before_it_is_read(settings):
    settings.SKINCARE_MAX_UPLOAD_BYTES = 10

    class Unreadable(io.BytesIO):
        size = 11

        def read(self, *args):
            raise AssertionError("read before the size was checked")

    with pytest.raises(ValidationError) as error:
        images.check_upload(Unreadable())
    assert error.value.code == "file_too_large"


def test_the_allow_list_gives_media_types_and_extensions():
    assert (images.media_type_of("PNG"), images.extension_of("JPEG")) == ("image/png", "jpg")
    assert (images.media_type_of("GIF"), images.extension_of("GIF")) == ("application/octet-stream", "bin")


def _big_jpeg(width=1200, height=900):
    out = io.BytesIO()
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    gradient.save(out, format="JPEG", quality=90)
    return out.getvalue()


def test_the_one_decode_reports_the_full_size_of_a_jpeg_it_decoded_at_reduced_scale():
    checked = images.check_upload(io.BytesIO(_big_jpeg()))
    assert (checked.info.format, checked.info.width, checked.info.height) == ("JPEG", 1200, 900)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_a_jpeg_cut_short_fails_the_reduced_scale_decode_as_it_fails_a_full_one(keep):
    from training.preprocessing import ImageError, decode_reduced, open_image, verify_decodes

    data = _big_jpeg()
    cut = data[: int(len(data) * keep)]
    with pytest.raises(ImageError):
        open_image(cut)
    with pytest.raises(ImageError, match="truncated"):
        verify_decodes(cut)
    with pytest.raises(ImageError, match="truncated"):
        decode_reduced(cut, quality.DECODE_SIDE)  # the decode the upload check keeps for the gate


def _photo_jpeg(demo_image_paths, size=(1200, 900), orientation=None):
    """A demo photo at a phone's size (a JPEG the check decodes at reduced scale), optionally stored sideways."""
    img = Image.open(demo_image_paths[0]).convert("RGB").resize(size)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=90, exif=exif)
    return out.getvalue()


def test_the_check_keeps_its_decode_at_the_scale_the_gate_measures(demo_image_paths):
    checked = images.check_upload(io.BytesIO(_photo_jpeg(demo_image_paths)))
    # 1200 x 900: the largest DCT scale keeping both sides >= 256 is 1/2.
    assert (checked.pixels.mode, checked.pixels.size) == ("RGB", (600, 450))
    assert min(checked.pixels.size) >= quality.DECODE_SIDE
    # What the gate measures at intake is what it measures of the stored bytes (the backfill's way).
    stored = quality.gate_image(checked.data)
    assert quality.measure(checked.pixels) == quality.measure(stored)
    assert quality.perceptual_hash(checked.pixels) == quality.perceptual_hash(stored)


@pytest.fixture
def decoders(monkeypatch):
    """The file decoders Pillow starts (one per decode of a file's pixel data), by name.

    "raw" is left out: it copies numpy arrays into images (``Image.fromarray``), it decodes no file.
    """
    started = []
    real = Image._getdecoder

    def counting(mode, decoder_name, *args, **kwargs):
        if decoder_name != "raw":
            started.append(decoder_name)
        return real(mode, decoder_name, *args, **kwargs)

    monkeypatch.setattr(Image, "_getdecoder", counting)
    return started


def test_a_jpeg_upload_is_decoded_once_for_the_check_the_gate_and_the_hash(demo_image_paths, decoders):
    from cases.services import _assess

    upload = _photo_jpeg(demo_image_paths)
    decoders.clear()  # making the photo decoded the demo image
    checked = images.check_upload(io.BytesIO(upload))
    _assess(checked.pixels, quality.DERMOSCOPIC)
    assert decoders == ["jpeg"]


def test_the_gate_sees_a_photo_stored_sideways_upright(demo_image_paths):
    sideways = _photo_jpeg(demo_image_paths, size=(400, 300), orientation=6)  # "turn 90 degrees clockwise"
    checked = images.check_upload(io.BytesIO(sideways))
    assert "orientation" in checked.removed and (checked.info.width, checked.info.height) == (300, 400)
    assert checked.pixels.size == (300, 400)
    # A file stored before uploads were sanitized still carries the tag: the backfill turns it too.
    assert quality.gate_image(sideways).size == (300, 400)


def test_a_truncated_jpeg_upload_is_refused():
    with pytest.raises(ValidationError) as error:
        images.check_upload(io.BytesIO(_big_jpeg()[:-2000]))
    assert error.value.code == "invalid_image"


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_a_large_png_is_kept_reduced_and_upright(mode):
    from training.preprocessing import decode_reduced, open_image

    # Black left half, white right half (a palette keeps both); stored sideways ("turn 90 degrees clockwise").
    img = Image.new("RGB", (2400, 1000), (0, 0, 0))
    img.paste((255, 255, 255), (1200, 0, 2400, 1000))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    img.convert(mode).save(out, format="PNG", exif=exif)
    data = out.getvalue()
    image_format, width, height, kept = decode_reduced(data, quality.DECODE_SIDE)
    assert (image_format, width, height) == ("PNG", 2400, 1000)
    # Means of 3 x 3 blocks: no 2.4 MP copy is held, both sides stay >= 256.
    assert (kept.mode, kept.size) == ("RGB", (334, 800))
    upright = open_image(data)  # the worker's decode: turned, so the dark half is on top
    assert upright.size == (1000, 2400)
    assert kept.getpixel((167, 100)) == upright.getpixel((500, 300)) == (0, 0, 0)
    assert kept.getpixel((167, 700)) == upright.getpixel((500, 2100)) == (255, 255, 255)
