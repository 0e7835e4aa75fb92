"""Create a demo clinic with two clinicians, an outsider and a few patients.

Idempotent: running it again changes nothing. Uses the 16 credited ISIC
images in demo/images/ (see demo/images/CREDITS.md).
"""

import datetime
import random
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from cases import services
from cases.models import AnatomicalSite, Clinic, LesionImage, Membership, Patient
from cases.permissions import ML_ADMINS_GROUP

DEMO_IMAGES = Path(settings.BASE_DIR) / "demo" / "images"
DEMO_PASSWORD = "skincare-demo"
PATIENTS = [
    ("MRN-0001", "Ada", "Lovelace", datetime.date(1961, 12, 10), "female", 2),
    ("MRN-0002", "Alan", "Turing", datetime.date(1954, 6, 23), "male", 1),
    ("MRN-0003", "Grace", "Hopper", datetime.date(1946, 12, 9), "female", 3),
    ("MRN-0004", "Kwame", "Mensah", datetime.date(1979, 3, 14), "male", 5),
]
SITES = [
    AnatomicalSite.POSTERIOR_TORSO,
    AnatomicalSite.LOWER_EXTREMITY,
    AnatomicalSite.HEAD_NECK,
    AnatomicalSite.UPPER_EXTREMITY,
]


class Command(BaseCommand):
    help = "Create demo clinics, users (password 'skincare-demo') and patients with images."

    @transaction.atomic
    def handle(self, *args, **options):
        User = get_user_model()
        clinic, _ = Clinic.objects.get_or_create(name="Demo Dermatology Clinic")
        other, _ = Clinic.objects.get_or_create(name="Other Clinic")
        users = {}
        for username, first, last, target, role in [
            ("dr.alvarez", "Maria", "Alvarez", clinic, Membership.Role.CLINIC_ADMIN),
            ("dr.chen", "Wei", "Chen", clinic, Membership.Role.CLINICIAN),
            ("dr.outsider", "Olu", "Okafor", other, Membership.Role.CLINICIAN),
        ]:
            user, created = User.objects.get_or_create(
                username=username, defaults={"first_name": first, "last_name": last}
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.save()
            Membership.objects.get_or_create(user=user, clinic=target, defaults={"role": role})
            users[username] = user
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.org", DEMO_PASSWORD)
        # Admin roles: the clinic admin edits her clinic's records in the
        # admin; the ML lead registers, activates and shadows models but
        # edits no clinical data.
        User.objects.filter(username="dr.alvarez").update(is_staff=True)
        ml_lead, created = User.objects.get_or_create(
            username="ml.lead", defaults={"first_name": "Priya", "last_name": "Raman", "is_staff": True}
        )
        if created:
            ml_lead.set_password(DEMO_PASSWORD)
            ml_lead.save()
        ml_lead.groups.add(Group.objects.get(name=ML_ADMINS_GROUP))

        images = sorted(DEMO_IMAGES.glob("*/*.jpg"))
        rng = random.Random(7)
        rng.shuffle(images)
        uploader = users["dr.alvarez"]
        now = timezone.now()
        for index, (mrn, given, family, dob, sex, fitz) in enumerate(PATIENTS):
            patient = Patient.objects.filter(clinic=clinic, medical_record_number=mrn).first()
            if patient is not None:
                continue
            patient = services.create_patient(
                user=uploader,
                clinic=clinic,
                medical_record_number=mrn,
                given_name=given,
                family_name=family,
                date_of_birth=dob,
                sex=sex,
                fitzpatrick_skin_type=fitz,
            )
            for lesion_no in range(2):
                lesion = services.create_lesion(
                    user=uploader,
                    patient=patient,
                    anatomical_site=SITES[(index + lesion_no) % len(SITES)],
                    description=f"Pigmented lesion #{lesion_no + 1}",
                )
                for visit in range(2):
                    path = images.pop()
                    with path.open("rb") as fh:
                        image = services.add_lesion_image(
                            uploader=uploader,
                            lesion=lesion,
                            file=fh,
                            modality="dermoscopic",
                            captured_at=now - datetime.timedelta(days=180 * (1 - visit) + index),
                        )
                    if index == 0 and lesion_no == 0 and visit == 0:
                        # One signed review, so that a final report exists
                        # (FHIR DiagnosticReport, PDF case report).
                        services.add_review(
                            reviewer=users["dr.chen"],
                            image=image,
                            verdict="agree",
                            final_diagnosis="nevus",
                            biopsy_requested=True,
                            histopathology_result="benign",
                            notes="Excision biopsy: benign compound naevus.",
                        )
        self.stdout.write(
            f"Demo ready: {Patient.objects.filter(clinic=clinic).count()} patients, "
            f"{LesionImage.objects.filter(lesion__patient__clinic=clinic).count()} images. "
            f"Logins: dr.alvarez (clinic admin), dr.chen (clinic), dr.outsider (other clinic), "
            f"ml.lead (ML admin), admin (superuser); password {DEMO_PASSWORD!r}."
        )
