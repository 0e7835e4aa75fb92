"""Benchmark the prediction loop on real services (not a test).

Starts a Celery worker process against a scratch PostgreSQL database
(`skincare_bench`) and Redis (db 13), then measures:

- worker cold start: process spawn -> "ready", and spawn -> first prediction
  stored (includes TensorFlow import and model load in the pool process);
- RSS of the worker's pool process once warm;
- time from image committed to prediction stored, for N images uploaded one
  at a time through cases.services.add_lesion_image (median, p95).

Usage: .venv/bin/python bench/prediction_latency.py [--images 20]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DB_URL = os.environ.get("SKINCARE_BENCH_DATABASE_URL") or os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/skincare_bench"
)
BROKER = os.environ.get("SKINCARE_BENCH_BROKER_URL") or os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid):
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()

    media = Path(tempfile.mkdtemp(prefix="skincare-bench-media-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "skincare.settings.test",
        "DATABASE_URL": DB_URL,
        "CELERY_BROKER_URL": BROKER,
        "SKINCARE_MEDIA_ROOT": str(media),
        "SKINCARE_MODEL_CACHE_DIR": str(media / "model-cache"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    os.environ.update(env)

    import django
    import psycopg

    from skincare.celery import WORKER_ARGS

    admin_url = DB_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS skincare_bench WITH (FORCE)")
        conn.execute("CREATE DATABASE skincare_bench")
    django.setup()
    import redis
    from django.core.management import call_command

    redis.Redis.from_url(BROKER).flushdb()
    call_command("migrate", verbosity=0)
    call_command("register_model", "--activate", verbosity=0)

    from django.contrib.auth import get_user_model

    from cases import services
    from cases.models import AnatomicalSite, Clinic, Membership
    from inference.models import Prediction

    user = get_user_model().objects.create_user("bench")
    clinic = Clinic.objects.create(name="Bench")
    Membership.objects.create(user=user, clinic=clinic)
    import datetime

    patient = services.create_patient(
        user=user,
        clinic=clinic,
        medical_record_number="B1",
        given_name="B",
        family_name="B",
        date_of_birth=datetime.date(1970, 1, 1),
    )
    lesion = services.create_lesion(user=user, patient=patient, anatomical_site=AnatomicalSite.POSTERIOR_TORSO)
    images = sorted((REPO / "demo" / "images").glob("*/*.jpg"))

    def upload_and_wait(path):
        with path.open("rb") as fh:
            image = services.add_lesion_image(uploader=user, lesion=lesion, file=fh, modality="dermoscopic")
        committed = time.perf_counter()
        while True:
            p = Prediction.objects.filter(image=image).values_list("status", flat=True).first()
            if p in ("succeeded", "failed"):
                return time.perf_counter() - committed, p
            time.sleep(0.005)

    spawn = time.perf_counter()
    log = media / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                *WORKER_ARGS,
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],  # fmt: skip
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        while " ready." not in log.read_text():
            if worker.poll() is not None:
                sys.exit(log.read_text())
            time.sleep(0.05)
        ready = time.perf_counter() - spawn
        first, status = upload_and_wait(images[0])
        cold_first = time.perf_counter() - spawn
        assert status == "succeeded", status
        latencies = []
        for i in range(args.images):
            seconds, status = upload_and_wait(images[i % len(images)])
            assert status == "succeeded", status
            latencies.append(seconds * 1000)
        pool_rss = [rss_mb(p) for p in children(worker.pid)]
        parent_rss = rss_mb(worker.pid)
        timings = list(Prediction.objects.filter(status="succeeded").values_list("preprocess_ms", "inference_ms"))
    finally:
        worker.terminate()
        worker.wait(30)

    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    print(f"worker spawn -> ready:                 {ready:.2f} s")
    print(f"worker spawn -> first prediction:      {cold_first:.2f} s (first image {first:.2f} s after commit)")
    print(f"pool process RSS (warm):               {', '.join(f'{r:.0f} MB' for r in pool_rss) or 'n/a'}")
    print(f"parent process RSS:                    {parent_rss:.0f} MB")
    print(
        f"commit -> prediction stored, {args.images} images: median {statistics.median(latencies):.1f} ms, "
        f"p95 {p95:.1f} ms, min {latencies[0]:.1f} ms"
    )
    print(
        f"  of which in the worker: preprocess median {statistics.median(t[0] for t in timings):.2f} ms, "
        f"model median {statistics.median(t[1] for t in timings):.2f} ms"
    )


if __name__ == "__main__":
    main()
