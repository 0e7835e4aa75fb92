import io
import time

import pytest
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from cases import services as case_services
from cases.models import LesionImage
from inference.models import Prediction
from inference.runtime import Predictor
from inference.services import request_prediction
from inference.tasks import run_prediction_task

from .conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def upload(owner, lesion, data):
    return case_services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(data), modality="dermoscopic")


def finished(images):
    def check():
        done = Prediction.objects.filter(image__in=images, status__in=["succeeded", "failed"]).count()
        return done == len(images)

    return check


def test_every_image_gets_exactly_one_prediction_from_the_active_model(
    worker, owner, lesion, demo_image_paths, active_model, model_dir
):
    images = [upload(owner, lesion, path.read_bytes()) for path in demo_image_paths[:6]]
    wait_for(finished(images), worker=worker)

    expected = Predictor.from_dir(model_dir).predict_sources(demo_image_paths[:6])
    for image, result in zip(images, expected, strict=True):
        prediction = Prediction.objects.get(image=image)  # exactly one
        assert prediction.status == Prediction.Status.SUCCEEDED, prediction.error
        assert prediction.model_version == active_model
        assert prediction.label == result.label
        assert prediction.probability_malignant == pytest.approx(result.probability_malignant, abs=1e-5)
        assert prediction.label == result.label
        assert prediction.out_of_distribution is result.out_of_distribution
        assert prediction.ood_distance == pytest.approx(result.ood_distance, rel=1e-4)
        # Grad-CAM runs in the forked pool child too.
        assert prediction.heatmap.name.startswith(f"heatmaps/{prediction.pk}-")


def test_a_corrupt_file_fails_with_a_reason_and_the_worker_keeps_serving(
    worker, owner, lesion, jpeg_bytes, active_model
):
    # Damage at rest: the upload was valid but the stored bytes are not.
    corrupt = LesionImage(
        lesion=lesion,
        image_format="JPEG",
        modality="dermoscopic",
        captured_at=timezone.now(),
        uploaded_by=owner,
        sha256="0" * 64,
        width=300,
        height=300,
        byte_size=100,
    )
    corrupt.image.save("upload", ContentFile(jpeg_bytes[:100]), save=False)
    corrupt.save()
    with transaction.atomic():
        request_prediction(corrupt)
    good = upload(owner, lesion, jpeg_bytes)

    wait_for(finished([corrupt, good]), worker=worker)
    failed = Prediction.objects.get(image=corrupt)
    assert failed.status == Prediction.Status.FAILED
    assert "damaged or truncated" in failed.error
    assert Prediction.objects.get(image=good).status == Prediction.Status.SUCCEEDED
    assert worker.process.poll() is None


def test_a_redelivered_message_changes_nothing(worker, owner, lesion, jpeg_bytes, active_model, broker):
    image = upload(owner, lesion, jpeg_bytes)
    wait_for(finished([image]), worker=worker)
    before = Prediction.objects.get(image=image)

    run_prediction_task.delay(str(before.pk))
    run_prediction_task.delay(str(before.pk))
    wait_for(lambda: broker.llen("inference") == 0, worker=worker)
    time.sleep(1.0)  # let the worker finish the last message it took

    after = Prediction.objects.get(image=image)
    assert Prediction.objects.filter(image=image).count() == 1
    assert (after.probability_malignant, after.finished_at, after.attempts) == (
        before.probability_malignant,
        before.finished_at,
        before.attempts,
    )


def test_a_rolled_back_upload_never_reaches_the_queue(worker, owner, lesion, jpeg_bytes, active_model, broker):
    with pytest.raises(RuntimeError), transaction.atomic():
        upload(owner, lesion, jpeg_bytes)
        raise RuntimeError("roll back")
    assert broker.llen("inference") == 0
    assert not LesionImage.objects.exists()
    assert not Prediction.objects.exists()


def test_a_shadow_model_predicts_every_new_image_beside_the_active_one_and_stays_hidden(
    worker, owner, lesion, demo_image_paths, active_model
):
    from inference import permissions
    from tests.conftest import BASELINE_DIR, register_shadow_model

    # The baseline CNN has no ONNX export: the same pool process serves the
    # active model on ONNX Runtime and the shadow one on TensorFlow.
    shadow = register_shadow_model(BASELINE_DIR)
    images = [upload(owner, lesion, path.read_bytes()) for path in demo_image_paths[:2]]

    def all_four_finished():
        return Prediction.objects.filter(image__in=images, status__in=["succeeded", "failed"]).count() == 4

    wait_for(all_four_finished, worker=worker)
    for image in images:
        clinical = Prediction.objects.get(image=image, model_version=active_model)
        hidden = Prediction.objects.get(image=image, model_version=shadow)
        assert (clinical.status, hidden.status) == ("succeeded", "succeeded"), (clinical.error, hidden.error)
        assert (clinical.is_shadow, hidden.is_shadow) == (False, True)
        assert hidden.heatmap.name  # explained like any prediction, for the admins
    visible = permissions.predictions_visible_to(owner).filter(image__in=images)
    assert {p.model_version_id for p in visible} == {active_model.pk}
