"""What is stored, and what every door serves, for hostile and metadata-laden images.

Checked byte by byte: no EXIF, XMP, IPTC, GPS or serial numbers, no trailing
data, one frame, the orientation applied; the row describes the stored bytes;
and the portal, the API and the admin serve those same bytes with the same
headers.
"""

import hashlib
import io

import pytest
from django.urls import reverse
from PIL import Image

from cases import services
from core.imagemeta import sanitize_image
from inference.models import Prediction
from tests.api.conftest import token_client

from . import badfiles

BAD_FILES = {
    "laden-jpeg": (lambda: badfiles.laden_jpeg(), "JPEG"),
    "laden-jpeg-with-zip": (lambda: badfiles.laden_jpeg(tail=badfiles.zip_bytes()), "JPEG"),
    "jpeg-zip-polyglot": (badfiles.jpeg_with_zip, "JPEG"),
    "png-html-polyglot": (badfiles.png_with_html, "PNG"),
    "png-text-chunks": (badfiles.png_with_text, "PNG"),
    "animated-png": (badfiles.animated_png, "PNG"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_sanitizing_leaves_only_pixels(name):
    make, image_format = BAD_FILES[name]
    result = sanitize_image(make(), image_format)
    badfiles.assert_clean(result.data)
    assert result.removed


def test_a_laden_jpeg_says_what_was_removed_and_names_only_make_and_model():
    result = sanitize_image(badfiles.laden_jpeg(tail=b"junk"), "JPEG")
    assert {"exif", "xmp", "iptc", "comment", "trailing-data", "orientation"} <= set(result.removed)
    assert (result.device_make, result.device_model) == ("PhoneMaker", "Pixel Secret")
    badfiles.assert_upright_two_colour(result.data)
    # The colour profile stays: the pixels mean what the camera meant.
    with Image.open(io.BytesIO(result.data)) as img:
        assert img.info.get("icc_profile") == badfiles.srgb_profile()


def test_an_upright_jpeg_is_cut_losslessly():
    """No orientation to apply: segments are cut, the scan data is byte for byte the original's."""
    original = badfiles.laden_jpeg(orientation=1)
    result = sanitize_image(original, "JPEG")
    assert "orientation" not in result.removed
    scan = original[original.index(b"\xff\xda") :]
    assert result.data.endswith(scan)
    with Image.open(io.BytesIO(original)) as before, Image.open(io.BytesIO(result.data)) as after:
        assert before.tobytes() == after.tobytes()


def test_an_animated_png_keeps_its_first_frame_only():
    original = badfiles.animated_png(frames=60)
    with Image.open(io.BytesIO(original)) as img:
        assert img.n_frames == 60
        first = img.convert("RGB").tobytes()
    result = sanitize_image(original, "PNG")
    assert "animation" in result.removed
    with Image.open(io.BytesIO(result.data)) as img:
        assert getattr(img, "n_frames", 1) == 1 and img.convert("RGB").tobytes() == first


def test_a_plain_file_is_stored_unchanged(jpeg_bytes):
    """Nothing to remove: not a byte changes (the demo JPEG, and what Pillow writes)."""
    for data, image_format in ((badfiles.plain_png(), "PNG"), (badfiles.plain_jpeg(), "JPEG"), (jpeg_bytes, "JPEG")):
        result = sanitize_image(data, image_format)
        assert result.data == data and result.removed == ()


# --- Stored, then served by every door ------------------------------------------


@pytest.fixture
def stored(owner, lesion, active_model):
    """Upload each bad file through the service; the images, keyed by name."""

    def upload(name):
        make, _ = BAD_FILES[name]
        return services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(make()), modality="clinical")

    return upload


def _doors(client, colleague, plain_staff, image):
    """The bytes and headers each door serves for ``image``."""
    client.force_login(colleague)
    portal = client.get(reverse("portal:image-file", args=[image.pk]))
    api = token_client(colleague).get(f"/api/v1/images/{image.pk}/file")
    client.force_login(plain_staff)
    prediction = Prediction.objects.get(image=image)
    admin = client.get(reverse("admin:inference_prediction_image", args=[prediction.pk]))
    return {"portal": portal, "api": api, "admin": admin}


SERVED_HEADERS = (
    "Content-Type",
    "Cache-Control",
    "X-Content-Type-Options",
    "Content-Security-Policy",
    "Cross-Origin-Resource-Policy",
    "Content-Disposition",
    "Content-Length",
)


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_every_door_serves_the_stored_sanitized_bytes(client, colleague, plain_staff, stored, name):
    image = stored(name)
    data = image.image.open("rb").read()
    badfiles.assert_clean(data)
    assert image.sha256 == hashlib.sha256(data).hexdigest() and image.byte_size == len(data)
    with Image.open(io.BytesIO(data)) as img:
        assert (image.width, image.height) == img.size
    assert image.metadata_removed
    responses = _doors(client, colleague, plain_staff, image)
    headers = set()
    for door, response in responses.items():
        assert response.status_code == 200, door
        assert b"".join(response.streaming_content) == data, door
        headers.add(tuple(response.get(h) for h in SERVED_HEADERS))
        assert "no-store" in response["Cache-Control"] and response["X-Content-Type-Options"] == "nosniff"
    assert len(headers) == 1, headers


def test_the_row_records_device_and_removals_never_serials(owner, lesion, active_model):
    image = services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(badfiles.laden_jpeg()), modality="clinical"
    )
    image.refresh_from_db()
    assert (image.device_make, image.device_model) == ("PhoneMaker", "Pixel Secret")
    assert {"exif", "xmp", "iptc", "comment", "orientation"} <= set(image.metadata_removed)
    assert (image.width, image.height) == (40, 60)
    badfiles.assert_upright_two_colour(image.image.open("rb").read())
    row = str([getattr(image, f.attname) for f in image._meta.fields])
    assert "SERIAL" not in row and "Jane Owner" not in row


