"""The model a worker process holds: registered files copied locally, checked, loaded once."""

import io
from pathlib import Path

import pytest

from inference import worker_cache
from inference.runtime import ModelFileError, Predictor
from tests.conftest import register_model

from .runtime.helpers import TOLERANCE


@pytest.mark.django_db
class TestWorker:
    @pytest.fixture(autouse=True)
    def _own_cache(self, settings, tmp_path, monkeypatch):
        settings.SKINCARE_MODEL_CACHE_DIR = tmp_path / "model-cache"
        settings.SKINCARE_INFERENCE_BACKEND = "auto"
        monkeypatch.setattr(worker_cache, "_predictors", {})

    def test_the_worker_runs_a_registered_onnx_export_from_a_verified_local_copy(self, synthetic_onnx_dir, settings):
        version = register_model(synthetic_onnx_dir)
        assert version.onnx_file and version.onnx_sha256

        predictor = worker_cache.get_predictor(version)

        assert predictor.backend == "onnx"
        assert predictor.onnx_path == Path(settings.SKINCARE_MODEL_CACHE_DIR) / f"{version.onnx_sha256}.onnx"
        assert worker_cache.get_predictor(version) is predictor  # loaded once per process

    def test_a_tampered_stored_onnx_file_is_refused(self, synthetic_onnx_dir):
        version = register_model(synthetic_onnx_dir)
        with version.onnx_file.open("ab") as fh:
            fh.write(b"tampered")
        with pytest.raises(ModelFileError, match="ONNX file of synthetic-2 has sha256"):
            worker_cache.get_predictor(version)

    def test_the_setting_can_keep_the_worker_on_tensorflow(self, synthetic_onnx_dir, settings):
        settings.SKINCARE_INFERENCE_BACKEND = "tensorflow"
        assert worker_cache.get_predictor(register_model(synthetic_onnx_dir)).backend == "tensorflow"

    def test_a_version_without_an_onnx_file_runs_on_tensorflow(self, synthetic_model_dir):
        version = register_model(synthetic_model_dir)
        assert not version.onnx_file
        assert worker_cache.get_predictor(version).backend == "tensorflow"

    def test_a_prediction_made_on_onnx_stores_its_heatmap(self, owner, lesion, jpeg_bytes, synthetic_onnx_dir):
        from cases import services as case_services
        from inference import services
        from inference.models import Prediction

        register_model(synthetic_onnx_dir)
        image = case_services.add_lesion_image(
            uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic"
        )
        prediction = services.run_prediction(Prediction.objects.get(image=image).pk)

        expected = Predictor.from_dir(synthetic_onnx_dir, backend="tensorflow").predict_source(jpeg_bytes)
        assert prediction.status == Prediction.Status.SUCCEEDED
        assert prediction.probability_malignant == pytest.approx(expected.probability_malignant, abs=TOLERANCE)
        assert prediction.heatmap.name.startswith(f"heatmaps/{prediction.pk}-")
