"""The admin of API device tokens: listed, never shown, revoked by the right people only."""

import pytest
from django.urls import reverse

from api.models import DeviceToken
from api.tokens import issue_token
from core.models import AuditEvent

pytestmark = pytest.mark.django_db


def change_url(obj):
    return reverse("admin:api_devicetoken_change", args=[obj.pk])


@pytest.fixture
def colleague_token(colleague):
    return issue_token(user=colleague, name="Colleague's phone")


def test_the_token_hash_is_never_shown(client, superuser, colleague_token):
    row, _token = colleague_token
    client.force_login(superuser)
    for url in (reverse("admin:api_devicetoken_changelist"), change_url(row)):
        page = client.get(url).content.decode()
        assert row.prefix in page
        assert row.token_hash not in page


def test_a_clinic_admin_revokes_a_token_of_their_clinic(client, clinic_admin, colleague_token):
    row, _token = colleague_token
    client.force_login(clinic_admin)
    response = client.post(
        reverse("admin:api_devicetoken_changelist"), {"action": "revoke", "_selected_action": [row.pk]}
    )
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None
    event = AuditEvent.objects.get(model="api.devicetoken")
    assert (event.action, event.user, event.description) == ("action", clinic_admin, "Revoked")
    assert row.token_hash not in str(event.changes)


def test_a_clinic_admin_cannot_revoke_an_outsiders_token(client, clinic_admin, outsider):
    row, _token = issue_token(user=outsider, name="Outsider's phone")
    client.force_login(clinic_admin)
    client.post(reverse("admin:api_devicetoken_changelist"), {"action": "revoke", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.revoked_at is None
    assert not AuditEvent.objects.exists()


def test_plain_staff_are_not_offered_the_revoke_action(client, plain_staff, colleague_token):
    row, _token = colleague_token
    client.force_login(plain_staff)
    client.post(reverse("admin:api_devicetoken_changelist"), {"action": "revoke", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.revoked_at is None


def test_device_tokens_listed_are_the_real_rows(client, superuser, colleague_token):
    client.force_login(superuser)
    rows = client.get(reverse("admin:api_devicetoken_changelist")).context["cl"].result_list
    assert list(rows) == list(DeviceToken.objects.all())
