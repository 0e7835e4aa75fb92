import pytest
from django.core.management import call_command

from cases.models import LesionImage, Patient
from inference.models import Prediction

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_clinic_users_and_images_once(active_model):
    call_command("seed_demo")
    call_command("seed_demo")  # idempotent
    assert Patient.objects.count() == 4
    assert LesionImage.objects.count() == 16
    assert Prediction.objects.filter(model_version=active_model).count() == 16


def test_seed_demo_gives_the_demo_admins_their_roles(active_model):
    from django.contrib.auth import get_user_model

    from cases import permissions

    call_command("seed_demo")
    users = get_user_model().objects.in_bulk(["dr.alvarez", "ml.lead", "dr.chen"], field_name="username")
    clinic = users["dr.alvarez"].clinics.get()
    assert permissions.can_edit_in_admin(users["dr.alvarez"], clinic)
    assert not permissions.is_ml_admin(users["dr.alvarez"])
    assert permissions.is_ml_admin(users["ml.lead"])
    assert not permissions.can_edit_in_admin(users["ml.lead"], clinic)
    assert not permissions.can_view_admin(users["dr.chen"])
