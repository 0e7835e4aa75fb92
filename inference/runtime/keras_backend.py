"""A model's .keras file on TensorFlow: forward pass and autodiff Grad-CAM.

Keras and TensorFlow are imported only when a KerasModel is built (or its
Grad-CAM first traced), never at import time: the worker on the ONNX path
must not import them at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .model_format import ModelFileError


class KerasModel:
    """The Keras model on TensorFlow: forward pass and autodiff Grad-CAM."""

    def __init__(self, model_path: Path, metadata: dict):
        import keras
        import tensorflow as tf

        self.input_size = int(metadata["input_size"])
        try:
            self.model = keras.models.load_model(model_path, compile=False)
        except Exception as exc:  # Keras raises many types for a bad file
            raise ModelFileError(f"cannot load {model_path}: {exc}") from exc
        expected = (None, self.input_size, self.input_size, 3)
        actual = tuple(self.model.input_shape)
        if actual != expected:
            raise ModelFileError(f"model input shape is {actual}, metadata says {expected}")
        outputs = self.model.output
        if isinstance(outputs, dict):
            if "probability" not in outputs:
                raise ModelFileError(f"model outputs are {sorted(outputs)}; a 'probability' output is required")
            self.has_ood = "ood_distance" in outputs
        elif len(self.model.outputs) != 1:
            raise ModelFileError("model has several unnamed outputs; expected one probability or a dict of outputs")
        else:
            self.has_ood = False
        self.gradcam_layer = self._find_gradcam_layer(metadata.get("gradcam_layer"))
        self._gradcam = None  # built on the first heatmap() call

        model = self.model

        def forward(x):
            out = model(x, training=False)
            if not isinstance(out, dict):
                out = {"probability": out}
            return {key: out[key] for key in ("probability", "ood_distance") if key in out}

        # One traced graph for any batch size: no per-call retracing and none
        # of model.predict()'s per-call set-up cost.
        self._forward = tf.function(
            forward, input_signature=[tf.TensorSpec(expected, tf.float32)], reduce_retracing=True
        )

    def _find_gradcam_layer(self, name: str | None) -> str | None:
        """The conv activation Grad-CAM explains: named in metadata, else the last 4-D layer."""
        if name:
            try:
                layer = self.model.get_layer(name)
            except ValueError:
                raise ModelFileError(f"gradcam_layer {name!r} is not a layer of the model") from None
            if len(layer.output.shape) != 4:
                raise ModelFileError(f"gradcam_layer {name!r} has output shape {layer.output.shape}, not (N, H, W, C)")
            return name
        from training.onnx_export import default_gradcam_layer

        return default_gradcam_layer(self.model)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self._forward(batch.astype(np.float32))
        probabilities = out["probability"].numpy().reshape(len(batch)).astype(np.float64)
        distances = out["ood_distance"].numpy().reshape(len(batch)).astype(np.float64) if self.has_ood else None
        return probabilities, distances

    def heatmap(self, array: np.ndarray) -> np.ndarray:
        if self._gradcam is None:
            self._gradcam = self._build_gradcam()
        heat = self._gradcam(np.asarray(array, dtype=np.float32)[None])
        return heat.numpy()[0]

    def _build_gradcam(self):
        import keras
        import tensorflow as tf

        if self.gradcam_layer is None:
            raise ModelFileError("the model has no spatial layer to explain")
        model = self.model
        try:
            target = model.get_layer("logit").output
        except ValueError:
            target = model.output["probability"] if isinstance(model.output, dict) else model.output
        grad_model = keras.Model(model.inputs, [model.get_layer(self.gradcam_layer).output, target])
        size = self.input_size

        def gradcam(x):
            with tf.GradientTape() as tape:
                features, score = grad_model(x, training=False)
                # Images in a batch are independent, so the gradient of the
                # sum is each image's own gradient.
                total = tf.reduce_sum(tf.cast(score, tf.float32))
            grads = tf.cast(tape.gradient(total, features), tf.float32)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one weight per channel
            cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(features, tf.float32), axis=-1, keepdims=True))
            cam = tf.image.resize(cam, (size, size), method="bilinear")[..., 0]
            peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
            return tf.math.divide_no_nan(cam, peak)  # an all-zero map stays zero

        # Built and traced once per model, like the forward pass.
        return tf.function(
            gradcam, input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)], reduce_retracing=True
        )
