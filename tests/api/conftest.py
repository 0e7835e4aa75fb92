"""API fixtures: a client per user, each signed in with a real device token."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from api.tokens import issue_token
from tests.factories import ClinicFactory, MembershipFactory


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    cache.clear()
    yield
    cache.clear()


def token_client(user, name="test phone"):
    _, token = issue_token(user=user, name=name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    client.token = token
    return client


@pytest.fixture
def owner_api(owner):
    return token_client(owner)


@pytest.fixture
def colleague_api(colleague):
    return token_client(colleague)


@pytest.fixture
def outsider_api(outsider):
    return token_client(outsider)


@pytest.fixture
def anonymous_api():
    return APIClient()


@pytest.fixture
def other_clinic_patient(outsider):
    from tests.factories import PatientFactory

    return PatientFactory(clinic=outsider.clinics.get())


@pytest.fixture
def second_clinic(owner):
    return MembershipFactory(user=owner, clinic=ClinicFactory(name="Southside")).clinic


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]
