"""Device tokens end when their user's entitlement does: password change or
reset, deactivation, or the last clinic membership removed (by any path)."""

import pytest
from django.contrib.auth.forms import SetPasswordForm
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from api.models import DeviceToken
from cases.models import Membership
from tests.api.conftest import assert_error, token_client
from tests.factories import ClinicFactory, MembershipFactory

PASSWORD = "correct horse battery"  # tests/factories.py
NEW_PASSWORD = "a brand new passphrase 42"


def _works(api):
    return api.get("/api/v1/clinics").status_code == 200


def _revoked_now(owner, reason):
    """Revoked by the change itself (core.access), before the token is used again."""
    row = DeviceToken.objects.get(user=owner)
    assert row.revoked_at is not None and row.revoked_reason == reason


def _refused_and_revoked(api, owner, reason):
    assert_error(api.get("/api/v1/clinics"), 401, "authentication_failed")
    row = DeviceToken.objects.get(user=owner)
    assert row.revoked_at is not None and row.revoked_reason == reason


@pytest.fixture
def api(owner):
    return token_client(owner)


def test_a_portal_password_change_revokes_tokens(client, owner, api):
    assert _works(api)
    client.force_login(owner)
    response = client.post(
        reverse("portal:password-change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    _revoked_now(owner, "password_changed")
    _refused_and_revoked(api, owner, "password_changed")


def test_a_password_reset_revokes_tokens(owner, api):
    """Django's reset (and the admin's password page) save through SetPasswordForm."""
    form = SetPasswordForm(owner, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert form.is_valid(), form.errors
    form.save()
    _refused_and_revoked(api, owner, "password_changed")


def test_the_admin_password_page_revokes_tokens(client, owner, api, superuser):
    client.force_login(superuser)
    url = reverse("admin:auth_user_password_change", args=[owner.pk])
    response = client.post(url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"})
    assert response.status_code == 302, response.content
    _revoked_now(owner, "password_changed")
    _refused_and_revoked(api, owner, "password_changed")


def test_changepassword_command_revokes_tokens(owner, api, monkeypatch):
    monkeypatch.setattr("getpass.getpass", lambda prompt="": NEW_PASSWORD)
    call_command("changepassword", owner.username)
    _refused_and_revoked(api, owner, "password_changed")


def test_deactivating_a_user_revokes_tokens(owner, api):
    assert _works(api)
    owner.is_active = False
    owner.save()
    _refused_and_revoked(api, owner, "deactivated")


def test_removing_the_last_membership_revokes_tokens(owner, api):
    second = MembershipFactory(user=owner, clinic=ClinicFactory(name="Second"))
    Membership.objects.filter(user=owner).exclude(pk=second.pk).delete()
    assert _works(api)  # one clinic left: still entitled
    second.delete()
    _refused_and_revoked(api, owner, "no_clinic")


def test_removing_the_last_membership_in_the_admin_revokes_tokens(client, owner, api, superuser):
    client.force_login(superuser)
    membership = Membership.objects.get(user=owner)
    response = client.post(reverse("admin:cases_membership_delete", args=[membership.pk]), {"post": "yes"})
    assert response.status_code == 302, response.content
    _revoked_now(owner, "no_clinic")
    _refused_and_revoked(api, owner, "no_clinic")


def test_deactivating_a_user_in_the_admin_revokes_tokens_at_once(client, owner, api, superuser):
    client.force_login(superuser)
    joined = timezone.localtime(owner.date_joined)
    response = client.post(
        reverse("admin:auth_user_change", args=[owner.pk]),
        {
            "username": owner.username,
            "date_joined_0": joined.date().isoformat(),
            "date_joined_1": joined.time().strftime("%H:%M:%S"),
            # is_active left out: unticked
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    _revoked_now(owner, "deactivated")


def test_moving_a_membership_to_someone_else_in_the_admin_revokes_at_once(client, owner, api, superuser):
    from tests.factories import UserFactory

    client.force_login(superuser)
    membership = Membership.objects.get(user=owner)
    newcomer = UserFactory(username="newcomer")
    response = client.post(
        reverse("admin:cases_membership_change", args=[membership.pk]),
        {"user": newcomer.pk, "clinic": membership.clinic.pk, "role": membership.role},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    _revoked_now(owner, "no_clinic")


def test_revoke_tokens_of_revokes_every_live_token_at_once(owner):
    from api.tokens import revoke_tokens_of

    phone, tablet = token_client(owner, "phone"), token_client(owner, "tablet")
    assert revoke_tokens_of(owner, reason="admin") == 2
    for api in (phone, tablet):
        assert_error(api.get("/api/v1/clinics"), 401, "authentication_failed")


def test_an_unchanged_user_keeps_their_token(owner, api):
    owner.first_name = "Renamed"
    owner.save()
    assert _works(api) and _works(api)
    assert DeviceToken.objects.get(user=owner).revoked_at is None


def test_the_admin_shows_a_token_unusable_once_the_password_changed(owner):
    from api.tokens import issue_token

    row, _ = issue_token(user=owner, name="phone")
    assert row.is_usable
    owner.set_password(NEW_PASSWORD)
    owner.save()
    row.refresh_from_db()
    assert not row.is_usable  # even before its next use revokes it
