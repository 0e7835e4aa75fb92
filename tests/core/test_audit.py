import pytest
from django.urls import reverse

from api.tokens import issue_token
from cases.models import Membership, Patient
from core import audit
from core.models import AuditEvent
from tests import admin_helpers
from tests.admin_helpers import patient_form
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def membership_formset(clinic, rows, **extra):
    """The clinic change form with its Membership inline: rows are (membership or None, user, role)."""
    data = {
        "name": clinic.name,
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(sum(1 for m, _u, _r in rows if m is not None)),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, (membership, user, role) in enumerate(rows):
        data[f"memberships-{i}-user"] = user.pk
        data[f"memberships-{i}-role"] = role
        data[f"memberships-{i}-clinic"] = clinic.pk
        if membership is not None:
            data[f"memberships-{i}-id"] = membership.pk
    return {**data, **extra}


class TestAdminChanges:
    def test_changing_a_patient_records_who_and_the_old_and_new_values(self, client, clinic_admin, patient):
        client.force_login(clinic_admin)
        url = reverse("admin:cases_patient_change", args=[patient.pk])
        response = client.post(url, patient_form(patient, given_name="Janet", fitzpatrick_skin_type=4))
        assert response.status_code == 302

        event = AuditEvent.objects.get()
        assert (event.action, event.user, event.model, event.object_id) == (
            "changed",
            clinic_admin,
            "cases.patient",
            str(patient.pk),
        )
        assert event.changes == {"fitzpatrick_skin_type": [None, 4], "given_name": ["Jane", "Janet"]}

    def test_saving_without_a_change_records_nothing(self, client, clinic_admin, patient):
        client.force_login(clinic_admin)
        client.post(reverse("admin:cases_patient_change", args=[patient.pk]), patient_form(patient))
        assert not AuditEvent.objects.exists()

    def test_a_refused_change_records_nothing(self, client, clinic_admin, patient):
        client.force_login(clinic_admin)
        url = reverse("admin:cases_patient_change", args=[patient.pk])
        response = client.post(url, patient_form(patient, date_of_birth="not a date"))
        assert response.status_code == 200
        assert not AuditEvent.objects.exists()

    def test_adding_a_patient_records_every_value(self, client, clinic_admin, clinic):
        client.force_login(clinic_admin)
        data = {
            "clinic": clinic.pk,
            "medical_record_number": "MRN-NEW",
            "given_name": "New",
            "family_name": "Patient",
            "date_of_birth": "1980-05-06",
            "sex": "female",
            "fitzpatrick_skin_type": "2",
        }
        assert client.post(reverse("admin:cases_patient_add"), data).status_code == 302
        patient = Patient.objects.get(medical_record_number="MRN-NEW")
        event = AuditEvent.objects.get()
        assert (event.action, event.object_id) == ("created", str(patient.pk))
        assert event.changes["clinic"] == [None, str(clinic.pk)]
        assert event.changes["date_of_birth"] == [None, "1980-05-06"]
        assert event.changes["fitzpatrick_skin_type"] == [None, 2]
        assert "updated_at" not in event.changes  # changes on every save: not a change

    def test_deleting_a_patient_records_its_last_values(self, client, clinic_admin, patient):
        client.force_login(clinic_admin)
        response = client.post(reverse("admin:cases_patient_delete", args=[patient.pk]), {"post": "yes"})
        assert response.status_code == 302
        event = AuditEvent.objects.get()
        assert (event.action, event.object_id, event.object_repr) == ("deleted", str(patient.pk), str(patient))
        assert event.changes["medical_record_number"] == [patient.medical_record_number, None]

    def test_inline_membership_changes_are_recorded_row_by_row(self, client, clinic_admin, clinic, owner, colleague):
        owner_membership = Membership.objects.get(user=owner)
        colleague_membership = Membership.objects.get(user=colleague)
        admin_membership = Membership.objects.get(user=clinic_admin)
        newcomer = UserFactory(username="newcomer")
        client.force_login(clinic_admin)
        data = membership_formset(
            clinic,
            [
                (admin_membership, clinic_admin, "clinic_admin"),
                (owner_membership, owner, "clinic_admin"),
                (colleague_membership, colleague, "clinician"),
                (None, newcomer, "clinician"),
            ],
            **{"memberships-2-DELETE": "on"},
        )
        response = client.post(reverse("admin:cases_clinic_change", args=[clinic.pk]), data)
        assert response.status_code == 302, response.content.decode()[:3000]

        events = {e.action: e for e in AuditEvent.objects.filter(model="cases.membership")}
        assert set(events) == {"changed", "created", "deleted"}
        assert events["changed"].object_id == str(owner_membership.pk)
        assert events["changed"].changes == {"role": ["clinician", "clinic_admin"]}
        assert events["deleted"].object_id == str(colleague_membership.pk)
        assert events["deleted"].changes["user"] == [colleague.pk, None]
        assert events["created"].changes["user"] == [None, newcomer.pk]
        assert not Membership.objects.filter(user=colleague).exists()

    def test_adding_a_clinic_with_a_member_records_both(self, client, superuser, owner):
        client.force_login(superuser)
        data = {
            "name": "Southside Skin",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
            "memberships-0-user": owner.pk,
            "memberships-0-role": "clinic_admin",
        }
        assert client.post(reverse("admin:cases_clinic_add"), data).status_code == 302
        created = {e.model: e for e in AuditEvent.objects.filter(action="created")}
        assert created["cases.clinic"].changes["name"] == [None, "Southside Skin"]
        assert created["cases.membership"].changes["role"] == [None, "clinic_admin"]

    def test_an_objects_history_page_shows_its_trail(self, client, clinic_admin, patient):
        client.force_login(clinic_admin)
        client.post(
            reverse("admin:cases_patient_change", args=[patient.pk]),
            patient_form(patient, given_name="Janet"),
        )
        page = client.get(reverse("admin:cases_patient_history", args=[patient.pk])).content.decode()
        assert 'id="audit-trail"' in page
        assert "given_name" in page and "Jane" in page and "Janet" in page
        assert "clinic-admin" in page

    def test_the_audit_trail_lists_the_event_for_any_staff(self, client, clinic_admin, patient):
        client.force_login(clinic_admin)
        client.post(
            reverse("admin:cases_patient_change", args=[patient.pk]),
            patient_form(patient, given_name="Janet"),
        )
        event = AuditEvent.objects.get()
        client.force_login(admin_helpers.plain_staff())
        listing = client.get(
            reverse("admin:core_auditevent_changelist"), {"model": "cases.patient", "object_id": str(patient.pk)}
        )
        assert list(listing.context["cl"].result_list) == [event]
        detail = client.get(reverse("admin:core_auditevent_change", args=[event.pk])).content.decode()
        assert "Jane" in detail and "Janet" in detail

    def test_adding_a_user_to_the_ml_admins_group_is_recorded(self, client, superuser):
        from django.contrib.auth.models import Group

        from cases.permissions import ML_ADMINS_GROUP

        user = UserFactory(username="new.lead", is_staff=True)
        group = Group.objects.get(name=ML_ADMINS_GROUP)
        client.force_login(superuser)
        response = client.post(
            reverse("admin:auth_user_change", args=[user.pk]),
            {
                "username": user.username,
                "first_name": "",
                "last_name": "",
                "email": "",
                "is_active": "on",
                "is_staff": "on",
                "groups": [group.pk],
                "last_login_0": "",
                "last_login_1": "",
                "date_joined_0": "2026-01-01",
                "date_joined_1": "00:00:00",
            },
        )
        assert response.status_code == 302, response.content.decode()[:2000]
        event = AuditEvent.objects.get(model="auth.user", object_id=str(user.pk))
        assert event.user == superuser and event.action == AuditEvent.Action.CHANGED
        assert event.changes["groups"] == [[], [group.pk]]

    def test_a_password_reset_in_the_admin_is_recorded_without_the_password(self, client, superuser):
        user = UserFactory(username="someone")
        client.force_login(superuser)
        response = client.post(
            reverse("admin:auth_user_password_change", args=[user.pk]),
            {
                "password1": "A-long-new-passphrase-42",
                "password2": "A-long-new-passphrase-42",
                "usable_password": "true",
            },
        )
        assert response.status_code == 302
        event = AuditEvent.objects.get(model="auth.user", object_id=str(user.pk))
        assert event.changes == {"password": [audit.HIDDEN, audit.HIDDEN]}
        assert "A-long-new-passphrase-42" not in str(event.changes)


class TestHelpers:
    def test_a_token_hash_never_enters_the_trail(self, owner, superuser):
        row, token = issue_token(user=owner, name="phone")
        created = audit.log_created(user=superuser, obj=row)
        before = audit.snapshot(row)
        row.token_hash = "0" * 64
        changed = audit.log_changed(user=superuser, obj=row, before=before)
        deleted = audit.log_deleted(user=superuser, obj=row)
        for event in (created, changed, deleted):
            event.refresh_from_db()
            assert row.token_hash not in str(event.changes)
            assert token not in str(event.changes)
        assert created.changes["token_hash"] == [None, audit.HIDDEN]
        # That it changed is on record; neither value is.
        assert changed.changes == {"token_hash": [audit.HIDDEN, audit.HIDDEN]}

    def test_log_action_records_a_described_action(self, superuser, patient):
        event = audit.log_action(user=superuser, obj=patient, description="Flagged", changes={"flagged": [False, True]})
        event.refresh_from_db()
        assert (event.action, event.model, event.object_id, event.description, event.changes) == (
            "action",
            "cases.patient",
            str(patient.pk),
            "Flagged",
            {"flagged": [False, True]},
        )

    def test_log_actions_writes_one_event_per_row(self, superuser, patient, clinic):
        audit.log_actions(user=superuser, objects=[patient, clinic], description="Exported")
        assert sorted(AuditEvent.objects.values_list("model", flat=True)) == ["cases.clinic", "cases.patient"]

    def test_diff_lists_only_what_differs(self):
        assert audit.diff({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == {"b": [2, 3], "c": [None, 4]}
