"""Load test of the upload API on real services (not a test).

Starts gunicorn on a loopback port and a Celery worker against a scratch
PostgreSQL database (`skincare_api_bench`) and Redis (db 11), signs in over
the API and then sends sustained uploads of a ~300 KB JPEG at a fixed rate
(open loop: requests are started on schedule whether or not earlier ones
finished). Reports:

- uploads per second achieved, upload latency p50/p95/max, errors by status;
- time from the upload's 201 response to its prediction stored
  (prediction.finished_at; p50/p95), and how many were still queued at the end.

Usage: .venv/bin/python bench/api_load.py [--rate 2] [--duration 30] [--web-workers 2] [--no-worker]
See docs/benchmarks.md ("API").
"""

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from skincare.celery import WORKER_ARGS  # noqa: E402  (after the path is set)

DB_URL = os.environ.get("SKINCARE_BENCH_DATABASE_URL") or os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/skincare_api_bench"
)
BROKER = os.environ.get("SKINCARE_BENCH_BROKER_URL") or os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/11")
PASSWORD = "bench-password-not-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jpeg_of_about(target_bytes):
    """A real dermoscopy photo, upscaled until its JPEG is about ``target_bytes``."""
    from PIL import Image

    source = sorted((REPO / "demo" / "images").glob("*/*.jpg"))[0]
    with Image.open(source) as img:
        img = img.convert("RGB")
        side = img.width
        while True:
            buffer = io.BytesIO()
            img.resize((side, side)).save(buffer, format="JPEG", quality=92)
            if buffer.tell() >= target_bytes or side > 4000:
                return buffer.getvalue()
            side = int(side * 1.2)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else float("nan")


def wait_for(log, text, process, timeout=120):
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{process.args[:4]} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=2.0, help="uploads per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of sustained load")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--image-kb", type=int, default=300)
    parser.add_argument("--no-worker", action="store_true", help="uploads only; no prediction timing")
    parser.add_argument("--drain", type=float, default=300.0, help="seconds to wait for queued predictions")
    args = parser.parse_args()

    media = Path(tempfile.mkdtemp(prefix="skincare-api-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "skincare.settings.test",
        "DATABASE_URL": DB_URL,
        "CELERY_BROKER_URL": BROKER,
        "SKINCARE_MEDIA_ROOT": str(media / "media"),
        "SKINCARE_MODEL_CACHE_DIR": str(media / "model-cache"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        # The load is the point: limits far above it.
        "SKINCARE_API_USER_RATE": "100000/min",
        "SKINCARE_API_TOKEN_RATE": "100000/min",
        "SKINCARE_API_UPLOAD_RATE": "100000/min",
    }
    os.environ.update(env)

    import django
    import psycopg
    import redis
    import requests

    name = DB_URL.rsplit("/", 1)[1]
    with psycopg.connect(DB_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    django.setup()
    from django.core.management import call_command

    redis.Redis.from_url(BROKER).flushdb()
    call_command("migrate", verbosity=0)
    call_command("register_model", "--activate", verbosity=0)

    import datetime as dt

    from django.contrib.auth import get_user_model

    from cases import services
    from cases.models import AnatomicalSite, Clinic, Membership
    from inference.models import Prediction

    user = get_user_model().objects.create_user("bench", password=PASSWORD)
    clinic = Clinic.objects.create(name="Bench")
    Membership.objects.create(user=user, clinic=clinic)
    patient = services.create_patient(
        user=user, clinic=clinic, medical_record_number="B1", given_name="B", family_name="B",
        date_of_birth=dt.date(1970, 1, 1),
    )  # fmt: skip
    lesion = services.create_lesion(user=user, patient=patient, anatomical_site=AnatomicalSite.POSTERIOR_TORSO)
    photo = jpeg_of_about(args.image_kb * 1024)

    processes = []
    web_log, worker_log = media / "gunicorn.log", media / "worker.log"
    try:
        with web_log.open("w") as out:
            web = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "skincare.wsgi:application", "--bind", f"127.0.0.1:{port}",
                 "--workers", str(args.web_workers), "--access-logfile", "-"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        processes.append(web)
        if not args.no_worker:
            with worker_log.open("w") as out:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "celery", *WORKER_ARGS, "--without-gossip", "--without-mingle",
                     "--without-heartbeat", "--loglevel", "INFO"],
                    cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            processes.append(worker)
            wait_for(worker_log, " ready.", worker)
        wait_for(web_log, "Booting worker", web)
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                requests.get(f"{base}/api/schema/", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        signed_in = requests.post(
            f"{base}/api/v1/auth/tokens",
            json={"username": "bench", "password": PASSWORD, "device_name": "bench"},
            timeout=30,
        )
        signed_in.raise_for_status()
        headers = {"Authorization": f"Bearer {signed_in.json()['token']}"}
        url = f"{base}/api/v1/lesions/{lesion.pk}/images"

        results = []  # (latency s, status, image id or None, response wall time)
        lock = threading.Lock()
        local = threading.local()

        def send():
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            started = time.perf_counter()
            try:
                response = session.post(
                    url,
                    headers=headers,
                    files={"file": ("bench.jpg", photo, "image/jpeg")},
                    data={"modality": "dermoscopic", "client_id": str(uuid.uuid4())},
                    timeout=120,
                )
                status = response.status_code
                image_id = response.json().get("id") if status == 201 else None
            except requests.RequestException:
                status, image_id = "connection error", None
            with lock:
                results.append((time.perf_counter() - started, status, image_id, datetime.now(UTC)))

        total = int(args.rate * args.duration)
        interval = 1.0 / args.rate
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=64) as pool:
            for i in range(total):
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(send)
        elapsed = time.perf_counter() - start

        latencies = [r[0] * 1000 for r in results if r[1] == 201]
        errors = {}
        for r in results:
            if r[1] != 201:
                errors[r[1]] = errors.get(r[1], 0) + 1
        print(f"photo: {len(photo) / 1024:.0f} KB JPEG; gunicorn workers: {args.web_workers}; cores: {os.cpu_count()}")
        print(f"uploads: {len(latencies)} ok of {total} in {elapsed:.1f} s -> {len(latencies) / elapsed:.2f} /s "
              f"(target {args.rate:g} /s)")  # fmt: skip
        print(f"upload latency: p50 {percentile(latencies, 0.5):.0f} ms, p95 {percentile(latencies, 0.95):.0f} ms, "
              f"max {max(latencies, default=float('nan')):.0f} ms")  # fmt: skip
        print(f"errors: {sum(errors.values())} {errors or ''}")

        if not args.no_worker:
            uploaded = {r[2]: r[3] for r in results if r[2]}
            deadline = time.monotonic() + args.drain
            while time.monotonic() < deadline:
                done = Prediction.objects.filter(image_id__in=uploaded, status__in=["succeeded", "failed"]).count()
                if done == len(uploaded):
                    break
                time.sleep(0.5)
            lags, unfinished = [], 0
            rows = Prediction.objects.filter(image_id__in=uploaded).values_list("image_id", "status", "finished_at")
            for image_id, status, finished_at in rows:
                if status != "succeeded":
                    unfinished += 1
                    continue
                lags.append((finished_at - uploaded[str(image_id)]).total_seconds())
            print(f"upload response -> prediction stored: p50 {percentile(lags, 0.5):.2f} s, "
                  f"p95 {percentile(lags, 0.95):.2f} s, max {max(lags, default=float('nan')):.2f} s; "
                  f"not succeeded after drain: {unfinished}")  # fmt: skip
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    print(f"logs: {media}")


if __name__ == "__main__":
    main()
