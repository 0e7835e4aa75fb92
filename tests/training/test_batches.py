"""The TF-free fine-tuning input pipeline (training.batches): clean batches are
exactly what the worker computes, augmented batches are a function of
(seed, fold, epoch, image) only, and the Keras wrapper yields the same arrays."""

from pathlib import Path

import numpy as np
import pytest

from training.batches import BatchPlan, TrunkPlan, augmented_input, clean_input, keras_dataset, prepare_cache
from training.preprocessing import PIPELINES, load_for_model

DEMO = Path(__file__).resolve().parents[2] / "demo" / "images"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return prepare_cache(DEMO, 48, tmp_path_factory.mktemp("cache"), workers=2, progress=lambda msg: None)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_clean_inputs_equal_the_workers_preprocessing(cache, pipeline):
    plan = BatchPlan(cache, np.arange(len(cache.files)), 5, pipeline, with_labels=True)
    xs = np.concatenate([plan[b][0] for b in range(len(plan))])
    want = np.stack([load_for_model((DEMO / f).read_bytes(), 48, pipeline) for f in cache.files])
    assert xs.dtype == np.float32
    np.testing.assert_array_equal(xs, want.astype(np.float32))
    assert (np.concatenate([plan[b][1] for b in range(len(plan))]).ravel() == cache.y).all()


def test_cache_is_reused_and_matches_the_file_list(cache, tmp_path):
    again = prepare_cache(DEMO, 48, Path(cache.images.filename).parent, progress=lambda msg: None)
    assert again.files == cache.files and (again.y == cache.y).all()
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(cache.images))
    assert isinstance(again.images, np.memmap)
    assert sorted(p.name for p in Path(cache.images.filename).parent.iterdir() if "part" in p.name) == []


def test_augmented_batches_depend_only_on_seed_fold_epoch(cache):
    idx = np.arange(len(cache.files))
    a = BatchPlan(cache, idx, 4, "square-sog-v2", augment=True, seed=0, fold=1, epoch=2)
    b = BatchPlan(cache, idx, 4, "square-sog-v2", augment=True, seed=0, fold=1, epoch=2)
    c = BatchPlan(cache, idx, 4, "square-sog-v2", augment=True, seed=0, fold=1, epoch=3)
    for k in reversed(range(len(a))):  # order of requests does not matter
        np.testing.assert_array_equal(a[k][0], b[k][0])
    assert not np.array_equal(a.indices, c.indices) or not np.array_equal(a[0][0], c[0][0])
    assert sorted(a.indices.tolist()) == idx.tolist()  # a permutation: every image once per epoch
    i = int(a.indices[0])
    np.testing.assert_array_equal(a[0][0][0], augmented_input(cache, i, "square-sog-v2", 0, 1, 2))
    assert not np.array_equal(a[0][0][0], clean_input(cache.images[i], "square-sog-v2"))


def test_horizontal_flip_mirrors_columns(cache):
    plain = BatchPlan(cache, [0, 1], 2, "square-resize-v1")[0]
    flipped = BatchPlan(cache, [0, 1], 2, "square-resize-v1", hflip=True)[0]
    np.testing.assert_array_equal(flipped, plain[:, :, ::-1])


def test_keras_dataset_yields_the_plans_batches(cache):
    plan = BatchPlan(cache, np.arange(len(cache.files)), 6, "square-sog-v2", augment=True, seed=3)
    ds = keras_dataset(plan, workers=2)
    assert len(ds) == len(plan) == 3
    for k in range(len(plan)):
        np.testing.assert_array_equal(ds[k][0], plan[k][0])
        np.testing.assert_array_equal(ds[k][1], plan[k][1])


def test_trunk_plan_shuffles_like_the_image_plan_and_returns_its_rows(cache):
    n = len(cache.files)
    trunk = np.arange(n * 6, dtype=np.float16).reshape(n, 2, 3)
    train = np.arange(1, n, 2)
    images = BatchPlan(cache, train, 3, "square-sog-v2", augment=True, seed=4, fold=1, epoch=2)
    rows = TrunkPlan(trunk, cache.y, train, 3, seed=4, fold=1, epoch=2)
    assert len(rows) == len(images)
    np.testing.assert_array_equal(rows.indices, images.indices)
    for b in range(len(rows)):
        x, y = rows[b]
        idx = images.batch_indices(b)
        assert x.dtype == np.float32 and x.shape == (len(idx), 2, 3)
        np.testing.assert_array_equal(x, trunk[idx].astype(np.float32))
        np.testing.assert_array_equal(y.ravel(), cache.y[idx])
