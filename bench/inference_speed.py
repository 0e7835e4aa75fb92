"""How fast the worker's inference path runs on this CPU, per backend (not a test).

For the model in --model (default: the one named in models/ACTIVE) and each
backend in --backends (default: onnx and tensorflow; one the model cannot run
is skipped), every figure comes from fresh processes of that backend alone:

- cold start, --cold-runs processes: process start -> import inference.runtime
  -> Predictor.from_dir (loads the model; TensorFlow also traces it) -> first
  prediction of a demo JPEG's bytes; then its first heat map (Grad-CAM + PNG).
  RSS of that process after its one prediction, and after the heat map;
- warm, one more process (20 warm-up calls): single image, the bytes of the 16
  demo JPEGs in turn -> Predictor.predict_source (decode, preprocess, forward,
  decide), p50/p95 of the whole and of its parts; the forward pass alone
  (predict_batch of one preprocessed image); throughput of predict_batch at
  batch sizes 1, 8 and 32; Grad-CAM (Predictor.heatmap) and its PNG; the
  worker's whole per-image work (bytes -> label + heat-map PNG); RSS warm/peak;
- in this process, afterwards: FLOPs per image counted from layer shapes as
  2 x multiply-accumulates of every Conv2D / DepthwiseConv2D / Dense layer
  (TF's graph profiler as a cross-check), and the compute floor they imply at
  the best float32 matmul rate measured here (numpy sgemm, TF, 2048^2); each
  backend's forward and single-image p50 as a multiple of that floor.

Usage: .venv/bin/python bench/inference_speed.py [--model DIR] [--backends onnx,tensorflow] [--runs 200] [--json OUT]
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

# No TensorFlow at import: the ONNX children must not load it.
from inference.runtime import Predictor, heatmap_png, shipped_model_dir  # noqa: E402

BACKENDS = ("onnx", "tensorflow")
COLD_IMAGE = REPO / "demo" / "images" / "benign" / "melanoma_127.jpg"


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


# A fresh interpreter, as a Celery pool process starts its first task (Django
# and Celery's own start-up are not included; the worker adds the local copy
# and sha256 check of the model files, ~0.05 s for the shipped model).
COLD_CHILD = """
import time
t_start = time.time()
import json, sys
sys.path.insert(0, sys.argv[1])
from inference.runtime import Predictor, heatmap_png
t_import = time.time()
predictor = Predictor.from_dir(sys.argv[2], backend=sys.argv[3])
t_load = time.time()
data = open(sys.argv[4], "rb").read()
array = predictor.preprocess(data)
predictor.predict_arrays([array])
t_first = time.time()
status = open("/proc/self/status").read().splitlines()
rss_one = [int(l.split()[1]) / 1024 for l in status if l.startswith("VmRSS:")][0]
heatmap_png(predictor.heatmap(array))
t_heatmap = time.time()
status = open("/proc/self/status").read().splitlines()
rss_heatmap = [int(l.split()[1]) / 1024 for l in status if l.startswith("VmRSS:")][0]
for _ in range(20):  # a worker that has served some images, one at a time
    array = predictor.preprocess(data)
    predictor.predict_arrays([array])
    heatmap_png(predictor.heatmap(array))
