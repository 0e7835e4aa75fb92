"""Uploads, image detail with its prediction (ETag polling), image bytes."""

import io
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from cases.models import LesionImage
from inference.models import Prediction

from ..conftest import png_bytes
from .conftest import assert_error

pytestmark = pytest.mark.django_db


def images_url(lesion):
    return f"/api/v1/lesions/{lesion.pk}/images"


def upload(client, lesion, data, name="photo.jpg", content_type="image/jpeg", **fields):
    """POST an image; keyword arguments are form fields, or headers when named HTTP_*."""
    headers = {k: fields.pop(k) for k in list(fields) if k.startswith("HTTP_")}
    payload = {"file": SimpleUploadedFile(name, data, content_type=content_type), "modality": "dermoscopic", **fields}
    return client.post(images_url(lesion), payload, format="multipart", **headers)


def stored_files(settings):
    folder = settings.MEDIA_ROOT / "lesion-images"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_upload_stores_the_image_and_queues_one_prediction(
    owner_api, owner, lesion, jpeg_bytes, active_model, django_capture_on_commit_callbacks, queued_predictions
):
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(owner_api, lesion, jpeg_bytes, captured_at="2026-01-02T03:04:05Z")
    assert response.status_code == 201, response.content
    body = response.json()
    image = LesionImage.objects.get()
    assert (
        body["id"] == str(image.pk) and body["lesion"] == str(lesion.pk) and body["patient"] == str(lesion.patient_id)
    )
    assert image.uploaded_by == owner and image.captured_at.year == 2026
    assert body["file_url"] == f"/api/v1/images/{image.pk}/file"
    prediction = Prediction.objects.get(image=image)
    assert body["prediction"]["status"] == "pending" and body["prediction"]["id"] == str(prediction.pk)
    assert body["prediction"]["model_version"] == active_model.label
    assert queued_predictions == [(str(prediction.pk),)]


def test_colleague_may_upload_outsider_may_not(colleague_api, outsider_api, lesion, jpeg_bytes, active_model, settings):
    assert upload(colleague_api, lesion, jpeg_bytes).status_code == 201
    assert_error(upload(outsider_api, lesion, jpeg_bytes), 404, "not_found")
    assert LesionImage.objects.count() == 1 and Prediction.objects.count() == 1
    assert len(stored_files(settings)) == 1


