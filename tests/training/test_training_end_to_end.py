"""A tiny real run of ``python -m training train`` on the demo images."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.runtime import Predictor
from training.__main__ import main
from training.files import sha256_of

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo" / "images"

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


# Session, not module: pytest-django runs this module's database test apart from the others,
# and a module fixture would be built twice (~25 s each time).
@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "model-out"
    argv = ["train", "--data", str(DEMO), "--out", str(out), "--epochs", "1", "--folds", "2", "--image-size", "32"]
    argv += ["--name", "tiny", "--version", "3", "--batch-size", "8"]
    assert main(argv) == 0
    return out


def test_writes_every_file(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {
        "model.keras",
        "model.onnx",
        "model.json",
        "cv_report.json",
        "oof_predictions.csv",
        "MODEL_CARD.md",
    } <= names


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
    assert meta["onnx_file"] == "model.onnx"
    assert meta["onnx_sha256"] == sha256_of(run_dir / "model.onnx")


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


def test_the_command_line_runs_the_exported_model_on_onnx(run_dir, tmp_path):
    images = sorted(DEMO.glob("*/*.jpg"))[:3]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("SKINCARE_INFERENCE_BACKEND", None)
    completed = subprocess.run(
        [sys.executable, "-m", "inference", "predict", "--model", str(run_dir), "--heatmap-dir", str(tmp_path)]
        + [str(path) for path in images],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    rows = [json.loads(line) for line in completed.stdout.splitlines()]
    expected = Predictor.from_dir(run_dir, backend="tensorflow").predict_sources(images)
    for row, result in zip(rows, expected, strict=True):
        assert row["backend"] == "onnx"
        assert row["model_version"] == "tiny-3"
        assert row["probability_malignant"] == pytest.approx(result.probability_malignant, abs=1e-4)
        assert Path(row["heatmap"]).is_file()


@pytest.mark.django_db
def test_the_worker_runs_the_exported_model_on_onnx(run_dir, owner, lesion, settings, tmp_path, monkeypatch):
    from cases import services as case_services
    from inference import services, worker_cache
    from inference.models import Prediction
    from tests.conftest import register_model

    settings.SKINCARE_MODEL_CACHE_DIR = tmp_path / "model-cache"
    settings.SKINCARE_INFERENCE_BACKEND = "auto"
    monkeypatch.setattr(worker_cache, "_predictors", {})
    version = register_model(run_dir)
    data = sorted(DEMO.glob("*/*.jpg"))[0].read_bytes()
    image = case_services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(data), modality="dermoscopic")

    prediction = services.run_prediction(Prediction.objects.get(image=image).pk)

    assert worker_cache.get_predictor(version).backend == "onnx"
    expected = Predictor.from_dir(run_dir, backend="tensorflow").predict_source(data)
    assert prediction.status == Prediction.Status.SUCCEEDED
    assert prediction.model_version == version
    assert prediction.probability_malignant == pytest.approx(expected.probability_malignant, abs=1e-4)
    assert prediction.heatmap.name.startswith(f"heatmaps/{prediction.pk}-")
