"""The shipped model on both runtimes, and an exported baseline, for the runtime tests."""

import shutil

import pytest

from inference.runtime import Predictor
from tests.conftest import BASELINE_DIR, DEMO_IMAGES
from training.onnx_export import export_model_dir


@pytest.fixture(scope="session")
def on_onnx(model_dir):
    return Predictor.from_dir(model_dir, backend="onnx")


@pytest.fixture(scope="session")
def on_tensorflow(model_dir):
    return Predictor.from_dir(model_dir, backend="tensorflow")


@pytest.fixture(scope="session")
def demo_arrays(on_onnx):
    """The demo images, preprocessed for the shipped model."""
    return [on_onnx.preprocess(path) for path in sorted(DEMO_IMAGES.glob("*/*.jpg"))]


@pytest.fixture(scope="session")
def baseline_onnx_dir(tmp_path_factory):
    """The baseline CNN (sigmoid output, max-pool between its Grad-CAM layer and the average pool), exported."""
    target = tmp_path_factory.mktemp("baseline-onnx") / "model"
    shutil.copytree(BASELINE_DIR, target)
    export_model_dir(target)
    return target
