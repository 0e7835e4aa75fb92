"""The CapabilityStatement: what /api/v1/fhir/ supports, and the search parameters the views accept."""

from django.utils import timezone

from .resources import FHIR_VERSION

_COMMON = {"_id"}
SEARCH_PARAMETERS = {
    "Patient": _COMMON | {"identifier"},
    "BodyStructure": _COMMON | {"patient"},
    "Media": _COMMON | {"patient", "subject"},
    "Observation": _COMMON | {"patient", "subject", "status"},
    "DiagnosticReport": _COMMON | {"patient", "subject", "status"},
    "Device": _COMMON,
}
_TYPES = {"_id": "token", "identifier": "token", "patient": "reference", "subject": "reference", "status": "token"}


def capability_statement(*, base):
    resources = []
    for kind, params in SEARCH_PARAMETERS.items():
        entry = {
            "type": kind,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": name, "type": _TYPES[name]} for name in sorted(params)],
        }
        if kind == "Patient":
            entry["operation"] = [
                {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}
            ]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": timezone.now().date().isoformat(),
        "publisher": "skincare",
        "kind": "instance",
        "software": {"name": "skincare"},
        "implementation": {"description": "skincare FHIR R4 read-only interface", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Read-only. Results are not paged. See docs/interoperability.md.",
                "security": {
                    "description": "Bearer device tokens (POST /api/v1/auth/tokens), as for the REST API; "
                    "records outside the token owner's clinics are not found."
                },
                "resource": resources,
            }
        ],
    }
