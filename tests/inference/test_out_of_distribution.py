"""The shipped model warns on images unlike its dermoscopy training data."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sklearn.datasets import load_sample_image

from inference.runtime import Predictor, featureless


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


@pytest.fixture(scope="module")
def shipped(model_dir):
    predictor = Predictor.from_dir(model_dir)
    assert predictor.has_ood, "the shipped model must carry an out-of-distribution detector"
    return predictor


@pytest.mark.parametrize("kind", NOT_DERMOSCOPY)
def test_non_dermoscopy_images_are_flagged(shipped, kind):
    assert shipped.predict_source(NOT_DERMOSCOPY[kind]()).out_of_distribution is True


def test_dermoscopy_images_pass(shipped, demo_image_paths):
    flagged = [r.out_of_distribution for r in shipped.predict_sources(demo_image_paths)]
    assert flagged.count(True) == 0


def test_the_quality_gate_passes_textured_images_and_stops_flat_ones():
    rng = np.random.default_rng(0)
    textured = rng.integers(40, 220, size=(64, 64, 3), dtype=np.uint8)
    flat = np.full((64, 64, 3), 200, dtype=np.uint8)
    dark = np.zeros((64, 64, 3), dtype=np.uint8)
    assert (featureless(textured), featureless(flat), featureless(dark)) == (False, True, True)
