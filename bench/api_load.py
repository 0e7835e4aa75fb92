"""Load test of the upload API on real services (not a test).

Starts gunicorn on a loopback port and Celery workers (``--workers N``
separate ``--concurrency 1`` processes, each with its own model) against a
scratch PostgreSQL database (`skincare_api_bench`) and Redis (db 11), signs
in over the API and then sends sustained uploads of a ~320 KB JPEG, either
at a fixed rate (``--rate``; open loop: requests are started on schedule
whether or not earlier ones finished) or as fast as ``--clients`` clients
can, each sending its next upload when the last one is answered (closed
loop: the web tier's maximum throughput). Reports:

- uploads per second achieved, upload latency p50/p95/max, errors by status;
- the CPU time the gunicorn processes spent per upload;
- time from the upload's 201 response to its prediction stored
  (prediction.finished_at; p50/p95), predictions stored per second while the
  queue was busy, and how many were still queued at the end.

Usage: .venv/bin/python bench/api_load.py [--rate 2 | --clients 8] [--duration 30] [--web-workers 2]
       [--threads 1] [--workers 1 | --no-worker]
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


def tree_cpu_seconds(pid):
    """User + system CPU seconds of ``pid`` and its children alive now (gunicorn's master and workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


LOAD_BEFORE = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else float("nan")


def wait_for(log, text, process, timeout=120):
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{process.args[:4]} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


def fresh_world(db_url, broker):
    """A new, migrated database with the shipped model active, an empty broker, and one clinician
    with one lesion to upload to: ``(user, lesion)``. Django is set up here (settings from the env)."""
    import datetime as dt

    import django
    import psycopg
    import redis

    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(db_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from cases import services
    from cases.models import AnatomicalSite, Clinic, Membership

    redis.Redis.from_url(broker).flushdb()
    call_command("migrate", verbosity=0)
    call_command("register_model", "--activate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password=PASSWORD)
    clinic = Clinic.objects.create(name="Bench")
    Membership.objects.create(user=user, clinic=clinic)
    patient = services.create_patient(
        user=user, clinic=clinic, medical_record_number="B1", given_name="B", family_name="B",
        date_of_birth=dt.date(1970, 1, 1),
    )  # fmt: skip
    lesion = services.create_lesion(user=user, patient=patient, anatomical_site=AnatomicalSite.POSTERIOR_TORSO)
    return user, lesion


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=2.0, help="uploads per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of sustained load")
    parser.add_argument("--clients", type=int, default=0, help="closed loop: this many back-to-back clients")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker (>1: gthread)")
    parser.add_argument("--conn-max-age", type=int, default=60, help="SKINCARE_DB_CONN_MAX_AGE of the web tier")
    parser.add_argument("--image-kb", type=int, default=300)
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes, --concurrency 1 each")
    parser.add_argument("--inference-threads", type=int, default=1, help="ONNX Runtime threads per worker process")
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
        "SKINCARE_DB_CONN_MAX_AGE": str(args.conn_max_age),
        "SKINCARE_INFERENCE_THREADS": str(args.inference_threads),
        # The load is the point: limits far above it.
        "SKINCARE_API_USER_RATE": "100000/min",
        "SKINCARE_API_TOKEN_RATE": "100000/min",
        "SKINCARE_API_UPLOAD_RATE": "100000/min",
    }
    os.environ.update(env)

    import requests

    user, lesion = fresh_world(DB_URL, BROKER)
    from inference.models import Prediction

    photo = jpeg_of_about(args.image_kb * 1024)

    processes = []
    web_log = media / "gunicorn.log"
    worker_logs = [media / f"worker{i}.log" for i in range(0 if args.no_worker else args.workers)]
    try:
        with web_log.open("w") as out:
            web = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "skincare.wsgi:application", "--bind", f"127.0.0.1:{port}",
                 "--workers", str(args.web_workers), "--threads", str(args.threads),
                 "--access-logfile", "-" if args.clients == 0 else "/dev/null"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        processes.append(web)
        for i, log in enumerate(worker_logs):
            with log.open("w") as out:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "celery", *WORKER_ARGS, "--without-gossip", "--without-mingle",
                     "--without-heartbeat", "--loglevel", "INFO", "--hostname", f"bench{i}@%h"],
                    cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            processes.append(worker)
        for log, worker in zip(worker_logs, processes[1:], strict=True):
            wait_for(log, " ready.", worker)
        wait_for(web_log, "Booting worker", web)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120  # workers still importing on a busy machine
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=10)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
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
        # The multipart body built once: the load generator shares the two cores, so each
        # request costs it only the client_id's bytes.
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="modality"\r\n\r\ndermoscopic\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="bench.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        body_headers = {**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}

        def send():
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            tail = (
                f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="client_id"\r\n\r\n'
                f"{uuid.uuid4()}\r\n--{boundary}--\r\n"
            ).encode()
            started = time.perf_counter()
            try:
                response = session.post(url, headers=body_headers, data=head + photo + tail, timeout=120)
                status = response.status_code
                image_id = response.json().get("id") if status == 201 else None
            except requests.RequestException:
                status, image_id = "connection error", None
            with lock:
                results.append((time.perf_counter() - started, status, image_id, datetime.now(UTC)))

        web_cpu_before = tree_cpu_seconds(web.pid)
        workers_cpu_before = sum(tree_cpu_seconds(w.pid) for w in processes[1:])
        start = time.perf_counter()
        if args.clients:
            total = None
            stop_at = start + args.duration

            def client():
                while time.perf_counter() < stop_at:
                    send()

            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        else:
            total = int(args.rate * args.duration)
            interval = 1.0 / args.rate
            with ThreadPoolExecutor(max_workers=64) as pool:
                for i in range(total):
                    delay = start + i * interval - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(send)
        elapsed = time.perf_counter() - start
        web_cpu = tree_cpu_seconds(web.pid) - web_cpu_before
        total = total or len(results)

        latencies = [r[0] * 1000 for r in results if r[1] == 201]
        errors = {}
        for r in results:
            if r[1] != 201:
                errors[r[1]] = errors.get(r[1], 0) + 1
        print(
            f"photo: {len(photo) / 1024:.0f} KB JPEG; gunicorn workers: {args.web_workers} x {args.threads} threads; "
            f"celery workers: {0 if args.no_worker else args.workers}; cores: {os.cpu_count()}; "
            f"load average before: {LOAD_BEFORE}"
        )
        mode = f"closed loop, {args.clients} clients" if args.clients else f"target {args.rate:g} /s"
        print(
            f"uploads: {len(latencies)} ok of {total} in {elapsed:.1f} s -> {len(latencies) / elapsed:.2f} /s ({mode})"
        )
        ok = len(latencies) or 1
        print(f"web tier CPU (gunicorn, all processes): {web_cpu:.1f} s, {web_cpu / ok * 1000:.1f} ms per upload")
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
            lags, unfinished, finishes = [], 0, []
            rows = Prediction.objects.filter(image_id__in=uploaded).values_list("image_id", "status", "finished_at")
            for image_id, status, finished_at in rows:
                if status != "succeeded":
                    unfinished += 1
                    continue
                lags.append((finished_at - uploaded[str(image_id)]).total_seconds())
                finishes.append(finished_at)
            workers_cpu = sum(tree_cpu_seconds(w.pid) for w in processes[1:]) - workers_cpu_before
            print(f"celery workers' CPU (all processes): {workers_cpu:.1f} s, "
                  f"{workers_cpu / max(1, len(finishes)) * 1000:.1f} ms per prediction")  # fmt: skip
            if len(finishes) > 1:
                span = (max(finishes) - min(finishes)).total_seconds()
                print(f"predictions stored: {len(finishes)} in {span:.1f} s (first to last) -> "
                      f"{(len(finishes) - 1) / span:.2f} /s")  # fmt: skip
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
