"""CPU time and SQL queries of one prediction in the worker's service (not a test).

The other half of bench/upload_profile.py: the same scratch PostgreSQL
database and ~320 KB JPEG, images added through
``cases.services.add_lesion_image`` (their on-commit publish goes to a Redis
db no worker reads), then ``inference.services.run_prediction`` called in
this process for each, as a pool process calls it: claim and lease, read the
stored file, decode and preprocess, the model (ONNX Runtime, one thread
unless ``SKINCARE_INFERENCE_THREADS`` says otherwise, as bench/api_load.py's
workers), the heat-map PNG and its storage, the result's UPDATE. Celery's
own share (message decoding, acknowledgement, the prefork pipe) is not in
it: bench/api_load.py reads the whole worker's CPU from /proc.

Reports the process CPU time per prediction (p50 / p95 / mean), the wall
time, the stages as the prediction row records them (preprocess, inference,
heat map), and the SQL queries of one prediction; ``--profile`` prints
cProfile's top functions (CPU clock).

Usage: .venv/bin/python bench/worker_profile.py [--predictions 40] [--profile]
See docs/benchmarks.md ("Prediction loop").
"""

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.api_load import jpeg_of_about, percentile  # noqa: E402  (after the path is set)
from bench.upload_profile import scratch_world  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--predictions", type=int, default=40)
    parser.add_argument("--image-kb", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="cProfile the predictions")
    args = parser.parse_args()

    user, lesion = scratch_world("worker", SKINCARE_INFERENCE_THREADS=os.environ.get("SKINCARE_INFERENCE_THREADS", "1"))
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from cases.services import add_lesion_image
    from inference import services
    from inference.models import Prediction

    photo = jpeg_of_about(args.image_kb * 1024)
    warm_up = 5
    ids = []
    for _ in range(args.predictions + warm_up + 1):
        image = add_lesion_image(uploader=user, lesion=lesion, file=io.BytesIO(photo))
        ids.append(Prediction.objects.get(image=image).pk)
    print(f"image: {len(photo) / 1024:.0f} KB JPEG; {args.predictions} predictions after {warm_up} warm-up ones")

    for pk in ids[:warm_up]:
        services.run_prediction(pk)
    cpu, wall = [], []
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    for pk in ids[warm_up:-1]:
        c0, w0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        prediction = services.run_prediction(pk)
        if profiler:
            profiler.disable()
        cpu.append((time.process_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
        assert prediction.status == Prediction.Status.SUCCEEDED, prediction.error
    with CaptureQueriesContext(connection) as queries:
        services.run_prediction(ids[-1])
    rows = Prediction.objects.filter(pk__in=ids[warm_up:-1])
    stage = {
        name: percentile([getattr(row, field) for row in rows], 0.5)
        for name, field in (("preprocess", "preprocess_ms"), ("inference", "inference_ms"), ("heat map", "heatmap_ms"))
    }
    print(
        f"prediction: CPU p50 {percentile(cpu, 0.5):.1f} ms, p95 {percentile(cpu, 0.95):.1f} ms, "
        f"mean {statistics.mean(cpu):.1f} ms; wall p50 {percentile(wall, 0.5):.1f} ms; SQL queries {len(queries)}"
    )
    print("stages (wall, p50): " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in stage.items()))
    if os.environ.get("SKINCARE_BENCH_SHOW_QUERIES"):
        for query in queries.captured_queries:
            print("   ", query["sql"][:160])
    if profiler:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
