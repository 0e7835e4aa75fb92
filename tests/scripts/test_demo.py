"""scripts/demo.sh: Ctrl-C stops the demo and everything it started, with no crash.

The script runs as a terminal would run it: in a process group of its own,
to which Ctrl-C sends SIGINT. Embedded services only (SQLite, filesystem
broker) in a scratch var folder; TensorFlow is not needed by the demo, and
the shipped model's load check is the real one.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

DEMO = Path(settings.BASE_DIR) / "scripts" / "demo.sh"
# Generous: migrate, the model's load check and seed_demo on a busy CI machine.
START_TIMEOUT = 300
STOP_TIMEOUT = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def demo_env(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SKINCARE_", "DATABASE_", "CELERY_", "DJANGO_", "AWS_", "CACHE_URL"))
    }
    env.update(
        PY=sys.executable,
        SKINCARE_VAR_DIR=str(tmp_path / "var"),
        SKINCARE_PORT=str(_free_port()),
        DJANGO_SETTINGS_MODULE="skincare.settings.dev",
    )
    return env


def test_ctrl_c_stops_the_demo_and_every_process_it_started(demo_env, tmp_path):
    log = (tmp_path / "demo.log").open("w+")
    demo = subprocess.Popen(
        ["bash", str(DEMO)], env=demo_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    pgid = demo.pid
    try:
        url = f"http://127.0.0.1:{demo_env['SKINCARE_PORT']}/healthz"
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(url):
            assert demo.poll() is None, f"the demo stopped by itself:\n{_tail(log)}"
            assert time.monotonic() < deadline, f"the demo did not answer {url}:\n{_tail(log)}"
            time.sleep(1)

        os.killpg(pgid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        returncode = demo.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftovers = _group_alive(pgid)
    finally:
        if _group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
        demo.wait()

    output = _tail(log)
    assert returncode == 130, output  # bash's status for "stopped by SIGINT", not a crash (139)
    assert "Segmentation fault" not in output and "core dumped" not in output
    assert not leftovers, f"processes of the demo still run after Ctrl-C:\n{output}"
    assert not _answers(url)


def _tail(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-4000:]
