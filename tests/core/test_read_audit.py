"""Every successful read of patient data writes exactly one audit row; refused reads are recorded too."""

import io
import json

import pytest
from django.core.management import call_command
from django.test import RequestFactory
from django.urls import reverse

from api.tokens import issue_token
from cases import services
from core.http import client_address
from core.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def image(owner, lesion, jpeg_bytes):
    return services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic")


def reads():
    return list(AuditEvent.objects.filter(action__in=["read", "refused"]).order_by("id"))


def the_one_read():
    events = reads()
    assert len(events) == 1, events
    return events[0]


class TestPortal:
    def test_a_patient_page_is_one_read_of_that_patient(self, client, owner, patient):
        client.force_login(owner)
        assert client.get(reverse("portal:patient-detail", args=[patient.pk])).status_code == 200
        event = the_one_read()
        assert (event.action, event.channel, event.model, event.object_id) == (
            "read",
            "portal",
            "cases.patient",
            str(patient.pk),
        )
        assert (event.user, event.client_address) == (owner, "127.0.0.1")

    def test_image_bytes_are_one_read_of_the_image(self, client, owner, image):
        client.force_login(owner)
        assert client.get(reverse("portal:image-file", args=[image.pk])).status_code == 200
        assert (the_one_read().model, the_one_read().object_id) == ("cases.lesionimage", str(image.pk))

    def test_the_worklist_records_the_ids_it_showed(self, client, owner, image):
        client.force_login(owner)
        assert client.get(reverse("portal:home")).status_code == 200
        event = the_one_read()
        assert (event.model, event.object_ids) == ("cases.lesionimage", [str(image.pk)])

    def test_an_empty_list_shows_no_patient_data(self, client, outsider, image):
        client.force_login(outsider)
        client.get(reverse("portal:home"))
        assert reads() == []

    def test_an_outsiders_attempt_is_recorded_as_refused(self, client, outsider, patient):
        client.force_login(outsider)
        assert client.get(reverse("portal:patient-detail", args=[patient.pk])).status_code == 404
        event = the_one_read()
        assert (event.action, event.user, event.object_id) == ("refused", outsider, str(patient.pk))

    def test_a_write_is_not_a_read(self, client, owner, image):
        client.force_login(owner)
        client.post(reverse("portal:image-review", args=[image.pk]), {"verdict": "agree", "final_diagnosis": "nevus"})
        assert reads() == []


class TestApi:
    @pytest.fixture
    def api(self, owner):
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(user=owner, name='phone')[1]}")
        return client

    def test_a_list_records_every_id_shown(self, api, owner, patient):
        assert api.get("/api/v1/patients").status_code == 200
        event = the_one_read()
        assert (event.channel, event.model, event.object_ids, event.user) == (
            "api",
            "cases.patient",
            [str(patient.pk)],
            owner,
        )

    def test_image_bytes_are_one_read(self, api, image):
        assert api.get(f"/api/v1/images/{image.pk}/file").status_code == 200
        assert (the_one_read().channel, the_one_read().object_id) == ("api", str(image.pk))

    def test_a_list_of_clinics_is_not_patient_data(self, api):
        api.get("/api/v1/clinics")
        assert reads() == []


class TestAdmin:
    def test_a_change_page_is_one_read(self, client, superuser, patient):
        client.force_login(superuser)
        assert client.get(reverse("admin:cases_patient_change", args=[patient.pk])).status_code == 200
        event = the_one_read()
        assert (event.channel, event.model, event.object_id) == ("admin", "cases.patient", str(patient.pk))

    def test_a_changelist_records_the_rows_shown(self, client, superuser, patient):
        client.force_login(superuser)
        client.get(reverse("admin:cases_patient_changelist"))
        assert the_one_read().object_ids == [str(patient.pk)]


class TestTheTrailItself:
    def test_events_cannot_be_changed_or_deleted(self, superuser):
        event = AuditEvent.objects.create(user=superuser, action="read", model="cases.patient", object_id="x")
        event.description = "tampered"
        with pytest.raises(PermissionError):
            event.save()
        with pytest.raises(PermissionError):
            event.delete()
        with pytest.raises(PermissionError):
            AuditEvent.objects.filter(pk=event.pk).update(description="tampered")
        with pytest.raises(PermissionError):
            AuditEvent.objects.all().delete()

    def test_export_writes_the_range_as_json_lines(self, tmp_path, client, owner, patient):
        client.force_login(owner)
        client.get(reverse("portal:patient-detail", args=[patient.pk]))
        out = tmp_path / "audit.jsonl"
        day = AuditEvent.objects.get().at.date().isoformat()
        call_command("export_audit", "--since", day, "--until", day, "--out", str(out))
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [(r["action"], r["object_id"], r["user__username"]) for r in rows] == [
            ("read", str(patient.pk), owner.username)
        ]


class TestClientAddress:
    def test_forwarded_for_is_ignored_without_a_trusted_proxy(self, settings):
        settings.SKINCARE_TRUSTED_PROXIES = 0
        request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR="6.6.6.6", REMOTE_ADDR="10.0.0.2")
        assert client_address(request) == "10.0.0.2"

    def test_one_trusted_proxy_gives_the_address_it_saw(self, settings):
        settings.SKINCARE_TRUSTED_PROXIES = 1
        request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9", REMOTE_ADDR="10.0.0.2")
        assert client_address(request) == "203.0.113.9"
