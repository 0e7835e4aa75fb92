"""The prediction review's CSV export: one row per prediction, formula-escaped for spreadsheets."""

import csv

from cases import permissions


def _csv_safe(value):
    """A cell a spreadsheet will not run as a formula (OWASP: CSV injection)."""
    if value is None:
        return ""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if text and text[0] in "=+-@\t\r":
        return "'" + text
    return text


CSV_COLUMNS = [
    "prediction_id",
    "image_id",
    "patient_mrn",
    "clinic",
    "model_version",
    "status",
    "label",
    "probability_malignant",
    "confidence",
    "out_of_distribution",
    "ood_distance",
    "shadow",
    "flagged_for_specialist",
    "latest_verdict",
    "final_diagnosis",
    "histopathology_result",
    "queued_at",
    "finished_at",
]


def _csv_row(prediction, identify):
    patient = prediction.image.lesion.patient
    return [
        prediction.pk,
        prediction.image_id,
        patient.medical_record_number if identify(patient.clinic_id) else permissions.pseudonym(patient.pk),
        prediction.image.lesion.patient.clinic.name,
        prediction.model_version.label,
        prediction.status,
        prediction.label,
        prediction.probability_malignant,
        prediction.confidence,
        prediction.out_of_distribution,
        prediction.ood_distance,
        prediction.is_shadow,
        prediction.flagged_for_specialist,
        prediction.latest_verdict,
        prediction.latest_final_diagnosis,
        prediction.latest_histopathology,
        prediction.queued_at,
        prediction.finished_at,
    ]


class _Echo:
    """A file-like object whose write() returns the line, for streaming csv.writer output."""

    def write(self, value):
        return value


def csv_rows(predictions, *, user):
    """The CSV text, line by line (a header, then one line per prediction), for a streaming response.

    The MRN column holds a pseudonym for patients of clinics ``user`` does not belong to.
    """
    allowed = {}

    def identify(clinic_id):
        if clinic_id not in allowed:
            allowed[clinic_id] = permissions.may_identify_patients(user, clinic_id)
        return allowed[clinic_id]

    writer = csv.writer(_Echo())
    for row in [CSV_COLUMNS, *(_csv_row(prediction, identify) for prediction in predictions)]:
        yield writer.writerow([_csv_safe(value) for value in row])
