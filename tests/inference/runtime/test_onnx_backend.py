"""The worker's ONNX Runtime backend: same answers as TensorFlow, no TensorFlow in the process."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.runtime import ModelFileError, Predictor
from tests.conftest import BASELINE_DIR, edit_metadata
from training.onnx_export import export_model_dir, linear_gradcam_head

from .helpers import assert_same_answers

REPO = Path(__file__).resolve().parents[3]


class TestShippedModel:
    def test_it_runs_on_onnx_runtime_by_default(self, model_dir, monkeypatch):
        monkeypatch.delenv("SKINCARE_INFERENCE_BACKEND", raising=False)
        assert Predictor.from_dir(model_dir).backend == "onnx"

    def test_onnx_and_tensorflow_agree_within_1e_4_on_the_demo_images(self, on_onnx, on_tensorflow, demo_arrays):
        assert (on_onnx.backend, on_tensorflow.backend) == ("onnx", "tensorflow")
        assert_same_answers(on_onnx.predict_arrays(demo_arrays), on_tensorflow.predict_arrays(demo_arrays))

    def test_they_agree_one_image_at_a_time_as_the_worker_runs(self, on_onnx, on_tensorflow, demo_arrays):
        single = [on_onnx.predict_arrays([array])[0] for array in demo_arrays[:4]]
        assert_same_answers(single, on_tensorflow.predict_arrays(demo_arrays[:4]))

    def test_the_numpy_gradcam_matches_tensorflow_gradcam(self, on_onnx, on_tensorflow, demo_arrays):
        for array in demo_arrays:
            heat = on_onnx.heatmap(array)
            assert heat.shape == (on_onnx.input_size, on_onnx.input_size) and heat.dtype == np.float32
            np.testing.assert_allclose(heat, on_tensorflow.heatmap(array), atol=1e-4)

    def test_a_heatmap_without_a_prediction_first_gives_the_same_map(self, on_onnx, demo_arrays):
        on_onnx.predict_arrays([demo_arrays[1]])
        after_prediction = on_onnx.heatmap(demo_arrays[1])
        on_onnx.predict_arrays([demo_arrays[2]])  # the remembered map is now another image's
        np.testing.assert_allclose(on_onnx.heatmap(demo_arrays[1]), after_prediction, atol=1e-6)

    def test_its_model_json_names_the_onnx_file_and_its_sha256(self, model_dir):
        from training.files import sha256_of

        metadata = json.loads((model_dir / "model.json").read_text())
        assert metadata["onnx_file"] == "model.onnx"
        assert metadata["onnx_sha256"] == sha256_of(model_dir / "model.onnx")


NO_TENSORFLOW = """
import json, sys
from inference.runtime import Predictor, heatmap_png
predictor = Predictor.from_dir(sys.argv[1])
array = predictor.preprocess(sys.argv[2])
result = predictor.predict_arrays([array])[0]
heatmap_png(predictor.heatmap(array))
print(json.dumps([predictor.backend, 'tensorflow' in sys.modules, 'keras' in sys.modules]))
"""


def run_python(*args, env=None):
    base = {k: v for k, v in os.environ.items() if k not in ("SKINCARE_INFERENCE_BACKEND", "DJANGO_SETTINGS_MODULE")}
    env = {**base, **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )


class TestNoTensorFlow:
    def test_predicting_with_a_heatmap_on_onnx_never_imports_tensorflow(self, model_dir, demo_image_paths):
        completed = run_python("-c", NO_TENSORFLOW, str(model_dir), str(demo_image_paths[0]))
        assert completed.returncode == 0, completed.stderr
        assert json.loads(completed.stdout) == ["onnx", False, False]

    def test_the_command_line_on_onnx_never_imports_tensorflow(self, demo_image_paths, tmp_path):
        code = (
            "import sys; from inference.__main__ import main;"
            f"code = main(['predict', '--heatmap-dir', {str(tmp_path)!r}, {str(demo_image_paths[0])!r}]);"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
        )
        completed = run_python("-c", code)
        assert completed.returncode == 0, completed.stderr
        row, modules = completed.stdout.splitlines()
        assert json.loads(row)["backend"] == "onnx"
        assert modules == "False False"

    def test_the_worker_parent_imports_neither_runtime(self):
        # ONNX Runtime's thread pool does not survive the prefork pool's fork() either.
        code = (
            "import sys; import django; django.setup();"
            "from skincare.celery import app; app.loader.import_default_modules();"
            "print('onnxruntime' in sys.modules, 'tensorflow' in sys.modules)"
        )
        completed = run_python("-c", code, env={"DJANGO_SETTINGS_MODULE": "skincare.settings.test"})
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.split() == ["False", "False"]


class TestDamagedOnnxFiles:
    @pytest.fixture
    def onnx_copy(self, synthetic_onnx_dir, tmp_path):
        target = tmp_path / "model"
        shutil.copytree(synthetic_onnx_dir, target)
        return target

    def test_a_missing_onnx_file_falls_back_to_tensorflow_with_a_warning(self, onnx_copy, caplog):
        (onnx_copy / "model.onnx").unlink()
        with caplog.at_level(logging.WARNING, logger="inference.runtime.predictor"):
            predictor = Predictor.from_dir(onnx_copy, backend="auto")
        assert predictor.backend == "tensorflow"
        assert "model.onnx is missing" in caplog.text

    def test_a_missing_onnx_file_is_an_error_when_onnx_is_forced(self, onnx_copy):
        (onnx_copy / "model.onnx").unlink()
        with pytest.raises(ModelFileError, match="model.onnx is missing"):
            Predictor.from_dir(onnx_copy, backend="onnx")

    def test_a_corrupt_onnx_file_is_a_clear_model_file_error(self, onnx_copy):
        (onnx_copy / "model.onnx").write_bytes(b"not an onnx graph")
        with pytest.raises(ModelFileError, match="cannot load .*model.onnx"):
            Predictor.from_dir(onnx_copy, backend="auto")

    def test_an_onnx_file_exported_from_another_keras_file_is_refused(self, onnx_copy):
        # A stale export would answer for another model under this one's name and sha256.
        shutil.copy(BASELINE_DIR / "model.keras", onnx_copy / "model.keras")
        with pytest.raises(ModelFileError, match="was not exported from model.keras"):
            Predictor.from_dir(onnx_copy, backend="auto")

    def test_an_onnx_file_for_another_input_size_is_refused(self, onnx_copy):
        edit_metadata(onnx_copy, input_size=64)
        with pytest.raises(ModelFileError, match="input shape"):
            Predictor.from_dir(onnx_copy, backend="onnx")

    def test_metadata_naming_another_gradcam_layer_than_the_export_is_refused(self, onnx_copy):
        edit_metadata(onnx_copy, gradcam_layer="another_layer")
        with pytest.raises(ModelFileError, match="gradcam_layer 'another_layer' is not the layer model.onnx explains"):
            Predictor.from_dir(onnx_copy, backend="onnx")

    @pytest.mark.parametrize("name", ["../model.onnx", "/tmp/model.onnx", "", ".."])
    def test_the_onnx_file_must_sit_beside_model_json(self, onnx_copy, name):
        edit_metadata(onnx_copy, onnx_file=name)
        with pytest.raises(ModelFileError, match="onnx_file"):
            Predictor.from_dir(onnx_copy)


class TestOtherArchitectures:
    def test_the_synthetic_model_gives_the_same_answers_and_heatmaps(self, synthetic_onnx_dir, demo_image_paths):
        on_onnx = Predictor.from_dir(synthetic_onnx_dir, backend="onnx")
        on_tensorflow = Predictor.from_dir(synthetic_onnx_dir, backend="tensorflow")
        arrays = [on_onnx.preprocess(path) for path in demo_image_paths]
        assert_same_answers(on_onnx.predict_arrays(arrays), on_tensorflow.predict_arrays(arrays))
        for array in arrays[:4]:
            np.testing.assert_allclose(on_onnx.heatmap(array), on_tensorflow.heatmap(array), atol=1e-4)

    def test_a_sigmoid_head_after_max_pooling_still_needs_no_autodiff(self, baseline_onnx_dir, demo_image_paths):
        # The baseline's Grad-CAM layer feeds a 2x2 max-pool before the
        # average pool, and it explains the sigmoid output, not a logit.
        on_onnx = Predictor.from_dir(baseline_onnx_dir, backend="onnx")
        on_tensorflow = Predictor.from_dir(baseline_onnx_dir, backend="tensorflow")
        assert on_onnx.gradcam_layer == on_tensorflow.gradcam_layer == "block4_relu"
        arrays = [on_onnx.preprocess(path) for path in demo_image_paths]
        assert_same_answers(on_onnx.predict_arrays(arrays), on_tensorflow.predict_arrays(arrays))
        for array in arrays:
            np.testing.assert_allclose(on_onnx.heatmap(array), on_tensorflow.heatmap(array), atol=1e-4)
        assert on_onnx._keras is None  # TensorFlow was never needed

    def test_a_head_that_is_not_linear_in_the_pooled_map_gets_tensorflow_heatmaps(self, tmp_path, demo_image_paths):
        import keras

        target = tmp_path / "model"
        shutil.copytree(BASELINE_DIR, target)
        # block3_relu reaches the score through another conv block: not linear.
        edit_metadata(target, gradcam_layer="block3_relu")
        model = keras.models.load_model(target / "model.keras", compile=False)
        assert linear_gradcam_head(model, "block3_relu") is None
        export_model_dir(target)

        on_onnx = Predictor.from_dir(target, backend="onnx")
        array = on_onnx.preprocess(demo_image_paths[0])
        assert on_onnx._keras is None
        heat = on_onnx.heatmap(array)
        assert on_onnx._keras is not None  # loaded for the heat map only
        assert on_onnx.backend == "onnx"
        np.testing.assert_allclose(heat, Predictor.from_dir(target, backend="tensorflow").heatmap(array), atol=1e-6)
