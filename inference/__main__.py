"""``python -m inference predict [--model PATH] [--backend auto|onnx|tensorflow] IMAGE...``
``python -m inference validate [--onnx-only] MODEL_DIR``

Classifies images with no database, server or Django settings, through the
same preprocessing and Predictor as the worker. Prints one JSON object per
image per line; an image that cannot be used gets an ``error`` field and the
exit status is 1.
"""

import argparse
import json
import os
import sys
from pathlib import Path

BATCH_SIZE = 32


def _configure_runtime():
    repo = Path(__file__).resolve().parent.parent
    os.environ.setdefault("KERAS_HOME", str(repo / "var" / "keras"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def predict(args) -> int:
    _configure_runtime()
    from training.files import sha256_of
    from training.preprocessing import ImageError

    from .runtime import ModelFileError, Predictor, heatmap_png, shipped_model_dir

    model_dir = Path(args.model) if args.model else shipped_model_dir()
    if model_dir.is_file():
        model_dir = model_dir.parent
    try:
        # The worker's choice: ONNX Runtime when the model has an ONNX export.
        predictor = Predictor.from_dir(model_dir, backend=args.backend)
    except (ModelFileError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model_file = model_dir / predictor.metadata.get("file", "model.keras")
    common = {
        "model_version": predictor.version_label,
        "model_sha256": sha256_of(model_file),
        "backend": predictor.backend,
    }

    heatmap_dir = Path(args.heatmap_dir) if args.heatmap_dir else None
    if heatmap_dir:
        heatmap_dir.mkdir(parents=True, exist_ok=True)

    failures = 0
    for start in range(0, len(args.images), BATCH_SIZE):
        chunk = args.images[start : start + BATCH_SIZE]
        rows, arrays = [], []
        for path in chunk:
            try:
                arrays.append(predictor.preprocess(path))
                rows.append(None)
            except (ImageError, OSError) as exc:
                failures += 1
                rows.append({"file": path, "error": str(exc), **common})
        results = iter(zip(predictor.predict_arrays(arrays), arrays, strict=True) if arrays else [])
        for path, row in zip(chunk, rows, strict=True):  # in the order given
            if row is None:
                result, array = next(results)
                distance = result.ood_distance
                row = {
                    "file": path,
                    "label": result.label,
                    "probability_malignant": round(result.probability_malignant, 6),
                    "confidence": round(result.confidence, 6),
                    # null for models without an out-of-distribution output
                    "out_of_distribution": result.out_of_distribution,
                    "ood_distance": round(distance, 6) if distance is not None else None,
                    **common,
                }
                if heatmap_dir:
                    target = heatmap_dir / f"{Path(path).stem}.heatmap.png"
                    target.write_bytes(heatmap_png(predictor.heatmap(array)))
                    row["heatmap"] = str(target)
            print(json.dumps(row), flush=True)
    return 1 if failures else 0


def tensorflow_installed() -> bool:
    """Whether this environment can load a Keras model (the ml image can; the runtime image cannot)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("keras", "tensorflow"))


def validate(args) -> int:
    """Prove a model folder usable: one JSON object on stdout; exit status 1 with ``reason`` and ``error``.

    The registry runs this in a child process, so that the web process never
    imports a model runtime and a crafted file cannot crash it. With
    TensorFlow (the ml image, a development venv) the model is loaded in
    Keras' safe mode (no deserialised Python code), its input shape compared
    with model.json, then built into the worker's Predictor and run once on a
    blank image; an ONNX export named in model.json must load and give the
    same outputs. Without TensorFlow (the runtime image), or with
    ``--onnx-only``, the ONNX export is what the workers will run, so it is
    what is checked: see ``_validate_onnx_only``.
    """
    _configure_runtime()
    import zipfile

    from .runtime import ModelFileError, read_metadata

    model_dir = Path(args.model_dir)
    try:
        metadata = read_metadata(model_dir)
    except ModelFileError as exc:
        return _fail("metadata", str(exc))
    filename = metadata.get("file", "model.keras")
    model_path = model_dir / filename
    if model_path.suffix == ".keras" and not zipfile.is_zipfile(model_path):
        # Keras would call it "not found"; say what is wrong.
        return _fail("not_keras", "it is not a .keras archive", file=filename)
    if args.onnx_only or not tensorflow_installed():
        return _validate_onnx_only(model_dir, metadata)
    return _validate_with_tensorflow(model_dir, metadata)


def _fail(reason, error, **extra) -> int:
    print(json.dumps({"ok": False, "reason": reason, "error": error, **extra}), flush=True)
    return 1


def _finite(outputs: dict) -> bool:
    import math

    return all(math.isfinite(value) for value in outputs.values() if value is not None)


def _validate_with_tensorflow(model_dir: Path, metadata: dict) -> int:
    import numpy as np

    from .runtime import ModelFileError, Predictor

    filename = metadata.get("file", "model.keras")
    model_path = model_dir / filename
    size = int(metadata["input_size"])
    import keras

    try:
        model = keras.models.load_model(model_path, compile=False, safe_mode=True)
        shape = model.input_shape
    except Exception as exc:  # Keras raises many types for a file that is not a model
        return _fail("not_keras", f"{type(exc).__name__}: {exc}", file=filename)
    shape = [list(s) for s in shape] if isinstance(shape, list) else list(shape)
    if shape != [None, size, size, 3]:
        message = f"model input shape is {shape}, model.json says {size}"
        return _fail("input_shape", message, input_shape=shape, input_size=size)
    del model

    try:
        blank = np.zeros((size, size, 3), dtype=np.uint8)
        predictor = Predictor(model_path, metadata, backend="tensorflow")
        result = predictor.predict_arrays([blank])[0]
    except ModelFileError as exc:
        return _fail("unusable", str(exc))
    except Exception as exc:
        return _fail("unusable", f"{type(exc).__name__}: {exc}")
    outputs = {"probability_malignant": result.probability_malignant, "ood_distance": result.ood_distance}
    if not _finite(outputs):
        return _fail("not_finite", f"outputs on a blank image: {outputs}")

    onnx_file = metadata.get("onnx_file")
    if onnx_file:
        # The worker runs the ONNX export when there is one: it must load and
        # compute what the Keras model computes.
        try:
            onnx = Predictor.from_dir(model_dir, backend="onnx").predict_arrays([blank])[0]
        except Exception as exc:
            return _fail("onnx", f"{type(exc).__name__}: {exc}", file=onnx_file)
        pairs = [(onnx.probability_malignant, result.probability_malignant)]
        if result.ood_distance is not None:
            pairs.append((onnx.ood_distance, result.ood_distance))
        if any(a is None or not abs(a - b) <= 1e-3 * max(1.0, abs(b)) for a, b in pairs):
            message = f"on a blank image it gives {pairs[0][0]} where {filename} gives {pairs[0][1]}"
            return _fail("onnx", f"it is not an export of this model ({message})", file=onnx_file)
        outputs["onnx_probability_malignant"] = onnx.probability_malignant
    print(json.dumps({"ok": True, "runtime": "tensorflow", "input_shape": shape, **outputs}), flush=True)
    return 0


def _validate_onnx_only(model_dir: Path, metadata: dict) -> int:
    """The check where workers run ONNX Runtime only: the export is what will run, so it must stand alone.

    It must load, take the metadata's input size, name the .keras file it was
    exported from (by sha256: the export wrote it after comparing the two
    networks, training/onnx_export.py), carry its own Grad-CAM output (heat
    maps would otherwise need TensorFlow), and give finite outputs on a blank
    image. A Keras-only model cannot run here: register it where TensorFlow
    is installed (the ml image), or export it to ONNX first.
    """
    import numpy as np

    from training.onnx_export import SOURCE_SHA256

    from .runtime import Predictor

    onnx_file = metadata.get("onnx_file")
    if not onnx_file:
        return _fail(
            "needs_tensorflow",
            "it has no ONNX export, and this installation runs models on ONNX Runtime only",
        )
    size = int(metadata["input_size"])
    blank = np.zeros((size, size, 3), dtype=np.uint8)
    try:
        predictor = Predictor.from_dir(model_dir, backend="onnx")
        result = predictor.predict_arrays([blank])[0]
    except Exception as exc:
        return _fail("onnx", f"{type(exc).__name__}: {exc}", file=onnx_file)
    onnx = predictor._onnx
    if not onnx.session.get_modelmeta().custom_metadata_map.get(SOURCE_SHA256):
        return _fail(
            "onnx", "it does not record which model file it was exported from; export it again", file=onnx_file
        )
    if onnx.gradcam_layer is None:
        return _fail(
            "needs_tensorflow",
            "its ONNX export has no Grad-CAM output, so heat maps would need TensorFlow; export it again",
        )
    outputs = {"probability_malignant": result.probability_malignant, "ood_distance": result.ood_distance}
    if not _finite(outputs):
        return _fail("not_finite", f"outputs on a blank image: {outputs}")
    print(json.dumps({"ok": True, "runtime": "onnx", "input_shape": [None, size, size, 3], **outputs}), flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__.split("\n\n")[1])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="classify images; one JSON line per image")
    p.add_argument("--model", help="model folder (with model.json) or model file; default: the shipped active model")
    p.add_argument("--heatmap-dir", help="also write a Grad-CAM overlay <stem>.heatmap.png per image here")
    p.add_argument(
        "--backend",
        choices=("auto", "onnx", "tensorflow"),
        help="inference runtime (default: $SKINCARE_INFERENCE_BACKEND, else auto: ONNX Runtime when the model "
        "has an ONNX export, TensorFlow otherwise)",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    v = sub.add_parser("validate", help="check that a model folder loads and runs; one JSON object")
    v.add_argument(
        "--onnx-only",
        action="store_true",
        help="check only what ONNX Runtime runs (the default where TensorFlow is not installed)",
    )
    v.add_argument("model_dir", metavar="MODEL_DIR")
    args = parser.parse_args(argv)
    return validate(args) if args.command == "validate" else predict(args)


if __name__ == "__main__":
    sys.exit(main())
