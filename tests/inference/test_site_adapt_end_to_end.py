"""``python -m training adapt`` end to end on the 16 demo images (the test-only --test-min-cases
flag lowers the 20 + 40 case minimum): the folder it writes is a complete model that the predict
CLI runs on ONNX Runtime (probability, OOD, heat map) and ``register_model --clinic`` registers
as that clinic's site model, after the registry's real load check."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from django.conf import settings
from django.core.management import call_command

from inference.models import ModelVersion
from training import adapt
from training.preprocessing import load_for_model

REPO = Path(settings.BASE_DIR)
DEMO_IMAGES = REPO / "demo" / "images"
# Site adaptation builds on the fine-tuned v3 model (160 px, with a ``features`` output).
SHIPPED_MODEL = REPO / "models" / "mobilenet-v2-melanoma-v3"


# Session, not module: pytest-django runs this module's database test apart from the others,
# and a module fixture would be built twice (~25 s each time).
@pytest.fixture(scope="session")
def adapted(tmp_path_factory):
    out = tmp_path_factory.mktemp("adapted") / "demo-site"
    argv = ["--base", str(SHIPPED_MODEL), "--data", str(DEMO_IMAGES), "--out", str(out)]
    code = adapt.main([*argv, "--test-min-cases", "8", "--name", "demo-site", "--version", "1", "--site", "demo"])
    assert code == 0
    return out


def test_the_folder_is_complete(adapted):
    names = {p.name for p in adapted.iterdir()}
    assert {"model.json", "model.keras", "model.onnx", "MODEL_CARD.md", "evaluation.json", "evaluation.md"} <= names
    assert {"site_cases.csv", "training_features.npz"} <= names
    meta = json.loads((adapted / "model.json").read_text())
    base = json.loads((SHIPPED_MODEL / "model.json").read_text())
    assert (meta["name"], meta["version"], meta["input_size"], meta["preprocessing"]) == (
        "demo-site",
        "1",
        base["input_size"],
        base["preprocessing"],
    )
    assert "features" in meta["output"]
    site = meta["site_adaptation"]
    assert site["way"] in ("site", "site+training", "global+site", "global")
    assert site["alignment"] == "none"  # the command's default (docs/site-adaptation.md)
    assert site["n_cases"] == 16 and site["n_malignant"] == 8
    assert 0.0 <= site["cv"]["sensitivity"] <= 1.0
    assert set(site["comparison"]) == {"site", "site+training", "global+site", "global"}
    lo, hi = meta["uncertain_band"]
    assert 0.0 <= lo <= meta["threshold"] < hi <= 1.0
    assert meta["ood"]["threshold"] > 0 and meta["gradcam_layer"] == "head_relu"
    evaluation = json.loads((adapted / "evaluation.json").read_text())
    listed = sorted(case["file"] for case in evaluation["cases"])
    assert listed == sorted(p.relative_to(DEMO_IMAGES).as_posix() for p in DEMO_IMAGES.glob("*/*.jpg"))
    assert "demo" in (adapted / "MODEL_CARD.md").read_text()


def run_onnx(session, x):
    outputs = session.run(None, {session.get_inputs()[0].name: x})
    return dict(zip([o.name for o in session.get_outputs()], outputs, strict=True))


def test_the_onnx_export_keeps_the_base_outputs(adapted):
    session = onnxruntime.InferenceSession(str(adapted / "model.onnx"), providers=["CPUExecutionProvider"])
    names = {o.name for o in session.get_outputs()}
    assert {"probability", "ood_distance", "features"} <= names
    base = onnxruntime.InferenceSession(str(SHIPPED_MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
    # Same backbone, unchanged: the pooled features of an image are the base model's.
    meta = json.loads((SHIPPED_MODEL / "model.json").read_text())
    image = next(DEMO_IMAGES.glob("malignant/*.jpg"))
    x = load_for_model(image, meta["input_size"], meta["preprocessing"]).astype(np.float32)[None]
    ours, theirs = (run_onnx(s, x) for s in (session, base))
    np.testing.assert_allclose(ours["features"], theirs["features"], rtol=1e-4, atol=1e-4)


def test_its_ood_detector_measures_the_base_detectors_space(adapted):
    """v3's detector measures the frozen trunk (160 channels), not the fine-tuned
    1280 features, in which a flower sits at the training mean; so does the site's."""
    import keras

    site = keras.models.load_model(adapted / "model.keras", compile=False)
    base = keras.models.load_model(SHIPPED_MODEL / "model.keras", compile=False)
    for model in (site, base):
        assert model.get_layer("ood_projection").input.shape[-1] == 160


def test_the_predict_cli_runs_it_with_ood_and_heat_maps(adapted, tmp_path):
    images = sorted(str(p) for p in DEMO_IMAGES.glob("*/*.jpg"))[:2]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "inference",
            "predict",
            "--model",
            str(adapted),
            "--heatmap-dir",
            str(tmp_path),
            *images,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [row["model_version"] for row in rows] == ["demo-site-1", "demo-site-1"]
    assert {row["backend"] for row in rows} == {"onnx"}
    for row in rows:
        assert 0.0 <= row["probability_malignant"] <= 1.0
        assert row["out_of_distribution"] is not None
        assert Path(row["heatmap"]).is_file()


@pytest.mark.django_db
def test_register_model_registers_it_for_a_clinic(adapted, clinic, capsys):
    call_command("register_model", str(adapted), "--clinic", clinic.name)
    version = ModelVersion.objects.get(name="demo-site", version="1")
    assert version.clinic == clinic and version.device_model == ""
    assert version.onnx_sha256 and not version.is_active
    out = capsys.readouterr().out
    assert "demo-site-1 registered [site model of Northside Dermatology]" in out  # registered, not active
