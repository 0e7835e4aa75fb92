"""Clinics, patients and lesions: owner and colleague share a clinic; the
outsider sees none of it (404) and cannot write into it."""

import pytest

from cases.models import Lesion, Patient
from tests.factories import LesionFactory, PatientFactory

from .conftest import assert_error

pytestmark = pytest.mark.django_db

NEW_PATIENT = {
    "medical_record_number": "MRN-NEW-1",
    "given_name": "Ada",
    "family_name": "Lovelace",
    "date_of_birth": "1985-12-10",
    "sex": "female",
}


def test_clinics_lists_only_ones_own(owner_api, outsider_api, clinic):
    assert [c["id"] for c in owner_api.get("/api/v1/clinics").json()["results"]] == [str(clinic.pk)]
    assert [c["name"] for c in outsider_api.get("/api/v1/clinics").json()["results"]] == ["Elsewhere"]


def test_patient_list_is_scoped_paginated_and_searchable(owner_api, colleague_api, outsider_api, patient, clinic):
    PatientFactory(clinic=clinic, given_name="Grace", family_name="Hopper", medical_record_number="X-77")
    for client in (owner_api, colleague_api):
        body = client.get("/api/v1/patients").json()
        assert body["count"] == 2 and {"next", "previous", "results"} <= set(body)
    assert outsider_api.get("/api/v1/patients").json()["count"] == 0

    assert [p["family_name"] for p in owner_api.get("/api/v1/patients?search=hopp").json()["results"]] == ["Hopper"]
    assert owner_api.get("/api/v1/patients?search=x-77").json()["count"] == 1
    assert outsider_api.get("/api/v1/patients?search=hopp").json()["count"] == 0
    page = owner_api.get("/api/v1/patients?page_size=1").json()
    assert len(page["results"]) == 1 and page["next"]


def test_patient_detail(owner_api, colleague_api, outsider_api, patient):
    url = f"/api/v1/patients/{patient.pk}"
    assert owner_api.get(url).json()["medical_record_number"] == patient.medical_record_number
    assert colleague_api.get(url).status_code == 200
    assert_error(outsider_api.get(url), 404, "not_found")
    assert_error(owner_api.get("/api/v1/patients/00000000-0000-0000-0000-000000000000"), 404, "not_found")


def test_create_patient_in_own_clinic(owner_api, clinic):
    response = owner_api.post("/api/v1/patients", {**NEW_PATIENT, "clinic": str(clinic.pk)})
    assert response.status_code == 201, response.content
    patient = Patient.objects.get(pk=response.json()["id"])
    assert patient.clinic == clinic and patient.given_name == "Ada"


def test_clinic_may_be_left_out_only_with_a_single_clinic(owner_api, clinic, second_clinic):
    error = assert_error(owner_api.post("/api/v1/patients", NEW_PATIENT), 400, "validation_error")
    assert "clinic" in error["fields"]
    response = owner_api.post("/api/v1/patients", {**NEW_PATIENT, "clinic": str(second_clinic.pk)})
    assert response.status_code == 201
    assert Patient.objects.get().clinic == second_clinic


def test_a_patient_in_another_clinic_is_refused_as_unknown(owner_api, outsider):
    foreign = outsider.clinics.get()
    error = assert_error(
        owner_api.post("/api/v1/patients", {**NEW_PATIENT, "clinic": str(foreign.pk)}), 400, "validation_error"
    )
    missing = assert_error(
        owner_api.post("/api/v1/patients", {**NEW_PATIENT, "clinic": "00000000-0000-0000-0000-000000000000"}),
        400,
        "validation_error",
    )
    # The same answer whether the clinic exists or not.
    assert error["fields"]["clinic"][0].replace(str(foreign.pk), "X") == missing["fields"]["clinic"][0].replace(
        "00000000-0000-0000-0000-000000000000", "X"
    )
    assert not Patient.objects.exists()


def test_duplicate_mrn_and_future_birth_date_are_field_errors(owner_api, patient):
    error = assert_error(
        owner_api.post("/api/v1/patients", {**NEW_PATIENT, "medical_record_number": patient.medical_record_number}),
        400,
        "validation_error",
    )
    assert error["fields"]
    error = assert_error(
        owner_api.post("/api/v1/patients", {**NEW_PATIENT, "date_of_birth": "2999-01-01"}), 400, "validation_error"
    )
    assert "date_of_birth" in error["fields"]
    assert Patient.objects.count() == 1


def test_unknown_and_wrong_typed_fields_are_400(owner_api):
    error = assert_error(owner_api.post("/api/v1/patients", {**NEW_PATIENT, "nickname": "x"}), 400, "validation_error")
    assert error["fields"] == {"nickname": ["Unknown field."]}
    error = assert_error(
        owner_api.post("/api/v1/patients", {**NEW_PATIENT, "date_of_birth": 12}), 400, "validation_error"
    )
    assert "date_of_birth" in error["fields"]
    error = assert_error(
        owner_api.post("/api/v1/patients", {**NEW_PATIENT, "given_name": 12, "fitzpatrick_skin_type": "3"}),
        400,
        "validation_error",
    )
    assert error["fields"] == {"given_name": ["Must be a string."], "fitzpatrick_skin_type": ["Must be an integer."]}
    assert_error(owner_api.post("/api/v1/patients", [NEW_PATIENT]), 400, "validation_error")
    assert not Patient.objects.exists()


def test_lesions_of_a_patient(owner_api, colleague_api, outsider_api, patient, lesion, other_clinic_patient):
    LesionFactory(patient=other_clinic_patient)
    url = f"/api/v1/patients/{patient.pk}/lesions"
    assert [x["id"] for x in owner_api.get(url).json()["results"]] == [str(lesion.pk)]
    assert colleague_api.get(url).json()["count"] == 1
    assert_error(outsider_api.get(url), 404, "not_found")

    response = colleague_api.post(url, {"anatomical_site": "head_neck", "description": "left temple"})
    assert response.status_code == 201, response.content
    assert response.json()["patient"] == str(patient.pk)
    assert_error(outsider_api.post(url, {"anatomical_site": "head_neck"}), 404, "not_found")
    error = assert_error(owner_api.post(url, {"anatomical_site": "elbow"}), 400, "validation_error")
    assert "anatomical_site" in error["fields"]
    assert Lesion.objects.filter(patient=patient).count() == 2


def test_lesion_detail(owner_api, colleague_api, outsider_api, lesion):
    url = f"/api/v1/lesions/{lesion.pk}"
    assert owner_api.get(url).json()["anatomical_site"] == lesion.anatomical_site
    assert colleague_api.get(url).status_code == 200
    assert_error(outsider_api.get(url), 404, "not_found")


def test_outsider_cannot_create_in_a_foreign_patient_even_by_id(outsider_api, patient):
    assert_error(
        outsider_api.post(f"/api/v1/patients/{patient.pk}/lesions", {"anatomical_site": "unknown"}), 404, "not_found"
    )
    assert not Lesion.objects.exists()
