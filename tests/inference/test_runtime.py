import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.runtime import (
    HEATMAP_MAX_ALPHA,
    MODELS_DIR,
    ModelFileError,
    Predictor,
    decide,
    heatmap_png,
    validate_metadata,
)
from tests.conftest import SYNTHETIC_OOD_THRESHOLD, SYNTHETIC_SIZE, edit_metadata, png_bytes
from training.preprocessing import PREPROCESSING_ID, load_for_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor.from_dir(model_dir)


@pytest.fixture(scope="module")
def synthetic(synthetic_model_dir):
    """The two-output (probability + OOD distance) model."""
    return Predictor.from_dir(synthetic_model_dir)


def left_white(size):
    """Left third white, the rest black: a map that must not be uniform."""
    array = np.zeros((size, size, 3), dtype=np.uint8)
    array[:, : size // 3] = 255
    return array


class TestDecide:
    META = {"threshold": 0.4}

    def test_at_or_above_the_threshold_is_malignant(self):
        assert decide(0.4, self.META) == ("malignant", 0.4)
        assert decide(0.9, self.META) == ("malignant", 0.9)

    def test_below_the_threshold_is_benign_with_the_complement_as_confidence(self):
        label, confidence = decide(0.1, self.META)
        assert label == "benign"
        assert confidence == pytest.approx(0.9)

    def test_inside_the_uncertain_band_the_model_abstains(self):
        meta = {"threshold": 0.4, "uncertain_band": [0.3, 0.6]}
        assert decide(0.35, meta)[0] == "uncertain"
        assert decide(0.6, meta)[0] == "malignant"
        assert decide(0.29, meta)[0] == "benign"


class TestMetadata:
    BASE = {"name": "m", "version": "1", "input_size": 64, "preprocessing": PREPROCESSING_ID, "threshold": 0.5}

    def test_a_complete_record_passes(self):
        validate_metadata(dict(self.BASE))

    @pytest.mark.parametrize(
        "change, message",
        [
            ({"preprocessing": "crop-v0"}, "preprocessing"),
            ({"input_size": 3}, "input_size"),
            ({"threshold": 1.0}, "threshold"),
            ({"format_version": 99}, "format_version"),
        ],
    )
    def test_it_refuses_what_this_code_cannot_honour(self, change, message):
        with pytest.raises(ModelFileError, match=message):
            validate_metadata({**self.BASE, **change})

    @pytest.mark.parametrize("ood", [{"threshold": "far"}, {"threshold": 0}, {}, 3.0])
    def test_an_ood_section_needs_a_positive_threshold(self, ood):
        with pytest.raises(ModelFileError, match="ood"):
            validate_metadata({**self.BASE, "ood": ood})

    def test_it_names_missing_keys(self):
        with pytest.raises(ModelFileError, match="threshold"):
            validate_metadata({k: v for k, v in self.BASE.items() if k != "threshold"})


class TestPredictor:
    def test_it_gives_probabilities_and_applies_its_threshold(self, predictor, demo_image_paths):
        results = predictor.predict_sources(demo_image_paths)
        threshold = predictor.metadata["threshold"]
        for result in results:
            assert 0.0 <= result.probability_malignant <= 1.0
            assert (result.label, result.confidence) == decide(result.probability_malignant, predictor.metadata)
            if result.label != "uncertain":
                assert (result.label == "malignant") is (result.probability_malignant >= threshold)

    def test_a_batch_equals_single_images(self, predictor, demo_image_paths):
        batch = [r.probability_malignant for r in predictor.predict_sources(demo_image_paths[:4])]
        single = [predictor.predict_source(p).probability_malignant for p in demo_image_paths[:4]]
        np.testing.assert_allclose(batch, single, atol=1e-5)

    def test_bytes_and_paths_give_the_same_answer(self, predictor, demo_image_paths):
        path = demo_image_paths[0]
        assert predictor.predict_source(path.read_bytes()).probability_malignant == pytest.approx(
            predictor.predict_source(path).probability_malignant, abs=1e-6
        )

    def test_it_refuses_a_model_whose_shape_contradicts_its_metadata(self, model_copy, predictor):
        edit_metadata(model_copy, input_size=predictor.input_size + 32)
        with pytest.raises(ModelFileError, match="input shape"):
            Predictor.from_dir(model_copy)

    def test_it_refuses_a_corrupt_model_file(self, model_copy):
        (model_copy / "model.keras").write_bytes(b"not a keras archive")
        with pytest.raises(ModelFileError, match="cannot load"):
            Predictor.from_dir(model_copy, backend="tensorflow")
        # On ONNX the export no longer matches the file it was made from.
        with pytest.raises(ModelFileError, match="was not exported from model.keras"):
            Predictor.from_dir(model_copy, backend="onnx")

    @pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "I;16", "P"])
    def test_unusual_image_modes_are_converted_not_crashed(self, predictor, mode):
        color = {"L": 90, "RGBA": (120, 80, 60, 128), "CMYK": (10, 60, 80, 20), "I;16": 40000, "P": 3}[mode]
        array = load_for_model(
            png_bytes(size=(80, 60), mode=mode, color=color) if mode != "CMYK" else _jpeg_cmyk(), predictor.input_size
        )
        assert array.shape == (predictor.input_size, predictor.input_size, 3)
        assert array.dtype == np.uint8
        assert 0.0 <= predictor.predict_arrays([array])[0].probability_malignant <= 1.0


