"""core._morphology against scipy.ndimage, which it replaces in core.quality (scipy is not in the runtime image).

scipy is in the dev environment (through scikit-learn, requirements/ml.txt); without it the comparisons skip
and only the import check runs.
"""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageFilter

from core import _morphology, quality
from tests.core.test_quality import dermoscopy_like

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_quality_gate_does_not_import_scipy():
    code = "import sys, core.quality; print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def random_masks():
    """Noise at several densities and sizes (odd, even, non-square), plus shapes with holes and touching edges."""
    rng = np.random.default_rng(3)
    masks = [rng.random(shape) < p for shape in [(128, 128), (256, 256), (37, 90), (1, 17)] for p in (0.3, 0.5, 0.6)]
    yy, xx = np.mgrid[0:128, 0:128]
    ring = (np.hypot(yy - 64, xx - 64) < 40) & (np.hypot(yy - 64, xx - 64) > 20)
    serpentine = np.zeros((64, 64), bool)
    serpentine[::2] = True
    serpentine[1::4, -1] = serpentine[3::4, 0] = True
    corner_blobs = (np.hypot(yy, xx) < 30) | (np.hypot(yy - 127, xx - 127) < 25) | (np.abs(yy - xx) < 2)
    diagonal_only = (yy + xx) % 2 == 0  # 8-connected everywhere, 4-connected nowhere
    holes = np.ones((40, 40), bool)
    holes[5:10, 5:10] = holes[20:22, 30:35] = holes[0:3, 15:18] = False  # the last touches the border: no hole
    masks += [ring, serpentine, corner_blobs, diagonal_only, holes, np.zeros((30, 30), bool), np.ones((30, 30), bool)]
    return masks


MASKS = random_masks()


def float_images():
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:128, 0:128]
    smooth = (120 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0)).astype(np.float32)
    steps = np.where(np.hypot(yy - 50, xx - 70) < 30, 40.0, 200.0).astype(np.float32)
    return [
        (rng.random((128, 128)) * 255).astype(np.float32),
        (rng.random((256, 256)) * 255).astype(np.float32),
        (rng.random((31, 64)) * 255).astype(np.float32),
        smooth,
        steps,
        rng.normal(0, 1, (128, 128)),  # float64 stays float64
    ]


IMAGES = float_images()


@pytest.fixture(scope="module")
def ndimage():
    return pytest.importorskip("scipy.ndimage")


@pytest.mark.parametrize("index", range(len(MASKS)))
def test_labels_are_scipys_numbered_the_same_way(ndimage, index):
    labels, n = _morphology.label(MASKS[index])
    expected, expected_n = ndimage.label(MASKS[index])
    assert n == expected_n
    # Exactly equal, not only up to renumbering: core.quality breaks ties by the lowest label.
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("index", range(len(MASKS)))
def test_fill_holes_and_opening_equal_scipys(ndimage, index):
    mask = MASKS[index]
    np.testing.assert_array_equal(_morphology.binary_fill_holes(mask), ndimage.binary_fill_holes(mask))
    np.testing.assert_array_equal(
        _morphology.binary_opening3x3(mask), ndimage.binary_opening(mask, np.ones((3, 3), bool))
    )


@pytest.mark.parametrize("index", [i for i, mask in enumerate(MASKS) if mask.any()])
def test_sums_and_centres_equal_scipys(ndimage, index):
    mask = MASKS[index]
    labels, n = ndimage.label(mask)
    index_ = np.arange(1, n + 1)
    areas, cy, cx = _morphology.sums_and_centres(labels, n)
    np.testing.assert_array_equal(areas, ndimage.sum(mask, labels, index_))
    centres = np.array(ndimage.center_of_mass(mask, labels, index_)).reshape(-1, 2)
    np.testing.assert_allclose(np.c_[cy, cx], centres, rtol=0, atol=1e-9)


@pytest.mark.parametrize("index", range(len(IMAGES)))
def test_grey_closing_equals_scipys(ndimage, index):
    image = IMAGES[index]
    np.testing.assert_array_equal(_morphology.grey_closing(image, 4), ndimage.grey_closing(image, size=(4, 4)))
    np.testing.assert_array_equal(_morphology.grey_closing(image, 3), ndimage.grey_closing(image, size=(3, 3)))


@pytest.mark.parametrize("index", range(len(IMAGES)))
@pytest.mark.parametrize("sigma", [1.5, 0.8, 3.0])
def test_gaussian_equals_scipys(ndimage, index, sigma):
    image = IMAGES[index]
    blurred = _morphology.gaussian_filter(image, sigma)
    assert blurred.dtype == image.dtype
    np.testing.assert_allclose(blurred, ndimage.gaussian_filter(image, sigma), rtol=1e-6, atol=1e-5)


def scipy_backed(ndimage):
    """The operations as core.quality called them from scipy.ndimage before core._morphology replaced it."""

    def sums_and_centres(labels, n):
        index = np.arange(1, n + 1)
        dark = labels > 0
        cy, cx = np.array(ndimage.center_of_mass(dark, labels, index)).reshape(-1, 2).T
        return ndimage.sum(dark, labels, index=index), cy, cx

    return SimpleNamespace(
        label=ndimage.label,
        gaussian_filter=ndimage.gaussian_filter,
        grey_closing=lambda v, size: ndimage.grey_closing(v, size=(size, size)),
        binary_opening3x3=lambda mask: ndimage.binary_opening(mask, np.ones((3, 3), bool)),
        binary_fill_holes=ndimage.binary_fill_holes,
        sums_and_centres=sums_and_centres,
    )


def quality_test_images(demo_image_paths):
    images = {path.name: Image.open(path) for path in demo_image_paths}
    for path in demo_image_paths[:3]:
        images[f"{path.name} blurred"] = Image.open(path).filter(ImageFilter.GaussianBlur(6))
    images["centred"] = dermoscopy_like()
    images["vignette"] = dermoscopy_like(vignette=True, lesion_radius=0.1, seed=2)
    images["cut off"] = dermoscopy_like(lesion_at=(0.95, 0.4), lesion_radius=0.3, seed=1)
    images["noise"] = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 320, 3), dtype=np.uint8))
    images["blank"] = Image.new("RGB", (256, 256), (180, 150, 140))
    return images


def test_the_quality_measures_are_those_of_the_scipy_version(ndimage, demo_image_paths, monkeypatch):
    images = quality_test_images(demo_image_paths)
    ours = {name: (quality.measure(img), quality.lesion_mask(img)) for name, img in images.items()}
    monkeypatch.setattr(quality, "_morphology", scipy_backed(ndimage))
    for name, img in images.items():
        measures, lesion = ours[name]
        assert measures == quality.measure(img), name
        np.testing.assert_array_equal(lesion, quality.lesion_mask(img), err_msg=name)
