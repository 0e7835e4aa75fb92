"""The bad-input battery: well over 500 hostile requests across the API and
the portal, and not one may answer 5xx. Accepted uploads are checked byte by
byte: what is stored is clean (tests/security/badfiles.py)."""

import io
import json
import random
import struct
import zlib

import pytest
from django.test import Client
from django.test.client import MULTIPART_CONTENT
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from PIL import Image

from api.tokens import issue_token
from cases import services
from cases.models import LesionImage
from core.images import check_upload

from . import badfiles

# --- Values and bodies -----------------------------------------------------------

NASTY_VALUES = [
    None,
    0,
    -1,
    10**400,
    1e308,
    True,
    "",
    " ",
    "x" * 10_000,
    "\u0000",
    "\ud800",  # a lone surrogate (written escaped by json.dumps)
    "😀" * 50,
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "' OR 1=1--",
    "9999-99-99",
    "1900-01-01",
    "00000000-0000-0000-0000-000000000000",
    [],
    [1, 2],
    {},
    {"$gt": ""},
]
MALFORMED = [
    b"",
    b"{",
    b"}",
    b"null",
    b"[]",
    b'"a string"',
    b"123",
    b"\xff\xfe\x00\x00",
    b'{"a": "\xff"}',  # not UTF-8
    b"\xef\xbb\xbf{}",  # a BOM
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": 1, "a": 2}',
    b'{"' + b"k" * 100_000 + b'": 1}',
    b"[" * 21 + b"]" * 21,
    b"[" * 1000 + b"]" * 1000,
    b"{" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b'"' + b"\\" * 1001,
    b"/* comment */ {}",
    b"{'single': 'quotes'}",
    b'{"a": 1,}',
    b"\x00" * 64,
]
JSON_FIELDS = {
    "tokens": ["username", "password", "device_name", "otp"],
    "patients": ["clinic", "medical_record_number", "given_name", "family_name", "date_of_birth", "sex"],
    "lesions": ["anatomical_site", "description"],
    "reviews": ["verdict", "final_diagnosis", "biopsy_requested", "histopathology_result", "notes"],
}


def valid_body(kind, world):
    return {
        "tokens": {"username": "owner", "password": "wrong password!", "device_name": "phone"},
        "patients": {
            "clinic": str(world["clinic"].pk),
            "medical_record_number": f"MRN-{random.random()}",
            "given_name": "A",
            "family_name": "B",
            "date_of_birth": "1970-01-01",
        },
        "lesions": {"anatomical_site": "head_neck", "description": "x"},
        "reviews": {"verdict": "agree", "final_diagnosis": "nevus"},
    }[kind]


def json_cases(world):
    """(kind, body bytes, content type): each field set to each nasty value, then malformed bodies."""
    cases = []
    for kind, fields in JSON_FIELDS.items():
        for name in fields:
            for value in NASTY_VALUES:
                body = {**valid_body(kind, world), name: value}
                cases.append((kind, json.dumps(body).encode(), "application/json"))
        for body in MALFORMED:
            cases.append((kind, body, "application/json"))
        for content_type in (
            "text/plain",
            "application/json; charset=utf-16",
            "application/json; charset=no-such-charset",
            "application/json; charset=utf-32",
            "application/x-www-form-urlencoded",
        ):
            cases.append((kind, json.dumps(valid_body(kind, world)).encode(), content_type))
    return cases


# --- Files -----------------------------------------------------------------------


