"""A real Celery worker process against the test PostgreSQL database and Redis."""

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from django.conf import settings

from skincare.celery import WORKER_ARGS

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Worker:
    process: subprocess.Popen
    log: Path
    media: Path
    var: Path | None = None  # SKINCARE_VAR_DIR, when the test gave the worker its own

    def output(self):
        return self.log.read_text(errors="replace")


def _database_url(settings_dict):
    user = settings_dict.get("USER") or ""
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


@pytest.fixture(scope="module")
def broker():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()  # no stale messages from an earlier run
    return client


def _start_worker(tmp_path_factory, *, queues, hostname, extra_env=None):
    from django.db import connection

    media = tmp_path_factory.mktemp("e2e-media")
    log = tmp_path_factory.mktemp("e2e-worker") / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "skincare.settings.test",
        "DATABASE_URL": _database_url(connection.settings_dict),  # the test database
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "SKINCARE_MEDIA_ROOT": str(media),
        "SKINCARE_MODEL_CACHE_DIR": str(tmp_path_factory.mktemp("e2e-model-cache")),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        **(extra_env or {}),
    }
    args = list(WORKER_ARGS)
    args[args.index("-Q") + 1] = queues
    command = [
        sys.executable, "-m", "celery", *args, "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", hostname,
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    started = Worker(process, log, media)
    deadline = time.monotonic() + 90
    while " ready." not in started.output():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"worker did not start:\n{started.output()}")
        time.sleep(0.2)
    return started


def _stop_worker(started):
    started.process.terminate()
    try:
        started.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        started.process.kill()


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, tmp_path_factory, broker):
    started = _start_worker(tmp_path_factory, queues=WORKER_ARGS[WORKER_ARGS.index("-Q") + 1], hostname="e2e@%h")
    yield started
    _stop_worker(started)


@pytest.fixture(scope="module")
def training_worker(django_db_setup, django_db_blocker, tmp_path_factory, broker):
    """A worker of the ``training`` queue only, as scripts/demo.sh starts one (site adaptation jobs)."""
    var = tmp_path_factory.mktemp("e2e-var")
    started = _start_worker(
        tmp_path_factory, queues="training", hostname="e2e-training@%h", extra_env={"SKINCARE_VAR_DIR": str(var)}
    )
    started.var = var
    yield started
    _stop_worker(started)


@pytest.fixture(autouse=True)
def _media_shared_with_worker(request, settings):
    """Store files where the worker reads them (overrides the per-test folder)."""
    name = next((n for n in ("worker", "training_worker") if n in request.fixturenames), None)
    if name is None:
        return
    media = request.getfixturevalue(name).media
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": media, "base_url": None},
        },
    }
    settings.MEDIA_ROOT = media


def wait_for(condition, *, timeout=120.0, interval=0.1, worker=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if worker is not None and worker.process.poll() is not None:
            pytest.fail(f"worker died:\n{worker.output()}")
        time.sleep(interval)
    pytest.fail("timed out" + (f"; worker log:\n{worker.output()[-4000:]}" if worker else ""))