@pytest.fixture(scope="module")
def baseline():
    """The first shipped model: one output, no OOD branch, no named Grad-CAM layer."""
    return Predictor.from_dir(MODELS_DIR / "baseline-cnn-v1")


class TestSingleOutputModel:
    def test_it_has_no_ood_output_so_the_fields_are_null(self, baseline, demo_image_paths):
        result = baseline.predict_source(demo_image_paths[0])
        assert (result.ood_distance, result.out_of_distribution) == (None, None)

    def test_its_heatmap_uses_the_last_conv_layer(self, baseline, demo_image_paths):
        # Chosen automatically (no gradcam_layer in its metadata): the last
        # spatial feature map that is not a pooling layer.
        import keras

        assert "gradcam_layer" not in baseline.metadata
        chosen = baseline.model.get_layer(baseline.gradcam_layer)
        assert len(chosen.output.shape) == 4 and not isinstance(chosen, keras.layers.MaxPooling2D)
        heat = baseline.heatmap(baseline.preprocess(demo_image_paths[0]))
        assert heat.shape == (baseline.input_size, baseline.input_size)
        assert heat.dtype == np.float32
        assert 0.0 <= heat.min() and heat.max() <= 1.0


class TestTwoOutputModel:
    def test_it_reads_both_outputs_and_flags_by_the_metadata_threshold(self, synthetic, demo_image_paths):
        results = synthetic.predict_sources(demo_image_paths)
        for result in results:
            assert 0.0 <= result.probability_malignant <= 1.0
            assert result.ood_distance >= 0.0
            assert result.out_of_distribution is (result.ood_distance > SYNTHETIC_OOD_THRESHOLD)
        # The demo images fall on both sides of this model's threshold.
        assert {r.out_of_distribution for r in results} == {True, False}

    def test_the_flag_follows_the_threshold(self, synthetic, synthetic_model_dir):
        # Bright but textured: the quality gate lets it through to the model's own test.
        white = np.random.default_rng(0).integers(200, 256, size=(SYNTHETIC_SIZE, SYNTHETIC_SIZE, 3), dtype=np.uint8)
        distance = synthetic.predict_arrays([white])[0].ood_distance
        model_file = synthetic_model_dir / "model.keras"
        for threshold, flagged in [(distance * 0.99, True), (distance * 1.01, False)]:
            other = Predictor(model_file, {**synthetic.metadata, "ood": {"threshold": threshold}})
            assert other.predict_arrays([white])[0].out_of_distribution is flagged

    def test_a_black_image_passes_the_model_but_not_the_quality_gate(self, synthetic):
        black = np.zeros((SYNTHETIC_SIZE, SYNTHETIC_SIZE, 3), dtype=np.uint8)
        result = synthetic.predict_arrays([black])[0]
        assert result.ood_distance == pytest.approx(0.0)  # at the synthetic "training data"
        assert result.out_of_distribution is True

    def test_the_heatmap_is_in_range_and_follows_the_image(self, synthetic):
        heat = synthetic.heatmap(left_white(SYNTHETIC_SIZE))
        assert heat.shape == (SYNTHETIC_SIZE, SYNTHETIC_SIZE)
        assert heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
        assert heat.std() > 0.05
        # The model sees evidence only where there is signal.
        assert heat[:, :8].mean() > heat[:, -8:].mean()

    def test_a_blank_image_gives_an_all_zero_map(self, synthetic):
        heat = synthetic.heatmap(np.zeros((SYNTHETIC_SIZE, SYNTHETIC_SIZE, 3), dtype=np.uint8))
        assert not heat.any()

    def test_forward_pass_and_heatmap_are_traced_once(self, synthetic):
        for size in (1, 3, 1):
            synthetic.predict_batch(np.zeros((size, SYNTHETIC_SIZE, SYNTHETIC_SIZE, 3), dtype=np.uint8))
        for _ in range(3):
            synthetic.heatmap(left_white(SYNTHETIC_SIZE))
        assert synthetic._keras._forward.experimental_get_tracing_count() == 1
        assert synthetic._keras._gradcam.experimental_get_tracing_count() == 1

    def test_the_overlay_png_is_rgba_with_alpha_following_heat(self, synthetic):
        from PIL import Image

        heat = synthetic.heatmap(left_white(SYNTHETIC_SIZE))
        image = Image.open(io.BytesIO(heatmap_png(heat)))
        assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (SYNTHETIC_SIZE, SYNTHETIC_SIZE))
        alpha = np.asarray(image)[..., 3]
        assert alpha.max() == round(HEATMAP_MAX_ALPHA * 255)
        assert (alpha[heat == 0] == 0).all()  # cold means transparent


