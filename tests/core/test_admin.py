"""The audit trail's own admin page."""

import pytest
from django.urls import reverse

from core.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_the_audit_trail_is_searchable_by_object_id_and_filterable_by_action(client, plain_staff, superuser):
    AuditEvent.objects.create(user=superuser, action="changed", model="cases.patient", object_id="abc", object_repr="A")
    AuditEvent.objects.create(user=superuser, action="deleted", model="cases.patient", object_id="xyz", object_repr="B")
    client.force_login(plain_staff)
    url = reverse("admin:core_auditevent_changelist")
    assert [e.object_id for e in client.get(url, {"q": "xyz"}).context["cl"].result_list] == ["xyz"]
    assert [e.object_id for e in client.get(url, {"action__exact": "changed"}).context["cl"].result_list] == ["abc"]
