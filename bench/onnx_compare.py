"""ONNX Runtime vs TensorFlow as the worker's inference backend (not a test).

Needs three packages that are NOT in requirements/ (the worker does not use them):

    .venv/bin/pip install onnxruntime tf2onnx onnx

Converts the model (default: models/ACTIVE) in a temporary folder, Keras ->
SavedModel (``model.export(format="tf_saved_model")``) -> ONNX (``python -m
tf2onnx.convert --saved-model``). The direct ``model.export(format="onnx")``
is not used: with Keras 3.15 + tf2onnx 1.17 it turns the constants of the
MobileNetV2's ``Normalization`` layer into extra graph inputs, and the
resulting file cannot be run with the image alone.

Then it checks that ONNX Runtime reproduces TensorFlow's outputs on the demo
images (probability within 1e-4) and times, each backend in its own fresh
process (interleaved, --repeats times):

- tf, ort, ort-nospin (ORT's threads do not busy-wait after a run): forward
  only. Cold start (spawn -> first prediction of a JPEG's bytes), RSS when
  warm, single-image latency bytes -> label p50/p95 and its forward part,
  throughput at batch sizes 1, 8, 32;
- tf+gradcam, ort+gradcam: what the worker does per prediction today
  (prediction, then Grad-CAM with TensorFlow and its PNG). With ORT, TensorFlow
  must still be imported and the Keras model loaded for Grad-CAM; the
  Predictor used for that also traces its (then unused) TF forward pass.

Usage: .venv/bin/python bench/onnx_compare.py [--model DIR] [--runs 100] [--repeats 2] [--keep model.onnx]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference_speed import demo_images, machine_state, pct, rss_mb  # noqa: E402

from inference.runtime import Predictor, decide, heatmap_png, read_metadata, shipped_model_dir  # noqa: E402
from training.preprocessing import load_for_model  # noqa: E402

MODES = ("tf", "ort", "ort-nospin", "tf+gradcam", "ort+gradcam")


def convert(predictor, out_dir: Path) -> Path:
    import tensorflow as tf

    size = predictor.input_size
    spec = tf.TensorSpec((None, size, size, 3), tf.float32, name="image")
    predictor.model.export(out_dir / "saved_model", format="tf_saved_model", input_signature=[spec], verbose=False)
    onnx_path = out_dir / "model.onnx"
    subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--saved-model", out_dir / "saved_model", "--output", onnx_path],
        check=True,
        capture_output=True,
    )
    return onnx_path


class OrtModel:
    """The ORT counterpart of Predictor's forward: uint8 (N, S, S, 3) -> (probabilities, OOD distances)."""

    def __init__(self, path, spin=True):
        import onnxruntime as ort

        # Defaults: one intra-op thread per physical core (2 here), all graph
        # optimisations, and threads that busy-wait after each run (spin=False
        # stops that, so they do not take CPU from the next image's decoding).
        options = ort.SessionOptions()
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in self.session.get_outputs()]
        self.outputs = ["probability" if "probability" in names else names[0]]
        self.has_ood = "ood_distance" in names
        if self.has_ood:
            self.outputs.append("ood_distance")
        self.input = self.session.get_inputs()[0].name

    def run(self, batch):
        out = self.session.run(self.outputs, {self.input: batch.astype(np.float32)})
        probabilities = out[0].reshape(len(batch)).astype(np.float64)
        return probabilities, (out[1].reshape(len(batch)).astype(np.float64) if self.has_ood else None)


def child(mode: str, model_dir: Path, onnx_path: Path, runs: int) -> dict:
    """One fresh process of one backend; t_spawn is time.time() in the parent just before it started us."""
    metadata = read_metadata(model_dir)
    size, pipeline = int(metadata["input_size"]), metadata["preprocessing"]
    needs_tf = mode.startswith("tf") or mode.endswith("gradcam")
    t = {"modules": time.time()}
    if mode.startswith("ort"):
        import onnxruntime  # noqa: F401
    if needs_tf:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    t["import"] = time.time()
    predictor = Predictor.from_dir(model_dir) if needs_tf else None
    if mode.startswith("ort"):
        forward = OrtModel(onnx_path, spin=mode != "ort-nospin").run
    else:
        forward = predictor._run  # what predict_arrays calls
    t["load"] = time.time()

    def predict(data):
        t0 = time.perf_counter()
        array = load_for_model(data, size, pipeline)
        t1 = time.perf_counter()
        probabilities, _ = forward(array[None])
        t2 = time.perf_counter()
        decide(float(np.clip(probabilities[0], 0, 1)), metadata)
        if mode.endswith("gradcam"):
            heatmap_png(predictor.heatmap(array))
        return (time.perf_counter() - t0) * 1000, (t2 - t1) * 1000

    images = demo_images()
    predict(images[0])
    t["first"] = time.time()
    for i in range(20):
        predict(images[i % len(images)])
    r = {"t": t, "rss_warm_mb": rss_mb(), "rss_peak_mb": rss_mb("VmHWM")}
    timings = [predict(images[i % len(images)]) for i in range(runs)]
    total, fwd = [x[0] for x in timings], [x[1] for x in timings]
    r |= {"total_p50_ms": pct(total, 50), "total_p95_ms": pct(total, 95)}
    r |= {"forward_p50_ms": pct(fwd, 50), "forward_p95_ms": pct(fwd, 95)}
    if not mode.endswith("gradcam"):
        arrays = [load_for_model(data, size, pipeline) for data in images]
        for bs in (1, 8, 32):
            batch = np.stack([arrays[i % len(arrays)] for i in range(bs)])
            forward(batch)
            calls, t0 = 0, time.perf_counter()
            while calls < 3 or time.perf_counter() - t0 < 3.0:
                forward(batch)
                calls += 1
            r[f"batch{bs}_images_per_s"] = calls * bs / (time.perf_counter() - t0)
    return r


