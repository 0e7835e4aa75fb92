import io

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from cases.models import LesionImage
from inference.models import Prediction
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_owner(owner):
    owner.is_staff = True
    owner.save()
    owner.user_permissions.add(*Permission.objects.filter(codename__in=["add_lesionimage", "view_lesionimage"]))
    return owner


def post_image(client, lesion, data, name="lesion.jpg"):
    upload = io.BytesIO(data)
    upload.name = name
    return client.post(
        reverse("admin:cases_lesionimage_add"),
        {
            "lesion": lesion.pk,
            "modality": "dermoscopic",
            "captured_at_0": "2026-01-02",
            "captured_at_1": "10:00:00",
            "upload": upload,
        },
    )


def test_the_admin_adds_images_through_the_service(client, staff_owner, lesion, jpeg_bytes, active_model):
    client.force_login(staff_owner)
    response = post_image(client, lesion, jpeg_bytes)
    assert response.status_code == 302, response.content.decode()[:2000]
    image = LesionImage.objects.get()
    assert image.uploaded_by == staff_owner
    assert Prediction.objects.filter(image=image, status="pending").exists()


def test_the_admin_shows_a_form_error_for_a_non_image(client, staff_owner, lesion):
    client.force_login(staff_owner)
    response = post_image(client, lesion, b"just some text", name="notes.png")
    assert response.status_code == 200
    assert "not a JPEG or PNG" in response.content.decode()
    assert not LesionImage.objects.exists()


def test_the_admin_refuses_uploads_by_non_members(client, outsider, lesion):
    outsider.is_staff = True
    outsider.save()
    outsider.user_permissions.add(*Permission.objects.filter(codename__in=["add_lesionimage", "view_lesionimage"]))
    client.force_login(outsider)
    response = post_image(client, lesion, png_bytes())
    assert response.status_code == 200
    assert "Only members" in response.content.decode()
    assert not LesionImage.objects.exists()