class TestContract:
    def test_metadata_promising_ood_needs_an_ood_output(self, baseline_copy):
        edit_metadata(baseline_copy, ood={"threshold": 10.0})
        with pytest.raises(ModelFileError, match="ood_distance"):
            Predictor.from_dir(baseline_copy)

    def test_a_named_gradcam_layer_must_exist(self, model_copy):
        edit_metadata(model_copy, gradcam_layer="no_such_layer")
        with pytest.raises(ModelFileError, match="gradcam_layer 'no_such_layer' is not a layer"):
            Predictor.from_dir(model_copy, backend="tensorflow")

    def test_a_gradcam_layer_must_be_spatial(self, model_copy, predictor):
        flat = next(layer.name for layer in predictor.model.layers if len(layer.output.shape) == 2)
        edit_metadata(model_copy, gradcam_layer=flat)
        with pytest.raises(ModelFileError, match="not \\(N, H, W, C\\)"):
            Predictor.from_dir(model_copy, backend="tensorflow")


def _jpeg_cmyk():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("CMYK", (80, 60), (10, 60, 80, 20)).save(buffer, format="JPEG")
    return buffer.getvalue()


class TestCommandLine:
    def run_cli(self, *args):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        env.pop("DJANGO_SETTINGS_MODULE", None)  # it must not need Django
        return subprocess.run(
            [sys.executable, "-m", "inference", "predict", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def test_it_prints_one_json_line_per_image_matching_the_worker_path(self, predictor, demo_image_paths, tmp_path):
        not_an_image = tmp_path / "notes.png"
        not_an_image.write_text("hello")
        paths = [str(p) for p in demo_image_paths[:3]] + [str(not_an_image)]
        completed = self.run_cli(*paths)

        assert completed.returncode == 1, completed.stderr
        rows = [json.loads(line) for line in completed.stdout.splitlines()]
        assert [row["file"] for row in rows] == paths
        expected = predictor.predict_sources(demo_image_paths[:3])
        for row, result in zip(rows[:3], expected, strict=True):
            assert row["label"] in {"benign", "malignant", "uncertain"}
            assert row["probability_malignant"] == pytest.approx(result.probability_malignant, abs=1e-5)
            assert row["confidence"] == pytest.approx(result.confidence, abs=1e-5)
            assert row["model_version"] == predictor.version_label
            assert row["out_of_distribution"] is result.out_of_distribution
            assert row["ood_distance"] == pytest.approx(result.ood_distance, rel=1e-4)
        assert "error" in rows[3] and "label" not in rows[3]

    def test_it_prints_the_ood_fields_and_writes_heatmaps(
        self, synthetic, synthetic_model_dir, demo_image_paths, tmp_path
    ):
        paths = demo_image_paths[:2]
        completed = self.run_cli(
            "--model", str(synthetic_model_dir), "--heatmap-dir", str(tmp_path / "heat"), *map(str, paths)
        )

        assert completed.returncode == 0, completed.stderr
        rows = [json.loads(line) for line in completed.stdout.splitlines()]
        for row, path, result in zip(rows, paths, synthetic.predict_sources(paths), strict=True):
            assert row["ood_distance"] == pytest.approx(result.ood_distance, rel=1e-4)
            assert row["out_of_distribution"] is result.out_of_distribution
            assert row["heatmap"] == str(tmp_path / "heat" / f"{path.stem}.heatmap.png")
            assert Path(row["heatmap"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_all_good_images_exit_zero(self, demo_image_paths):
        completed = self.run_cli(str(demo_image_paths[0]))
        assert completed.returncode == 0, completed.stderr

    def test_the_backend_can_be_chosen_and_is_reported(self, synthetic_model_dir, demo_image_paths):
        completed = self.run_cli("--backend", "tensorflow", str(demo_image_paths[0]))
        assert completed.returncode == 0, completed.stderr
        assert json.loads(completed.stdout)["backend"] == "tensorflow"
        # The synthetic model has no ONNX export to force.
        completed = self.run_cli("--model", str(synthetic_model_dir), "--backend", "onnx", str(demo_image_paths[0]))
        assert completed.returncode == 2
        assert "no ONNX file" in completed.stderr

    def test_a_broken_model_path_is_a_clear_error(self, tmp_path, demo_image_paths):
        completed = self.run_cli("--model", str(tmp_path), str(demo_image_paths[0]))
        assert completed.returncode == 2
        assert "model.json" in completed.stderr
