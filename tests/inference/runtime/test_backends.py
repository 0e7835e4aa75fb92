"""Which runtime runs a model (argument, environment, what the model folder has), and its threads."""

import pytest

from inference.runtime import ModelFileError, Predictor, inference_threads, requested_backend
from inference.runtime.backends import MAX_DEFAULT_THREADS


class TestChoosingTheBackend:
    def test_tensorflow_can_be_forced(self, model_dir):
        predictor = Predictor.from_dir(model_dir, backend="tensorflow")
        assert predictor.backend == "tensorflow"

    def test_the_environment_chooses_when_the_caller_does_not(self, synthetic_onnx_dir, monkeypatch):
        monkeypatch.setenv("SKINCARE_INFERENCE_BACKEND", "tensorflow")
        assert Predictor.from_dir(synthetic_onnx_dir).backend == "tensorflow"
        monkeypatch.setenv("SKINCARE_INFERENCE_BACKEND", "onnx")
        assert Predictor.from_dir(synthetic_onnx_dir).backend == "onnx"

    def test_an_unknown_backend_is_refused(self, synthetic_onnx_dir):
        with pytest.raises(ValueError, match="auto, onnx, tensorflow"):
            Predictor.from_dir(synthetic_onnx_dir, backend="pytorch")

    def test_a_model_without_an_onnx_file_runs_on_tensorflow(self, synthetic_model_dir):
        assert Predictor.from_dir(synthetic_model_dir, backend="auto").backend == "tensorflow"

    def test_forcing_onnx_for_a_model_without_an_onnx_file_is_a_clear_error(self, synthetic_model_dir):
        with pytest.raises(ModelFileError, match="no ONNX file"):
            Predictor.from_dir(synthetic_model_dir, backend="onnx")


class TestThreads:
    def test_the_environment_sets_the_threads(self, monkeypatch):
        monkeypatch.setenv("SKINCARE_INFERENCE_THREADS", "3")
        assert inference_threads() == 3

    @pytest.mark.parametrize("value, message", [("many", "whole number"), ("0", "at least 1")])
    def test_a_bad_thread_count_is_refused(self, monkeypatch, value, message):
        monkeypatch.setenv("SKINCARE_INFERENCE_THREADS", value)
        with pytest.raises(ValueError, match=message):
            inference_threads()

    def test_by_default_the_cpus_this_process_may_use_up_to_a_few(self, monkeypatch):
        monkeypatch.delenv("SKINCARE_INFERENCE_THREADS", raising=False)
        assert 1 <= inference_threads() <= MAX_DEFAULT_THREADS


def test_the_requested_backend_is_normalised(monkeypatch):
    monkeypatch.delenv("SKINCARE_INFERENCE_BACKEND", raising=False)
    assert requested_backend() == "auto"
    assert requested_backend(" ONNX ") == "onnx"
