"""ONNX Runtime vs TensorFlow on a model's shipped ONNX export: do they give the same answers? (not a test)

The worker runs a model's ``model.onnx`` on ONNX Runtime when it has one
(inference/runtime/onnx_backend.py); TensorFlow stays the reference. On the 16 demo images
this compares, for the model in --model (default: models/ACTIVE), both
backends' Predictors as the worker uses them:

- probability (batch 16 and one image at a time, as the worker runs),
  labels, OOD distance and flag;
- the heat map: the ONNX path's Grad-CAM without autodiff (the export's
  ``gradcam`` output, then ReLU, resize and normalise in numpy) against
  TensorFlow's GradientTape Grad-CAM.

With --export it also re-exports the model into a temporary folder
(``training.onnx_export``) and reports how long that takes and how closely the
export's own check matched. Speed per backend: bench/inference_speed.py.

Usage: .venv/bin/python bench/onnx_compare.py [--model DIR] [--export] [--json OUT]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inference.runtime import ModelFileError, Predictor, shipped_model_dir  # noqa: E402

TOLERANCE = 1e-4


def compare(model_dir: Path) -> dict:
    on_onnx = Predictor.from_dir(model_dir, backend="onnx")
    on_tf = Predictor.from_dir(model_dir, backend="tensorflow")
    paths = sorted((REPO / "demo" / "images").glob("*/*.jpg"))
    arrays = [on_tf.preprocess(path) for path in paths]
    tf_results = on_tf.predict_arrays(arrays)
    onnx_batch = on_onnx.predict_arrays(arrays)
    onnx_single = [on_onnx.predict_arrays([array])[0] for array in arrays]
    r = {"images": len(arrays), "gradcam_layer": on_onnx.gradcam_layer}
    r["max_abs_diff_probability"] = max(
        abs(o.probability_malignant - t.probability_malignant)
        for results in (onnx_batch, onnx_single)
        for o, t in zip(results, tf_results, strict=True)
    )
    r["same_labels"] = all(o.label == t.label for o, t in zip(onnx_batch + onnx_single, tf_results * 2, strict=True))
    if tf_results[0].ood_distance is not None:
        pairs = list(zip(onnx_batch + onnx_single, tf_results * 2, strict=True))
        r["max_abs_diff_ood_distance"] = max(abs(o.ood_distance - t.ood_distance) for o, t in pairs)
        r["max_rel_diff_ood_distance"] = max(
            abs(o.ood_distance - t.ood_distance) / max(abs(t.ood_distance), 1.0) for o, t in pairs
        )
        r["same_ood_flags"] = all(o.out_of_distribution is t.out_of_distribution for o, t in pairs)
    r["max_abs_diff_heatmap"] = max(
        float(np.abs(on_onnx.heatmap(array) - on_tf.heatmap(array)).max()) for array in arrays
    )
    r["heatmap_without_tensorflow"] = on_onnx._keras is None
    return r


def export_timing(model_dir: Path) -> dict:
    from training.onnx_export import export_model_dir

    with tempfile.TemporaryDirectory(prefix="onnx-compare-") as tmp:
        copy = Path(tmp) / "model"
        shutil.copytree(model_dir, copy)
        t0 = time.perf_counter()
        exported = export_model_dir(copy, check_dir=REPO / "demo" / "images")
        return {
            "export_s": time.perf_counter() - t0,
            "onnx_mb": (copy / "model.onnx").stat().st_size / 2**20,
            "check": exported["check"],
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--export", action="store_true", help="also time a fresh export in a temporary folder")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model_dir = (args.model or shipped_model_dir()).resolve()

    import onnxruntime
    import tensorflow as tf

    try:
        outputs = compare(model_dir)
    except ModelFileError as exc:
        sys.exit(f"{exc} (export one with: .venv/bin/python -m training.onnx_export {model_dir})")
    r = {
        "model": model_dir.name,
        "versions": f"TF {tf.__version__}, onnxruntime {onnxruntime.__version__}",
        "outputs": outputs,
    }
    if args.export:
        import tf2onnx

        r["versions"] += f", tf2onnx {tf2onnx.__version__}"
        r["export"] = export_timing(model_dir)
    print(report(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    within = r["outputs"]["max_abs_diff_probability"] <= TOLERANCE and r["outputs"]["same_labels"]
    sys.exit(0 if within else 1)


def report(r: dict) -> str:
    o = r["outputs"]
    within = "within" if o["max_abs_diff_probability"] <= TOLERANCE else "NOT within"
    lines = [
        f"model {r['model']}; {r['versions']}",
        f"{o['images']} demo images, batch and one at a time: max |TF - ORT| probability "
        f"{o['max_abs_diff_probability']:.2e} ({within} 1e-4), same labels: {o['same_labels']}",
    ]
    if "max_abs_diff_ood_distance" in o:
        lines.append(
            f"OOD distance: max abs {o['max_abs_diff_ood_distance']:.2e}, rel {o['max_rel_diff_ood_distance']:.2e}; "
            f"same flags: {o['same_ood_flags']}"
        )
    lines.append(
        f"heat map ({o['gradcam_layer']}): max |TF Grad-CAM - ONNX Grad-CAM| {o['max_abs_diff_heatmap']:.2e}; "
        f"computed without TensorFlow: {o['heatmap_without_tensorflow']}"
    )
    if "export" in r:
        e = r["export"]
        lines.append(f"export: {e['export_s']:.1f} s, {e['onnx_mb']:.1f} MB; its own check: {e['check']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
