"""Images and comparisons shared by the runtime tests."""

import io

import numpy as np
import pytest
from PIL import Image

# What the issue asks of the ONNX backend: outputs within 1e-4 of TensorFlow.
TOLERANCE = 1e-4


def left_white(size):
    """Left third white, the rest black: a map that must not be uniform."""
    array = np.zeros((size, size, 3), dtype=np.uint8)
    array[:, : size // 3] = 255
    return array


def jpeg_cmyk():
    buffer = io.BytesIO()
    Image.new("CMYK", (80, 60), (10, 60, 80, 20)).save(buffer, format="JPEG")
    return buffer.getvalue()


def assert_same_answers(onnx_results, tf_results):
    for a, b in zip(onnx_results, tf_results, strict=True):
        assert a.probability_malignant == pytest.approx(b.probability_malignant, abs=TOLERANCE)
        assert a.label == b.label
        if b.ood_distance is None:
            assert a.ood_distance is None
        else:
            # A squared distance in the hundreds: float32 itself resolves only
            # ~3e-5 there, so the 1e-4 is relative.
            assert a.ood_distance == pytest.approx(b.ood_distance, rel=TOLERANCE)
            assert a.out_of_distribution is b.out_of_distribution
