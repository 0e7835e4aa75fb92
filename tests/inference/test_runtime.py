import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.runtime import ModelFileError, Predictor, decide, validate_metadata
from tests.conftest import edit_metadata, png_bytes
from training.preprocessing import PREPROCESSING_ID, load_for_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor.from_dir(model_dir)


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

    def test_it_names_missing_keys(self):
        with pytest.raises(ModelFileError, match="threshold"):
            validate_metadata({k: v for k, v in self.BASE.items() if k != "threshold"})


class TestPredictor:
    def test_it_gives_probabilities_and_applies_its_threshold(self, predictor, demo_image_paths):
        results = predictor.predict_sources(demo_image_paths)
        threshold = predictor.metadata["threshold"]
        for result in results:
            assert 0.0 <= result.probability_malignant <= 1.0
            expected = "malignant" if result.probability_malignant >= threshold else "benign"
            assert result.label == expected

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
            Predictor.from_dir(model_copy)

    @pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "I;16", "P"])
    def test_unusual_image_modes_are_converted_not_crashed(self, predictor, mode):
        color = {"L": 90, "RGBA": (120, 80, 60, 128), "CMYK": (10, 60, 80, 20), "I;16": 40000, "P": 3}[mode]
        array = load_for_model(
            png_bytes(size=(80, 60), mode=mode, color=color) if mode != "CMYK" else _jpeg_cmyk(), predictor.input_size
        )
        assert array.shape == (predictor.input_size, predictor.input_size, 3)
        assert array.dtype == np.uint8
        assert 0.0 <= predictor.predict_arrays([array])[0].probability_malignant <= 1.0


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
        assert "error" in rows[3] and "label" not in rows[3]

    def test_all_good_images_exit_zero(self, demo_image_paths):
        completed = self.run_cli(str(demo_image_paths[0]))
        assert completed.returncode == 0, completed.stderr

    def test_a_broken_model_path_is_a_clear_error(self, tmp_path, demo_image_paths):
        completed = self.run_cli("--model", str(tmp_path), str(demo_image_paths[0]))
        assert completed.returncode == 2
        assert "model.json" in completed.stderr