@pytest.mark.parametrize(
    "data,name,field",
    [
        (b"", "empty.jpg", "file"),
        (b"not an image at all", "notes.jpg", "file"),
        (None, "truncated.jpg", "file"),
    ],
)
def test_bad_files_are_400_and_nothing_is_stored_or_queued(
    owner_api, lesion, jpeg_bytes, active_model, settings, data, name, field, queued_predictions
):
    if data is None:
        data = jpeg_bytes[: len(jpeg_bytes) // 2]
    error = assert_error(upload(owner_api, lesion, data, name=name), 400, "validation_error")
    assert field in error["fields"], error
    assert not LesionImage.objects.exists() and not Prediction.objects.exists()
    assert stored_files(settings) == [] and queued_predictions == []


@pytest.mark.parametrize(
    "fields,bad",
    [
        ({"modality": "xray"}, "modality"),
        ({"captured_at": "yesterday"}, "captured_at"),
        ({"captured_at": "2999-01-01T00:00:00Z"}, "captured_at"),
        ({"client_id": "not-a-uuid"}, "client_id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_fields_are_400(owner_api, lesion, jpeg_bytes, active_model, fields, bad):
    error = assert_error(upload(owner_api, lesion, jpeg_bytes, **fields), 400, "validation_error")
    assert bad in error["fields"]
    assert not LesionImage.objects.exists()


def test_missing_file_is_400(owner_api, lesion):
    response = owner_api.post(images_url(lesion), {"modality": "dermoscopic"}, format="multipart")
    assert "file" in assert_error(response, 400, "validation_error")["fields"]


def test_json_instead_of_multipart_is_415(owner_api, lesion):
    assert_error(
        owner_api.post(images_url(lesion), {"modality": "dermoscopic"}, format="json"), 415, "unsupported_media_type"
    )
    response = owner_api.generic("POST", images_url(lesion), b"\xff\xd8", content_type="image/jpeg")
    assert_error(response, 415, "unsupported_media_type")
    assert not LesionImage.objects.exists()


def test_broken_multipart_is_400_parse_error(owner_api, lesion):
    body = b'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\nabc'
    response = owner_api.generic("POST", images_url(lesion), body, content_type="multipart/form-data; boundary=XYZ")
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"parse_error", "validation_error"}
    response = owner_api.generic("POST", images_url(lesion), b"junk", content_type="multipart/form-data")
    assert_error(response, 400, "parse_error")
    assert not LesionImage.objects.exists()


def test_a_png_is_accepted(owner_api, lesion, active_model):
    response = upload(owner_api, lesion, png_bytes((300, 200)), name="a.png", content_type="image/png")
    assert response.status_code == 201, response.content
    assert response.json()["image_format"] == "PNG"


def test_image_list_of_a_lesion(owner_api, outsider_api, lesion, jpeg_bytes, active_model):
    upload(owner_api, lesion, jpeg_bytes)
    assert owner_api.get(images_url(lesion)).json()["count"] == 1
    assert_error(outsider_api.get(images_url(lesion)), 404, "not_found")


@pytest.fixture
def image(owner_api, lesion, jpeg_bytes, active_model):
    return LesionImage.objects.get(pk=upload(owner_api, lesion, jpeg_bytes).json()["id"])


def test_image_detail_for_members_only(owner_api, colleague_api, outsider_api, image):
    url = f"/api/v1/images/{image.pk}"
    assert owner_api.get(url).json()["id"] == str(image.pk)
    assert colleague_api.get(url).status_code == 200
    assert_error(outsider_api.get(url), 404, "not_found")


def test_polling_with_etag_is_304_until_the_prediction_changes(owner_api, image):
    url = f"/api/v1/images/{image.pk}"
    first = owner_api.get(url)
    etag = first["ETag"]
    assert etag and "no-store" in first["Cache-Control"]  # patient data: kept by the app, not a cache
    assert first.json()["prediction"]["status"] == "pending"

    unchanged = owner_api.get(url, HTTP_IF_NONE_MATCH=etag)
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged["ETag"] == etag
    assert owner_api.get(url, HTTP_IF_NONE_MATCH='"stale"').status_code == 200

    Prediction.objects.filter(image=image).update(
        status="succeeded", label="malignant", probability_malignant=0.91, confidence=0.82, finished_at=timezone.now()
    )
    changed = owner_api.get(url, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    prediction = changed.json()["prediction"]
    assert (prediction["label"], prediction["probability_malignant"], prediction["uncertain"]) == (
        "malignant",
        0.91,
        False,
    )
    assert prediction["heatmap_url"] is None

    Prediction.objects.filter(image=image).update(label="uncertain")
    assert owner_api.get(url).json()["prediction"]["uncertain"] is True


def test_image_without_a_model_has_no_prediction(owner_api, lesion, jpeg_bytes):
    body = upload(owner_api, lesion, jpeg_bytes).json()
    assert body["prediction"] is None


def test_image_bytes_only_through_the_authenticated_endpoint(owner_api, outsider_api, anonymous_api, image, jpeg_bytes):
    url = f"/api/v1/images/{image.pk}/file"
    response = owner_api.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content) == jpeg_bytes
    # As every door sends it (core.files.NO_STORE: what the admin's never_cache sends).
    assert response["Cache-Control"] == "private, no-store, max-age=0, no-cache, must-revalidate"
    assert_error(outsider_api.get(url), 404, "not_found")
    assert_error(anonymous_api.get(url), 401, "not_authenticated")


def test_heatmap_is_404_while_there_is_none(owner_api, outsider_api, image):
    prediction = Prediction.objects.get(image=image)
    assert_error(owner_api.get(f"/api/v1/predictions/{prediction.pk}/heatmap"), 404, "not_found")
    assert_error(outsider_api.get(f"/api/v1/predictions/{prediction.pk}/heatmap"), 404, "not_found")


def test_a_declared_oversize_body_is_413_before_the_body_is_read(owner_api, lesion, settings):
    settings.SKINCARE_MAX_UPLOAD_BYTES = 1000

    class Unreadable(io.RawIOBase):
        def read(self, *args):
            raise AssertionError("the body was read")

    request_meta = {
        "CONTENT_LENGTH": str(10**9),
        "CONTENT_TYPE": "multipart/form-data; boundary=XYZ",
        "wsgi.input": Unreadable(),
    }
    response = owner_api.generic("POST", images_url(lesion), **request_meta)
    error = assert_error(response, 413, "request_too_large")
    assert "limit" in error["message"]
    assert not LesionImage.objects.exists()


def test_an_oversize_file_within_the_framing_allowance_is_still_refused(owner_api, lesion, jpeg_bytes, settings):
    settings.SKINCARE_MAX_UPLOAD_BYTES = len(jpeg_bytes) - 1
    error = assert_error(upload(owner_api, lesion, jpeg_bytes), 400, "validation_error")
    assert "limit" in str(error["fields"])
    assert not LesionImage.objects.exists()


def test_a_json_body_over_its_limit_is_413(owner_api):
    response = owner_api.generic(
        "POST", "/api/v1/patients", b"{}", content_type="application/json", CONTENT_LENGTH=str(10**7)
    )
    assert_error(response, 413, "request_too_large")


def test_client_id_is_optional_and_must_be_a_uuid(owner_api, lesion, jpeg_bytes, active_model):
    assert upload(owner_api, lesion, jpeg_bytes, client_id=str(uuid.uuid4())).status_code == 201


def test_heatmap_link_and_bytes_once_there_is_one(owner_api, colleague_api, outsider_api, image):
    from django.core.files.base import ContentFile

    prediction = Prediction.objects.get(image=image)
    heatmap = png_bytes((32, 32))
    prediction.heatmap.save("heatmap.png", ContentFile(heatmap), save=False)
    prediction.status = "succeeded"
    prediction.save()
    body = owner_api.get(f"/api/v1/images/{image.pk}").json()["prediction"]
    assert body["heatmap_url"] == f"/api/v1/predictions/{prediction.pk}/heatmap"
    response = colleague_api.get(body["heatmap_url"])
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == heatmap
    assert_error(outsider_api.get(body["heatmap_url"]), 404, "not_found")


def test_out_of_distribution_counts_as_uncertain(owner_api, image):
    Prediction.objects.filter(image=image).update(status="succeeded", label="benign", out_of_distribution=True)
    prediction = owner_api.get(f"/api/v1/images/{image.pk}").json()["prediction"]
    assert prediction["uncertain"] is True and prediction["out_of_distribution"] is True


def test_the_upload_names_its_acquisition_device(owner_api, lesion, jpeg_bytes, active_model):
    response = upload(owner_api, lesion, jpeg_bytes, device_make="DermLite", device_model="DL5")
    assert response.status_code == 201, response.content
    assert (response.json()["device_make"], response.json()["device_model"]) == ("DermLite", "DL5")
    image = LesionImage.objects.get()
    assert (image.device_make, image.device_model) == ("DermLite", "DL5")
    assert owner_api.get(f"/api/v1/images/{image.pk}").json()["device_model"] == "DL5"


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"device_model": "x" * 101}, "device_model"), ({"device_make": "Derm\u0007Lite"}, "device_make")],
)
def test_a_bad_device_name_is_a_400_and_stores_nothing(
    owner_api, lesion, jpeg_bytes, active_model, settings, fields, field
):
    response = upload(owner_api, lesion, jpeg_bytes, **fields)
    error = assert_error(response, 400, "validation_error")
    assert field in error["fields"], error
    assert not LesionImage.objects.exists() and stored_files(settings) == []


