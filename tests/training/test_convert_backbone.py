"""training.convert_backbone and training.torch_mobilenet: the converter's
torch-only steps must run where neither Keras nor TensorFlow is installed,
and its other steps where torch is not (see docs/backbone.md)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.convert_backbone import keras_assignments, normalised_input, random_pixels

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["training.convert_backbone", "training.torch_mobilenet"])
def test_importing_the_converter_loads_no_framework(module):
    code = f"import sys, {module}; print(sorted({{'torch', 'keras', 'tensorflow'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_seeded_pixels_and_torchvision_normalisation():
    pixels = random_pixels(seed=1, batch=2, size=8)
    assert pixels.shape == (2, 8, 8, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, random_pixels(seed=1, batch=2, size=8))
    x = normalised_input(np.full((1, 2, 2, 3), 255, dtype=np.uint8))
    np.testing.assert_allclose(x[0, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]))


def test_keras_assignments_refuses_an_incomplete_state_dict():
    with pytest.raises(KeyError, match="features.0.0.weight"):
        keras_assignments({})


def test_builtin_torch_copy_maps_onto_every_keras_layer():
    pytest.importorskip("torch")
    from training.torch_mobilenet import _builtin_torch_mobilenet_v2

    state = {k: v.numpy() for k, v in _builtin_torch_mobilenet_v2().state_dict().items()}
    assignments = keras_assignments(state)  # raises if any entry is left unmapped
    assert assignments["predictions"][0].shape == (1280, 1000)
