"""The clinical record as FHIR R4 resources (plain dicts, JSON-ready).

One builder per resource; each takes rows already read through
``cases.permissions`` / ``inference.permissions`` and a ``base`` URL
(``https://host/api/v1/fhir/``) for absolute references. Identifiers:

- ``Patient/{patient id}``, ``BodyStructure/{lesion id}``,
  ``Media/{image id}``, ``DiagnosticReport/{image id}`` (one report per
  image), ``Observation/{prediction id}``, ``Device/{model version id}``.

The model's output is only ever an Observation made by a Device; the
DiagnosticReport's status follows ``interop.record`` (never ``final``
without a clinician's review). Mappings: docs/interoperability.md.
"""

from cases import terminology as codes
from inference.models import OUT_OF_DISTRIBUTION_WARNING, Prediction

FHIR_VERSION = "4.0.1"
# Our own code systems and identifier namespaces: URNs, as nothing here has
# a published terminology.
LOCAL = "urn:skincare:fhir"
MODEL_SHA256 = f"{LOCAL}:model-sha256"
FITZPATRICK_EXTENSION = f"{LOCAL}:StructureDefinition:fitzpatrick-skin-type"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"

# The model's label -> HL7 v3 ObservationInterpretation.
INTERPRETATIONS = {
    Prediction.Label.MALIGNANT: ("POS", "Positive"),
    Prediction.Label.BENIGN: ("NEG", "Negative"),
    Prediction.Label.UNCERTAIN: ("IND", "Indeterminate"),
}


def instant(value):
    """FHIR instant/dateTime: ISO 8601 with a time zone."""
    return value.isoformat() if value else None


def ref(kind, pk, display=None):
    reference = {"reference": f"{kind}/{pk}"}
    if display:
        reference["display"] = display
    return reference


def concept(code, text):
    """A CodeableConcept: the SNOMED CT coding when there is one, always the text."""
    result = {"text": text}
    if code is not None:
        result["coding"] = [{"system": code.system, "code": code.code, "display": code.display}]
    return result


def _clean(resource):
    """Drop empty values, so no element is present without content (a FHIR rule)."""
    if isinstance(resource, dict):
        cleaned = {k: _clean(v) for k, v in resource.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, "", [], {})}
    if isinstance(resource, list):
        return [c for c in (_clean(v) for v in resource) if c not in (None, "", [], {})]
    return resource


def body_site(lesion):
    return concept(codes.body_site(lesion.anatomical_site), lesion.get_anatomical_site_display())


def patient(p):
    return _clean(
        {
            "resourceType": "Patient",
            "id": str(p.pk),
            "identifier": [
                {
                    "use": "usual",
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                "code": "MR",
                                "display": "Medical record number",
                            }
                        ]
                    },
                    # Medical record numbers are unique per clinic: the clinic is the namespace.
                    "system": f"urn:uuid:{p.clinic_id}",
                    "value": p.medical_record_number,
                    "assigner": {"display": p.clinic.name},
                }
            ],
            "active": True,
            "name": [{"use": "official", "family": p.family_name, "given": [p.given_name]}],
            "gender": p.sex,
            "birthDate": p.date_of_birth.isoformat(),
            "managingOrganization": {"display": p.clinic.name},
            "extension": (
                [{"url": FITZPATRICK_EXTENSION, "valueInteger": p.fitzpatrick_skin_type}]
                if p.fitzpatrick_skin_type
                else []
            ),
        }
    )


def body_structure(lesion):
    return _clean(
        {
            "resourceType": "BodyStructure",
            "id": str(lesion.pk),
            "active": True,
            "location": body_site(lesion),
            "description": lesion.description or f"{lesion.get_anatomical_site_display()} skin lesion",
            "patient": ref("Patient", lesion.patient_id),
        }
    )


def media(image, *, base):
    lesion = image.lesion
    device = " ".join(filter(None, [getattr(image, "device_make", ""), getattr(image, "device_model", "")]))
    return _clean(
        {
            "resourceType": "Media",
            "id": str(image.pk),
            "status": "completed",
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/media-type", "code": "image", "display": "Image"}
                ]
            },
            "modality": {
                "coding": [{"system": DICOM, "code": "XC", "display": "External-camera Photography"}],
                "text": image.get_modality_display(),
            },
            "subject": ref("Patient", lesion.patient_id),
            "createdDateTime": instant(image.captured_at),
            "issued": instant(image.uploaded_at),
            "bodySite": body_site(lesion),
            "deviceName": device,
            "height": image.height,
            "width": image.width,
            "content": {
                "contentType": image_media_type(image),
                # The bytes, behind the same token and permissions as this resource.
                "url": base.removesuffix("fhir/") + f"images/{image.pk}/file",
                "size": image.byte_size,
                "title": f"{image.get_modality_display()} image of {lesion.get_anatomical_site_display()} lesion",
            },
            "extension": [
                {
                    "url": f"{LOCAL}:StructureDefinition:body-structure",
                    "valueReference": ref("BodyStructure", lesion.pk),
                }
            ],
        }
    )


def image_media_type(image):
    return {"JPEG": "image/jpeg", "PNG": "image/png"}.get(image.image_format, "application/octet-stream")


