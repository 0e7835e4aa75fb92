"""Loading, near-duplicate grouping and grouped fold assignment."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.cv import assign_folds, check_grouping
from training.data import (
    duplicate_groups,
    hamming_pairs,
    list_images,
    load_dataset,
    union_find_groups,
)
from training.preprocessing import load_for_model

DEMO = Path(__file__).resolve().parents[2] / "demo" / "images"


@pytest.fixture
def dataset_with_duplicates(tmp_path):
    """The 16 demo images plus two altered copies of one malignant image."""
    root = tmp_path / "data"
    shutil.copytree(DEMO, root, ignore=shutil.ignore_patterns("*.md"))
    original = root / "malignant" / "melanoma_6325.jpg"
    with Image.open(original) as img:
        img = img.convert("RGB")
        # re-encoded at a much lower JPEG quality
        img.save(root / "malignant" / "copy_reencoded.jpg", quality=60)
        # slightly resized (and re-encoded) copy
        img.resize((281, 269), Image.Resampling.LANCZOS).save(root / "malignant" / "copy_resized.jpg", quality=90)
    return root, {"melanoma_6325.jpg", "copy_reencoded.jpg", "copy_resized.jpg"}


def test_list_images_sorted_with_labels():
    paths, y = list_images(DEMO)
    assert len(paths) == 16 and y.tolist() == [0] * 8 + [1] * 8
    assert [p.parent.name for p in paths] == ["benign"] * 8 + ["malignant"] * 8
    assert paths[:8] == sorted(paths[:8])


def test_missing_class_folder(tmp_path):
    (tmp_path / "benign").mkdir()
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path)


def test_load_dataset_uses_load_for_model():
    ds = load_dataset(DEMO, 40)
    assert ds.x.shape == (16, 40, 40, 3) and ds.x.dtype == np.uint8
    for i in (0, 9):
        np.testing.assert_array_equal(ds.x[i], load_for_model(DEMO / ds.files[i], 40))


def test_duplicates_share_a_group_and_a_fold(dataset_with_duplicates):
    root, copies = dataset_with_duplicates
    ds = load_dataset(root, 32)
    groups = duplicate_groups(ds.hashes)
    names = [Path(f).name for f in ds.files]
    dup_idx = [i for i, n in enumerate(names) if n in copies]
    assert len(dup_idx) == 3
    assert len({groups[i] for i in dup_idx}) == 1
    # the 16 distinct demo images stay apart from the copies and each other
    assert len(np.unique(groups)) == 16
    for seed in range(5):
        folds = assign_folds(ds.y, groups, n_folds=3, seed=seed)
        assert len({folds[i] for i in dup_idx}) == 1
        check_grouping(folds, groups)


def test_hamming_pairs_matches_brute_force():
    rng = np.random.default_rng(0)
    hashes = rng.random((300, 64)) < 0.5
    hashes[10] = hashes[3]
    hashes[20] = hashes[3]
    hashes[20, :5] ^= True
    got = {tuple(p) for p in hamming_pairs(hashes, 22, chunk=64).tolist()}
    want = {(i, j) for i in range(300) for j in range(i + 1, 300) if np.count_nonzero(hashes[i] != hashes[j]) <= 22}
    assert got == want and (3, 10) in got and (3, 20) in got


def test_union_find_is_transitive():
    groups = union_find_groups(6, np.array([[0, 2], [2, 5], [3, 4]]))
    assert groups[0] == groups[2] == groups[5]
    assert groups[3] == groups[4] != groups[0]
    assert len(set(groups.tolist())) == 3


def test_check_grouping_detects_split_group():
    with pytest.raises(AssertionError):
        check_grouping(np.array([0, 1]), np.array([7, 7]))
