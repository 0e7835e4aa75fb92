"""The one private responder: never cached, never sniffed, 404 without a file."""

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models.fields.files import FieldFile
from django.http import Http404

from cases.models import LesionImage
from core.files import private_file_response


@pytest.fixture
def stored(settings):
    name = default_storage.save("lesion-images/probe.png", ContentFile(b"\x89PNG bytes"))
    return FieldFile(None, LesionImage._meta.get_field("image"), name)


def test_it_serves_the_stored_bytes_privately(stored):
    response = private_file_response(stored, content_type="image/png")
    assert b"".join(response.streaming_content) == b"\x89PNG bytes"
    assert response["Content-Type"] == "image/png"
    # As Django's never_cache sends it, so every door (the admin's included) sends the same.
    assert response["Cache-Control"] == "private, no-store, max-age=0, no-cache, must-revalidate"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response["Cross-Origin-Resource-Policy"] == "same-origin"


def test_a_missing_file_is_404():
    with pytest.raises(Http404):
        private_file_response(FieldFile(None, LesionImage._meta.get_field("image"), ""), content_type="image/png")
