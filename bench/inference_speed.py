"""How fast a model runs on this CPU through the worker's code path (not a test).

For the model in --model (default: the one named in models/ACTIVE) it measures:

- single-image latency, warm: the bytes of a demo JPEG -> Predictor.predict_source
  (preprocess -> traced forward -> decide), p50/p95 of the whole and of its parts;
- batch throughput of Predictor.predict_batch at batch sizes 1, 8 and 32;
- Grad-CAM (Predictor.heatmap) and its PNG encoding, which the worker adds to every prediction;
- FLOPs per image, counted from layer shapes as 2 x multiply-accumulates of every
  Conv2D / DepthwiseConv2D / Dense layer (TF's graph profiler as a cross-check), and the
  compute floor they imply at the best float32 matmul rate measured here (numpy sgemm, TF);
- cold start in a fresh process (import TensorFlow, load + trace the model, first
  prediction, first Grad-CAM) and that process's RSS once warm.

Usage: .venv/bin/python bench/inference_speed.py [--model DIR] [--runs 200] [--json OUT]
Run it on an otherwise idle machine: it prints the load average and the busiest
other processes so that the figures can be read in context.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inference.runtime import Predictor, heatmap_png, shipped_model_dir  # noqa: E402


def demo_images() -> list[bytes]:
    return [p.read_bytes() for p in sorted((REPO / "demo" / "images").glob("*/*.jpg"))]


def pct(values, q) -> float:
    return float(np.percentile(values, q))


def rss_mb(field="VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine_state() -> dict:
    """Load and the busiest other processes, so that the figures can be judged."""
    top = subprocess.run(["ps", "-eo", "pcpu,pid,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    others = [line.strip()[:110] for line in top.splitlines()[1:] if str(os.getpid()) not in line.split()[1:2]]
    return {"loadavg": os.getloadavg(), "busiest": others[:3]}


def count_flops(model) -> int:
    """2 x MACs of the Conv2D, DepthwiseConv2D and Dense layers for one image (bias, BN, activations excluded)."""
    import keras

    total = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            _, h, w, c = layer.output.shape
            total += 2 * h * w * c * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            _, h, w, c = layer.output.shape
            total += 2 * h * w * c * kh * kw * layer.input.shape[-1] // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            positions = int(np.prod(layer.output.shape[1:-1]))  # a Dense on (N, H, W, C) runs per position
            total += 2 * positions * int(np.prod(layer.kernel.shape))
    return total


def profiler_flops(model, size: int) -> int:
    """TF's own float-op count on the frozen batch-1 forward graph (counts element-wise ops too)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda x: model(x, training=False))
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(tf.TensorSpec((1, size, size, 3), tf.float32)))
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=frozen.graph, options=opts).total_float_ops


