"""The same code on S3-compatible storage (moto stands in for S3, which cannot run here)."""

import io

import boto3
import pytest
from django.core.files.storage import default_storage
from moto import mock_aws

from cases import services
from inference import services as inference_services
from inference.models import Prediction
from inference.runtime import ModelFileError
from inference.worker_cache import local_copy

pytestmark = pytest.mark.django_db
BUCKET = "skincare-test"


@pytest.fixture
def s3(settings, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": BUCKET,
                    "region_name": "eu-west-1",
                    "default_acl": "private",
                    "querystring_auth": True,
                    "querystring_expire": 300,
                    "file_overwrite": False,
                },
            },
        }
        yield client


def test_images_are_stored_privately_and_predicted_from_s3(s3, owner, lesion, jpeg_bytes, active_model):
    image = services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic"
    )
    key = image.image.name
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == jpeg_bytes
    grants = s3.get_object_acl(Bucket=BUCKET, Key=key)["Grants"]
    assert not any(g["Grantee"].get("URI", "").endswith("AllUsers") for g in grants)
    assert "X-Amz-Signature=" in image.image.url or "Signature=" in image.image.url  # never a bare public URL

    prediction = inference_services.run_prediction(Prediction.objects.get(image=image).pk)
    assert prediction.status == Prediction.Status.SUCCEEDED


def test_a_model_file_tampered_with_in_storage_is_refused(s3, active_model, settings, tmp_path):
    settings.SKINCARE_MODEL_CACHE_DIR = tmp_path / "cache"
    assert local_copy(active_model).read_bytes()[:2] == b"PK"
    (tmp_path / "cache" / f"{active_model.sha256}.keras").unlink()
    s3.put_object(Bucket=BUCKET, Key=active_model.file.name, Body=b"tampered")
    with pytest.raises(ModelFileError, match="sha256"):
        local_copy(active_model)


def test_the_orphan_sweeper_works_on_s3(s3, owner, lesion, jpeg_bytes):
    from datetime import timedelta

    default_storage.save(f"{services.IMAGE_FOLDER}/orphan.jpg", io.BytesIO(jpeg_bytes))
    assert services.delete_orphan_image_files(older_than=timedelta(0)) == [f"{services.IMAGE_FOLDER}/orphan.jpg"]
