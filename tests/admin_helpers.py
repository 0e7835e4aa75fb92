"""Users in each admin role, and quick rows, for the admin tests (cases.admin, inference.admin).

A superuser; an ML admin (staff in the "ML admins" group); a clinic
administrator (staff, ``Membership.role`` clinic_admin); plain staff with no
role; a clinician who is not staff. Roles never come from hand-assigned
model permissions, so none of these users has any.
"""

from django.contrib.auth.models import Group

from cases.models import Membership
from cases.permissions import ML_ADMINS_GROUP

from .factories import MembershipFactory, UserFactory


def superuser():
    return UserFactory(username="root", is_staff=True, is_superuser=True)


def ml_admin():
    user = UserFactory(username="ml-admin", is_staff=True)
    user.groups.add(Group.objects.get(name=ML_ADMINS_GROUP))
    return user


def clinic_admin(clinic, username="clinic-admin"):
    user = UserFactory(username=username, is_staff=True)
    MembershipFactory(user=user, clinic=clinic, role=Membership.Role.CLINIC_ADMIN)
    return user


def plain_staff(clinic=None):
    """Staff with no admin role; a clinician of ``clinic`` when given (least privilege: they see only it)."""
    user = UserFactory(username="plain-staff", is_staff=True)
    if clinic is not None:
        MembershipFactory(user=user, clinic=clinic, role=Membership.Role.CLINICIAN)
    return user


ROLES = ["superuser", "ml_admin", "clinic_admin", "plain_staff"]


def patient_form(patient, **changes):
    """The admin's patient change form as posted, with ``changes`` applied."""
    data = {
        "clinic": patient.clinic_id,
        "medical_record_number": patient.medical_record_number,
        "given_name": patient.given_name,
        "family_name": patient.family_name,
        "date_of_birth": patient.date_of_birth.isoformat(),
        "sex": patient.sex,
        "fitzpatrick_skin_type": patient.fitzpatrick_skin_type or "",
    }
    return {**data, **changes}


def make_image(lesion, uploader, **fields):
    """A LesionImage row without a stored file (for changelists that never open it)."""
    from django.utils import timezone

    from cases.models import LesionImage

    defaults = {
        "image": "lesion-images/not-stored.jpg",
        "image_format": "JPEG",
        "modality": LesionImage.Modality.DERMOSCOPIC,
        "captured_at": timezone.now(),
        "sha256": "0" * 64,
        "width": 1,
        "height": 1,
        "byte_size": 1,
    }
    return LesionImage.objects.create(lesion=lesion, uploaded_by=uploader, **{**defaults, **fields})


def make_review(image, reviewer, **fields):
    from cases.models import Review

    defaults = {"verdict": Review.Verdict.AGREE, "final_diagnosis": Review.Diagnosis.NEVUS}
    return Review.objects.create(image=image, reviewer=reviewer, **{**defaults, **fields})
