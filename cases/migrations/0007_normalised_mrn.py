"""MRNs stored normalised (stripped, upper case) and unique per clinic on that value.

Existing rows are normalised first. Two patients of one clinic whose MRNs
differ only in case or spaces cannot both keep the same MRN: the oldest keeps
it, each later one gets " DUPLICATE-<n>" appended so nothing is lost or merged
and a clinic administrator can find them (search "DUPLICATE") and resolve them
by hand (docs/operations.md).
"""

from django.db import migrations, models
from django.db.models.functions import Trim, Upper

SUFFIX = " DUPLICATE-{n}"


def normalise_existing(apps, schema_editor):
    Patient = apps.get_model("cases", "Patient")
    taken = {}
    for patient in Patient.objects.order_by("created_at", "pk"):
        mrn = (patient.medical_record_number or "").strip().upper()
        key = (patient.clinic_id, mrn)
        if key in taken:
            taken[key] += 1
            mrn = f"{mrn}{SUFFIX.format(n=taken[key])}"[:64]
            print(f"\n  patient {patient.pk}: MRN clashes after normalising, renamed to {mrn!r}")
        else:
            taken[key] = 1
        if mrn != patient.medical_record_number:
            Patient.objects.filter(pk=patient.pk).update(medical_record_number=mrn)


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0006_lesionimage_sanitized_metadata"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="patient", name="unique_mrn_per_clinic"),
        migrations.RunPython(normalise_existing, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="patient",
            constraint=models.UniqueConstraint(
                models.F("clinic"),
                Upper(Trim("medical_record_number")),
                name="unique_normalised_mrn_per_clinic",
                violation_error_code="duplicate_mrn",
                violation_error_message="Another patient in this clinic has this MRN.",
            ),
        ),
    ]