def compare_outputs(predictor, onnx_path: Path) -> dict:
    arrays = np.stack([predictor.preprocess(data) for data in demo_images()])
    tf_p, tf_d = predictor._run(arrays)
    ort_p, ort_d = OrtModel(onnx_path).run(arrays)
    single = np.concatenate([OrtModel(onnx_path).run(a[None])[0] for a in arrays])  # batch 1, as the worker runs
    r = {
        "images": len(arrays),
        "max_abs_diff_probability": float(max(np.abs(tf_p - ort_p).max(), np.abs(tf_p - single).max())),
        "same_labels": all(
            decide(a, predictor.metadata)[0] == decide(b, predictor.metadata)[0]
            for a, b in zip(tf_p, ort_p, strict=True)
        ),
    }
    if tf_d is not None:
        r["max_abs_diff_ood_distance"] = float(np.abs(tf_d - ort_d).max())
        r["max_rel_diff_ood_distance"] = float((np.abs(tf_d - ort_d) / np.maximum(np.abs(tf_d), 1)).max())
    return r


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=100, help="timed single-image predictions per process")
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per backend")
    parser.add_argument("--keep", type=Path, help="copy the converted model.onnx here")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--onnx", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    model_dir = (args.model or shipped_model_dir()).resolve()
    if args.child:
        print(json.dumps(child(args.child, model_dir, args.onnx, args.runs)))
        return

    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    before = machine_state()
    predictor = Predictor.from_dir(model_dir)
    with tempfile.TemporaryDirectory(prefix="onnx-compare-") as tmp:
        t0 = time.perf_counter()
        onnx_path = convert(predictor, Path(tmp))
        r = {
            "model": model_dir.name,
            "convert_s": time.perf_counter() - t0,
            "onnx_mb": onnx_path.stat().st_size / 2**20,
        }
        r["versions"] = f"TF {tf.__version__}, onnxruntime {onnxruntime.__version__}, tf2onnx {tf2onnx.__version__}"
        r["outputs"] = compare_outputs(predictor, onnx_path)
        if args.keep:
            shutil.copy(onnx_path, args.keep)
        results = {mode: [] for mode in MODES}
        for _ in range(args.repeats):
            for mode in MODES:  # interleaved, so that drifting load hits every backend alike
                spawn = time.time()
                out = subprocess.run(
                    [sys.executable, __file__, "--child", mode, "--model", model_dir, "--onnx", onnx_path]
                    + ["--runs", str(args.runs)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                c = json.loads(out.strip().splitlines()[-1])
                t = c.pop("t")
                c["spawn_to_first_s"] = t["first"] - spawn
                c["import_s"] = t["import"] - spawn
                c["load_s"] = t["load"] - t["import"]
                results[mode].append(c)
    r["modes"] = {m: {k: float(np.median([c[k] for c in cs])) for k in cs[0]} for m, cs in results.items()}
    r["machine_before"], r["machine_after"] = before, machine_state()
    print(table(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")


def table(r: dict) -> str:
    o = r["outputs"]
    lines = [
        f"model {r['model']}; {r['versions']}; conversion {r['convert_s']:.1f} s, {r['onnx_mb']:.1f} MB",
        f"outputs on {o['images']} demo images: max |TF - ORT| probability {o['max_abs_diff_probability']:.2e} "
        f"({'within' if o['max_abs_diff_probability'] <= 1e-4 else 'NOT within'} 1e-4), same labels: {o['same_labels']}"
        + (
            f"; OOD distance max abs {o['max_abs_diff_ood_distance']:.2e}, rel {o['max_rel_diff_ood_distance']:.2e}"
            if "max_abs_diff_ood_distance" in o
            else ""
        ),
        "",
        "| backend | import | load | spawn -> first prediction | RSS warm / peak | single image p50 / p95 "
        "| forward p50 / p95 | batch 1 / 8 / 32 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode, m in r["modes"].items():
        batch = (
            " / ".join(f"{m[f'batch{bs}_images_per_s']:.0f}" for bs in (1, 8, 32)) + " img/s"
            if "batch1_images_per_s" in m
            else "-"
        )
        lines.append(
            f"| {mode} | {m['import_s']:.2f} s | {m['load_s']:.2f} s | {m['spawn_to_first_s']:.2f} s "
            f"| {m['rss_warm_mb']:.0f} / {m['rss_peak_mb']:.0f} MB "
            f"| {m['total_p50_ms']:.1f} / {m['total_p95_ms']:.1f} ms "
            f"| {m['forward_p50_ms']:.1f} / {m['forward_p95_ms']:.1f} ms | {batch} |"
        )
    lines.append(
        f"\nload average (1 min) before / after: {r['machine_before']['loadavg'][0]:.2f} / "
        f"{r['machine_after']['loadavg'][0]:.2f}; medians of the fresh processes per backend"
    )
    for when in ("before", "after"):
        lines += [f"Busiest other processes {when}:", *[f"    {p}" for p in r[f"machine_{when}"]["busiest"]]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
