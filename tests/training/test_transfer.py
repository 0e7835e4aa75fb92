"""The transfer pipeline: a tiny real run on the demo images, and the
fold/augmentation bookkeeping on synthetic features."""

import json
from pathlib import Path

import numpy as np
import pytest

from training import calibration
from training.transfer import TransferConfig, cross_validate, fold_training_set, main

DEMO = Path(__file__).resolve().parents[2] / "demo" / "images"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer") / "model-out"
    argv = ["--data", str(DEMO), "--out", str(out), "--image-size", "64", "--folds", "2", "--augmented-copies", "0"]
    argv += ["--compare-subset", "0", "--robustness-subset", "8", "--inner-folds", "2", "--bootstrap", "20"]
    argv += ["--c-grid", "0.01,0.1", "--ood-components", "8", "--baseline-report", str(out / "missing.json")]
    assert main(argv) == 0
    return out


def test_writes_every_output(run_dir):
    for name in (
        "model.keras",
        "model.onnx",
        "model.json",
        "cv_report.json",
        "oof_predictions.csv",
        "evaluation.md",
        "evaluation.json",
        "roc_curve.png",
        "reliability_diagram.png",
        "robustness.md",
        "robustness.json",
        "MODEL_CARD.md",
    ):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "model.keras").stat().st_size < 20_000_000


def test_model_json_contract(run_dir):
    meta = json.loads((run_dir / "model.json").read_text())
    assert meta["format_version"] == 1
    assert meta["name"] == "mobilenet-v2-melanoma"
    assert meta["file"] == "model.keras"
    assert meta["input_size"] == 64
    assert meta["preprocessing"] in ("square-resize-v1", "square-sog-v2")
    assert meta["class_names"] == ["benign", "malignant"]
    assert meta["gradcam_layer"] == "head_relu"
    lo, hi = meta["uncertain_band"]
    assert lo <= meta["threshold"] < hi
    assert meta["temperature"] > 0
    assert meta["ood"]["components"] >= 1 and meta["ood"]["threshold"] > 0
    for key in (
        "seed",
        "command",
        "wall_time_s",
        "n_images",
        "augmented_copies",
        "image_size",
        "backbone",
        "tensorflow",
        "keras",
    ):
        assert key in meta["training"], key
    assert len(meta["training"]["backbone"]["weights_sha256"]) == 64
    assert "roc_auc" in meta["metrics"] and "ci95" in meta["metrics"]["roc_auc"]


def test_exported_model_loads_and_probability_is_sigmoid_of_logit(run_dir):
    import keras

    from training.preprocessing import load_for_model

    meta = json.loads((run_dir / "model.json").read_text())
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    names = {layer.name for layer in model.layers}
    assert {"logit", "probability", "ood_projection", "ood_distance", "head_relu"} <= names
    assert not any(type(layer).__name__ == "Lambda" for layer in model.layers)
    files = sorted((DEMO / "benign").glob("*.jpg"))[:2] + sorted((DEMO / "malignant").glob("*.jpg"))[:2]
    x = np.stack([load_for_model(f, meta["input_size"], meta["preprocessing"]) for f in files]).astype("float32")
    out = model.predict(x, verbose=0)
    assert set(out) == {"probability", "ood_distance"}
    assert out["probability"].shape == (4, 1) and out["ood_distance"].shape == (4, 1)
    logit_model = keras.Model(model.input, model.get_layer("logit").output)
    logit = logit_model.predict(x, verbose=0)
    np.testing.assert_allclose(out["probability"], calibration.sigmoid(logit), atol=1e-6)
    assert (out["ood_distance"] >= 0).all()


def test_fold_training_set_never_uses_validation_augmentations():
    rng = np.random.default_rng(0)
    n, d, k = 40, 5, 2
    clean = rng.normal(size=(n, d))
    aug = np.stack([clean + 100 * (c + 1) for c in range(k)])  # distinguishable copies
    y = np.tile([0, 1], n // 2)
    groups = np.arange(n) // 2
    folds = (groups % 4).astype(int)
    for f in range(4):
        x_tr, y_tr, g_tr, src, val_idx = fold_training_set(clean, aug, y, groups, folds, f)
        assert set(val_idx) == set(np.flatnonzero(folds == f))
        assert not set(src) & set(val_idx)  # no training row comes from a validation image
        assert len(x_tr) == (1 + k) * (n - len(val_idx))
        np.testing.assert_array_equal(y_tr, y[src])
        np.testing.assert_array_equal(g_tr, groups[src])


def test_cross_validation_scores_validation_from_clean_features_only():
    rng = np.random.default_rng(1)
    n, d = 120, 6
    y = np.tile([0, 1], n // 2)
    clean = rng.normal(size=(n, d)) + y[:, None]
    aug = np.stack([clean + rng.normal(scale=0.3, size=(n, d))])
    groups = np.arange(n)
    folds = np.arange(n) % 3
    config = TransferConfig(data=Path("."), out=Path("."), cs=(0.1,), inner_folds=2)
    oof, heads, _ = cross_validate(clean, aug, y, groups, folds, config, lambda m: None)
    # scrambling the augmented copies of fold 0's images changes nothing about
    # fold 0's head or its out-of-fold scores (it changes the other folds' heads)
    scrambled = aug.copy()
    scrambled[:, folds == 0] = rng.normal(scale=50, size=(1, int((folds == 0).sum()), d))
    oof2, heads2, _ = cross_validate(clean, scrambled, y, groups, folds, config, lambda m: None)
    np.testing.assert_allclose(heads2[0].kernel, heads[0].kernel)
    np.testing.assert_allclose(oof2[folds == 0], oof[folds == 0])
    assert not np.allclose(heads2[1].kernel, heads[1].kernel)
    for f in range(3):
        np.testing.assert_allclose(oof[folds == f], heads[f].logit(clean[folds == f]))
