"""The portal's image bytes and home page, seen by owner, colleague and outsider."""

import io
import uuid

import pytest
from django.urls import reverse

from cases import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def image(owner, lesion, jpeg_bytes):
    return services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic")


class TestImageFile:
    def test_it_serves_the_bytes_to_a_colleague(self, client, colleague, image, jpeg_bytes):
        client.force_login(colleague)
        response = client.get(reverse("portal:image-file", args=[image.pk]))
        assert response.status_code == 200
        # Served as stored; the demo JPEGs carry no metadata beyond JFIF, so nothing was cut.
        assert b"".join(response.streaming_content) == jpeg_bytes
        assert response["Content-Type"] == "image/jpeg"
        assert "no-store" in response["Cache-Control"]

    def test_it_is_404_for_an_outsider(self, client, outsider, image):
        client.force_login(outsider)
        assert client.get(reverse("portal:image-file", args=[image.pk])).status_code == 404

    def test_it_is_404_for_an_unknown_image(self, client, owner):
        client.force_login(owner)
        assert client.get(reverse("portal:image-file", args=[uuid.uuid4()])).status_code == 404

    def test_it_requires_login(self, client, image):
        response = client.get(reverse("portal:image-file", args=[image.pk]))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("portal:login"))

    def test_there_is_no_public_media_url(self, client, image):
        assert client.get(f"/media/{image.image.name}").status_code == 404


class TestHome:
    def test_it_lists_only_the_users_clinics_images(self, client, owner, outsider, image):
        client.force_login(owner)
        assert str(image.pk) in client.get("/").content.decode()
        client.force_login(outsider)
        assert str(image.pk) not in client.get("/").content.decode()
