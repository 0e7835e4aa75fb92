"""Export a trained Keras model to ONNX, so the worker can run it without TensorFlow.

``export_onnx(keras_path, onnx_path)`` writes a file with one input, ``image``
(float32 (N, S, S, 3), RGB 0..255, exactly what the Keras model takes), and
named outputs:

- ``probability`` (N, 1): the Keras model's only output, or its ``probability`` output;
- ``ood_distance`` (N, 1): when the Keras model has that output;
- ``features`` (N, C): the pooled backbone features, when the Keras model has
  that output (fine-tuned models: site adaptation fits heads on them);
- ``gradcam`` (N, h, w): Grad-CAM before its ReLU and resize, when the score
  it explains is linear in the spatial average of the Grad-CAM layer (see
  :func:`linear_gradcam_head`); absent otherwise, and the worker then falls
  back to TensorFlow for heat maps of that model.

The file records (ONNX ``metadata_props``) the sha256 of the ``.keras`` file it
was exported from and the layer its ``gradcam`` output explains, so a worker
can refuse a stale or mismatched pair. Conversion goes through tf2onnx on a
traced ``tf.function`` (Keras' own ``export(format="onnx")`` turns the
MobileNetV2's normalisation constants into extra graph inputs with Keras 3.15
and tf2onnx 1.17). Every export is checked against TensorFlow before it is
written under its final name.

No Django here; TensorFlow, tf2onnx and onnx are imported only when exporting.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .files import sha256_of

ONNX_FILE = "model.onnx"
OPSET = 17
INPUT_NAME = "image"
GRADCAM_OUTPUT = "gradcam"
# metadata_props keys
SOURCE_SHA256 = "source_sha256"
GRADCAM_LAYER = "gradcam_layer"
# How closely ONNX Runtime must reproduce TensorFlow on the export check.
PROBABILITY_TOLERANCE = 1e-4
RELATIVE_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The model cannot be exported faithfully; the message says why."""


