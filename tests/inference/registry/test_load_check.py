"""The child-process load check (``python -m inference validate``): what it refuses, how it fails,
and the one seam that replaces it."""

import shutil
import subprocess
import sys

import pytest
from django.core.exceptions import ValidationError

from inference import registry
from inference.models import ModelActivation, ModelVersion
from inference.registry import load_check
from tests.conftest import edit_metadata
from training.files import sha256_of

from .helpers import stored_model_files

pytestmark = pytest.mark.django_db


def test_a_file_that_is_not_a_keras_model_is_refused_and_the_active_one_stays(active_model, model_copy):
    files_before = stored_model_files()
    activations_before = list(ModelActivation.objects.all())
    edit_metadata(model_copy, version="broken")
    (model_copy / "model.keras").write_text("just some text\n")
    with pytest.raises(ValidationError, match="model.keras is not a Keras model"):
        registry.register_model_version(model_dir=model_copy, activate=True)
    assert ModelVersion.objects.active() == active_model
    assert ModelVersion.objects.count() == 1
    assert list(ModelActivation.objects.all()) == activations_before
    assert stored_model_files() == files_before


def test_a_model_whose_input_shape_disagrees_with_its_metadata_is_refused(active_model, baseline_copy):
    edit_metadata(baseline_copy, input_size=224)
    with pytest.raises(ValidationError) as caught:
        registry.register_model_version(model_dir=baseline_copy, activate=True)
    assert caught.value.messages == ["The model takes 64×64 images but model.json says 224."]
    assert ModelVersion.objects.active() == active_model and ModelVersion.objects.count() == 1


def test_an_onnx_file_that_does_not_load_is_refused(active_model, baseline_copy):
    (baseline_copy / "model.onnx").write_bytes(b"not a protobuf")
    digest = sha256_of(baseline_copy / "model.onnx")
    edit_metadata(baseline_copy, onnx_file="model.onnx", onnx_sha256=digest)
    with pytest.raises(ValidationError, match="The ONNX export model.onnx cannot be used"):
        registry.register_model_version(model_dir=baseline_copy, activate=True)
    assert ModelVersion.objects.active() == active_model and ModelVersion.objects.count() == 1


def test_a_check_that_takes_too_long_is_refused(baseline_copy, settings):
    settings.SKINCARE_MODEL_CHECK_SECONDS = 0.01
    with pytest.raises(ValidationError, match="took longer than 0.01 s"):
        load_check.check_model_loads(baseline_copy)


def test_a_checker_that_dies_without_an_answer_is_refused(baseline_copy, monkeypatch):
    monkeypatch.setattr(sys, "executable", shutil.which("false"))
    with pytest.raises(ValidationError, match="stopped without an answer"):
        load_check.check_model_loads(baseline_copy)


class TestTheSeam:
    def test_without_the_setting_registration_runs_the_child_process_check(self, settings, monkeypatch, tmp_path):
        settings.SKINCARE_MODEL_LOAD_CHECK = ""
        started = []
        monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: started.append(command) or _answer())
        assert load_check.run_load_check(tmp_path) == {"ok": True}
        assert started == [[sys.executable, "-m", "inference", "validate", str(tmp_path)]]

    def test_the_setting_names_the_check_by_dotted_path_or_as_a_callable(self, settings, monkeypatch, tmp_path):
        monkeypatch.setattr(subprocess, "run", _no_child_process)
        settings.SKINCARE_MODEL_LOAD_CHECK = "inference.registry.load_check.assume_model_loads"
        assert load_check.run_load_check(tmp_path) == {"ok": True, "skipped": True}
        settings.SKINCARE_MODEL_LOAD_CHECK = lambda model_dir: {"ok": True, "folder": model_dir}
        assert load_check.run_load_check(tmp_path) == {"ok": True, "folder": tmp_path}

    def test_registering_with_the_check_assumed_starts_no_child_process(
        self, baseline_copy, no_load_check, monkeypatch
    ):
        monkeypatch.setattr(subprocess, "run", _no_child_process)
        version, created = registry.register_model_version(model_dir=baseline_copy)
        assert created and version.label == "baseline-cnn-1"


def _answer():
    return subprocess.CompletedProcess(args=[], returncode=0, stdout='{"ok": true}\n', stderr="")


def _no_child_process(*args, **kwargs):
    raise AssertionError("the load check started a child process")