def test_an_upload_costs_a_fixed_few_queries_however_many_images_the_lesion_has(
    owner_api, lesion, jpeg_bytes, active_model
):
    """The upload path stays cheap (docs/benchmarks.md, "Upload path"): no query per existing row, none added."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for _ in range(4):
        with CaptureQueriesContext(connection) as queries:
            assert upload(owner_api, lesion, jpeg_bytes).status_code == 201
        counts.append(len(queries))
    # Token, lesion, idempotency record, membership, the nearest earlier images in the clinic
    # (one query, the matches' lesions and patients included), image, model, prediction, the
    # response's prediction (the response is built from the stored image, not fetched again),
    # the record's response, with their savepoints (test transaction); the first use of a token
    # also records when it was used.
    assert counts[1] == counts[-1] <= 16 and counts[0] <= 17, counts


@pytest.mark.parametrize("copy", ["first", "duplicate", "other patient"])
def test_the_upload_answers_with_the_body_the_image_detail_gives(
    owner_api, clinic, lesion, jpeg_bytes, active_model, copy
):
    # The answer is built from the image the service just stored (no second
    # fetch): it must say exactly what a GET of the image says, the near-duplicate links included.
    from tests.factories import LesionFactory, PatientFactory

    target = lesion
    if copy != "first":
        assert upload(owner_api, lesion, jpeg_bytes).status_code == 201
        if copy == "other patient":
            target = LesionFactory(patient=PatientFactory(clinic=clinic))
    response = upload(owner_api, target, jpeg_bytes)
    assert response.status_code == 201
    body = response.json()
    assert (body["duplicate_of"] is not None) == (copy == "duplicate")
    assert (body["possible_wrong_patient_of"] is not None) == (copy == "other patient")
    assert body["prediction"]["status"] == "pending"
    assert owner_api.get(f"/api/v1/images/{body['id']}").json() == body
