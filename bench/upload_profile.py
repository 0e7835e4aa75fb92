"""CPU time and SQL queries of one upload, through the API and the portal (not a test).

Runs the real request path in this process (Django's test client: URL
routing, middleware, authentication, the view, the service, storage, the
on-commit publish to Redis) against a scratch PostgreSQL database
(`skincare_upload_bench`) and Redis (db 6 unless overridden), with the ~320 KB
JPEG that bench/api_load.py sends. For each door it reports the process CPU
time per upload (p50 / p95 / mean over ``--uploads``), the wall time and the
SQL queries of one upload; ``--profile`` prints cProfile's top functions by
cumulative time for the API door.

Usage: .venv/bin/python bench/upload_profile.py [--uploads 100] [--profile]
See docs/benchmarks.md ("Upload path").
"""

import argparse
import cProfile
import datetime
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.api_load import fresh_world, jpeg_of_about, percentile  # noqa: E402  (after the path is set)

DB_URL = os.environ.get("SKINCARE_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/skincare_upload_bench")
BROKER = os.environ.get("SKINCARE_BENCH_BROKER_URL", "redis://127.0.0.1:6379/6")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=100, help="uploads per door")
    parser.add_argument("--image-kb", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="cProfile the API uploads")
    args = parser.parse_args()

    user, lesion = scratch_world(
        "upload",
        SKINCARE_API_USER_RATE="100000/min",
        SKINCARE_API_TOKEN_RATE="100000/min",
        SKINCARE_API_UPLOAD_RATE="100000/min",
    )
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from api.tokens import issue_token

    photo = jpeg_of_about(args.image_kb * 1024)
    _, token = issue_token(user=user, name="bench")

    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="127.0.0.1")
    api_url = f"/api/v1/lesions/{lesion.pk}/images"

    def api_upload():
        response = api.post(
            api_url,
            {"file": named(photo, "bench.jpg"), "modality": "dermoscopic", "client_id": str(uuid.uuid4())},
        )
        assert response.status_code == 201, response.content[:500]

    portal = Client(HTTP_HOST="127.0.0.1")
    portal.force_login(user)
    portal_url = f"/patients/{lesion.patient_id}/upload"

    def portal_upload():
        page = portal.get(portal_url).content.decode()
        token = page.split('name="form_token" value="', 1)[1].split('"', 1)[0]
        response = portal.post(
            portal_url,
            {
                "form_token": token,
                "lesion": str(lesion.pk),
                "modality": "dermoscopic",
                "captured_on": datetime.date.today().isoformat(),
                "images": named(photo, "bench.jpg"),
            },
        )
        assert response.status_code == 302, response.content[:500]

    print(f"image: {len(photo) / 1024:.0f} KB JPEG; {args.uploads} uploads per door after 5 warm-up uploads")
    for door, upload in (("API", api_upload), ("portal (GET form + POST)", portal_upload)):
        for _ in range(5):
            upload()
        cpu, wall = [], []
        profiler = cProfile.Profile(time.process_time) if args.profile and door == "API" else None
        for _ in range(args.uploads):
            c0, w0 = time.process_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            upload()
            if profiler:
                profiler.disable()
            cpu.append((time.process_time() - c0) * 1000)
            wall.append((time.perf_counter() - w0) * 1000)
        with CaptureQueriesContext(connection) as queries:
            upload()
        print(
            f"{door}: CPU per upload p50 {percentile(cpu, 0.5):.1f} ms, p95 {percentile(cpu, 0.95):.1f} ms, "
            f"mean {statistics.mean(cpu):.1f} ms; wall p50 {percentile(wall, 0.5):.1f} ms; "
            f"SQL queries {len(queries)}"
        )
        if os.environ.get("SKINCARE_BENCH_SHOW_QUERIES"):
            for query in queries.captured_queries:
                print("   ", query["sql"][:160])
        if profiler:
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats(os.environ.get("SKINCARE_BENCH_SORT", "cumulative")).print_stats(45)


def scratch_world(name: str, **env):
    """``fresh_world`` in this process on the scratch services above, with a media folder of its own.

    Shared by the in-process benchmarks (this one, worker_profile.py,
    duplicate_scan.py); ``env``: settings of the run (throttle rates...).
    """
    media = Path(tempfile.mkdtemp(prefix=f"skincare-{name}-bench-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "skincare.settings.test",
            "DATABASE_URL": DB_URL,
            "CELERY_BROKER_URL": BROKER,
            "SKINCARE_MEDIA_ROOT": str(media / "media"),
            "SKINCARE_MODEL_CACHE_DIR": str(media / "model-cache"),
            **env,
        }
    )
    return fresh_world(DB_URL, BROKER)


def named(data: bytes, name: str):
    file = io.BytesIO(data)
    file.name = name
    return file


if __name__ == "__main__":
    main()
