"""The upload form's one-time token: a browser retry never stores images twice."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from cases.models import Lesion, LesionImage
from core.models import FormSubmission

pytestmark = pytest.mark.django_db


def form_token(client, patient):
    page = client.get(reverse("portal:upload", args=[patient.pk])).content.decode()
    return re.search(r'name="form_token" value="([0-9a-f]{32})"', page).group(1)


def post(client, patient, jpeg_bytes, token, **fields):
    data = {
        "lesion": "new",
        "anatomical_site": "lower_extremity",
        "description": "left shin",
        "modality": "dermoscopic",
        "captured_on": timezone.localdate().isoformat(),
        "images": [SimpleUploadedFile("a.jpg", jpeg_bytes, "image/jpeg")],
        "form_token": token,
        **fields,
    }
    return client.post(reverse("portal:upload", args=[patient.pk]), data)


def test_each_form_page_carries_a_fresh_token(client, owner, patient):
    client.force_login(owner)
    assert form_token(client, patient) != form_token(client, patient)


def test_the_same_form_posted_twice_stores_one_lesion_and_one_image(
    client, owner, patient, jpeg_bytes, active_model, queued_predictions
):
    client.force_login(owner)
    token = form_token(client, patient)
    first = post(client, patient, jpeg_bytes, token)
    again = post(client, patient, jpeg_bytes, token)
    assert first.status_code == again.status_code == 302
    assert again.url == first.url
    assert (Lesion.objects.count(), LesionImage.objects.count()) == (1, 1)
    assert FormSubmission.objects.get(token=token).result_url == first.url


def test_a_rejected_post_leaves_the_token_usable(client, owner, patient, jpeg_bytes, active_model):
    client.force_login(owner)
    token = form_token(client, patient)
    refused = post(client, patient, jpeg_bytes, token, anatomical_site="")
    assert refused.status_code == 200 and not LesionImage.objects.exists()
    assert post(client, patient, jpeg_bytes, token).status_code == 302
    assert LesionImage.objects.count() == 1


def test_another_users_token_is_not_theirs(client, owner, colleague, patient, jpeg_bytes, active_model):
    client.force_login(owner)
    token = form_token(client, patient)
    post(client, patient, jpeg_bytes, token)
    client.force_login(colleague)
    assert post(client, patient, jpeg_bytes, token).status_code == 302
    assert LesionImage.objects.count() == 2
