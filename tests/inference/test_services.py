import io
import re
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone
from PIL import Image

from cases import services as case_services
from inference import registry, services, sweeper
from inference.models import Prediction, heatmap_path
from inference.runtime import Predictor
from tests.conftest import SYNTHETIC_SIZE

pytestmark = pytest.mark.django_db


@pytest.fixture
def image(owner, lesion, jpeg_bytes, active_model):
    return case_services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic"
    )


@pytest.fixture
def prediction(image):
    return Prediction.objects.get(image=image)


class TestRunPrediction:
    def test_it_stores_label_probability_confidence_and_timings(self, prediction, active_model):
        result = services.run_prediction(prediction.pk)

        assert result.status == Prediction.Status.SUCCEEDED
        assert 0.0 <= result.probability_malignant <= 1.0
        expected = "malignant" if result.probability_malignant >= active_model.threshold else "benign"
        assert result.label == expected
        assert result.confidence == pytest.approx(max(result.probability_malignant, 1 - result.probability_malignant))
        assert result.model_version == active_model
        assert result.attempts == 1
        assert result.inference_ms > 0 and result.preprocess_ms > 0
        assert result.started_at <= result.finished_at

    def test_a_phone_sized_photo_is_predicted_as_a_full_decode_would_predict_it(
        self, owner, lesion, jpeg_bytes, active_model, model_dir
    ):
        # A 2401 px JPEG (a partial 8 x 8 block): the worker decodes it at 1/8 scale
        # (training.preprocessing.open_for_model); its probability is the full decode's within what
        # re-saving the photo at another JPEG quality changes (docs/benchmarks.md, "Prediction loop").
        from training.preprocessing import open_image, to_model_input

        photo = Image.open(io.BytesIO(jpeg_bytes)).convert("RGB").resize((2401, 2401), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", quality=92)
        data = buffer.getvalue()
        image = case_services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(data))
        result = services.run_prediction(Prediction.objects.get(image=image).pk)

        assert result.status == Prediction.Status.SUCCEEDED
        predictor = Predictor.from_dir(model_dir)
        with image.image.open("rb") as fh:
            stored = fh.read()
        full = to_model_input(open_image(stored), predictor.input_size, predictor.metadata["preprocessing"])
        assert result.probability_malignant == pytest.approx(predictor.predict_batch(full[None])[0], abs=0.04)

    def test_running_it_twice_changes_nothing(self, prediction):
        first = services.run_prediction(prediction.pk)
        second = services.run_prediction(prediction.pk)
        assert Prediction.objects.filter(image=prediction.image).count() == 1
        assert (second.probability_malignant, second.finished_at, second.attempts) == (
            first.probability_malignant,
            first.finished_at,
            first.attempts,
        )

    def test_a_corrupt_stored_image_fails_with_a_reason(self, prediction):
        path = prediction.image.image.path
        with open(path, "r+b") as fh:
            fh.truncate(200)
        result = services.run_prediction(prediction.pk)
        assert result.status == Prediction.Status.FAILED
        assert "cannot be analysed" in result.error

    def test_a_missing_file_fails_with_a_reason(self, prediction):
        prediction.image.image.storage.delete(prediction.image.image.name)
        result = services.run_prediction(prediction.pk)
        assert result.status == Prediction.Status.FAILED
        assert "missing" in result.error

    def test_a_deleted_prediction_is_ignored(self):
        import uuid

        assert services.run_prediction(uuid.uuid4()) is None

    def test_repeatedly_interrupted_work_is_abandoned(self, prediction):
        Prediction.objects.filter(pk=prediction.pk).update(attempts=services.MAX_ATTEMPTS)
        result = services.run_prediction(prediction.pk)
        assert result.status == Prediction.Status.FAILED
        assert "interrupted" in result.error


def upload(owner, lesion, data):
    image = case_services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(data), modality="dermoscopic")
    return Prediction.objects.get(image=image)


def heatmap_files():
    try:
        return sorted(default_storage.listdir("heatmaps")[1])
    except FileNotFoundError:
        return []


