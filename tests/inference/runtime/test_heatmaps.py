"""Heat maps without TensorFlow: the numpy Grad-CAM of an ONNX export's output, and the PNG overlay."""

import io

import numpy as np
from PIL import Image

from inference.runtime import HEATMAP_MAX_ALPHA, gradcam_heatmap, heatmap_png
from tests.conftest import SYNTHETIC_SIZE

from .helpers import left_white


def test_the_resize_matches_tensorflows_bilinear_resize():
    import tensorflow as tf

    weighted = np.random.default_rng(0).normal(size=(7, 7)).astype(np.float32)
    want = tf.image.resize(tf.nn.relu(weighted)[None, ..., None], (224, 224), method="bilinear")[0, ..., 0].numpy()
    np.testing.assert_allclose(gradcam_heatmap(weighted, 224), want / want.max(), atol=1e-6)
    assert not gradcam_heatmap(-np.abs(weighted), 224).any()  # nothing positive: an all-zero map


def test_the_overlay_png_is_rgba_with_alpha_following_heat(synthetic):
    heat = synthetic.heatmap(left_white(SYNTHETIC_SIZE))
    image = Image.open(io.BytesIO(heatmap_png(heat)))
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (SYNTHETIC_SIZE, SYNTHETIC_SIZE))
    alpha = np.asarray(image)[..., 3]
    assert alpha.max() == round(HEATMAP_MAX_ALPHA * 255)
    assert (alpha[heat == 0] == 0).all()  # cold means transparent


def test_the_overlay_clips_what_is_out_of_range_and_paints_cold_as_transparent():
    heat = np.array([[0.0, 0.5], [1.0, np.nan]], dtype=np.float32)
    heat_out_of_range = np.array([[-1.0, 0.5], [3.0, np.nan]], dtype=np.float32)
    assert heatmap_png(heat) == heatmap_png(heat_out_of_range)
    rgba = np.asarray(Image.open(io.BytesIO(heatmap_png(heat))))
    assert rgba.shape == (2, 2, 4)
    assert list(rgba[..., 3].ravel()) == [0, round(0.5 * HEATMAP_MAX_ALPHA * 255), round(HEATMAP_MAX_ALPHA * 255), 0]
    assert tuple(rgba[1, 0, :3]) == (128, 0, 0)  # the hottest spot is the jet map's dark red
