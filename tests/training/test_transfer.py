"""The transfer run end to end (a tiny real run on the demo images) and its
command line. The parts are tested in test_features, test_head, test_shifts,
test_stages and test_model_card."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from training import calibration
from training.transfer import DEFAULT_CS, TransferConfig, add_arguments, config_from_args, main

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


def parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv), argv)


def test_command_line_defaults_are_the_config_defaults():
    config = parse(["--data", "d", "--out", "o"])
    default = TransferConfig(data=Path("d"), out=Path("o"))
    for name in ("image_size", "folds", "seed", "preprocessing", "compare_preprocessing", "compare_subset"):
        assert getattr(config, name) == getattr(default, name), name
    assert config.cs == DEFAULT_CS and config.ood_components == default.ood_components
    assert config.command == "python -m training train-transfer --data d --out o"


def test_command_line_options_reach_the_config():
    argv = ["--data", "d", "--out", "o w", "--no-compare", "--c-grid", "0.5,2", "--ood-components", "3,5"]
    argv += ["--feature-cache", "cache", "--max-images", "40", "--augmented-copies", "0"]
    config = parse(argv)
    assert config.compare_preprocessing is False
    assert (config.cs, config.ood_components) == ((0.5, 2.0), (3, 5))
    assert (config.feature_cache, config.max_images, config.augmented_copies) == (Path("cache"), 40, 0)
    assert "--out 'o w'" in config.command  # the recorded command can be pasted back into a shell


@pytest.mark.parametrize("bad", [["--folds", "1"], ["--image-size", "16"], ["--augmented-copies", "-1"]])
def test_command_line_rejects_impossible_settings(bad):
    with pytest.raises(SystemExit):
        parse(["--data", "d", "--out", "o", *bad])
