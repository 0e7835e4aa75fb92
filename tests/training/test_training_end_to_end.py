"""A tiny real run of ``python -m training train`` on the demo images."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from training.__main__ import main

DEMO = Path(__file__).resolve().parents[2] / "demo" / "images"

CONTRACT_KEYS = {
    "format_version",
    "name",
    "version",
    "framework",
    "file",
    "input_size",
    "preprocessing",
    "input",
    "output",
    "class_names",
    "threshold",
    "metrics",
    "training",
    "created_at",
}
TRAINING_KEYS = {
    "seed",
    "command",
    "epochs",
    "folds",
    "wall_time_s",
    "n_images",
    "n_benign",
    "n_malignant",
    "n_duplicate_groups",
    "tensorflow",
    "keras",
}
REPORT_METRICS = {
    "accuracy",
    "precision",
    "sensitivity",
    "specificity",
    "f1",
    "roc_auc",
    "balanced_accuracy",
    "brier",
    "ece",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "model-out"
    argv = ["train", "--data", str(DEMO), "--out", str(out), "--epochs", "1", "--folds", "2", "--image-size", "32"]
    argv += ["--name", "tiny", "--version", "3", "--batch-size", "8"]
    assert main(argv) == 0
    return out


def test_writes_every_file(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"model.keras", "model.json", "cv_report.json", "oof_predictions.csv", "MODEL_CARD.md"} <= names


def test_model_json_contract(run_dir):
    from training.preprocessing import PREPROCESSING_ID

    meta = json.loads((run_dir / "model.json").read_text())
    assert CONTRACT_KEYS <= meta.keys()
    assert TRAINING_KEYS <= meta["training"].keys()
    assert meta["format_version"] == 1
    assert (meta["name"], meta["version"], meta["framework"], meta["file"]) == ("tiny", 3, "keras", "model.keras")
    assert meta["input_size"] == 32
    assert meta["preprocessing"] == PREPROCESSING_ID
    assert meta["class_names"] == ["benign", "malignant"]
    assert 0.0 <= meta["threshold"] <= 1.0
    t = meta["training"]
    assert (t["epochs"], t["folds"], t["seed"]) == (1, 2, 0)
    assert (t["n_images"], t["n_benign"], t["n_malignant"]) == (16, 8, 8)
    assert t["command"].startswith("python -m training train --data ")
    assert set(meta["metrics"]["summary"]) == REPORT_METRICS
    assert {"mean", "sd"} == set(meta["metrics"]["summary"]["roc_auc"])
    assert len(meta["metrics"]["per_fold"]) == 2


def test_model_loads_without_custom_objects(run_dir):
    import keras

    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    assert tuple(model.input_shape) == (None, 32, 32, 3)
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype("float32")
    prob = np.asarray(model.predict(x, verbose=0))
    assert prob.shape == (3, 1)
    assert ((prob >= 0) & (prob <= 1)).all()


def test_cv_report_and_oof_predictions(run_dir):
    report = json.loads((run_dir / "cv_report.json").read_text())
    assert len(report["folds"]) == 2
    for fold in report["folds"]:
        assert REPORT_METRICS <= fold["metrics"].keys()
    assert REPORT_METRICS <= report["summary"].keys()
    with open(run_dir / "oof_predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16
    assert set(rows[0]) == {"file", "label", "fold", "probability"}
    assert {r["fold"] for r in rows} == {"1", "2"}
    assert all(0.0 <= float(r["probability"]) <= 1.0 for r in rows)


def test_model_card(run_dir):
    card = (run_dir / "MODEL_CARD.md").read_text()
    for phrase in (
        "Decision support only",
        "HAM10000",
        "ISIC",
        "Dermoscopy only",
        "python -m training train",
        "ROC-AUC",
    ):
        assert phrase in card
