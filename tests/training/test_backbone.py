"""The Keras port of torchvision's MobileNetV2 reproduces torch's ImageNet logits.

The reference was produced with torch by ``python -m training.convert_backbone
--pth mobilenet_v2-b0353104.pth --dump-reference ... --batch 2`` (see
docs/backbone.md); this test needs no torch. The fixture stores its input as raw
RGB uint8 pixels (0..255, not normalised) and torch's logits / pooled features
computed on ``(pixels/255 - mean)/std``.
"""

from pathlib import Path

import numpy as np
import pytest

from training.backbone import DEFAULT_WEIGHTS_PATH, LAST_CONV_LAYER, build_mobilenet_v2, imagenet_normalisation
from training.convert_backbone import TOLERANCE, normalised_input

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mobilenet_v2_reference.npz"


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def classifier():
    return build_mobilenet_v2(include_top=True, weights_path=DEFAULT_WEIGHTS_PATH)


def test_fixture_is_what_the_docs_say(reference):
    assert reference["pixels"].shape == (2, 224, 224, 3)
    assert reference["pixels"].dtype == np.uint8
    assert reference["logits"].shape == (2, 1000)
    assert reference["pooled_features"].shape == (2, 1280)
    assert str(reference["pth_sha256"]) == "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"


def test_logits_match_torch(classifier, reference):
    logits = classifier.predict(normalised_input(reference["pixels"]), verbose=0)
    assert np.max(np.abs(logits - reference["logits"])) <= TOLERANCE
    np.testing.assert_array_equal(logits.argmax(-1), reference["logits"].argmax(-1))


def test_normalisation_layer_gives_the_same_logits_from_raw_pixels(classifier, reference):
    """The project contract: float32 RGB 0..255 in, imagenet_normalisation() in front."""
    import keras

    inputs = keras.Input((224, 224, 3))
    model = keras.Model(inputs, classifier(imagenet_normalisation()(inputs)))
    logits = model.predict(reference["pixels"].astype(np.float32), verbose=0)
    assert np.max(np.abs(logits - reference["logits"])) <= TOLERANCE

    flat = build_mobilenet_v2(include_top=True, weights_path=DEFAULT_WEIGHTS_PATH, normalise_input=True)
    assert flat.layers[1].name == "imagenet_normalisation"
    logits = flat.predict(reference["pixels"].astype(np.float32), verbose=0)
    assert np.max(np.abs(logits - reference["logits"])) <= TOLERANCE


def test_feature_extractor(reference):
    features = build_mobilenet_v2(include_top=False, weights_path=DEFAULT_WEIGHTS_PATH)
    assert features.output.shape == (None, 7, 7, 1280)
    assert features.layers[-1].name == LAST_CONV_LAYER
    fmap = features.predict(normalised_input(reference["pixels"]), verbose=0)
    assert np.max(np.abs(fmap.mean(axis=(1, 2)) - reference["pooled_features"])) <= TOLERANCE


def test_pooled_feature_extractor_and_other_sizes():
    pooled = build_mobilenet_v2(input_shape=(None, None, 3), include_top=False, pooling="avg")
    assert pooled.output.shape == (None, 1280)
    assert pooled.predict(np.zeros((1, 160, 160, 3), np.float32), verbose=0).shape == (1, 1280)
