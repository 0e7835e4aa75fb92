import datetime
import io

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from api.tokens import issue_token
from cases import permissions, services
from cases.apps import ensure_ml_admins_group
from cases.models import Clinic, LesionImage, Membership, Patient, Review
from core.models import AuditEvent
from inference.models import Prediction
from tests import admin_helpers
from tests.admin_helpers import patient_form
from tests.conftest import png_bytes
from tests.factories import ClinicFactory, LesionFactory, MembershipFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_clinic(outsider):
    return outsider.clinics.get()


@pytest.fixture
def other_patient(other_clinic):
    return PatientFactory(clinic=other_clinic, given_name="Olga")


def change_url(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def changelist_url(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_changelist")


def changes():
    """Audit events other than reads (those are written on every page view)."""
    return AuditEvent.objects.exclude(action__in=["read", "refused"])


def delete_url(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_delete", args=[obj.pk])


# --- Adding images through the service (the existing add form).


def post_image(client, lesion, data, name="lesion.jpg"):
    upload = io.BytesIO(data)
    upload.name = name
    return client.post(
        reverse("admin:cases_lesionimage_add"),
        {
            "lesion": lesion.pk,
            "modality": "dermoscopic",
            "captured_at_0": "2026-01-02",
            "captured_at_1": "10:00:00",
            "upload": upload,
        },
    )


def test_the_admin_adds_images_through_the_service(client, clinic_admin, lesion, jpeg_bytes, active_model):
    client.force_login(clinic_admin)
    response = post_image(client, lesion, jpeg_bytes)
    assert response.status_code == 302, response.content.decode()[:2000]
    image = LesionImage.objects.get()
    assert image.uploaded_by == clinic_admin
    assert Prediction.objects.filter(image=image, status="pending").exists()
    assert AuditEvent.objects.get(model="cases.lesionimage").object_id == str(image.pk)


def test_the_admin_shows_a_form_error_for_a_non_image(client, clinic_admin, lesion):
    client.force_login(clinic_admin)
    response = post_image(client, lesion, b"just some text", name="notes.png")
    assert response.status_code == 200
    assert "not a JPEG or PNG" in response.content.decode()
    assert not LesionImage.objects.exists()


def test_the_admin_refuses_uploads_to_another_clinics_lesion(client, lesion, other_clinic):
    client.force_login(admin_helpers.clinic_admin(other_clinic, username="elsewhere-admin"))
    response = post_image(client, lesion, png_bytes())
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not LesionImage.objects.exists()


def test_a_superuser_outside_the_clinic_cannot_upload_in_its_name(client, superuser, lesion):
    client.force_login(superuser)
    response = post_image(client, lesion, png_bytes())
    assert response.status_code == 200
    assert "Only members" in response.content.decode()
    assert not LesionImage.objects.exists()


# --- Roles: who may see and who may change.

CHANGELISTS = [
    "cases_clinic",
    "cases_membership",
    "cases_patient",
    "cases_lesion",
    "cases_lesionimage",
    "cases_review",
    "api_devicetoken",
    "core_auditevent",
    "inference_prediction",
]


@pytest.mark.parametrize("role", admin_helpers.ROLES)
@pytest.mark.parametrize("changelist", CHANGELISTS)
def test_every_staff_role_may_view_every_changelist(client, request, clinic, role, changelist):
    client.force_login(request.getfixturevalue(role))
    assert client.get(reverse(f"admin:{changelist}_changelist")).status_code == 200


@pytest.mark.parametrize("changelist", CHANGELISTS)
def test_a_clinician_who_is_not_staff_is_sent_to_the_admin_login(client, owner, changelist):
    client.force_login(owner)
    response = client.get(reverse(f"admin:{changelist}_changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_plain_staff_see_the_clinical_apps_on_the_admin_index(client, plain_staff):
    client.force_login(plain_staff)
    page = client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:cases_patient_changelist") in page
    assert reverse("admin:inference_prediction_changelist") in page


def test_plain_staff_get_a_read_only_change_page(client, plain_staff, patient):
    client.force_login(plain_staff)
    response = client.get(change_url(patient))
    assert response.status_code == 200
    page = response.content.decode()
    assert patient.medical_record_number in page
    assert 'name="_save"' not in page


@pytest.mark.parametrize("role", ["plain_staff", "ml_admin"])
def test_staff_without_a_clinic_role_cannot_change_or_delete_a_patient(client, request, patient, role):
    client.force_login(request.getfixturevalue(role))
    assert client.post(change_url(patient), patient_form(patient, given_name="Changed")).status_code == 403
    assert client.post(delete_url(patient), {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:cases_patient_add")).status_code == 403
    patient.refresh_from_db()
    assert patient.given_name == "Jane"


def test_a_clinic_admin_edits_a_patient_of_their_clinic(client, clinic_admin, patient):
    client.force_login(clinic_admin)
    response = client.post(change_url(patient), patient_form(patient, given_name="Janet"))
    assert response.status_code == 302
    patient.refresh_from_db()
    assert patient.given_name == "Janet"


def test_a_clinic_admin_cannot_see_or_edit_another_clinics_patient(client, clinic_admin, other_patient):
    client.force_login(clinic_admin)
    # Least privilege: to them the row does not exist (the admin's "not found" redirect).
    assert client.get(change_url(other_patient)).status_code == 302
    assert other_patient.pk not in {p.pk for p in client.get(changelist_url(other_patient)).context["cl"].result_list}
    client.post(change_url(other_patient), patient_form(other_patient, given_name="Changed"))
    client.post(delete_url(other_patient), {"post": "yes"})
    other_patient.refresh_from_db()
    assert other_patient.given_name == "Olga"


def test_a_clinic_admin_cannot_move_a_patient_into_a_clinic_they_do_not_administer(
    client, clinic_admin, patient, other_clinic
):
    client.force_login(clinic_admin)
    response = client.post(change_url(patient), patient_form(patient, clinic=other_clinic.pk))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    patient.refresh_from_db()
    assert patient.clinic_id != other_clinic.pk
    assert not AuditEvent.objects.exists()


def test_a_clinic_admin_can_only_add_patients_to_their_clinic(client, clinic_admin, clinic, other_clinic):
    client.force_login(clinic_admin)
    page = client.get(reverse("admin:cases_patient_add")).content.decode()
    assert clinic.name in page and other_clinic.name not in page
    data = {
        "clinic": other_clinic.pk,
        "medical_record_number": "MRN-NEW",
        "given_name": "New",
        "family_name": "Patient",
        "date_of_birth": "1980-05-06",
        "sex": "female",
        "fitzpatrick_skin_type": "",
    }
    assert client.post(reverse("admin:cases_patient_add"), data).status_code == 200
    assert not Patient.objects.filter(medical_record_number="MRN-NEW").exists()
    assert client.post(reverse("admin:cases_patient_add"), {**data, "clinic": clinic.pk}).status_code == 302
    assert Patient.objects.get(medical_record_number="MRN-NEW").clinic == clinic


def test_a_clinic_admin_deletes_a_patient_of_their_clinic(client, clinic_admin, patient):
    client.force_login(clinic_admin)
    response = client.post(delete_url(patient), {"post": "yes"})
    assert response.status_code == 302
    assert not Patient.objects.filter(pk=patient.pk).exists()


def test_a_clinic_admin_cannot_bulk_delete_another_clinics_patients(client, clinic_admin, patient, other_patient):
    client.force_login(clinic_admin)
    client.post(
        reverse("admin:cases_patient_changelist"),
        {"action": "delete_selected", "_selected_action": [other_patient.pk], "post": "yes"},
    )
    # The other clinic's row is outside their admin: the action never sees it.
    assert Patient.objects.filter(pk=other_patient.pk).exists()


def test_a_clinic_admin_cannot_move_a_lesion_to_another_clinics_patient(client, clinic_admin, lesion, other_patient):
    client.force_login(clinic_admin)
    response = client.post(
        change_url(lesion), {"patient": other_patient.pk, "anatomical_site": lesion.anatomical_site, "description": ""}
    )
    assert response.status_code == 200
    lesion.refresh_from_db()
    assert lesion.patient_id != other_patient.pk


def test_the_patient_autocomplete_offers_a_clinic_admin_only_their_patients(
    client, clinic_admin, patient, other_patient
):
    client.force_login(clinic_admin)
    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "cases", "model_name": "lesion", "field_name": "patient", "term": ""},
    )
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [str(patient.pk)]


def test_a_clinic_admin_manages_memberships_of_their_clinic_only(client, clinic_admin, clinic, other_clinic):
    newcomer = UserFactory(username="newcomer")
    client.force_login(clinic_admin)
    add = reverse("admin:cases_membership_add")
    assert client.post(add, {"user": newcomer.pk, "clinic": other_clinic.pk, "role": "clinician"}).status_code == 200
    assert not Membership.objects.filter(user=newcomer).exists()
    assert client.post(add, {"user": newcomer.pk, "clinic": clinic.pk, "role": "clinician"}).status_code == 302
    assert Membership.objects.get(user=newcomer).clinic == clinic


def test_only_superusers_add_clinics(client, clinic_admin, superuser):
    client.force_login(clinic_admin)
    assert client.post(reverse("admin:cases_clinic_add"), {"name": "New clinic"}).status_code == 403
    client.force_login(superuser)
    response = client.post(
        reverse("admin:cases_clinic_add"),
        {
            "name": "New clinic",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302
    assert Clinic.objects.filter(name="New clinic").exists()


def test_a_superuser_edits_any_clinics_patient(client, superuser, other_patient):
    client.force_login(superuser)
    assert client.post(change_url(other_patient), patient_form(other_patient, given_name="Olivia")).status_code == 302
    other_patient.refresh_from_db()
    assert other_patient.given_name == "Olivia"


@pytest.mark.parametrize("role", ["superuser", "clinic_admin"])
def test_nobody_edits_or_deletes_reviews_predictions_or_audit_events(client, request, role, owner, lesion, superuser):
    image = admin_helpers.make_image(lesion, owner)
    review = admin_helpers.make_review(image, owner)
    prediction = Prediction.objects.create(image=image, model_version=_model_version())
    event = AuditEvent.objects.create(user=superuser, action="changed", model="cases.patient", object_id="x")
    client.force_login(request.getfixturevalue(role))
    for obj in (review, prediction, event):
        page = client.get(change_url(obj))
        assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
        assert client.post(change_url(obj), {}).status_code == 403
        assert client.post(delete_url(obj), {"post": "yes"}).status_code == 403
        add = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_add")
        assert client.get(add).status_code == 403
    assert Review.objects.count() == Prediction.objects.count() == changes().count() == 1


def _model_version():
    from inference.models import ModelVersion

    return ModelVersion.objects.create(
        name="test",
        version="1",
        file="models/test.keras",
        sha256="0" * 64,
        input_size=32,
        preprocessing="square-resize-v1",
        threshold=0.5,
    )


class TestRolePredicates:
    def test_the_ml_admins_group_holds_the_model_registry_permissions(self):
        group = Group.objects.get(name=permissions.ML_ADMINS_GROUP)
        codenames = set(group.permissions.values_list("codename", flat=True))
        assert {"register_modelversion", "activate_modelversion", "view_modelversion"} <= codenames

    def test_creating_the_group_again_changes_nothing(self):
        ensure_ml_admins_group()
        ensure_ml_admins_group()
        assert Group.objects.filter(name=permissions.ML_ADMINS_GROUP).count() == 1

    def test_who_is_what(self, superuser, ml_admin, clinic_admin, plain_staff, owner, clinic, other_clinic):
        assert [permissions.can_view_admin(u) for u in (superuser, ml_admin, clinic_admin, plain_staff, owner)] == [
            True,
            True,
            True,
            True,
            False,
        ]
        assert [permissions.is_ml_admin(u) for u in (superuser, ml_admin, clinic_admin, plain_staff)] == [
            True,
            True,
            False,
            False,
        ]
        assert permissions.is_clinic_admin(clinic_admin, clinic)
        assert not permissions.is_clinic_admin(clinic_admin, other_clinic)
        assert not permissions.is_clinic_admin(owner, clinic)  # a clinician, not an administrator
        assert permissions.can_edit_in_admin(superuser, other_clinic)
        assert permissions.can_edit_in_admin(clinic_admin, clinic)
        assert not permissions.can_edit_in_admin(clinic_admin, other_clinic)
        assert not permissions.can_edit_in_admin(ml_admin, clinic)

    def test_an_inactive_clinic_admin_may_do_nothing(self, clinic_admin, clinic):
        clinic_admin.is_active = False
        clinic_admin.save()
        assert not permissions.can_view_admin(clinic_admin)
        assert not permissions.can_edit_in_admin(clinic_admin, clinic)


# --- Query counts: a page costs the same whether it lists 2 rows or 20.


def _rows(changelist, n, clinic, owner):
    now = datetime.datetime.now(datetime.UTC)
    for i in range(n):
        other = ClinicFactory()
        if changelist == "cases_clinic":
            MembershipFactory(clinic=other)
        elif changelist == "cases_membership":
            MembershipFactory(clinic=other, user=UserFactory())
        elif changelist == "cases_patient":
            PatientFactory(clinic=other)
        elif changelist == "cases_lesion":
            LesionFactory(patient=PatientFactory(clinic=other))
        elif changelist in ("cases_lesionimage", "cases_review", "inference_prediction"):
            image = admin_helpers.make_image(LesionFactory(patient=PatientFactory(clinic=other)), owner)
            if changelist == "cases_review":
                admin_helpers.make_review(image, owner)
            if changelist == "inference_prediction":
                from inference.models import ModelVersion

                version = ModelVersion.objects.first() or _model_version()
                Prediction.objects.create(image=image, model_version=version)
                admin_helpers.make_review(image, owner)
        elif changelist == "api_devicetoken":
            issue_token(user=UserFactory(), name=f"phone {i}")
        elif changelist == "core_auditevent":
            AuditEvent.objects.create(
                user=UserFactory(), action="changed", model="cases.patient", object_id=str(i), at=now
            )


@pytest.mark.parametrize("changelist", CHANGELISTS)
def test_a_changelist_costs_the_same_number_of_queries_for_2_or_20_rows(client, superuser, clinic, owner, changelist):
    client.force_login(superuser)
    url = reverse(f"admin:{changelist}_changelist")
    _rows(changelist, 2, clinic, owner)
    client.get(url)  # warm caches (content types, sessions)
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    _rows(changelist, 18, clinic, owner)
    with CaptureQueriesContext(connection) as many:
        response = client.get(url)
    assert response.context["cl"].result_count >= 20
    assert len(many) == len(few), [q["sql"] for q in many]


def test_an_image_change_page_never_links_to_a_media_url(client, clinic_admin, owner, lesion, jpeg_bytes):
    from cases import services

    image = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="clinical")
    client.force_login(clinic_admin)
    page = client.get(change_url(image)).content.decode()
    assert image.image.name in page
    assert "/media/" not in page and 'type="file"' not in page
    data = {"modality": "dermoscopic", "captured_at_0": "2026-01-02", "captured_at_1": "10:00:00"}
    assert client.post(change_url(image), data).status_code == 302
    image.refresh_from_db()
    assert image.modality == "dermoscopic"
    assert changes().get(model="cases.lesionimage").changes["modality"] == ["clinical", "dermoscopic"]


# --- The intake checks (core/quality.py) on the image's admin pages.


def test_the_admin_shows_the_quality_findings_and_a_duplicate(client, clinic_admin, owner, lesion, jpeg_bytes):
    from PIL import Image, ImageFilter

    first = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes))
    repeat = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes))
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg_bytes)).filter(ImageFilter.GaussianBlur(6)).save(out, "JPEG", quality=92)
    blurred = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(out.getvalue()))
    client.force_login(clinic_admin)

    page = client.get(change_url(blurred)).content.decode()
    assert "Image quality: retake recommended — too blurred" in page
    page = client.get(change_url(repeat)).content.decode()
    assert f"Already uploaded on {first.uploaded_at:%Y-%m-%d}" in page
    assert client.get(change_url(first)).content.decode().count("Already uploaded") == 0

    listing = client.get(changelist_url(first), {"intake": "retake"}).content.decode()
    assert str(blurred.pk) in listing and str(first.pk) not in listing
    listing = client.get(changelist_url(first), {"intake": "duplicate"}).content.decode()
    assert str(repeat.pk) in listing and str(first.pk) not in listing