status = open("/proc/self/status").read().splitlines()
rss = {f: int(l.split()[1]) / 1024 for l in status for f in ("VmRSS", "VmHWM") if l.startswith(f + ":")}
print(json.dumps({
    "start": t_start, "import": t_import, "load": t_load, "first": t_first, "heatmap": t_heatmap,
    "backend": predictor.backend, "tensorflow_imported": "tensorflow" in sys.modules,
    "rss_after_one_prediction_mb": rss_one, "rss_after_heatmap_mb": rss_heatmap,
    "rss_after_21_mb": rss["VmRSS"], "rss_peak_mb": rss["VmHWM"],
}))
"""


def cold_start(model_dir: Path, backend: str) -> dict:
    spawn = time.time()
    out = subprocess.run(
        [sys.executable, "-c", COLD_CHILD, str(REPO), str(model_dir), backend, str(COLD_IMAGE)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    t = json.loads(out.strip().splitlines()[-1])
    return {
        "interpreter_s": t["start"] - spawn,
        "import_s": t["import"] - t["start"],
        "load_model_s": t["load"] - t["import"],
        "first_prediction_s": t["first"] - t["load"],
        "spawn_to_first_prediction_s": t["first"] - spawn,
        "first_heatmap_s": t["heatmap"] - t["first"],
        **{k: t[k] for k in ("backend", "tensorflow_imported")},
        **{k: t[k] for k in ("rss_after_one_prediction_mb", "rss_after_heatmap_mb", "rss_after_21_mb", "rss_peak_mb")},
    }


def warm(model_dir: Path, backend: str, args) -> dict:
    """Every warm figure of one backend, in this (fresh) process."""
    predictor = Predictor.from_dir(model_dir, backend=backend)
    images = demo_images()
    arrays = [predictor.preprocess(data) for data in images]
    r = {"backend": predictor.backend, "tensorflow_imported": "tensorflow" in sys.modules}
    if predictor.backend == "onnx":
        from inference.runtime import inference_threads

        r["threads"] = inference_threads()

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
    for name, values in (("total", total), ("preprocess", pre), ("forward_in_total", fwd)):
        r[f"{name}_p50_ms"], r[f"{name}_p95_ms"] = pct(values, 50), pct(values, 95)

    alone = []
    for i in range(args.runs):
        batch = arrays[i % len(arrays)][None]
        t0 = time.perf_counter()
        predictor.predict_batch(batch)
        alone.append((time.perf_counter() - t0) * 1000)
    r["forward_p50_ms"], r["forward_p95_ms"] = pct(alone, 50), pct(alone, 95)
    r["rss_single_mb"] = rss_mb()  # batches below grow the runtimes' memory pools for good

    for bs in (1, 8, 32):
        batch = np.stack([arrays[i % len(arrays)] for i in range(bs)])
        predictor.predict_batch(batch)
        calls, t0 = 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - t0 < args.batch_seconds:
            predictor.predict_batch(batch)
            calls += 1
        r[f"batch{bs}_images_per_s"] = calls * bs / (time.perf_counter() - t0)

    # Grad-CAM right after the image's prediction, as the worker asks for it.
    predictor.heatmap(arrays[0])
    cam, png, whole = [], [], []
    for i in range(args.gradcam_runs):
        array = arrays[i % len(arrays)]
        predictor.predict_arrays([array])
        t0 = time.perf_counter()
        heat = predictor.heatmap(array)
        t1 = time.perf_counter()
        heatmap_png(heat)
        cam.append((t1 - t0) * 1000)
        png.append((time.perf_counter() - t1) * 1000)
    for i in range(args.gradcam_runs):  # what run_prediction does per image, storage and database aside
        t0 = time.perf_counter()
        array = predictor.preprocess(images[i % len(images)])
        predictor.predict_arrays([array])
        heatmap_png(predictor.heatmap(array))
        whole.append((time.perf_counter() - t0) * 1000)
    r["gradcam_p50_ms"], r["gradcam_p95_ms"], r["heatmap_png_p50_ms"] = pct(cam, 50), pct(cam, 95), pct(png, 50)
    r["worker_image_p50_ms"], r["worker_image_p95_ms"] = pct(whole, 50), pct(whole, 95)
    r["rss_warm_mb"], r["rss_peak_mb"] = rss_mb(), rss_mb("VmHWM")
    return r


def runnable(model_dir: Path, backend: str) -> bool:
    if backend == "tensorflow":
        return True
    metadata = json.loads((model_dir / "model.json").read_text())
    return bool(metadata.get("onnx_file")) and (model_dir / metadata["onnx_file"]).is_file()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: models/ACTIVE)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default %(default)s)")
    parser.add_argument("--runs", type=int, default=200, help="timed single-image predictions")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--gradcam-runs", type=int, default=50)
    parser.add_argument("--batch-seconds", type=float, default=4.0, help="time spent per batch size")
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh processes for the cold start (0: skip)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    model_dir = (args.model or shipped_model_dir()).resolve()
    if args.child:
        print(json.dumps(warm(model_dir, args.child, args)))
        return

    before = machine_state()
    r = {
        "model": str(model_dir.relative_to(REPO) if model_dir.is_relative_to(REPO) else model_dir),
        "cpus": len(os.sched_getaffinity(0)),
        "backends": {},
    }
    backends = [b for b in args.backends.split(",") if b]
    for backend in backends:
        if not runnable(model_dir, backend):
            print(f"skipping {backend}: the model has no file for it", file=sys.stderr)
            continue
        child = [sys.executable, __file__, "--child", backend, "--model", str(model_dir)]
        child += ["--runs", str(args.runs), "--warmup", str(args.warmup), "--gradcam-runs", str(args.gradcam_runs)]
        child += ["--batch-seconds", str(args.batch_seconds)]
        out = subprocess.run(child, capture_output=True, text=True, check=True).stdout
        b = json.loads(out.strip().splitlines()[-1])
        colds = [cold_start(model_dir, backend) for _ in range(args.cold_runs)]
        if colds:
            b["cold_runs"] = colds
            b.update(
                {
                    f"cold_{k}": float(np.median([c[k] for c in colds]))
                    for k, v in colds[0].items()
                    if isinstance(v, float)
                }
            )
            b["cold_tensorflow_imported"] = any(c["tensorflow_imported"] for c in colds)
        r["backends"][backend] = b

    import tensorflow as tf

    predictor = Predictor.from_dir(model_dir, backend="tensorflow")
    size = predictor.input_size
    r.update(
        {
            "input_size": size,
            "parameters": predictor.model.count_params(),
            "tensorflow": tf.__version__,
            "flops_layers": count_flops(predictor.model),
            "flops_tf_profiler": profiler_flops(predictor.model, size),
        }
    )
    try:
        import onnxruntime

        r["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    r.update(matmul_gflops())
    peak = max(r["numpy_gflops"], r["tf_gflops"])
    r["floor_ms"] = r["flops_layers"] / (peak * 1e9) * 1000
    for b in r["backends"].values():
        b["forward_p50_x_floor"] = b["forward_p50_ms"] / r["floor_ms"]
        b["total_p50_x_floor"] = b["total_p50_ms"] / r["floor_ms"]
    r["machine_before"], r["machine_after"] = before, machine_state()

    print(table(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")


def table(r: dict) -> str:
    names = list(r["backends"])
    rows = [
        ("single image, bytes -> label, p50 / p95", lambda b: f"{b['total_p50_ms']:.1f} / {b['total_p95_ms']:.1f} ms"),
        ("  of which preprocessing p50", lambda b: f"{b['preprocess_p50_ms']:.1f} ms"),
        ("  of which forward p50", lambda b: f"{b['forward_in_total_p50_ms']:.1f} ms"),
        ("forward alone, batch 1, p50 / p95", lambda b: f"{b['forward_p50_ms']:.1f} / {b['forward_p95_ms']:.1f} ms"),
        ("forward p50 / floor", lambda b: f"**{b['forward_p50_x_floor']:.1f}x**"),
        ("bytes -> label p50 / floor", lambda b: f"**{b['total_p50_x_floor']:.1f}x**"),
        (
            "throughput, batch 1 / 8 / 32",
            lambda b: " / ".join(f"{b[f'batch{bs}_images_per_s']:.0f}" for bs in (1, 8, 32)) + " images/s",
        ),
        (
            "Grad-CAM after the prediction, p50 / p95",
            lambda b: f"{b['gradcam_p50_ms']:.1f} / {b['gradcam_p95_ms']:.1f} ms",
        ),
        ("heat-map PNG p50", lambda b: f"{b['heatmap_png_p50_ms']:.1f} ms"),
        (
            "worker's work per image (bytes -> label + heat-map PNG) p50 / p95",
            lambda b: f"{b['worker_image_p50_ms']:.1f} / {b['worker_image_p95_ms']:.1f} ms",
        ),
        (
            "RSS after the single-image runs; after batches up to 32",
            lambda b: f"{b['rss_single_mb']:.0f}; {b['rss_warm_mb']:.0f} MB",
        ),
        ("TensorFlow imported", lambda b: "yes" if b["tensorflow_imported"] else "no"),
    ]
    if all("cold_runs" in b for b in r["backends"].values()):
        n = len(next(iter(r["backends"].values()))["cold_runs"])
        rows += [
            (
                f"cold start, median of {n}: interpreter + imports / load model / first prediction",
                lambda b: (
                    f"{b['cold_interpreter_s'] + b['cold_import_s']:.2f} / {b['cold_load_model_s']:.2f} / "
                    f"{b['cold_first_prediction_s']:.2f} s"
                ),
            ),
            (
                "cold start: process start -> first prediction",
                lambda b: f"**{b['cold_spawn_to_first_prediction_s']:.2f} s**",
            ),
            ("cold start: then first heat map (Grad-CAM + PNG)", lambda b: f"{b['cold_first_heatmap_s']:.2f} s"),
            ("RSS after one prediction", lambda b: f"**{b['cold_rss_after_one_prediction_mb']:.0f} MB**"),
            ("RSS after one prediction and its heat map", lambda b: f"{b['cold_rss_after_heatmap_mb']:.0f} MB"),
            (
                "RSS after 21 single images with heat maps / peak",
                lambda b: f"{b['cold_rss_after_21_mb']:.0f} / {b['cold_rss_peak_mb']:.0f} MB",
            ),
            ("TensorFlow imported by the cold process", lambda b: "yes" if b["cold_tensorflow_imported"] else "no"),
        ]
    threads = r["backends"].get("onnx", {}).get("threads")
    lines = [
        f"model `{r['model']}`, {r['input_size']} px, {r['parameters']:,} parameters; {r['cpus']} CPUs; "
        f"TF {r['tensorflow']} (default threads)"
        + (f", onnxruntime {r['onnxruntime']} ({threads} intra-op threads, no spinning)" if threads else ""),
        f"FLOPs / image (2 x MACs, conv + dense) {r['flops_layers'] / 1e9:.3f} G "
        f"(TF profiler, all ops: {r['flops_tf_profiler'] / 1e9:.3f} G); "
        f"matmul 2048 best: numpy {r['numpy_gflops']:.1f} GFLOP/s ({_blas(r)}), TF {r['tf_gflops']:.1f} GFLOP/s; "
        f"compute floor {r['floor_ms']:.2f} ms",
        "",
        "| | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
        *[f"| {label} | " + " | ".join(fmt(r["backends"][n]) for n in names) + " |" for label, fmt in rows],
        "",
        f"load average (1 min) before / after: {r['machine_before']['loadavg'][0]:.2f} / "
        f"{r['machine_after']['loadavg'][0]:.2f}",
    ]
    for when in ("before", "after"):
        lines += [f"Busiest other processes {when}:", *[f"    {p}" for p in r[f"machine_{when}"]["busiest"]]]
    return "\n".join(lines)


def _blas(r: dict) -> str:
    blas = ", ".join(
        f"{b['lib']}: {b['internal_api']} {b['version']} {b['architecture']} {b['num_threads']} threads"
        for b in r["blas"]
    )
    return f"{blas}; OPENBLAS_CORETYPE={r['OPENBLAS_CORETYPE'] or 'unset'}"


if __name__ == "__main__":
    main()