def device(model_version):
    metrics = model_version.metrics or {}
    properties = []
    for name, value in sorted(metrics.items()):
        mean = value.get("mean") if isinstance(value, dict) else value
        if isinstance(mean, int | float):
            properties.append(
                {
                    "type": {"text": f"validated {name} (cross-validation mean)"},
                    "valueQuantity": [{"value": round(mean, 6)}],
                }
            )
    return _clean(
        {
            "resourceType": "Device",
            "id": str(model_version.pk),
            "identifier": [{"system": MODEL_SHA256, "value": model_version.sha256}],
            "status": "active" if model_version.is_active else "inactive",
            "manufacturer": "skincare",
            "deviceName": [{"name": model_version.label, "type": "model-name"}],
            "modelNumber": model_version.name,
            "type": {"text": "Machine-learning image classifier (decision support, not a diagnosis)"},
            "version": [{"value": model_version.version}],
            "property": properties,
            "note": [
                {"text": f"Model file sha256 {model_version.sha256}; decision threshold {model_version.threshold}."}
            ],
        }
    )


def observation(prediction):
    image = prediction.image
    lesion = image.lesion
    code, display = INTERPRETATIONS.get(prediction.label, (None, None))
    notes = []
    if prediction.label == Prediction.Label.UNCERTAIN:
        notes.append({"text": "Uncertain: the model cannot tell; refer for specialist review."})
    if prediction.out_of_distribution:
        notes.append({"text": OUT_OF_DISTRIBUTION_WARNING})
    notes.append({"text": "Model output is decision support, not a diagnosis."})
    return _clean(
        {
            "resourceType": "Observation",
            "id": str(prediction.pk),
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}]}],
            "code": {
                "coding": [
                    {
                        "system": f"{LOCAL}:observation",
                        "code": "melanoma-probability",
                        "display": "Probability of melanoma",
                    }
                ],
                "text": "Probability of melanoma (calibrated model output)",
            },
            "subject": ref("Patient", lesion.patient_id),
            "focus": [ref("BodyStructure", lesion.pk)],
            "effectiveDateTime": instant(image.captured_at),
            "issued": instant(prediction.finished_at or prediction.queued_at),
            "valueQuantity": {
                "value": round(prediction.probability_malignant, 6),
                "unit": "probability",
                "system": UCUM,
                "code": "1",
            },
            "interpretation": [
                {
                    "coding": [{"system": INTERPRETATION, "code": code, "display": display}] if code else [],
                    "text": prediction.get_label_display(),
                }
            ],
            "note": notes,
            "bodySite": body_site(lesion),
            "method": {
                "text": f"Convolutional neural network {prediction.model_version.label}, calibrated probability"
            },
            "device": ref("Device", prediction.model_version_id, prediction.model_version.label),
            "derivedFrom": [ref("Media", image.pk)],
            "component": [
                {
                    "code": {"text": "Model confidence"},
                    "valueQuantity": {
                        "value": round(prediction.confidence, 6),
                        "unit": "1",
                        "system": UCUM,
                        "code": "1",
                    },
                }
            ]
            if prediction.confidence is not None
            else [],
        }
    )


def diagnostic_report(case):
    image = case.image
    review = case.signed_review
    prediction = case.finished_prediction
    if review is not None:
        conclusion = review.get_final_diagnosis_display()
        if review.histopathology_result:
            conclusion += f"; histopathology: {review.get_histopathology_result_display()}"
        if review.biopsy_requested:
            conclusion += "; biopsy requested"
        if review.notes:
            conclusion += f". {review.notes}"
        conclusion_code = [concept(codes.diagnosis(review.final_diagnosis), review.get_final_diagnosis_display())]
        interpreter = [{"display": _who(review.reviewer)}]
        issued = review.created_at
    else:
        conclusion = (
            f"Model only (no clinician has reviewed this image): {prediction.get_label_display()}, "
            f"probability of melanoma {prediction.probability_malignant:.2f}. Decision support, not a diagnosis."
            if prediction
            else "Awaiting the model and a clinician's review."
        )
        conclusion_code, interpreter = [], []
        issued = prediction.finished_at if prediction else None
    return _clean(
        {
            "resourceType": "DiagnosticReport",
            "id": str(image.pk),
            "status": case.status,
            "category": [
                {"coding": [{"system": DIAGNOSTIC_SERVICE, "code": "OTH", "display": "Other"}], "text": "Dermatology"}
            ],
            "code": {
                "coding": [
                    {
                        "system": f"{LOCAL}:report",
                        "code": "skin-lesion-image-assessment",
                        "display": "Skin lesion image assessment",
                    }
                ],
                "text": "Skin lesion image assessment",
            },
            "subject": ref("Patient", case.patient.pk),
            "effectiveDateTime": instant(image.captured_at),
            "issued": instant(issued),
            "resultsInterpreter": interpreter,
            "result": [ref("Observation", prediction.pk)] if prediction else [],
            "media": [{"link": ref("Media", image.pk)}],
            "conclusion": conclusion,
            "conclusionCode": conclusion_code,
        }
    )


def _who(user):
    return user.get_full_name() or user.get_username()


def operation_outcome(code, diagnostics, severity="error"):
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def bundle(resources, *, base, self_url, included=()):
    entries = [
        {"fullUrl": f"{base}{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
        for r in resources
    ]
    entries += [
        {"fullUrl": f"{base}{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "include"}}
        for r in included
    ]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": self_url}],
        "entry": entries,
    }
