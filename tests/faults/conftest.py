"""Real processes for the fault tests: our own redis-server (stopped and started
at will), a web server, two workers and beat, on a scratch PostgreSQL database.

Everything runs with short leases and sweeps (lease 3 s, sweep 1 s, hard
time limit 8 s) so that each fault is recovered from in seconds; the
production arithmetic is the same with bigger numbers (docs/operations.md).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from django.conf import settings

from tests.e2e.conftest import _database_url

REPO = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 3
SWEEP_SECONDS = 1
SOFT_TIME_LIMIT = 6
TIME_LIMIT = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, *, timeout, interval=0.1, what="condition", logs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    tails = "\n".join(f"--- {log.name}:\n{log.read_text(errors='replace')[-3000:]}" for log in logs if log.exists())
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{tails}")


class RedisServer:
    def __init__(self, folder: Path):
        self.port = free_port()
        self.log = folder / "redis.log"
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def start(self):
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with self.log.open("a") as out:
            self.process = subprocess.Popen([*command, "--daemonize", "no"], stdout=out, stderr=subprocess.STDOUT)
        wait_until(self.answers, timeout=10, what="redis-server", logs=[self.log])

    def answers(self):
        try:
            return self.client().ping()
        except redis.RedisError:
            return False

    def stop(self):
        """A crash: SIGKILL, and with no persistence every message it held is gone."""
        self.process.kill()
        self.process.wait(timeout=10)


@dataclass
class Service:
    name: str
    command: list
    env: dict
    log: Path
    process: subprocess.Popen | None = None
    ready_marker: str | None = None

    def start(self):
        with self.log.open("a") as out:
            # A session of its own: killing its process group kills it and its pool only.
            self.process = subprocess.Popen(
                self.command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def output(self):
        return self.log.read_text(errors="replace")

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def stop(self):
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@dataclass
class Stack:
    redis: RedisServer
    web_url: str
    web: Service
    workers: list
    beat: Service
    media: Path
    faults: Path
    db_proxy: "TcpProxy"

    def logs(self):
        return [self.web.log, self.beat.log, *(worker.log for worker in self.workers), self.redis.log]

    def ensure_workers(self):
        """Start again any worker a test killed, and wait until all are ready."""
        for worker in self.workers:
            if not worker.alive():
                worker.log.write_text("")
                worker.start()
        for worker in self.workers:
            wait_until(lambda w=worker: " ready." in w.output(), timeout=90, what=f"{worker.name}", logs=[worker.log])

    def fault(self, name, content=""):
        (self.faults / name).write_text(content)

    def clear_faults(self):
        for path in self.faults.iterdir():
            path.unlink()

    def send(self, task_name, *, args, queue):
        """Publish to the stack's broker (not the test settings' one, which CELERY_BROKER_URL names)."""
        from celery import current_app

        with current_app.connection_for_write(self.redis.url) as connection:
            current_app.send_task(task_name, args=args, queue=queue, connection=connection)


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, tmp_path_factory):
    from django.db import connection

    if shutil.which("redis-server") is None:
        pytest.skip("the fault tests start their own redis-server: install it (apt-get install redis-server)")
    root = tmp_path_factory.mktemp("faults")
    media, faults, logs = root / "media", root / "faults", root / "logs"
    for folder in (media, faults, logs):
        folder.mkdir()
    server = RedisServer(logs)
    server.start()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "skincare.settings.test",
        "DATABASE_URL": _database_url(connection.settings_dict),
        "CELERY_BROKER_URL": server.url,
        "SKINCARE_MEDIA_ROOT": str(media),
        "SKINCARE_MODEL_CACHE_DIR": str(root / "model-cache"),
        "SKINCARE_PREDICTION_LEASE_SECONDS": str(LEASE_SECONDS),
        "SKINCARE_SWEEP_SECONDS": str(SWEEP_SECONDS),
        "SKINCARE_UNSENT_GRACE_SECONDS": "1",
        "SKINCARE_INFERENCE_SOFT_TIME_LIMIT": str(SOFT_TIME_LIMIT),
        "SKINCARE_INFERENCE_TIME_LIMIT": str(TIME_LIMIT),
        "SKINCARE_FAULT_DIR": str(faults),
        "SKINCARE_INFERENCE_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    port = free_port()
    web = Service(
        "web",
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"],
        env,
        logs / "web.log",
    )
    # worker2 reaches PostgreSQL through a proxy a test can cut, and alone
    # also serves the "proxied" queue, so a test can hand it a prediction.
    settings_dict = connection.settings_dict
    db_proxy = TcpProxy(settings_dict.get("HOST") or "127.0.0.1", int(settings_dict.get("PORT") or 5432))
    proxied_env = {
        **env,
        "DATABASE_URL": _database_url({**settings_dict, "HOST": "127.0.0.1", "PORT": db_proxy.port}),
    }

    def worker(name, queues, worker_env):
        command = [
            sys.executable, "-m", "celery", "-A", "tests.faults.faultapp", "worker", "-Q", queues,
            "--pool", "prefork", "--concurrency", "1", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", f"{name}@%h",
        ]  # fmt: skip
        return Service(name, command, worker_env, logs / f"{name}.log")

    workers = [worker("worker1", "inference,default", env), worker("worker2", "inference,default,proxied", proxied_env)]
    beat = Service(
        "beat",
        [
            sys.executable, "-m", "celery", "-A", "skincare", "beat", "--loglevel", "INFO",
            "-S", "celery.beat:PersistentScheduler", "--schedule", str(root / "beat-schedule"),
        ],
        env,
        logs / "beat.log",
    )  # fmt: skip
    started = Stack(server, f"http://127.0.0.1:{port}", web, workers, beat, media, faults, db_proxy)
    for service in (web, *workers, beat):
        service.start()
    try:
        wait_until(lambda: _answers(started.web_url), timeout=60, what="web server", logs=[web.log])
        started.ensure_workers()
        yield started
    finally:
        for service in (beat, *workers, web):
            service.stop()
        if server.process.poll() is None:
            server.stop()
        db_proxy.close()


def _answers(url):
    try:
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(autouse=True)
def _media_shared_with_the_stack(request, settings):
    if "stack" not in request.fixturenames:
        return
    media = request.getfixturevalue("stack").media
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": media, "base_url": None},
        },
    }
    settings.MEDIA_ROOT = media


@pytest.fixture
def healthy(stack):
    """Every worker up, the broker up, no fault armed: each test starts from a working system."""
    if stack.redis.process.poll() is not None:
        stack.redis.start()
    stack.db_proxy.restore()
    stack.clear_faults()
    stack.ensure_workers()
    yield stack
    stack.clear_faults()


@pytest.fixture
def api(owner):
    from api.tokens import issue_token

    _, token = issue_token(user=owner, name="fault tests")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


@pytest.fixture
def browser(owner):
    """A signed-in browser session against the stack's web server."""
    from django.test import Client

    client = Client()
    client.force_login(owner)
    session = requests.Session()
    session.cookies.set(settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value)
    return session


def hidden_value(page: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]+)"', page).group(1)


class TcpProxy:
    """A TCP proxy to PostgreSQL that a test can cut: a database outage for the processes behind it only.

    (The shared PostgreSQL itself is never stopped.) While cut, every open
    connection is closed and new ones are accepted and closed at once.
    """

    def __init__(self, host, port):
        import threading

        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_off = threading.Event()
        self.open = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                self.open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        self.cut_off.set()
        with self.lock:
            for sock in self.open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.open.clear()

    def restore(self):
        self.cut_off.clear()

    def close(self):
        self.cut()
        self.listener.close()