def default_gradcam_layer(model) -> str | None:
    """The layer Grad-CAM explains when model.json names none: the last 4-D layer.

    The last spatial feature map is the standard choice (finest semantics
    that still has a location); a pooling layer after it would only halve the
    map's resolution. Shared with ``inference.runtime`` so that the ONNX
    export and the TensorFlow fallback explain the same layer.
    """
    import keras

    skip = (keras.layers.InputLayer, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    for layer in reversed(model.layers):
        if isinstance(layer, skip):
            continue
        try:
            if len(layer.output.shape) == 4:
                return layer.name
        except (AttributeError, ValueError):  # a layer used at several places has no single output
            continue
    return None


def _parent(layer):
    """The layer feeding ``layer``, or None if it has several inputs or call sites."""
    if len(layer._inbound_nodes) != 1:
        return None
    tensor = layer.input
    if isinstance(tensor, list | tuple | dict):
        return None
    return tensor._keras_history.operation


def _is_sigmoid(activation) -> bool:
    return getattr(activation, "__name__", "") == "sigmoid"


def _is_linear(activation) -> bool:
    return activation is None or getattr(activation, "__name__", "") == "linear"


def linear_gradcam_head(model, layer_name: str):
    """``(dense_layer, score)`` when Grad-CAM of ``layer_name`` needs no autodiff, else None.

    ``score`` is "logit" or "sigmoid": what the runtime's TensorFlow Grad-CAM
    differentiates (the ``logit`` layer when there is one, else the
    probability). It qualifies when the chain from the feature map A to the
    score is: [one MaxPooling2D whose windows do not overlap] ->
    GlobalAveragePooling2D -> [Dropout] -> Dense(1) [-> sigmoid]. Then
    d score / d A_ijc summed over positions is s * w_c (a max-pool window
    passes its gradient to exactly one position), so Grad-CAM's channel
    weights are s * w_c / (h * w), with s = 1 for a logit and p (1 - p) for a
    sigmoid output. MobileNetV2 here: head_relu -> average pool -> logit.
    """
    import keras

    layers = keras.layers
    try:
        feature_layer = model.get_layer(layer_name)
    except ValueError:
        return None
    try:
        target = model.get_layer("logit")
        if not (isinstance(target, layers.Dense) and _is_linear(target.activation)):
            return None
        score = "logit"
    except ValueError:
        outputs = model.output
        tensor = outputs.get("probability") if isinstance(outputs, dict) else outputs
        if tensor is None or isinstance(tensor, list | tuple):
            return None
        target = tensor._keras_history.operation
        if isinstance(target, layers.Activation) and _is_sigmoid(target.activation):
            target = _parent(target)
            if not (isinstance(target, layers.Dense) and _is_linear(target.activation)):
                return None
        elif not (isinstance(target, layers.Dense) and _is_sigmoid(target.activation)):
            return None
        score = "sigmoid"
    if target.units != 1:
        return None
    layer = _parent(target)
    while isinstance(layer, layers.Dropout):
        layer = _parent(layer)
    if not (isinstance(layer, layers.GlobalAveragePooling2D) and not layer.keepdims):
        return None
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return None
    layer = _parent(layer)
    if isinstance(layer, layers.MaxPooling2D):
        if tuple(layer.pool_size) != tuple(layer.strides) or layer.padding != "valid":
            return None
        layer = _parent(layer)
    if layer is not feature_layer:
        return None
    return target, score


def _serving_function(model, gradcam_layer: str | None):
    """The traced forward pass that becomes the ONNX graph; returns (function, output names)."""
    import keras
    import tensorflow as tf

    outputs = model.output
    if isinstance(outputs, dict):
        if "probability" not in outputs:
            raise ExportError(f"model outputs are {sorted(outputs)}; a 'probability' output is required")
        named = {key: outputs[key] for key in ("probability", "ood_distance", "features") if key in outputs}
    elif len(model.outputs) == 1:
        named = {"probability": model.outputs[0]}
    else:
        raise ExportError("model has several unnamed outputs; expected one probability or a dict of outputs")
    head = linear_gradcam_head(model, gradcam_layer) if gradcam_layer else None
    if head is not None:
        named["gradcam_features"] = model.get_layer(gradcam_layer).output
    graph = keras.Model(model.inputs, named)
    size = tuple(model.input_shape[1:])

    def serve(image):
        out = graph(image, training=False)
        result = {"probability": out["probability"]}
        for key in ("ood_distance", "features"):
            if key in out:
                result[key] = out[key]
        if head is not None:
            dense, score = head
            features = tf.cast(out["gradcam_features"], tf.float32)
            h, w = features.shape[1], features.shape[2]
            scale = 1.0 / (h * w)
            if score == "sigmoid":
                p = tf.cast(out["probability"], tf.float32)  # (N, 1): s = p (1 - p), as TF's sigmoid gradient
                scale = (p * (1.0 - p) / (h * w))[:, :, None]
            kernel = tf.cast(dense.kernel[:, 0], tf.float32)
            result[GRADCAM_OUTPUT] = tf.tensordot(features, kernel, axes=[[3], [0]]) * scale
        return result

    spec = tf.TensorSpec((None, *size), tf.float32, name=INPUT_NAME)
    return tf.function(serve, input_signature=[spec]), head is not None


def _convert(function):
    """tf.function -> ONNX ModelProto with inputs and outputs named as above.

    Frozen first: the Normalization layer's mean and variance are captured
    constants, which tf2onnx's ``from_function`` would turn into graph inputs.
    """
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = function.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    outputs = tf.nest.pack_sequence_as(concrete.structured_outputs, frozen.outputs)  # {name: tensor}
    renames = {f"{INPUT_NAME}:0": INPUT_NAME, **{tensor.name: key for key, tensor in outputs.items()}}
    proto, _ = tf2onnx.convert.from_graph_def(
        frozen.graph.as_graph_def(),
        name="skincare",
        input_names=[f"{INPUT_NAME}:0"],
        output_names=[tensor.name for tensor in outputs.values()],
        opset=OPSET,
        tensors_to_rename=renames,
    )
    return proto


def export_onnx(
    keras_path: str | os.PathLike,
    onnx_path: str | os.PathLike,
    *,
    gradcam_layer: str | None = None,
    check_images: np.ndarray | None = None,
) -> dict:
    """Write ``onnx_path`` from the Keras model file ``keras_path``.

    Returns ``{"onnx_file", "onnx_sha256"}`` (the keys model.json records)
    plus ``"check"``: how closely ONNX Runtime matched TensorFlow, and whether
    the file has a ``gradcam`` output.

    ``gradcam_layer`` is the layer the runtime explains (model.json's
    ``gradcam_layer``; default: :func:`default_gradcam_layer`). The converted
    graph is run by ONNX Runtime on ``check_images`` (uint8 (N, S, S, 3);
    default: random pixels) and must match TensorFlow: probability within
    1e-4, OOD distance and the Grad-CAM map within 1e-4 relative. Raises
    ExportError otherwise, leaving no file behind.
    """
    import keras
    import onnx
    import tf2onnx

    keras_path, onnx_path = Path(keras_path), Path(onnx_path)
    model = keras.models.load_model(keras_path, compile=False)
    if gradcam_layer is None:
        gradcam_layer = default_gradcam_layer(model)
    function, has_gradcam = _serving_function(model, gradcam_layer)
    proto = _convert(function)
    props = {SOURCE_SHA256: sha256_of(keras_path)}
    if has_gradcam:
        props[GRADCAM_LAYER] = gradcam_layer
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = f"Exported from {keras_path.name} by training.onnx_export (tf2onnx {tf2onnx.__version__})"

    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=onnx_path.parent, suffix=".onnx.part")
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the shipped file private to its writer
    try:
        onnx.save(proto, tmp)
        if check_images is None:
            size = model.input_shape[1]
            check_images = np.random.default_rng(0).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
        check = _check(function, tmp, np.asarray(check_images, dtype=np.float32))
        os.replace(tmp, onnx_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {
        "onnx_file": onnx_path.name,
        "onnx_sha256": sha256_of(onnx_path),
        "check": {**check, "gradcam": has_gradcam},
    }


def _check(function, onnx_path, images: np.ndarray) -> dict:
    """Run the file with ONNX Runtime beside TensorFlow; raise ExportError on any disagreement."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, {INPUT_NAME: images}), strict=True))
    want = {key: value.numpy() for key, value in function(images).items()}
    if set(got) != set(want):
        raise ExportError(f"ONNX outputs are {sorted(got)}, expected {sorted(want)}")
    report = {"images": len(images)}
    for key, expected in want.items():
        diff = np.abs(got[key].astype(np.float64) - expected)
        if key == "probability":
            worst = float(diff.max())
            ok = worst <= PROBABILITY_TOLERANCE
        else:
            worst = float(diff.max() / max(float(np.abs(expected).max()), 1e-12))
            ok = worst <= RELATIVE_TOLERANCE
        report[f"max_{'abs' if key == 'probability' else 'rel'}_diff_{key}"] = worst
        if not ok:
            raise ExportError(f"ONNX output {key!r} differs from TensorFlow by {worst:.2e}")
    return report


def with_onnx_keys(metadata: dict, exported: dict) -> dict:
    """model.json's content with ``onnx_file`` and ``onnx_sha256`` placed right after ``file``."""
    keys = {"onnx_file": exported["onnx_file"], "onnx_sha256": exported["onnx_sha256"]}
    out = {}
    for key, value in metadata.items():
        if key in keys:
            continue
        out[key] = value
        if key == "file":
            out.update(keys)
    out.update({k: v for k, v in keys.items() if k not in out})
    return out


def export_model_dir(model_dir: str | os.PathLike, *, check_dir: str | os.PathLike | None = None) -> dict:
    """(Re-)export the model of a folder written by training; updates its model.json. Returns the export report."""
    import json

    from .preprocessing import load_for_model

    model_dir = Path(model_dir)
    meta_path = model_dir / "model.json"
    metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    check_images = None
    if check_dir is not None:
        size, pipeline = int(metadata["input_size"]), metadata["preprocessing"]
        paths = sorted(p for p in Path(check_dir).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        check_images = np.stack([load_for_model(p, size, pipeline) for p in paths])
    exported = export_onnx(
        model_dir / metadata.get("file", "model.keras"),
        model_dir / ONNX_FILE,
        gradcam_layer=metadata.get("gradcam_layer"),
        check_images=check_images,
    )
    meta_path.write_text(json.dumps(with_onnx_keys(metadata, exported), indent=2) + "\n", encoding="utf-8")
    return exported


def main(argv=None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m training.onnx_export",
        description="Export the model of a training output folder to model.onnx and record it in model.json.",
    )
    parser.add_argument("model_dir", help="folder with model.json and model.keras")
    parser.add_argument("--check-images", help="folder of images to compare ONNX Runtime with TensorFlow on")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    exported = export_model_dir(args.model_dir, check_dir=args.check_images)
    print(json.dumps(exported, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
