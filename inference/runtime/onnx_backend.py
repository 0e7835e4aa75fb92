"""A model's ONNX export (training/onnx_export.py) on ONNX Runtime's CPU provider.

onnxruntime is imported only when an OnnxModel is built, never at import
time (its thread pool does not survive the worker's fork()), and nothing
here imports TensorFlow.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from training.files import sha256_of

from .backends import inference_threads
from .model_format import ModelFileError


class OnnxModel:
    """An ONNX export on ONNX Runtime: forward pass, and the export's ``gradcam`` output when it has one."""

    def __init__(self, path: Path, model_path: Path, input_size: int):
        import onnxruntime as ort

        from training.onnx_export import GRADCAM_LAYER, GRADCAM_OUTPUT, SOURCE_SHA256

        options = ort.SessionOptions()
        options.intra_op_num_threads = inference_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle threads sleep instead of busy-waiting after each run: between
        # images the process decodes JPEGs and encodes PNGs, and other workers
        # share the cores (spinning doubled single-image latency under load).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime raises its own types for a bad file
            raise ModelFileError(f"cannot load {path}: {exc}") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelFileError(f"{path.name} has {len(inputs)} inputs; expected one image")
        self.input_name = inputs[0].name
        shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape)
        if shape != (None, input_size, input_size, 3):
            raise ModelFileError(f"ONNX input shape is {shape}, metadata says {(None, input_size, input_size, 3)}")
        names = [o.name for o in self.session.get_outputs()]
        if "probability" not in names:
            raise ModelFileError(f"ONNX outputs are {names}; a 'probability' output is required")
        props = self.session.get_modelmeta().custom_metadata_map
        source = props.get(SOURCE_SHA256)
        if source:
            if not model_path.is_file():
                raise ModelFileError(f"{model_path} is missing")
            if sha256_of(model_path) != source:
                # A stale export would give another model's answers under this one's name.
                raise ModelFileError(f"{path.name} was not exported from {model_path.name}; export it again")
        self.has_ood = "ood_distance" in names
        self.gradcam_layer = props.get(GRADCAM_LAYER) if GRADCAM_OUTPUT in names else None
        self.outputs = ["probability"] + ["ood_distance"] * self.has_ood + [GRADCAM_OUTPUT] * bool(self.gradcam_layer)
        # The worker asks for an image's heat map right after its prediction:
        # keep the last batch's maps so that this costs no second forward pass.
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def _forward(self, batch: np.ndarray) -> dict:
        values = self.session.run(self.outputs, {self.input_name: batch.astype(np.float32)})
        return dict(zip(self.outputs, values, strict=True))

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self._forward(batch)
        probabilities = out["probability"].reshape(len(batch)).astype(np.float64)
        distances = out["ood_distance"].reshape(len(batch)).astype(np.float64) if self.has_ood else None
        if self.gradcam_layer is not None:
            self._last = (batch.copy(), out["gradcam"])
        return probabilities, distances

    def gradcam_map(self, array: np.ndarray) -> np.ndarray:
        """The export's ``gradcam`` output (h, w) for one image."""
        last = self._last
        if last is not None:
            for image, weighted in zip(*last, strict=True):
                if np.array_equal(image, array):
                    return weighted
        return self._forward(np.asarray(array)[None])["gradcam"][0]
