"""Least privilege in the admin: clinics see their own records; ML admins review models without identities."""

import pytest
from django.urls import reverse

from cases import permissions
from cases.models import Patient
from tests import admin_helpers
from tests.factories import LesionFactory, MembershipFactory, PatientFactory

from .test_admin_predictions import export, listed, predict, succeeded

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_clinics(owner, outsider, lesion, active_model):
    """One succeeded prediction in the owner's clinic and one in the outsider's."""
    other = LesionFactory(patient=PatientFactory(clinic=outsider.clinics.get(), medical_record_number="MRN-OTHER"))
    ours = predict(admin_helpers.make_image(lesion, owner), active_model, **succeeded("benign", 0.1))
    theirs = predict(admin_helpers.make_image(other, outsider), active_model, **succeeded("malignant", 0.9))
    return ours, theirs


def patients_listed(client):
    response = client.get(reverse("admin:cases_patient_changelist"))
    return {p.pk for p in response.context["cl"].result_list}


def test_a_clinic_admin_sees_only_their_clinics_patients_and_predictions(client, clinic_admin, two_clinics, patient):
    ours, theirs = two_clinics
    client.force_login(clinic_admin)
    assert patients_listed(client) == {patient.pk}
    assert listed(client) == {ours.pk}


def test_an_ml_admin_outside_every_clinic_reviews_all_predictions_but_no_patient(client, ml_admin, two_clinics):
    client.force_login(ml_admin)
    assert listed(client) == {p.pk for p in two_clinics}
    assert patients_listed(client) == set()


def test_an_ml_admin_exports_pseudonyms_except_for_their_own_clinic(client, ml_admin, two_clinics, clinic, patient):
    ours, theirs = two_clinics
    MembershipFactory(user=ml_admin, clinic=clinic)
    client.force_login(ml_admin)
    header, *rows = export(client, [ours, theirs])
    mrn = {row[0]: row[header.index("patient_mrn")] for row in rows}
    assert mrn[str(ours.pk)] == patient.medical_record_number
    other_patient = Patient.objects.get(medical_record_number="MRN-OTHER")
    assert mrn[str(theirs.pk)] == permissions.pseudonym(other_patient.pk)
    assert "MRN-OTHER" not in str(rows)


def test_an_ml_admin_cannot_search_predictions_by_mrn(client, ml_admin, two_clinics):
    client.force_login(ml_admin)
    assert listed(client, q="MRN-OTHER") == set()


def test_a_superuser_sees_everything(client, superuser, two_clinics):
    client.force_login(superuser)
    assert listed(client) == {p.pk for p in two_clinics}
    assert len(patients_listed(client)) == 2


def test_pseudonyms_are_stable_and_reveal_nothing(patient):
    assert permissions.pseudonym(patient.pk) == permissions.pseudonym(patient.pk)
    assert permissions.pseudonym(patient.pk).startswith("P-")
    assert patient.medical_record_number not in permissions.pseudonym(patient.pk)
