"""X-Forwarded-For is believed only through the configured number of proxies."""

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from core.http import client_address
from tests.api.conftest import assert_error

PASSWORD = "correct horse battery"


def _address(settings, hops, xff=None, remote="10.0.0.1"):
    settings.SKINCARE_TRUSTED_PROXIES = hops
    extra = {"REMOTE_ADDR": remote}
    if xff is not None:
        extra["HTTP_X_FORWARDED_FOR"] = xff
    return client_address(RequestFactory().get("/", **extra))


@pytest.mark.parametrize(
    ("hops", "xff", "expected"),
    [
        (0, "6.6.6.6", "10.0.0.1"),  # default: the header is ignored
        (0, None, "10.0.0.1"),
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # the client's own entry is to the left
        (2, "6.6.6.6, 203.0.113.7, 10.1.1.1", "203.0.113.7"),
        (1, None, "10.0.0.1"),
        (1, "not-an-address", "10.0.0.1"),
        (3, "203.0.113.7", "10.0.0.1"),  # fewer entries than proxies: not through them all
    ],
)
def test_client_address(settings, hops, xff, expected):
    assert _address(settings, hops, xff) == expected


def _sign_in(client, xff, password="wrong password!"):
    return client.post(
        "/api/v1/auth/tokens",
        {"username": "owner", "password": password, "device_name": "phone"},
        format="json",
        HTTP_X_FORWARDED_FOR=xff,
    )


def test_a_new_forwarded_for_each_time_gets_no_new_budget(owner, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth": "3/min"},
    }
    settings.AXES_FAILURE_LIMIT = 100
    client = APIClient()
    codes = [_sign_in(client, f"198.51.100.{i}").status_code for i in range(4)]
    assert codes[:3] == [401, 401, 401]
    assert_error(_sign_in(client, "198.51.100.99"), 429, "throttled")


def test_behind_one_trusted_proxy_each_client_has_its_own_budget(owner, settings):
    settings.SKINCARE_TRUSTED_PROXIES = 1
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth": "2/min"},
    }
    settings.AXES_FAILURE_LIMIT = 100
    client = APIClient()
    assert [_sign_in(client, "203.0.113.7").status_code for _ in range(2)] == [401, 401]
    # A forged left-hand entry does not help: the proxy's entry (right-most) is the address.
    assert_error(_sign_in(client, "1.2.3.4, 203.0.113.7"), 429, "throttled")
    assert _sign_in(client, "203.0.113.8").status_code == 401


def test_lockout_ignores_a_forged_forwarded_for(owner, settings):
    """django-axes keys failures by (username, address): rotating the header must not reset them."""
    settings.AXES_FAILURE_LIMIT = 3
    client = APIClient()
    for i in range(3):
        _sign_in(client, f"198.51.100.{i}")
    assert_error(_sign_in(client, "198.51.100.50", password=PASSWORD), 429, "locked_out")
