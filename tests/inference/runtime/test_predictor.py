"""The Predictor: answers and their decision rule on the shipped model, both output contracts, and the
out-of-distribution warning (the model's own and the quality gate's)."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sklearn.datasets import load_sample_image

from inference.runtime import ModelFileError, Predictor, decide
from tests.conftest import SYNTHETIC_OOD_THRESHOLD, SYNTHETIC_SIZE, edit_metadata, png_bytes
from training.preprocessing import load_for_model

from .helpers import jpeg_cmyk


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
            png_bytes(size=(80, 60), mode=mode, color=color) if mode != "CMYK" else jpeg_cmyk(), predictor.input_size
        )
        assert array.shape == (predictor.input_size, predictor.input_size, 3)
        assert array.dtype == np.uint8
        assert 0.0 <= predictor.predict_arrays([array])[0].probability_malignant <= 1.0


class TestSingleOutputModel:
    def test_it_has_no_ood_output_so_the_fields_are_null(self, baseline, demo_image_paths):
        result = baseline.predict_source(demo_image_paths[0])
        assert (result.ood_distance, result.out_of_distribution) == (None, None)


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


class TestContract:
    def test_metadata_promising_ood_needs_an_ood_output(self, baseline_copy):
        edit_metadata(baseline_copy, ood={"threshold": 10.0})
        with pytest.raises(ModelFileError, match="ood_distance"):
            Predictor.from_dir(baseline_copy)


# ---- Images unlike the dermoscopy training data


def png(img):
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def screenshot():
    img = Image.new("RGB", (1280, 800), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, 1280, 60], fill=(30, 60, 120))
    for row in range(12):
        draw.text((40, 90 + row * 50), f"Patient list  MRN-{row:04d}  Lovelace, Ada", fill=(20, 20, 20))
    draw.rectangle([900, 100, 1240, 700], outline=(120, 120, 120), width=3)
    return png(img)


NOT_DERMOSCOPY = {
    "photo of a building": lambda: png(Image.fromarray(load_sample_image("china.jpg"))),
    "photo of a flower": lambda: png(Image.fromarray(load_sample_image("flower.jpg"))),
    "screenshot": screenshot,
    "blank grey": lambda: png(Image.new("RGB", (400, 300), (128, 128, 128))),
    "blank skin tone": lambda: png(Image.new("RGB", (400, 300), (224, 172, 150))),
    "black": lambda: png(Image.new("RGB", (400, 300), (0, 0, 0))),
}


@pytest.fixture
def shipped(predictor):
    assert predictor.has_ood, "the shipped model must carry an out-of-distribution detector"
    return predictor


@pytest.mark.parametrize("kind", NOT_DERMOSCOPY)
def test_non_dermoscopy_images_are_flagged(shipped, kind):
    assert shipped.predict_source(NOT_DERMOSCOPY[kind]()).out_of_distribution is True


def test_dermoscopy_images_pass(shipped, demo_image_paths):
    flagged = [r.out_of_distribution for r in shipped.predict_sources(demo_image_paths)]
    assert flagged.count(True) == 0
