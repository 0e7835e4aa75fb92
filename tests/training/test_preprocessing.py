"""training.preprocessing: the one image-to-tensor path (the reduced-scale JPEG decode for large images)."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import preprocessing
from training.preprocessing import ImageError, load_for_model, open_for_model, open_image, to_model_input

DEMO = Path(__file__).resolve().parents[2] / "demo" / "images"


def _bars(width, height):
    """Sharp, asymmetric bars and a ramp: any shift or stretch of the framing shows."""
    pixels = np.zeros((height, width, 3), np.uint8)
    for x in range(0, width, 173):
        pixels[:, x : x + 60, 0] = 255
    for y in range(0, height, 131):
        pixels[y : y + 40, :, 1] = 255
    pixels[:, :, 2] = np.linspace(0, 255, width)[None, :]
    return Image.fromarray(pixels)


def _jpeg(img, orientation=1):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


# One pixel past a whole number of 8 x 8 blocks: the 1/8-scale decode is then
# 7/8 of a reduced pixel wider than the picture, the worst case for the box.
LARGE = _bars(8 * 330 + 1, 8 * 250 + 1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_large_jpeg_is_decoded_at_reduced_scale_and_framed_as_a_full_decode_frames_it(orientation):
    data = _jpeg(LARGE, orientation)
    img, box = open_for_model(data, 64)
    assert box is not None and max(img.size) < max(LARGE.size) // 4  # decoded at 1/8 scale
    full = to_model_input(open_image(data), 64).astype(int)
    reduced = load_for_model(data, 64).astype(int)
    assert reduced.shape == full.shape == (64, 64, 3)
    difference = np.abs(reduced - full)
    assert difference.mean() < 1.0 and difference.max() <= 6
    # Framed without the box (or with it on the wrong side) the same decode is
    # stretched by the partial block: ~7 grey levels off on average here.
    unboxed = np.abs(preprocessing.frame(img, 64).astype(int) - full)
    assert unboxed.mean() > 5


@pytest.mark.parametrize(("mode", "options"), [("RGB", {"progressive": True}), ("CMYK", {}), ("L", {})])
def test_progressive_cmyk_and_grey_jpegs_are_reduced_and_framed_alike(mode, options):
    buffer = io.BytesIO()
    LARGE.convert(mode).save(buffer, format="JPEG", quality=90, **options)
    data = buffer.getvalue()
    assert open_for_model(data, 64)[1] is not None
    difference = np.abs(load_for_model(data, 64).astype(int) - to_model_input(open_image(data), 64).astype(int))
    assert difference.mean() < 1.0 and difference.max() <= 6


@pytest.mark.parametrize("size", [160, 224])
def test_an_image_under_twice_the_input_size_is_decoded_in_full(size):
    # Every 300 px training image at every shipped model's input size: bit for bit the full decode.
    for path in sorted(DEMO.glob("*/*.jpg"))[:4]:
        data = path.read_bytes()
        assert open_for_model(data, size)[1] is None
        np.testing.assert_array_equal(load_for_model(data, size), to_model_input(open_image(data), size))


def test_a_png_is_always_decoded_in_full():
    buffer = io.BytesIO()
    LARGE.save(buffer, format="PNG")
    data = buffer.getvalue()
    img, box = open_for_model(data, 64)
    assert box is None and img.size == LARGE.size
    np.testing.assert_array_equal(load_for_model(data, 64), to_model_input(open_image(data), 64))


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_a_large_jpeg_cut_short_is_refused_at_reduced_scale_too(keep):
    data = _jpeg(LARGE)
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_for_model(data[: int(len(data) * keep)], 64)


def test_the_margin_is_what_decides_a_reduced_decode():
    side = preprocessing.DRAFT_MARGIN * 64
    small, large = _jpeg(_bars(side - 1, side - 1)), _jpeg(_bars(side * 8, side * 8))
    img, box = open_for_model(small, 64)
    assert img.size == (side - 1, side - 1) and box is None
    img, box = open_for_model(large, 64)
    # 1/8 scale, and whole 8 x 8 blocks: the reduced image is exactly the picture, no box needed.
    assert img.size == (side, side) and box is None


def _direct_shades_of_gray(rgb, power=preprocessing.SOG_POWER):
    """The formula as written first (float64 over every pixel): the reference for the histogram form."""
    pixels = rgb.reshape(-1, 3).astype(np.float64)
    skin = pixels[pixels.mean(axis=1) > preprocessing.VIGNETTE_LEVEL]
    if len(skin) < 0.05 * len(pixels):
        skin = pixels
    illuminant = np.power(np.mean(np.power(skin, power), axis=0), 1.0 / power)
    gains = illuminant.mean() / np.maximum(illuminant, 1e-6)
    return np.clip(rgb.astype(np.float64) * gains, 0, 255).round().astype(np.uint8)


def test_shades_of_gray_from_histograms_is_the_direct_formula_to_the_bit():
    rng = np.random.default_rng(0)
    images = [load_for_model(path.read_bytes(), size) for path in sorted(DEMO.glob("*/*.jpg")) for size in (160, 224)]
    images.append(np.zeros((64, 64, 3), np.uint8))  # all dark: estimated from every pixel
    for i in range(30):
        noise = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
        noise[: i * 48 // 30] //= 12  # from all lit to almost all vignette
        images.append(noise)
    corrected = [preprocessing.shades_of_gray(rgb) for rgb in images]
    assert any(not np.array_equal(c, rgb) for c, rgb in zip(corrected, images, strict=True))  # it does correct
    for rgb, fast in zip(images, corrected, strict=True):
        np.testing.assert_array_equal(fast, _direct_shades_of_gray(rgb))
        assert fast.flags.writeable


def test_shades_of_gray_estimates_the_illuminant_from_the_skin_mask_it_is_given():
    rng = np.random.default_rng(1)
    rgb = np.concatenate([rng.integers(30, 120, (16, 32, 3)), rng.integers(120, 256, (16, 32, 3))]).astype(np.uint8)
    lit = np.zeros((32, 32), bool)
    lit[:16] = True  # only the top half counts as skin
    power = preprocessing.SOG_POWER
    illuminant = np.power(np.mean(np.power(rgb[:16].reshape(-1, 3).astype(np.float64), power), axis=0), 1 / power)
    gains = illuminant.mean() / illuminant
    expected = np.clip(rgb * gains, 0, 255).round().astype(np.uint8)
    np.testing.assert_array_equal(preprocessing.shades_of_gray(rgb, lit=lit), expected)
    assert not np.array_equal(preprocessing.shades_of_gray(rgb), expected)  # the default mask is every lit pixel