def _png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _encoded(mode, fmt, size=(48, 40), **options):
    buffer = io.BytesIO()
    Image.new(mode, size, 90).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def bad_files():
    png, jpeg = badfiles.plain_png(), badfiles.plain_jpeg()
    files = {
        "empty": b"",
        "one-byte": b"\x89",
        "text": b"hello, not an image",
        "html": b"<!doctype html><script>alert(1)</script>",
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
        "laden-jpeg": badfiles.laden_jpeg(),
        "laden-jpeg-upright": badfiles.laden_jpeg(orientation=1),
        "jpeg-zip": badfiles.jpeg_with_zip(),
        "png-html": badfiles.png_with_html(),
        "png-text": badfiles.png_with_text(),
        "apng-40": badfiles.animated_png(40),
        "apng-200": badfiles.animated_png(200),
        "png-no-iend": png[: png.rindex(b"IEND") - 4],
        "png-bad-crc": png[:-5] + bytes([png[-5] ^ 0xFF]) + png[-4:],
        "png-bomb-header": badfiles.plain_png()[:16] + struct.pack(">II", 100_000, 100_000) + badfiles.plain_png()[24:],
        "png-zero-size": png[:16] + struct.pack(">II", 0, 0) + png[24:],
        "png-tiny": _encoded("RGB", "PNG", size=(4, 4)),
        "png-16bit": _encoded("I;16", "PNG"),
        "png-palette": _encoded("P", "PNG"),
        "png-la": _encoded("LA", "PNG"),
        "png-rgba": _encoded("RGBA", "PNG"),
        "png-junk-before-ihdr": png[:8] + _png_chunk(b"juNk", b"x" * 100) + png[8:],
        "png-huge-chunk-length": png[:8] + struct.pack(">I", 0x7FFFFFFF) + png[12:],
        "jpeg-soi-only": b"\xff\xd8",
        "jpeg-no-eoi": jpeg[:-2],
        "jpeg-half": jpeg[: len(jpeg) // 2],
        "jpeg-cmyk": _encoded("CMYK", "JPEG"),
        "jpeg-gray": _encoded("L", "JPEG"),
        "jpeg-progressive": _encoded("RGB", "JPEG", progressive=True),
        "jpeg-restart-markers": _encoded("RGB", "JPEG", restart_marker_blocks=1),
        "jpeg-bad-segment-length": jpeg[:4] + b"\xff\xff" + jpeg[6:],
        "jpeg-fill-bytes": jpeg[:2] + b"\xff\xff\xff" + jpeg[2:],
        "jpeg-comment-after-eoi": jpeg + b"\xff\xfe\x00\x10after the end!",
        "jpeg-two-images": jpeg + jpeg,
        "gif": _encoded("P", "GIF"),
        "bmp": _encoded("RGB", "BMP"),
        "tiff": _encoded("RGB", "TIFF"),
        "webp": _encoded("RGB", "WEBP"),
        "ico": _encoded("RGB", "ICO"),
        "pdf": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
        "zip": badfiles.zip_bytes(),
    }
    rng = random.Random(11)
    for base_name, base in (("png", png), ("jpeg", jpeg), ("laden", badfiles.laden_jpeg(orientation=1))):
        for i in range(20):
            data = bytearray(base)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            files[f"{base_name}-flipped-{i}"] = bytes(data)
        for i in range(8):
            files[f"{base_name}-cut-{i}"] = base[: rng.randrange(1, len(base))]
    return files


# --- The battery -----------------------------------------------------------------


@pytest.fixture
def world(owner, outsider, clinic, patient, lesion, settings):
    # Limits would turn most of the battery into 429s and hide what it is testing.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": dict.fromkeys(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "100000/min"),
    }
    settings.AXES_FAILURE_LIMIT = 100_000
    image = services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(badfiles.plain_png()), modality="clinical"
    )
    _, token = issue_token(user=owner, name="battery")
    _, other = issue_token(user=outsider, name="other clinic")
    return {
        "clinic": clinic,
        "patient": patient,
        "lesion": lesion,
        "image": image,
        "client": Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {token}"),
        "other": Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {other}"),
        "anonymous": Client(raise_request_exception=False),
    }


def _json_url(kind, world):
    return {
        "tokens": "/api/v1/auth/tokens",
        "patients": "/api/v1/patients",
        "lesions": f"/api/v1/patients/{world['patient'].pk}/lesions",
        "reviews": f"/api/v1/images/{world['image'].pk}/reviews",
    }[kind]


class Tally:
    """Every request of the battery (counted over the module), and this test's 5xx answers."""

    def __init__(self):
        self.count = 0
        self.server_errors = []

    def check(self, label, response):
        self.count += 1
        if response.status_code >= 500:
            self.server_errors.append((label, response.status_code, response.content[:200]))
        if response.status_code >= 400 and response.request["PATH_INFO"].startswith("/api/"):
            body = json.loads(response.content)
            assert set(body) == {"error"} and body["error"]["code"], (label, body)
        return response


@pytest.fixture(scope="module")
def _module_tally():
    tally = Tally()
    yield tally
    # The module as a whole: the issue asks for at least 500 hostile inputs.
    print(f"\nbad-input battery: {tally.count} requests")
    assert tally.count >= 500, tally.count


@pytest.fixture
def tally(_module_tally):
    _module_tally.server_errors = []
    return _module_tally


def raw(text):
    """A header value as WSGI hands it over: the UTF-8 bytes, read as Latin-1."""
    return text.encode("utf-8").decode("latin-1")


def test_json_bodies(world, tally):
    for kind, body, content_type in json_cases(world):
        for client in (world["client"], world["other"], world["anonymous"]):
            response = client.generic("POST", _json_url(kind, world), body, content_type=content_type)
            tally.check(f"{kind} {body[:60]!r} {content_type}", response)
    assert not tally.server_errors, "\n".join(str(e[0])[:150] for e in tally.server_errors)


def test_uploads_through_the_api(world, tally):
    url = f"/api/v1/lesions/{world['lesion'].pk}/images"
    for name, data in bad_files().items():
        upload = io.BytesIO(data)
        upload.name = f"{name}.jpg"
        response = world["client"].post(url, {"file": upload, "modality": "clinical"})
        tally.check(f"api upload {name}", response)
        if response.status_code == 201:
            stored = LesionImage.objects.get(pk=response.json()["id"])
            badfiles.assert_clean(stored.image.open("rb").read())
    assert not tally.server_errors, "\n".join(str(e[0])[:150] for e in tally.server_errors)