class TestOutOfDistributionAndHeatmap:
    @pytest.fixture
    def pending(self, owner, lesion, jpeg_bytes, synthetic_model):
        return upload(owner, lesion, jpeg_bytes)

    def test_it_stores_the_ood_fields_and_a_heatmap(self, pending, synthetic_model_dir, jpeg_bytes):

        result = services.run_prediction(pending.pk)

        expected = Predictor.from_dir(synthetic_model_dir).predict_source(jpeg_bytes)
        assert result.status == Prediction.Status.SUCCEEDED
        assert result.ood_distance == pytest.approx(expected.ood_distance, rel=1e-4)
        assert result.out_of_distribution is expected.out_of_distribution
        assert re.fullmatch(rf"heatmaps/{pending.pk}-[0-9a-f]{{12}}\.png", result.heatmap.name)
        assert result.heatmap_ms > 0
        with result.heatmap.open("rb") as fh:
            overlay = Image.open(fh)
            assert (overlay.mode, overlay.size) == ("RGBA", (SYNTHETIC_SIZE, SYNTHETIC_SIZE))

    @pytest.mark.parametrize("low, high, flagged", [(170, 255, True), (30, 60, False)])
    def test_the_flag_is_stored(self, owner, lesion, synthetic_model, low, high, flagged):
        # Textured images (flat ones are stopped by the quality gate whatever
        # the model says); the synthetic distance grows with brightness.
        pixels = np.random.default_rng(0).integers(low, high, size=(48, 64, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        pending = upload(owner, lesion, buffer.getvalue())
        assert services.run_prediction(pending.pk).out_of_distribution is flagged

    def test_running_it_again_writes_no_second_file(self, pending):
        first = services.run_prediction(pending.pk)
        with first.heatmap.open("rb") as fh:
            before = fh.read()
        second = services.run_prediction(pending.pk)
        assert heatmap_files() == [first.heatmap.name.removeprefix("heatmaps/")]
        assert (second.heatmap.name, second.heatmap_ms, second.finished_at) == (
            first.heatmap.name,
            first.heatmap_ms,
            first.finished_at,
        )
        with second.heatmap.open("rb") as fh:
            assert fh.read() == before

    def test_a_file_left_by_an_interrupted_attempt_is_never_overwritten_and_is_swept_later(self, pending):
        # The worker died after writing the heatmap, before saving the row.
        leftover = default_storage.save(heatmap_path(pending, ""), ContentFile(b"partial"))
        result = services.run_prediction(pending.pk)
        assert result.heatmap.name != leftover
        with result.heatmap.open("rb") as fh:
            assert fh.read(4) == b"\x89PNG"
        assert sweeper.delete_orphan_heatmap_files(older_than=timedelta(hours=1)) == []  # too recent
        assert sweeper.delete_orphan_heatmap_files(older_than=timedelta(0)) == [leftover]
        assert heatmap_files() == [result.heatmap.name.removeprefix("heatmaps/")]

    def test_a_heatmap_failure_does_not_fail_the_prediction(self, pending, monkeypatch, caplog):
        def broken(self, array):
            raise RuntimeError("no gradients today")

        monkeypatch.setattr(Predictor, "heatmap", broken)
        result = services.run_prediction(pending.pk)
        assert result.status == Prediction.Status.SUCCEEDED
        assert (result.heatmap.name, result.heatmap_ms) == ("", None)
        assert result.ood_distance is not None
        assert heatmap_files() == []
        assert "no heatmap" in caplog.text

    def test_a_single_output_model_gets_null_ood_fields_and_a_heatmap(self, owner, lesion, jpeg_bytes, baseline_model):
        prediction = upload(owner, lesion, jpeg_bytes)
        result = services.run_prediction(prediction.pk)
        assert (result.ood_distance, result.out_of_distribution) == (None, None)
        assert result.heatmap.name.startswith(f"heatmaps/{prediction.pk}-")


class TestRequestPrediction:
    def test_asking_twice_keeps_one_row(self, image, active_model):
        again = services.request_prediction(image)
        assert Prediction.objects.filter(image=image).count() == 1
        assert again.model_version == active_model


class TestRequeueStale:
    def test_it_requeues_old_pending_and_running_but_not_fresh_or_finished(
        self, image, queued_predictions, django_capture_on_commit_callbacks
    ):
        old = timezone.now() - timedelta(hours=2)
        stale = Prediction.objects.get(image=image)
        Prediction.objects.filter(pk=stale.pk).update(queued_at=old)
        with django_capture_on_commit_callbacks(execute=True):
            assert services.requeue_stale_predictions(older_than=timedelta(hours=1)) == 1
        assert queued_predictions == [(str(stale.pk),)]

        Prediction.objects.filter(pk=stale.pk).update(status="succeeded", queued_at=old)
        assert services.requeue_stale_predictions(older_than=timedelta(hours=1)) == 0

        Prediction.objects.filter(pk=stale.pk).update(status="running", started_at=old)
        assert services.requeue_stale_predictions(older_than=timedelta(hours=1)) == 1
        assert Prediction.objects.get(pk=stale.pk).status == Prediction.Status.PENDING

    def test_images_that_arrived_without_a_model_get_a_prediction(
        self, owner, lesion, jpeg_bytes, model_dir, no_load_check
    ):
        image = case_services.add_lesion_image(
            uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic"
        )
        assert not image.predictions.exists()
        registry.register_model_version(model_dir=model_dir, activate=True)
        assert services.requeue_stale_predictions(older_than=timedelta(0)) == 1
        assert image.predictions.get().status == Prediction.Status.PENDING

    def test_the_management_command_reports_the_count(self, image, capsys):
        Prediction.objects.update(queued_at=timezone.now() - timedelta(days=1))
        call_command("requeue_stale_predictions", "--older-than", "60")
        assert "Re-queued 1" in capsys.readouterr().out