def test_the_api_upload_stores_the_sanitized_file(owner, lesion, active_model):
    api = token_client(owner)
    upload = io.BytesIO(badfiles.laden_jpeg(tail=badfiles.zip_bytes()))
    upload.name = "IMG_0001 Jane Owner.jpg"
    response = api.post(
        f"/api/v1/lesions/{lesion.pk}/images", {"file": upload, "modality": "clinical"}, format="multipart"
    )
    assert response.status_code == 201, response.content
    served = b"".join(api.get(f"/api/v1/images/{response.json()['id']}/file").streaming_content)
    badfiles.assert_clean(served)
    badfiles.assert_upright_two_colour(served)


def test_the_command_sanitizes_images_stored_before_sanitizing(
    owner, lesion, active_model, capsys, django_capture_on_commit_callbacks
):
    """An old row whose file still carries metadata is rewritten once; a second run changes nothing."""
    from django.core.management import call_command

    image = services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(badfiles.plain_jpeg()), modality="clinical"
    )
    old_name = image.image.name
    with image.image.storage.open(old_name, "wb") as fh:  # as an upload before this change was stored
        fh.write(badfiles.laden_jpeg(tail=b"trailing"))
    storage = image.image.storage
    with django_capture_on_commit_callbacks(execute=True):  # the old file goes once the row committed
        call_command("sanitize_stored_images")
    image.refresh_from_db()
    data = image.image.open("rb").read()
    badfiles.assert_clean(data)
    badfiles.assert_upright_two_colour(data)
    assert image.sha256 == hashlib.sha256(data).hexdigest() and (image.width, image.height) == (40, 60)
    assert {"exif", "trailing-data", "orientation"} <= set(image.metadata_removed)
    assert not storage.exists(old_name) and image.image.name != old_name
    call_command("sanitize_stored_images")
    assert "0 of 1 images rewritten" in capsys.readouterr().out


def test_the_admin_shows_what_was_removed(client, superuser, owner, lesion, active_model):
    image = services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(badfiles.laden_jpeg()), modality="clinical"
    )
    client.force_login(superuser)
    page = client.get(reverse("admin:cases_lesionimage_change", args=[image.pk])).content.decode()
    assert "PhoneMaker" in page and "Pixel Secret" in page and "orientation" in page
    assert "SERIAL-12345" not in page


def _jpeg(mode="RGB", **options):
    buffer = io.BytesIO()
    badfiles.two_colour().convert(mode).save(buffer, format="JPEG", comment=b"taken at home", **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "options",
    [{}, {"progressive": True}, {"restart_marker_blocks": 1}, {"mode": "CMYK"}, {"mode": "L"}],
    ids=["baseline", "progressive", "restart-markers", "cmyk", "grayscale"],
)
def test_jpeg_variants_keep_their_exact_pixels(options):
    """Segment cuts never touch the scans: every pixel decodes as before, whatever the coding."""
    original = _jpeg(**options) + b"\xff\xd8 a second file"
    result = sanitize_image(original, "JPEG")
    assert {"comment", "trailing-data"} <= set(result.removed) and "orientation" not in result.removed
    badfiles.assert_clean(result.data)
    with Image.open(io.BytesIO(original)) as before, Image.open(io.BytesIO(result.data)) as after:
        assert before.mode == after.mode and before.tobytes() == after.tobytes()


def test_a_png_keeps_its_colour_profile():
    buffer = io.BytesIO()
    badfiles.two_colour().save(buffer, format="PNG", icc_profile=badfiles.srgb_profile())
    result = sanitize_image(buffer.getvalue() + b"tail", "PNG")
    with Image.open(io.BytesIO(result.data)) as img:
        assert img.info.get("icc_profile") == badfiles.srgb_profile()
