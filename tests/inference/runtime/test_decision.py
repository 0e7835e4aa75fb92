"""The decision rule (threshold, uncertain band) and the image-quality gate."""

import numpy as np
import pytest

from inference.runtime import decide, featureless, with_image_quality


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


def test_the_quality_gate_passes_textured_images_and_stops_flat_ones():
    rng = np.random.default_rng(0)
    textured = rng.integers(40, 220, size=(64, 64, 3), dtype=np.uint8)
    flat = np.full((64, 64, 3), 200, dtype=np.uint8)
    dark = np.zeros((64, 64, 3), dtype=np.uint8)
    assert (featureless(textured), featureless(flat), featureless(dark)) == (False, True, True)


@pytest.mark.parametrize(
    "label, findings, expected",
    [
        ("benign", [], ("benign", [])),
        ("malignant", [], ("malignant", [])),
        ("uncertain", [], ("uncertain", ["uncertain_band"])),
        ("benign", ["blurred"], ("uncertain", ["image_quality"])),
        ("malignant", ["overexposed", "lesion_cut_off"], ("uncertain", ["image_quality"])),
        ("uncertain", ["blurred"], ("uncertain", ["uncertain_band", "image_quality"])),
    ],
)
def test_an_image_the_quality_gate_found_unfit_is_labelled_uncertain_and_why(label, findings, expected):
    assert with_image_quality(label, findings) == expected
