"""Fixtures shared by the inference tests."""

import shutil

import pytest

from inference.registry.load_check import LOAD_CHECK_SETTING


@pytest.fixture
def no_load_check(settings):
    """For tests about something other than whether a model loads: registration skips the child-process
    load check, through the seam the registry offers for this (see inference/registry/load_check.py)."""
    setattr(settings, LOAD_CHECK_SETTING, "inference.registry.load_check.assume_model_loads")


# Loaded models, shared read-only by the runtime, CLI and worker tests (loading takes seconds).


@pytest.fixture(scope="session")
def predictor(model_dir):
    """The shipped model as the worker runs it (ONNX Runtime, its export being there)."""
    from inference.runtime import Predictor

    return Predictor.from_dir(model_dir)


@pytest.fixture(scope="session")
def synthetic(synthetic_model_dir):
    """The two-output (probability + OOD distance) model, on TensorFlow (it has no ONNX export)."""
    from inference.runtime import Predictor

    return Predictor.from_dir(synthetic_model_dir)


@pytest.fixture(scope="session")
def baseline():
    """The first shipped model: one output, no OOD branch, no named Grad-CAM layer."""
    from inference.runtime import MODELS_DIR, Predictor

    return Predictor.from_dir(MODELS_DIR / "baseline-cnn-v1")


@pytest.fixture(scope="session")
def synthetic_onnx_dir(synthetic_model_dir, tmp_path_factory):
    """The synthetic two-output model with its ONNX export (read-only; copy it to change it)."""
    from training.onnx_export import export_model_dir

    target = tmp_path_factory.mktemp("synthetic-onnx") / "model"
    shutil.copytree(synthetic_model_dir, target)
    export_model_dir(target)
    return target
