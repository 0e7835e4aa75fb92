"""training.shifts: the image shifts and the training augmentation."""

import numpy as np
import pytest
from PIL import Image

from training.shifts import augment_image, channel_gains, downscale_upscale, jpeg, vignette


def noise_image(w=96, h=72, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(40, 220, (h, w, 3), dtype=np.uint8), "RGB")


def flat_image(w=80, h=60, value=(200, 150, 100)):
    return Image.new("RGB", (w, h), value)


def test_augment_image_is_a_function_of_the_generator_state():
    img = noise_image()
    before = np.asarray(img).copy()
    for i in range(24):  # every random choice comes from the generator: no other source of randomness
        first = np.asarray(augment_image(img, np.random.default_rng([0, 1, i])))
        again = np.asarray(augment_image(img, np.random.default_rng([0, 1, i])))
        np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(np.asarray(img), before)  # the input is not modified
    first = np.asarray(augment_image(img, np.random.default_rng([0, 1, 7])))
    others = [np.asarray(augment_image(img, np.random.default_rng([0, 1, i]))) for i in range(8)]
    assert any(o.shape != first.shape or not np.array_equal(o, first) for o in others)


@pytest.mark.parametrize("seed", range(12))
def test_augment_image_returns_rgb_of_bounded_size(seed):
    img = noise_image()
    out = augment_image(img, np.random.default_rng(seed))
    assert out.mode == "RGB"
    w, h = out.size  # a right-angle rotation may swap the sides; the crop keeps >= ~70% of the area
    assert max(w, h) <= max(img.size) and w * h >= 0.6 * img.size[0] * img.size[1]


def test_vignette_keeps_the_centre_and_blackens_the_corners():
    img = flat_image(101, 101)
    out = np.asarray(vignette(img, radius=0.4, softness=0.05))
    np.testing.assert_array_equal(out[50, 50], (200, 150, 100))
    np.testing.assert_array_equal(out[0, 0], (0, 0, 0))
    np.testing.assert_array_equal(out[50, 0], (0, 0, 0))  # 0.5 of the side from the centre > radius + softness
    assert out.shape == (101, 101, 3)
    inside = np.asarray(vignette(img, radius=0.55, softness=0.05))
    np.testing.assert_array_equal(inside[50, 5], (200, 150, 100))  # 0.45 of the side: inside a larger field


def test_channel_gains_scales_each_channel_and_clips():
    out = np.asarray(channel_gains(flat_image(), (1.2, 1.0, 0.5)))
    np.testing.assert_array_equal(out[0, 0], (240, 150, 50))
    clipped = np.asarray(channel_gains(flat_image(), (2.0, 2.0, 2.0)))
    np.testing.assert_array_equal(clipped[0, 0], (255, 255, 200))


def test_jpeg_keeps_size_and_loses_more_at_low_quality():
    img = noise_image()
    x = np.asarray(img, dtype=float)
    low, high = jpeg(img, 10), jpeg(img, 95)
    assert low.size == high.size == img.size and low.mode == "RGB"
    err = [np.abs(np.asarray(im, dtype=float) - x).mean() for im in (low, high)]
    assert err[0] > err[1] > 0


def test_downscale_upscale_keeps_size_and_removes_fine_detail():
    checker = (np.indices((64, 96)).sum(axis=0) % 2 * 255).astype(np.uint8)
    img = Image.fromarray(np.stack([checker] * 3, axis=-1), "RGB")
    out = downscale_upscale(img, 16)
    assert out.size == img.size
    assert np.asarray(out, dtype=float).std() < 0.2 * np.asarray(img, dtype=float).std()
    np.testing.assert_array_equal(np.asarray(downscale_upscale(flat_image(), 10)), np.asarray(flat_image()))
