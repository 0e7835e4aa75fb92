"""``python -m inference validate --onnx-only``: the load check of the runtime image, which has no TensorFlow.

Where TensorFlow is not installed the check runs this way by itself; here
(TensorFlow installed) the flag forces it. The runtime image's own run of it
is `make stack-check` (migrate registers the shipped model there).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inference.registry.load_check import _check_failure_message
from tests.conftest import edit_metadata

REPO = Path(__file__).resolve().parents[2]


def validate(model_dir, *flags):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    completed = subprocess.run(
        [sys.executable, "-m", "inference", "validate", *flags, str(model_dir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (completed.returncode == 0) is report["ok"], completed.stderr
    return report


def test_the_shipped_model_passes_on_onnx_runtime_alone_with_the_full_checks_answer(model_copy):
    onnx_only = validate(model_copy, "--onnx-only")
    assert onnx_only["ok"] and onnx_only["runtime"] == "onnx"
    size = json.loads((model_copy / "model.json").read_text())["input_size"]  # v3: 160
    assert onnx_only["input_shape"] == [None, size, size, 3]
    full = validate(model_copy)
    assert full["runtime"] == "tensorflow"
    assert onnx_only["probability_malignant"] == pytest.approx(full["onnx_probability_malignant"], abs=1e-9)
    assert onnx_only["ood_distance"] == pytest.approx(full["ood_distance"], rel=1e-3)


def test_a_keras_only_model_is_refused_with_where_to_register_it(baseline_copy):
    report = validate(baseline_copy, "--onnx-only")
    assert report["reason"] == "needs_tensorflow"
    message = _check_failure_message(report, str(baseline_copy))
    assert message.startswith("This model needs TensorFlow: it has no ONNX export")
    assert "ml image" in message


def test_an_onnx_file_exported_from_another_keras_file_is_refused(model_copy, baseline_copy):
    shutil.copy(baseline_copy / "model.keras", model_copy / "model.keras")
    report = validate(model_copy, "--onnx-only")
    assert report["reason"] == "onnx"
    assert "was not exported from model.keras" in report["error"]


def test_an_export_without_its_grad_cam_output_is_refused_because_heat_maps_would_need_tensorflow(model_copy):
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(model_copy / "model.onnx")
    kept = [output for output in graph.graph.output if output.name != "gradcam"]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    onnx.save(graph, model_copy / "model.onnx")
    report = validate(model_copy, "--onnx-only")
    assert report["reason"] == "needs_tensorflow"
    assert "no Grad-CAM output" in report["error"]


def test_a_folder_whose_model_file_is_not_a_keras_archive_is_refused_before_any_runtime(model_copy):
    edit_metadata(model_copy, version="broken")
    (model_copy / "model.keras").write_text("just some text\n")
    report = validate(model_copy, "--onnx-only")
    assert report["reason"] == "not_keras"
