import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from api.models import DeviceToken

from .conftest import assert_error, token_client

pytestmark = pytest.mark.django_db
TOKENS = "/api/v1/auth/tokens"


def sign_in(client, username, password="correct horse battery", **extra):
    return client.post(TOKENS, {"username": username, "password": password, "device_name": "Ward 3 iPad", **extra})


def test_password_gets_a_token_shown_once_and_stored_hashed(owner):
    response = sign_in(APIClient(), "owner")
    assert response.status_code == 201, response.content
    body = response.json()
    token = body["token"]
    row = DeviceToken.objects.get(pk=body["id"])
    assert row.user == owner and row.name == "Ward 3 iPad"
    assert token.startswith("skc_") and body["prefix"] == row.prefix
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    secret = token.split(".", 1)[1]
    for value in DeviceToken.objects.filter(pk=row.pk).values().get().values():
        assert secret not in str(value)
    assert timezone.now() + timedelta(days=29) < row.expires_at < timezone.now() + timedelta(days=31)

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    listed = client.get(TOKENS).json()
    assert [t["id"] for t in listed["results"]] == [body["id"]]
    assert "token" not in listed["results"][0] and "token_hash" not in listed["results"][0]


def test_token_lifetime_is_configurable(owner, settings):
    settings.SKINCARE_API_TOKEN_DAYS = 2
    body = sign_in(APIClient(), "owner").json()
    assert DeviceToken.objects.get(pk=body["id"]).expires_at < timezone.now() + timedelta(days=2, minutes=1)


def test_the_otp_field_is_accepted_and_reserved(owner):
    assert sign_in(APIClient(), "owner", otp="123456").status_code == 201


@pytest.mark.parametrize("username,password", [("owner", "wrong password"), ("nobody", "correct horse battery")])
def test_wrong_credentials_are_401_and_issue_nothing(owner, username, password):
    response = sign_in(APIClient(), username, password)
    assert_error(response, 401, "authentication_failed")
    assert not DeviceToken.objects.exists()


def test_an_inactive_user_gets_no_token(owner):
    owner.is_active = False
    owner.save()
    assert_error(sign_in(APIClient(), "owner"), 401, "authentication_failed")


def test_missing_fields_are_400(owner):
    error = assert_error(APIClient().post(TOKENS, {"username": "owner"}), 400, "validation_error")
    assert set(error["fields"]) == {"password", "device_name"}


def test_password_guessing_is_throttled_with_retry_after(owner, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth": "3/min"},
    }
    client = APIClient()
    for _ in range(3):
        assert sign_in(client, "owner", "wrong").status_code == 401
    response = sign_in(client, "owner")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0


def test_an_expired_token_is_refused(owner):
    client = token_client(owner)
    DeviceToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get("/api/v1/patients")
    assert_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_token_stops_working_at_once(owner):
    client = token_client(owner)
    other = token_client(owner, "second phone")
    row = DeviceToken.objects.get(name="test phone")
    assert client.delete(f"{TOKENS}/{row.pk}").status_code == 204
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert_error(client.get("/api/v1/patients"), 401, "authentication_failed")
    # The other device is unaffected, and no longer lists the revoked token.
    assert [t["name"] for t in other.get(TOKENS).json()["results"]] == ["second phone"]


def test_nobody_sees_or_revokes_another_users_tokens(owner, colleague):
    token_client(owner)
    row = DeviceToken.objects.get(user=owner)
    colleague_client = token_client(colleague)
    assert colleague_client.get(TOKENS).json()["count"] == 1
    assert_error(colleague_client.delete(f"{TOKENS}/{row.pk}"), 404, "not_found")
    assert_error(colleague_client.get(f"{TOKENS}/{row.pk}"), 404, "not_found")
    row.refresh_from_db()
    assert row.revoked_at is None


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer skc_nope.nope", "Bearer not-a-token", "Bearer a b", "Bearer skc_" + "0" * 12 + ".x"],
)
def test_bad_tokens_are_401_with_a_bearer_challenge(owner, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/patients")
    assert_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_no_credentials_is_401_not_authenticated(db):
    response = APIClient().get("/api/v1/patients")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_token_client_needs_no_csrf_but_a_session_does(owner, clinic):
    payload = {"medical_record_number": "A-1", "given_name": "A", "family_name": "B", "date_of_birth": "1980-01-01"}
    assert token_client(owner).post("/api/v1/patients", payload, format="json").status_code == 201

    session = APIClient(enforce_csrf_checks=True)
    session.force_login(owner)
    assert session.get("/api/v1/patients").status_code == 200
    response = session.post("/api/v1/patients", {**payload, "medical_record_number": "A-2"}, format="json")
    assert_error(response, 403, "permission_denied")
    assert "CSRF" in response.json()["error"]["message"]


def test_the_browsable_api_works_with_the_portal_session(owner, patient):
    session = APIClient(enforce_csrf_checks=True)
    session.force_login(owner)
    response = session.get("/api/v1/patients", HTTP_ACCEPT="text/html")
    assert response.status_code == 200 and b"Patient" in response.content


def test_repeated_wrong_passwords_lock_the_account_in_the_api_error_shape(owner, settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth": "1000/min"},
    }
    client = APIClient()
    for _ in range(3):
        sign_in(client, "owner", password="wrong")
    response = sign_in(client, "owner")  # even the right password is refused now
    error = assert_error(response, 429, "locked_out")
    assert "Too many failed sign-ins" in error["message"]
    assert int(response["Retry-After"]) > 0
    assert not DeviceToken.objects.exists()
