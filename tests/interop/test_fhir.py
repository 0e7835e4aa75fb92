"""FHIR R4: every resource validates (fhir.resources, R4B models), statuses follow reviews, clinics stay apart."""

import pytest
from fhir.resources.R4B import get_fhir_model_class

from cases import terminology as codes

from .conftest import sign_review

pytestmark = pytest.mark.django_db

FHIR = "/api/v1/fhir"


def validated(body):
    """Parse ``body`` with the fhir.resources model of its type (raises on any invalid element)."""
    model = get_fhir_model_class(body["resourceType"])
    return model.model_validate(body)


def get(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    return response.json()


def test_everything_bundle_validates_and_holds_each_resource(owner_api, demo_image):
    patient = demo_image.lesion.patient
    body = get(owner_api, f"{FHIR}/Patient/{patient.pk}/$everything")
    bundle = validated(body)
    kinds = sorted(entry.resource.__resource_type__ for entry in bundle.entry)
    assert kinds == ["BodyStructure", "Device", "DiagnosticReport", "Media", "Observation", "Patient"]
    for entry in body["entry"]:
        validated(entry["resource"])
        again = get(owner_api, f"{FHIR}/{entry['resource']['resourceType']}/{entry['resource']['id']}")
        assert again == entry["resource"]


def test_patient_body_structure_and_media_mappings(owner_api, demo_image):
    patient = demo_image.lesion.patient
    body = get(owner_api, f"{FHIR}/Patient/{patient.pk}")
    assert body["name"][0] == {"use": "official", "family": "Lovelace", "given": ["Ada"]}
    assert body["identifier"][0]["value"] == "MRN-0001"
    assert body["gender"] == "female" and body["birthDate"] == "1961-12-10"
    site = get(owner_api, f"{FHIR}/BodyStructure/{demo_image.lesion.pk}")["location"]["coding"][0]
    assert (site["system"], site["code"]) == (codes.SNOMED, "66643007")
    media = get(owner_api, f"{FHIR}/Media/{demo_image.pk}")
    assert media["content"]["url"].endswith(f"/api/v1/images/{demo_image.pk}/file")
    assert owner_api.get(media["content"]["url"]).status_code == 200


def test_model_output_is_an_observation_by_a_device(owner_api, demo_image, model_version):
    prediction = demo_image.predictions.get()
    body = get(owner_api, f"{FHIR}/Observation/{prediction.pk}")
    assert body["valueQuantity"]["value"] == 0.83
    assert body["interpretation"][0]["coding"][0]["code"] == "POS"
    assert body["device"]["reference"] == f"Device/{model_version.pk}"
    device = validated(get(owner_api, f"{FHIR}/Device/{model_version.pk}"))
    assert device.identifier[0].value == model_version.sha256


def test_report_status_moves_preliminary_final_amended(owner_api, owner, colleague, demo_image):
    url = f"{FHIR}/DiagnosticReport/{demo_image.pk}"
    report = get(owner_api, url)
    assert report["status"] == "preliminary"
    assert "conclusionCode" not in report and "resultsInterpreter" not in report

    sign_review(owner, demo_image, diagnosis="melanoma")
    report = get(owner_api, url)
    validated(report)
    assert report["status"] == "final"
    assert report["conclusionCode"][0]["coding"][0]["code"] == "372244006"

    sign_review(owner, demo_image, diagnosis="melanoma")  # same conclusion again: still final
    assert get(owner_api, url)["status"] == "final"

    sign_review(colleague, demo_image, diagnosis="nevus", histopathology_result="benign")
    report = get(owner_api, url)
    validated(report)
    assert report["status"] == "amended"
    assert report["conclusionCode"][0]["coding"][0]["code"] == "400096001"


def test_report_without_a_finished_prediction_is_only_registered(owner_api, demo_image):
    demo_image.predictions.update(status="pending", probability_malignant=None, label="")
    report = get(owner_api, f"{FHIR}/DiagnosticReport/{demo_image.pk}")
    assert report["status"] == "registered" and "result" not in report


def test_search_by_patient_and_status(owner_api, owner, demo_image):
    patient = demo_image.lesion.patient
    found = validated(get(owner_api, f"{FHIR}/DiagnosticReport?patient=Patient/{patient.pk}&status=preliminary"))
    assert found.total == 1
    assert validated(get(owner_api, f"{FHIR}/DiagnosticReport?patient={patient.pk}&status=final")).total == 0
    sign_review(owner, demo_image)
    assert validated(get(owner_api, f"{FHIR}/DiagnosticReport?subject={patient.pk}&status=final")).total == 1
    for kind in ("Observation", "Media", "BodyStructure"):
        assert validated(get(owner_api, f"{FHIR}/{kind}?patient={patient.pk}")).total == 1
    assert validated(get(owner_api, f"{FHIR}/Patient?identifier=MRN-0001")).total == 1


def test_errors_are_operation_outcomes(owner_api, demo_image):
    missing = get(owner_api, f"{FHIR}/Patient/00000000-0000-0000-0000-000000000000", status=404)
    assert validated(missing).issue[0].code == "not-found"
    assert get(owner_api, f"{FHIR}/Observation/not-a-uuid", status=404)["resourceType"] == "OperationOutcome"
    bad = get(owner_api, f"{FHIR}/DiagnosticReport?code=1234", status=400)
    assert validated(bad).issue[0].code == "not-supported"
    assert get(owner_api, f"{FHIR}/Encounter", status=404)["resourceType"] == "OperationOutcome"
    assert get(owner_api, f"{FHIR}/Patient/x/y/z", status=404)["resourceType"] == "OperationOutcome"
    assert get(owner_api, f"{FHIR}/", status=404)["resourceType"] == "OperationOutcome"


def test_anonymous_gets_401_outcome(client, demo_image):
    response = client.get(f"{FHIR}/Patient/{demo_image.lesion.patient_id}")
    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"


def test_another_clinic_gets_404_on_every_url(owner_api, outsider_api, owner, demo_image, model_version):
    sign_review(owner, demo_image)
    patient = demo_image.lesion.patient
    body = get(owner_api, f"{FHIR}/Patient/{patient.pk}/$everything")
    urls = [f"{FHIR}/Patient/{patient.pk}/$everything"]
    urls += [f"{FHIR}/{e['resource']['resourceType']}/{e['resource']['id']}" for e in body["entry"]]
    assert len(urls) == 7
    for url in urls:
        outcome = get(outsider_api, url, status=404)
        assert outcome["resourceType"] == "OperationOutcome", url
    for kind in ("DiagnosticReport", "Observation", "Media", "BodyStructure"):
        assert get(outsider_api, f"{FHIR}/{kind}?patient={patient.pk}")["total"] == 0
    assert get(outsider_api, f"{FHIR}/Patient?identifier=MRN-0001")["total"] == 0


def test_capability_statement(client):
    body = get(client, f"{FHIR}/metadata")
    statement = validated(body)
    assert statement.fhirVersion == "4.0.1"
    kinds = {r.type for r in statement.rest[0].resource}
    assert kinds == {"Patient", "BodyStructure", "Media", "Observation", "DiagnosticReport", "Device"}


def test_reads_and_searches_are_audited(owner_api, outsider_api, demo_image):
    from core.models import AuditEvent

    patient = demo_image.lesion.patient
    get(owner_api, f"{FHIR}/Patient/{patient.pk}/$everything")
    read = AuditEvent.objects.filter(model="cases.patient", object_id=str(patient.pk)).latest("pk")
    assert (read.action, read.channel) == (AuditEvent.Action.READ, AuditEvent.Channel.API)
    get(owner_api, f"{FHIR}/Media?patient={patient.pk}")
    listed = AuditEvent.objects.filter(model="cases.lesionimage").latest("pk")
    assert listed.object_ids == [str(demo_image.pk)]
    get(outsider_api, f"{FHIR}/DiagnosticReport/{demo_image.pk}", status=404)
    refused = AuditEvent.objects.filter(model="cases.lesionimage", object_id=str(demo_image.pk)).latest("pk")
    assert refused.action == AuditEvent.Action.REFUSED


def test_seed_demo_has_a_final_report(db):
    from django.core.management import call_command

    from cases.models import Patient
    from tests.api.conftest import token_client

    call_command("seed_demo")
    ada = Patient.objects.get(medical_record_number="MRN-0001")
    client = token_client(ada.clinic.members.get(username="dr.chen"))
    bundle = get(client, f"{FHIR}/DiagnosticReport?patient={ada.pk}&status=final")
    assert bundle["total"] == 1
    assert bundle["entry"][0]["resource"]["conclusionCode"][0]["coding"][0]["code"] == "400096001"


def test_fhir_stays_out_of_the_openapi_schema_and_the_files_are_in(client):
    schema = client.get("/api/schema/").content.decode()
    assert "/api/v1/fhir" not in schema
    assert "/api/v1/images/{image_id}/report.pdf" in schema and "/api/v1/images/{image_id}/dicom" in schema
