"""The fine-tune run end to end on the demo images (2 folds, 2 epochs, 32 px):
the model folder it writes loads in the CLI and the worker's predictor, and a
run stopped mid-fold and resumed gives the uninterrupted run's results."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training import finetune_loop
from training.finetune import main

DEMO = Path(__file__).resolve().parents[2] / "demo" / "images"
ROOT = Path(__file__).resolve().parents[2]


def argv(run_dir, out, *extra):
    return [
        "--data", str(DEMO), "--out", str(out), "--run-dir", str(run_dir), "--folds", "2", "--epochs", "2",
        "--image-size", "32", "--batch-size", "4", "--unfreeze-blocks", "2", "--robustness-subset", "8",
        "--bootstrap", "20", "--ood-components", "4", "--baseline-report", str(out / "missing.json"), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    base = tmp_path_factory.mktemp("finetune")
    assert main(argv(base / "run", base / "model")) == 0
    return base


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    base = tmp_path_factory.mktemp("finetune-resumed")
    assert main(argv(base / "run", base / "model", "--stop-after", "0:1")) == 3  # stopped in fold 1, epoch 1
    ck = json.loads((base / "run" / "fold-0" / finetune_loop.CHECKPOINT).read_text())
    assert ck["epoch"] == 1 and not (base / "run" / "fold-1").exists() and not (base / "model").exists()
    with pytest.raises(SystemExit):  # a second start without --resume is refused
        main(argv(base / "run", base / "model"))
    with pytest.raises(SystemExit):  # and so is a resume with other settings
        main(argv(base / "run", base / "model", "--resume", "--learning-rate", "0.1"))
    # resumed, it trains fold 2 and stops in the final fit (the export is tested on the full run)
    assert main(argv(base / "run", base / "model", "--resume", "--stop-after", "2:1")) == 3
    return base


def test_writes_a_complete_model_folder(full):
    out = full / "model"
    for name in ("model.keras", "model.onnx", "model.json", "cv_report.json", "oof_predictions.csv",
                 "evaluation.md", "robustness.md", "MODEL_CARD.md"):  # fmt: skip
        assert (out / name).is_file(), name
    meta = json.loads((out / "model.json").read_text())
    assert meta["input_size"] == 32 and meta["preprocessing"] == "square-sog-v2"
    assert meta["training"]["finetune"]["trainable_blocks"] == ["block_16_", "head"]
    assert meta["training"]["command"].startswith("python -m training finetune --data")
    lo, hi = meta["uncertain_band"]
    assert lo <= meta["threshold"] < hi
    progress = json.loads((full / "run" / "progress.json").read_text())
    assert progress["epochs_done"] == {"fold-0": 2, "fold-1": 2, "final": 2}
    assert "fine-tuned" in (out / "MODEL_CARD.md").read_text()


def test_exported_model_has_features_output_and_frozen_batchnorm(full):
    import keras

    model = keras.models.load_model(full / "model" / "model.keras", compile=False)
    assert set(model.output) == {"probability", "ood_distance", "features"}
    assert model.output["features"].shape[-1] == 1280
    import onnxruntime as ort

    session = ort.InferenceSession(str(full / "model" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert {o.name for o in session.get_outputs()} == {"probability", "ood_distance", "features", "gradcam"}


def test_the_ood_distance_measures_the_frozen_trunk_not_the_fine_tuned_features(full):
    """Fine-tuned features pull non-dermoscopy images to the middle; the
    detector measures the trunk below the first trainable block instead."""
    import keras

    from training.finetune_model import OOD_FEATURES_LAYER

    model = keras.models.load_model(full / "model" / "model.keras", compile=False)
    trunk_out = model.get_layer("block_16_expand").input  # the first fine-tuned block's input (--unfreeze-blocks 2)
    assert model.get_layer(OOD_FEATURES_LAYER).input.shape == trunk_out.shape
    assert model.get_layer("ood_projection").input.shape[-1] == 160  # the trunk's channels, not the 1280 features
    meta = json.loads((full / "model" / "model.json").read_text())
    assert "frozen trunk" in meta["ood"]["features"]
    report = json.loads((full / "model" / "cv_report.json").read_text())
    assert report["export_check"]["max_rel_distance_diff"] < 1e-3  # the file computes what training.ood fitted


def test_refit_redoes_the_ood_and_band_stages_and_leaves_the_predictions(full, tmp_path):
    import shutil

    from training import refit

    out = tmp_path / "model"
    shutil.copytree(full / "model", out)
    before = json.loads((out / "model.json").read_text())
    image = sorted((DEMO / "malignant").glob("*.jpg"))[0].read_bytes()
    from inference.runtime.predictor import Predictor

    p_before = Predictor.from_dir(out).predict_source(image)
    meta = refit.refit(out, DEMO, progress=lambda m: None, baseline_report=None)
    p_after = Predictor.from_dir(out).predict_source(image)
    assert p_after.probability_malignant == pytest.approx(p_before.probability_malignant, abs=1e-5)
    assert meta["threshold"] == before["threshold"] and meta["temperature"] == before["temperature"]
    assert "frozen trunk" in meta["ood"]["features"]
    report = json.loads((out / "cv_report.json").read_text())
    assert report["uncertain_band"]["min_referral_specificity"] == 0.85
    band = report["uncertain_band"]
    assert list(meta["uncertain_band"]) == pytest.approx([band["lo"], band["hi"]])
    assert report["ood"]["refit"].startswith("python -m training refit")
    assert "refit" in (out / "robustness.md").read_text()


def test_refit_refuses_a_frozen_model_folder(tmp_path):
    from training import refit

    with pytest.raises(SystemExit, match="not a fine-tuned model"):
        refit.refit(ROOT / "models" / "mobilenet-v2-melanoma-v2", DEMO, progress=lambda m: None)


def test_cli_and_worker_load_the_model(full):
    from inference.runtime.predictor import Predictor

    out = full / "model"
    image = sorted((DEMO / "malignant").glob("*.jpg"))[0]
    proc = subprocess.run(
        [sys.executable, "-m", "inference", "predict", "--model", str(out), str(image)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 0 <= row["probability_malignant"] <= 1 and row["backend"] == "onnx"
    predictor = Predictor.from_dir(out)
    result = predictor.predict_source(image.read_bytes())
    assert abs(result.probability_malignant - row["probability_malignant"]) < 1e-5
    assert predictor.heatmap(np.zeros((32, 32, 3), dtype=np.uint8)).ndim == 2


def test_resumed_run_gives_the_uninterrupted_results(full, resumed):
    for fold in ("fold-0", "fold-1"):
        with (
            np.load(full / "run" / fold / "predictions.npz") as a,
            np.load(resumed / "run" / fold / "predictions.npz") as b,
        ):
            np.testing.assert_allclose(a["logit"], b["logit"], atol=1e-4)
    for fold in ("fold-0", "fold-1"):
        a = json.loads((full / "run" / fold / finetune_loop.DONE).read_text())["history"]
        b = json.loads((resumed / "run" / fold / finetune_loop.DONE).read_text())["history"]
        np.testing.assert_allclose([h["loss"] for h in a], [h["loss"] for h in b], rtol=1e-4)
    a = json.loads((full / "run" / "final" / finetune_loop.DONE).read_text())["history"][0]["loss"]
    b = json.loads((resumed / "run" / "final" / finetune_loop.CHECKPOINT).read_text())["history"][0]["loss"]
    assert abs(a - b) < 1e-4 * abs(a)


def test_recorded_command_leaves_out_resume_and_stop():
    from training.finetune import recorded_argv

    argv = ["--data", "d", "--resume", "--stop-after", "0:1", "--epochs", "2", "--stop-after=1:1"]
    assert recorded_argv(argv) == ["--data", "d", "--epochs", "2"]