def matmul_gflops(n=2048, repeats=7) -> dict:
    """Best-of float32 (n x n) @ (n x n) rate of numpy's BLAS and of TensorFlow."""
    import tensorflow as tf
    from threadpoolctl import threadpool_info

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    flops = 2 * n**3

    def best(fn):
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return flops / min(times) / 1e9

    ta, tb = tf.constant(a), tf.constant(b)
    tf_matmul = tf.function(lambda: tf.linalg.matmul(ta, tb))
    blas = [
        {
            **{k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture")},
            "lib": Path(info["filepath"]).parent.name,
        }  # numpy.libs is the one `a @ b` uses
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return {
        "numpy_gflops": best(lambda: a @ b),
        "tf_gflops": best(lambda: tf_matmul().numpy()),
        "blas": blas,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
    }


# Run in a fresh interpreter: what a Celery pool process pays before its first
# prediction (Django and Celery's own start-up are not included).
COLD_CHILD = """
import json, os, sys, time
t_start = time.time()
sys.path.insert(0, sys.argv[1])
import tensorflow, keras
from inference.runtime import Predictor, heatmap_png
t_import = time.time()
predictor = Predictor.from_dir(sys.argv[2])
t_load = time.time()
data = open(sys.argv[3], "rb").read()
array = predictor.preprocess(data)
predictor.predict_arrays([array])
t_first = time.time()
heatmap_png(predictor.heatmap(array))
t_gradcam = time.time()
for _ in range(20):  # warm, like a worker that has served some predictions
    array = predictor.preprocess(data)
    predictor.predict_arrays([array])
    heatmap_png(predictor.heatmap(array))
status = open("/proc/self/status").read().splitlines()
rss = {f: int(l.split()[1]) / 1024 for l in status for f in ("VmRSS", "VmHWM") if l.startswith(f + ":")}
print(json.dumps({"start": t_start, "import": t_import, "load": t_load, "first": t_first, "gradcam": t_gradcam, **rss}))
"""


def cold_start(model_dir: Path, image: Path) -> dict:
    spawn = time.time()
    out = subprocess.run(
        [sys.executable, "-c", COLD_CHILD, str(REPO), str(model_dir), str(image)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    t = json.loads(out.strip().splitlines()[-1])
    return {
        "interpreter_s": t["start"] - spawn,
        "import_tf_s": t["import"] - t["start"],
        "load_model_s": t["load"] - t["import"],
        "first_prediction_s": t["first"] - t["load"],
        "spawn_to_first_prediction_s": t["first"] - spawn,
        "first_gradcam_s": t["gradcam"] - t["first"],
        "rss_warm_mb": t["VmRSS"],
        "rss_peak_mb": t["VmHWM"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: models/ACTIVE)")
    parser.add_argument("--runs", type=int, default=200, help="timed single-image predictions")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--gradcam-runs", type=int, default=50)
    parser.add_argument("--batch-seconds", type=float, default=4.0, help="time spent per batch size")
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh processes for the cold start (0: skip)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    model_dir = (args.model or shipped_model_dir()).resolve()
    before = machine_state()

    import tensorflow as tf

    predictor = Predictor.from_dir(model_dir)
    size = predictor.input_size
    images = demo_images()
    arrays = [predictor.preprocess(data) for data in images]
    r = {
        "model": str(model_dir.relative_to(REPO) if model_dir.is_relative_to(REPO) else model_dir),
        "input_size": size,
        "parameters": predictor.model.count_params(),
        "cpus": len(os.sched_getaffinity(0)),
        "tensorflow": tf.__version__,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),  # 0 = one per core
    }

    # Single image, the worker's path. predict_source times its own parts.
    for i in range(args.warmup):
        predictor.predict_source(images[i % len(images)])
    total, pre, fwd = [], [], []
    for i in range(args.runs):
        t0 = time.perf_counter()
        res = predictor.predict_source(images[i % len(images)])
        total.append((time.perf_counter() - t0) * 1000)
        pre.append(res.preprocess_ms)
        fwd.append(res.inference_ms)
    for name, values in (("total", total), ("preprocess", pre), ("forward", fwd)):
        r[f"{name}_p50_ms"], r[f"{name}_p95_ms"] = pct(values, 50), pct(values, 95)

    for bs in (1, 8, 32):
        batch = np.stack([arrays[i % len(arrays)] for i in range(bs)])
        predictor.predict_batch(batch)
        calls, t0 = 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - t0 < args.batch_seconds:
            predictor.predict_batch(batch)
            calls += 1
        r[f"batch{bs}_images_per_s"] = calls * bs / (time.perf_counter() - t0)

    predictor.heatmap(arrays[0])  # builds and traces the Grad-CAM graph
    cam, png = [], []
    for i in range(args.gradcam_runs):
        t0 = time.perf_counter()
        heat = predictor.heatmap(arrays[i % len(arrays)])
        t1 = time.perf_counter()
        heatmap_png(heat)
        cam.append((t1 - t0) * 1000)
        png.append((time.perf_counter() - t1) * 1000)
    r["gradcam_p50_ms"], r["gradcam_p95_ms"], r["heatmap_png_p50_ms"] = pct(cam, 50), pct(cam, 95), pct(png, 50)
    r["rss_this_process_mb"] = rss_mb()

    r["flops_layers"] = count_flops(predictor.model)
    r["flops_tf_profiler"] = profiler_flops(predictor.model, size)
    r.update(matmul_gflops())
    peak = max(r["numpy_gflops"], r["tf_gflops"])
    r["floor_ms"] = r["flops_layers"] / (peak * 1e9) * 1000
    r["forward_p50_x_floor"] = r["forward_p50_ms"] / r["floor_ms"]
    r["total_p50_x_floor"] = r["total_p50_ms"] / r["floor_ms"]

    colds = [
        cold_start(model_dir, REPO / "demo" / "images" / "benign" / "melanoma_127.jpg") for _ in range(args.cold_runs)
    ]
    if colds:
        r["cold_runs"] = colds
        r.update({f"cold_{k}": float(np.median([c[k] for c in colds])) for k in colds[0]})
    r["machine_before"], r["machine_after"] = before, machine_state()

    print(table(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")


def table(r: dict) -> str:
    rows = [
        ("model", f"`{r['model']}`, {r['input_size']} px, {r['parameters']:,} parameters"),
        ("CPU", f"{r['cpus']} cores; TF {r['tensorflow']}, intra-op threads {r['tf_intra_op_threads'] or 'default'}"),
        ("single image, total (bytes -> label) p50 / p95", f"{r['total_p50_ms']:.1f} / {r['total_p95_ms']:.1f} ms"),
        ("  of which preprocess p50 / p95", f"{r['preprocess_p50_ms']:.1f} / {r['preprocess_p95_ms']:.1f} ms"),
        ("  of which forward p50 / p95", f"{r['forward_p50_ms']:.1f} / {r['forward_p95_ms']:.1f} ms"),
        *[(f"throughput, batch {bs}", f"{r[f'batch{bs}_images_per_s']:.1f} images/s") for bs in (1, 8, 32)],
        ("Grad-CAM p50 / p95", f"{r['gradcam_p50_ms']:.1f} / {r['gradcam_p95_ms']:.1f} ms"),
        ("heat-map PNG encode p50", f"{r['heatmap_png_p50_ms']:.1f} ms"),
        ("FLOPs / image (2 x MACs, conv + dense)", f"{r['flops_layers'] / 1e9:.3f} G"),
        ("FLOPs / image (TF profiler, all ops)", f"{r['flops_tf_profiler'] / 1e9:.3f} G"),
        ("numpy sgemm 2048 (best)", f"{r['numpy_gflops']:.1f} GFLOP/s ({_blas(r)})"),
        ("TF matmul 2048 (best)", f"{r['tf_gflops']:.1f} GFLOP/s"),
        ("compute floor (FLOPs / best GFLOP/s)", f"{r['floor_ms']:.2f} ms"),
        ("forward p50 / floor", f"{r['forward_p50_x_floor']:.1f}x"),
        ("total p50 / floor", f"{r['total_p50_x_floor']:.1f}x"),
    ]
    if "cold_runs" in r:
        rows += [
            (
                f"cold start, median of {len(r['cold_runs'])}: interpreter + import TF / load model / first prediction",
                f"{r['cold_interpreter_s'] + r['cold_import_tf_s']:.2f} / {r['cold_load_model_s']:.2f} / "
                f"{r['cold_first_prediction_s']:.2f} s",
            ),
            ("cold start: spawn -> first prediction", f"{r['cold_spawn_to_first_prediction_s']:.2f} s"),
            ("cold start: then first Grad-CAM", f"{r['cold_first_gradcam_s']:.2f} s"),
            ("worker-like process RSS, warm / peak", f"{r['cold_rss_warm_mb']:.0f} / {r['cold_rss_peak_mb']:.0f} MB"),
        ]
    rows.append(
        (
            "load average before / after (1 min)",
            f"{r['machine_before']['loadavg'][0]:.2f} / {r['machine_after']['loadavg'][0]:.2f}",
        )
    )
    lines = ["| metric | value |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in rows]]
    for when in ("before", "after"):
        lines += ["", f"Busiest other processes {when}:", *[f"    {p}" for p in r[f"machine_{when}"]["busiest"]]]
    return "\n".join(lines)


def _blas(r: dict) -> str:
    blas = ", ".join(
        f"{b['lib']}: {b['internal_api']} {b['version']} {b['architecture']} {b['num_threads']} threads"
        for b in r["blas"]
    )
    return f"{blas}; OPENBLAS_CORETYPE={r['OPENBLAS_CORETYPE'] or 'unset'}"


if __name__ == "__main__":
    main()
