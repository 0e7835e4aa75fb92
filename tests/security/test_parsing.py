"""Hardened parsing: hostile bodies answer the API's 400/413 JSON error, never a 500 or an HTML page."""

import io

import pytest
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import reverse
from django.utils import timezone

from cases.models import LesionImage
from tests.api.conftest import assert_error, token_client

from . import badfiles

NESTED = b"[" * 1000 + b"]" * 1000  # 2 KB
NESTED_OBJECTS = b'{"a":' * 1000 + b"1" + b"}" * 1000


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


@pytest.fixture
def owner_api(owner):
    return token_client(owner)


def _json_endpoints(lesion, image_id="00000000-0000-0000-0000-000000000000"):
    return [
        "/api/v1/auth/tokens",
        "/api/v1/patients",
        f"/api/v1/patients/{lesion.patient.pk}/lesions",
        f"/api/v1/images/{image_id}/reviews",
    ]


@pytest.mark.parametrize("body", [NESTED, NESTED_OBJECTS], ids=["arrays", "objects"])
def test_deeply_nested_json_is_a_400_for_everyone(client, owner_api, lesion, body):
    for url in _json_endpoints(lesion):
        response = client.post(url, body, content_type="application/json")
        # Without a token, the sign-in endpoint parses (400); the others refuse first (401).
        assert response.status_code in (400, 401), (url, response.content)
        assert set(response.json()) == {"error"}
    for url in _json_endpoints(lesion):
        response = owner_api.generic("POST", url, body, content_type="application/json")
        if url.endswith("/reviews"):
            assert_error(response, 404, "not_found")  # the image is looked up first
        else:
            assert_error(response, 400, "parse_error")


def test_nesting_inside_strings_does_not_count(owner_api, lesion):
    response = owner_api.post(
        f"/api/v1/patients/{lesion.patient.pk}/lesions",
        {"anatomical_site": "head_neck", "description": "[" * 500 + "{" * 500},
    )
    assert response.status_code == 201, response.content


def test_a_repeated_json_key_is_refused(owner_api, lesion):
    body = b'{"anatomical_site": "head_neck", "anatomical_site": "palms_soles"}'
    url = f"/api/v1/patients/{lesion.patient.pk}/lesions"
    error = assert_error(owner_api.generic("POST", url, body, content_type="application/json"), 400, "parse_error")
    assert "repeated key" in error["message"]


def test_nan_and_infinity_are_not_json(owner_api, lesion):
    url = f"/api/v1/patients/{lesion.patient.pk}/lesions"
    response = owner_api.generic("POST", url, b'{"anatomical_site": NaN}', content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_oversized_json_is_413_before_reading(client, owner_api):
    body = b'{"username": "' + b"x" * 300_000 + b'"}'
    assert_error(client.post("/api/v1/auth/tokens", body, content_type="application/json"), 413, "request_too_large")
    assert_error(
        owner_api.generic("POST", "/api/v1/patients", body, content_type="application/json"), 413, "request_too_large"
    )


@pytest.mark.parametrize("path", ["/api", "/api/", "/api/nothing", "/api/v1/nothing/", "/api/v1/patients/x/y"])
def test_unknown_api_paths_are_json_404(client, path):
    assert_error(client.get(path), 404, "not_found")


def test_101_files_is_a_json_400(owner_api, lesion):
    files = {f"file{i}": io.BytesIO(b"x") for i in range(101)}
    response = owner_api.post(
        f"/api/v1/lesions/{lesion.pk}/images", {"modality": "clinical", **files}, format="multipart"
    )
    assert_error(response, 400, "too_many_parts")


def test_duplicate_file_parts_are_refused(owner_api, lesion):
    body = encode_multipart(
        BOUNDARY,
        {"modality": "clinical", "file": [io.BytesIO(badfiles.plain_png()), io.BytesIO(badfiles.plain_jpeg())]},
    )
    response = owner_api.generic("POST", f"/api/v1/lesions/{lesion.pk}/images", body, content_type=MULTIPART_CONTENT)
    error = assert_error(response, 400, "validation_error")
    assert error["fields"] == {"file": ["Sent more than once."]}
    assert not LesionImage.objects.exists()


def test_method_not_allowed_is_json(owner_api, lesion):
    assert_error(owner_api.delete("/api/v1/patients"), 405, "method_not_allowed")
    assert_error(owner_api.put(f"/api/v1/lesions/{lesion.pk}", {}), 405, "method_not_allowed")


# --- The portal's upload --------------------------------------------------------


def test_the_portal_refuses_an_oversized_upload_before_reading_it(owner, patient, settings, monkeypatch):
    """Content-Length alone decides: the body (here far shorter) is never parsed, not even by the CSRF check."""
    from django.http import HttpRequest

    settings.SKINCARE_MAX_UPLOAD_BYTES = 1000
    settings.SKINCARE_MAX_UPLOAD_FILES = 2

    def must_not_parse(self):
        raise AssertionError("the body was parsed")

    monkeypatch.setattr(HttpRequest, "_load_post_and_files", must_not_parse)
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    url = reverse("portal:upload", args=[patient.pk])
    response = client.generic(
        "POST", url, b"x" * 10, content_type=MULTIPART_CONTENT, CONTENT_LENGTH=str(2 * 1000 + 64 * 1024 + 1)
    )
    assert response.status_code == 413


def test_the_portal_upload_still_checks_csrf(owner, patient):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(reverse("portal:upload", args=[patient.pk]), {"lesion": "new"})
    assert response.status_code == 403


def test_the_portal_refuses_more_files_than_allowed(owner, patient, settings):
    settings.SKINCARE_MAX_UPLOAD_FILES = 2
    client = Client()
    client.force_login(owner)
    files = [io.BytesIO(badfiles.plain_png()) for _ in range(3)]
    for i, f in enumerate(files):
        f.name = f"{i}.png"
    response = client.post(
        reverse("portal:upload", args=[patient.pk]),
        {
            "lesion": "new",
            "anatomical_site": "head_neck",
            "modality": "clinical",
            "captured_on": timezone.localdate().isoformat(),
            "images": files,
        },
    )
    assert response.status_code == 200
    assert "At most 2 images" in response.content.decode()
    assert not LesionImage.objects.exists()


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("post", "/api/schema/", 405, "method_not_allowed"),
        ("post", "/api/docs/", 405, "method_not_allowed"),
        ("post", "/api/redoc/", 405, "method_not_allowed"),
        ("get", "/api/schema/?format=xyz", 404, "not_found"),
        ("get", "/api/v1/patients?format=api", 401, "not_authenticated"),
    ],
)
def test_errors_are_json_whatever_was_negotiated(client, method, path, status, code):
    """The schema's YAML, the docs' HTML and the browsable API answer their errors in the one JSON shape too."""
    assert_error(getattr(client, method)(path), status, code)


def test_not_acceptable_is_json(owner_api):
    assert_error(owner_api.get("/api/v1/patients", HTTP_ACCEPT="application/xml"), 406, "not_acceptable")