def test_upload_fields_through_the_api(world, tally):
    url = f"/api/v1/lesions/{world['lesion'].pk}/images"
    for field_name in ("modality", "captured_at", "client_id"):
        for value in NASTY_VALUES:
            if value is None or isinstance(value, list | dict) or "\ud800" in str(value):
                continue  # a form field is text: no structure, and a lone surrogate cannot be sent
            data = {"file": io.BytesIO(badfiles.plain_png()), "modality": "clinical", field_name: str(value)}
            tally.check(f"api upload {field_name}={value!r:.40}", world["client"].post(url, data))
    for headers in (
        {"HTTP_IDEMPOTENCY_KEY": "k" * 10_000},
        {"HTTP_IDEMPOTENCY_KEY": raw("\u2603")},
        {"CONTENT_LENGTH": "-1"},
        {"CONTENT_LENGTH": "not a number"},
    ):
        data = {"file": io.BytesIO(badfiles.plain_png()), "modality": "clinical"}
        tally.check(f"api upload {headers}", world["client"].post(url, data, **headers))
    assert not tally.server_errors, "\n".join(str(e[0])[:150] for e in tally.server_errors)


def test_uploads_through_the_portal(owner, world, tally):
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    url = reverse("portal:upload", args=[world["patient"].pk])
    for name, data in list(bad_files().items())[::2]:  # every other file: the API run had them all
        upload = io.BytesIO(data)
        upload.name = f"{name}.png"
        fields = {
            "lesion": str(world["lesion"].pk),
            "modality": "clinical",
            "captured_on": timezone.localdate().isoformat(),
            "images": [upload],
        }
        response = tally.check(f"portal upload {name}", client.post(url, fields))
        assert response.status_code in (200, 302), (name, response.status_code)
    for image in LesionImage.objects.all():
        badfiles.assert_clean(image.image.open("rb").read())
    response = client.generic("POST", url, b"--x\r\nbroken", content_type=MULTIPART_CONTENT)
    tally.check("portal broken multipart", response)
    assert not tally.server_errors, "\n".join(str(e[0])[:150] for e in tally.server_errors)


def test_query_strings_headers_and_paths(owner, world, tally):
    image = world["image"]
    session = Client(raise_request_exception=False)
    session.force_login(owner)
    gets = []
    for value in ["", "%00", "x" * 5000, "' OR 1=1--", "\u2603", "-1", "0", "99999999999999999999", "abc"]:
        gets += [
            f"/api/v1/patients?search={value}",
            f"/api/v1/patients?page={value}",
            f"/api/v1/lesions/{world['lesion'].pk}/images?page={value}",
            f"/patients/?q={value}",
            f"/?page={value}&status={value}&risk={value}&uploaded_from={value}&clinic={value}",
        ]
    gets += [
        "/api/v1/patients/not-a-uuid",
        "/api/v1/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd/file",
        "/images/00000000-0000-0000-0000-000000000000/file",
        "/api/v1/" + "a/" * 500,
        "/static/../../skincare/settings/base.py",
    ]
    for url in gets:
        for client in (world["client"], session, world["anonymous"]):
            tally.check(f"GET {url[:80]}", client.get(url))
    for header in (
        "Bearer",
        "Bearer a b",
        raw("Bearer \u2603"),
        "Bearer skc_" + "a" * 5000,
        "Bearer skc_.",
        "Basic b3duZXI6cGFzcw==",
        "Token x",
    ):
        tally.check(f"auth {header[:30]}", Client(HTTP_AUTHORIZATION=header).get("/api/v1/clinics"))
    for etag in ('"x"', "*", "W/" * 1000, '"' * 5000, raw("\u2603")):
        tally.check(f"etag {etag[:20]}", world["client"].get(f"/api/v1/images/{image.pk}", HTTP_IF_NONE_MATCH=etag))
    for method in ("put", "patch", "delete", "options", "head", "trace"):
        for url in ("/api/v1/patients", f"/api/v1/images/{image.pk}/file", "/api/v1/auth/tokens"):
            tally.check(f"{method} {url}", getattr(world["client"], method)(url))
    assert not tally.server_errors, "\n".join(str(e[0])[:150] for e in tally.server_errors)


# --- The sanitizer itself, under random mutation ---------------------------------

SEEDS = [badfiles.plain_png(), badfiles.plain_jpeg(), badfiles.laden_jpeg(), badfiles.animated_png(5)]


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=12),
    cut=st.one_of(st.none(), st.integers(min_value=1)),
    tail=st.binary(max_size=64),
)
def test_any_mutated_file_is_refused_or_stored_clean(seed, edits, cut, tail):
    from django.core.exceptions import ValidationError

    data = bytearray(seed)
    for position, value in edits:
        data[position % len(data)] = value
    data = bytes(data[: cut % len(data) + 1] if cut else data) + tail
    try:
        checked = check_upload(io.BytesIO(data))
    except ValidationError:
        return
    badfiles.assert_clean(checked.data)
