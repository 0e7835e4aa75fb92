"""The one image check: allow-list, size limit, full decode, and one decode per upload."""

import io

import pytest
from django.core.exceptions import ValidationError
from PIL import Image

from core import images
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
    from training.preprocessing import ImageError, open_image, verify_decodes

    data = _big_jpeg()
    cut = data[: int(len(data) * keep)]
    with pytest.raises(ImageError):
        open_image(cut)
    with pytest.raises(ImageError, match="truncated"):
        verify_decodes(cut)


def test_a_truncated_jpeg_upload_is_refused():
    with pytest.raises(ValidationError) as error:
        images.check_upload(io.BytesIO(_big_jpeg()[:-2000]))
    assert error.value.code == "invalid_image"
