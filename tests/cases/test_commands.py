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
