"""training.features: image loading, subsets, model inputs and the
extraction step with its cache (a stand-in extractor, no backbone)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.features import (
    FEATURE_DIM,
    FeatureExtraction,
    RawImages,
    augmented_input,
    clean_input,
    extract_features,
    load_raw,
    stratified_subset,
)
from training.preprocessing import SQUARE_RESIZE_V1, SQUARE_SOG_V2, to_model_input

DEMO = Path(__file__).resolve().parents[2] / "demo" / "images"


class MeanExtractor:
    """Stands in for the backbone: 'features' are the input's channel means, repeated."""

    def __init__(self):
        self.calls = 0

    def predict_on_batch(self, x):
        self.calls += 1
        means = x.mean(axis=(1, 2))  # (n, 3)
        return np.tile(means, (1, FEATURE_DIM // 3 + 1))[:, :FEATURE_DIM]


def images(n=10, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8), "RGB") for i in range(n)]


def test_stratified_subset_keeps_class_shares_and_is_reproducible():
    y = np.array([0] * 60 + [1] * 40)
    sub = stratified_subset(y, 20, seed=1)
    assert len(sub) == 20 and (np.diff(sub) > 0).all()
    assert (y[sub] == 1).sum() == 8
    np.testing.assert_array_equal(sub, stratified_subset(y, 20, seed=1))
    assert not np.array_equal(sub, stratified_subset(y, 20, seed=2))
    np.testing.assert_array_equal(stratified_subset(y, 0, 1), np.arange(100))
    np.testing.assert_array_equal(stratified_subset(y, 500, 1), np.arange(100))


def test_load_raw_decodes_and_hashes_every_image():
    raw = load_raw(DEMO, workers=2, progress=lambda m: None)
    assert len(raw.files) == len(raw.images) == len(raw.y) == len(raw.hashes) == 16
    assert [f.split("/")[0] for f in raw.files] == ["malignant" if label else "benign" for label in raw.y]
    assert all(img.mode == "RGB" for img in raw.images)
    sub = load_raw(DEMO, workers=2, progress=lambda m: None, max_images=6, seed=0)
    assert len(sub.files) == 6 and set(sub.files) <= set(raw.files) and sub.y.sum() == 3


def test_clean_and_augmented_inputs():
    img = images(1)[0]
    np.testing.assert_array_equal(clean_input(16, SQUARE_SOG_V2)(img, 0), to_model_input(img, 16, SQUARE_SOG_V2))
    make = augmented_input(16, SQUARE_RESIZE_V1, seed=0, copy=0)
    a = make(img, 3)
    assert a.shape == (16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, augmented_input(16, SQUARE_RESIZE_V1, seed=0, copy=0)(img, 3))
    other_copy = augmented_input(16, SQUARE_RESIZE_V1, seed=0, copy=1)(img, 3)
    other_image_index = make(img, 4)
    assert not np.array_equal(a, other_copy) and not np.array_equal(a, other_image_index)


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_extract_features_keeps_the_order_of_indices(batch_size):
    imgs = images(10)
    order = [7, 2, 9, 0, 5]
    feats = extract_features(MeanExtractor(), imgs, order, clean_input(8, SQUARE_RESIZE_V1), batch_size, workers=2)
    assert feats.shape == (5, FEATURE_DIM) and feats.dtype == np.float32
    for row, i in zip(feats, order, strict=True):
        np.testing.assert_allclose(row[:3], to_model_input(imgs[i], 8, SQUARE_RESIZE_V1).mean(axis=(0, 1)), rtol=1e-5)


def make_extraction(tmp_path, cache=True):
    imgs = images(6)
    raw = RawImages(files=[f"benign/{i}.jpg" for i in range(6)], images=imgs, y=np.zeros(6), hashes=np.zeros(6))
    return FeatureExtraction(
        MeanExtractor(),
        raw,
        image_size=8,
        seed=0,
        weights_path=Path("/weights/w.h5"),
        batch_size=4,
        workers=1,
        progress=lambda m: None,
        cache_dir=tmp_path / "cache" if cache else None,
    )


def test_feature_extraction_caches_on_disk_and_reloads(tmp_path):
    extract = make_extraction(tmp_path)
    make = clean_input(8, SQUARE_RESIZE_V1)
    first = extract([0, 2, 4], make, "features x (clean)")
    calls = extract.extractor.calls
    assert calls > 0 and set(extract.timings) == {"features x (clean)"}
    cached = list((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 1 and cached[0].name.startswith("features_x__clean_-8-")

    again = make_extraction(tmp_path)  # a later run with the same cache folder
    np.testing.assert_array_equal(again([0, 2, 4], make, "features x (clean)"), first)
    assert again.extractor.calls == 0 and again.timings == {}
    again([0, 2, 5], make, "features x (clean)")  # other images: another key, extracted
    assert again.extractor.calls > 0 and len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_feature_extraction_without_cache_writes_nothing(tmp_path):
    extract = make_extraction(tmp_path, cache=False)
    extract([1, 2], clean_input(8, SQUARE_RESIZE_V1), "features x (clean)")
    extract([1, 2], clean_input(8, SQUARE_RESIZE_V1), "features x (clean)")
    assert extract.extractor.calls == 2 and not (tmp_path / "cache").exists()


def test_cache_file_names_are_those_of_earlier_runs(tmp_path):
    # The key (label, size, seed, weights path, image files) is unchanged, so
    # --feature-cache folders written before training.features existed still load.
    raw = RawImages(files=["benign/a.jpg", "malignant/b.jpg"], images=[], y=np.zeros(2), hashes=np.zeros(2))
    extract = FeatureExtraction(
        None, raw, image_size=64, seed=3, weights_path=Path("/weights/w.h5"), batch_size=1, workers=1, progress=print
    )
    extract.cache_dir = tmp_path
    path = extract.cache_path([0, 1], "features square-sog-v2 (clean)")
    assert path == tmp_path / "features_square_sog_v2__clean_-64-0de7dcd6e33e4485.npy"
