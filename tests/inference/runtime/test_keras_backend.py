"""The TensorFlow backend: its autodiff Grad-CAM, traced once, and the Grad-CAM layer it explains."""

import numpy as np
import pytest

from inference.runtime import ModelFileError, Predictor
from tests.conftest import SYNTHETIC_SIZE, edit_metadata

from .helpers import left_white


class TestSingleOutputModel:
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


class TestGradcamLayer:
    def test_a_named_gradcam_layer_must_exist(self, model_copy):
        edit_metadata(model_copy, gradcam_layer="no_such_layer")
        with pytest.raises(ModelFileError, match="gradcam_layer 'no_such_layer' is not a layer"):
            Predictor.from_dir(model_copy, backend="tensorflow")

    def test_a_gradcam_layer_must_be_spatial(self, model_copy, predictor):
        flat = next(layer.name for layer in predictor.model.layers if len(layer.output.shape) == 2)
        edit_metadata(model_copy, gradcam_layer=flat)
        with pytest.raises(ModelFileError, match="not \\(N, H, W, C\\)"):
            Predictor.from_dir(model_copy, backend="tensorflow")
