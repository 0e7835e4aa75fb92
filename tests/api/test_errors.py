"""Every failure under /api/ answers in one JSON shape; limits answer 429."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from .conftest import assert_error, token_client

pytestmark = pytest.mark.django_db


def rates(settings, **changes):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **changes},
    }


def test_validation_error_shape(owner_api):
    error = assert_error(owner_api.post("/api/v1/patients", {}), 400, "validation_error")
    assert set(error["fields"]) >= {"medical_record_number", "given_name", "family_name", "date_of_birth"}
    assert all(isinstance(v, list) for v in error["fields"].values())


def test_malformed_json_is_a_parse_error(owner_api):
    response = owner_api.generic("POST", "/api/v1/patients", b"{not json", content_type="application/json")
    error = assert_error(response, 400, "parse_error")
    assert "fields" not in error


def test_wrong_content_type_is_415(owner_api):
    response = owner_api.generic("POST", "/api/v1/patients", b"a=b", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")
    response = owner_api.generic("POST", "/api/v1/patients", b"<x/>", content_type="text/xml")
    assert_error(response, 415, "unsupported_media_type")


def test_method_not_allowed_and_unknown_endpoint(owner_api):
    assert_error(owner_api.delete("/api/v1/patients"), 405, "method_not_allowed")
    assert_error(owner_api.get("/api/v1/no-such-thing"), 404, "not_found")
    assert_error(owner_api.get("/api/v1/patients/not-a-uuid"), 404, "not_found")


def test_not_acceptable(owner_api):
    assert_error(owner_api.get("/api/v1/patients", HTTP_ACCEPT="application/xml"), 406, "not_acceptable")


def test_server_errors_are_json_under_api(owner, monkeypatch):
    from api.views import records as views

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views.permissions, "clinics_of", explode)
    client = Client(raise_request_exception=False)
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {token_client(owner).token}"
    response = client.get("/api/v1/clinics")
    assert_error(response, 500, "server_error")
    assert "boom" not in response.content.decode()


def test_per_user_throttle_spans_devices(owner, settings):
    rates(settings, user="3/min", token="100/min")
    phone, tablet = token_client(owner, "phone"), token_client(owner, "tablet")
    assert [c.get("/api/v1/clinics").status_code for c in (phone, tablet, phone)] == [200, 200, 200]
    response = tablet.get("/api/v1/clinics")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) >= 1


def test_per_token_throttle(owner, colleague, settings):
    rates(settings, user="100/min", token="2/min")
    phone, tablet = token_client(owner, "phone"), token_client(owner, "tablet")
    assert phone.get("/api/v1/clinics").status_code == 200
    assert phone.get("/api/v1/clinics").status_code == 200
    assert_error(phone.get("/api/v1/clinics"), 429, "throttled")
    assert tablet.get("/api/v1/clinics").status_code == 200  # another token, own budget
    assert token_client(colleague).get("/api/v1/clinics").status_code == 200


def test_upload_throttle(owner_api, lesion, jpeg_bytes, settings):
    from .test_images import upload

    rates(settings, uploads="1/min")
    assert upload(owner_api, lesion, jpeg_bytes).status_code == 201
    assert owner_api.get(f"/api/v1/lesions/{lesion.pk}/images").status_code == 200  # reads are not uploads
    response = upload(owner_api, lesion, jpeg_bytes)
    assert_error(response, 429, "throttled")
    assert "Retry-After" in response


def test_not_authenticated_error_on_every_endpoint(db, patient, lesion):
    client = APIClient()
    for url in [
        "/api/v1/auth/tokens",
        "/api/v1/clinics",
        "/api/v1/patients",
        f"/api/v1/patients/{patient.pk}",
        f"/api/v1/patients/{patient.pk}/lesions",
        f"/api/v1/lesions/{lesion.pk}",
        f"/api/v1/lesions/{lesion.pk}/images",
    ]:
        assert_error(client.get(url), 401, "not_authenticated")
