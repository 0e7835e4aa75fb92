"""Faults injected into a running system of real processes (tests/faults/conftest.py).

Each scenario ends with exactly one finished clinical prediction per image
and every stored file still there. Recovery times are printed (``-s``; the
figures are in docs/operations.md); the waits only bound them generously,
so that a busy CI machine does not fail a test for being slow.
"""

import io
import time

import pytest

from cases.models import LesionImage
from inference.models import Prediction

from .conftest import LEASE_SECONDS, SWEEP_SECONDS, TIME_LIMIT, hidden_value, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


# How long a wait for recovery may last before the test fails. Upper bounds,
# not timings: the measured times are printed (-s), and on a quiet machine
# they are seconds (docs/operations.md). A CI machine busy with the rest of
# the suite can be many times slower, and a test must not fail for that.
RECOVERY_BUDGET = 180


def api_upload(stack, api, lesion, data, *, timeout=30):
    return api.post(
        f"{stack.web_url}/api/v1/lesions/{lesion.pk}/images",
        files={"file": ("lesion.jpg", data, "image/jpeg")},
        data={"modality": "dermoscopic"},
        timeout=timeout,
    )


def portal_upload(stack, browser, patient, lesion, data, *, token=None, page=None):
    url = f"{stack.web_url}/patients/{patient.pk}/upload"
    if page is None:
        page = browser.get(url, timeout=30).text
    fields = {
        "csrfmiddlewaretoken": hidden_value(page, "csrfmiddlewaretoken"),
        "form_token": token or hidden_value(page, "form_token"),
        "lesion": str(lesion.pk),
        "modality": "dermoscopic",
        "captured_on": time.strftime("%Y-%m-%d"),
    }
    return browser.post(
        url,
        data=fields,
        files={"images": ("lesion.jpg", data, "image/jpeg")},
        headers={"Referer": url},
        allow_redirects=False,
        timeout=30,
    )


def clinical(image):
    return Prediction.objects.filter(image=image, is_shadow=False)


def succeeded(images):
    def check():
        return all(clinical(image).filter(status="succeeded").count() == 1 for image in images)

    return check


def assert_one_finished_prediction_and_every_file(stack, images):
    for image in images:
        prediction = clinical(image).get()  # exactly one
        assert prediction.status == "succeeded", prediction.error
        assert (stack.media / image.image.name).is_file(), "the image file was lost"
        heatmaps = sorted(p.name for p in (stack.media / "heatmaps").glob(f"{prediction.pk}-*.png"))
        assert heatmaps == [prediction.heatmap.name.removeprefix("heatmaps/")]


def test_uploads_while_the_broker_is_down_succeed_and_are_predicted_once_it_is_back(
    healthy, api, browser, owner, patient, lesion, jpeg_bytes, active_model
):
    stack = healthy
    page = browser.get(f"{stack.web_url}/patients/{patient.pk}/upload", timeout=30).text
    stack.redis.stop()

    t0 = time.monotonic()
    from_api = api_upload(stack, api, lesion, jpeg_bytes)
    from_portal = portal_upload(stack, browser, patient, lesion, jpeg_bytes, page=page)
    answered = time.monotonic() - t0
    assert from_api.status_code == 201, from_api.text
    assert from_api.json()["prediction"]["status"] == "pending"
    assert from_portal.status_code == 302, from_portal.text
    # The browser retries the same form (say the answer was slow): nothing twice.
    retried = portal_upload(stack, browser, patient, lesion, jpeg_bytes, page=page)
    assert retried.status_code == 302 and retried.headers["Location"] == from_portal.headers["Location"]

    images = list(LesionImage.objects.order_by("uploaded_at"))
    assert len(images) == 2
    for image in images:
        assert (stack.media / image.image.name).is_file()
        assert list(clinical(image).values_list("status", "sent_at")) == [("pending", None)]

    time.sleep(2)  # the outage goes on a little: nothing changes
    assert Prediction.objects.filter(status="pending").count() == 2
    stack.redis.start()
    back = time.monotonic()
    wait_until(
        succeeded(images), timeout=RECOVERY_BUDGET, what="predictions after the broker returned", logs=stack.logs()
    )
    recovered = time.monotonic() - back
    print(f"\nbroker down: uploads answered in {answered:.1f} s; predicted {recovered:.1f} s after it returned")
    assert_one_finished_prediction_and_every_file(stack, images)


def test_a_worker_killed_mid_task_is_recovered_by_the_other(healthy, api, lesion, jpeg_bytes, active_model):
    stack = healthy
    stack.fault("kill-worker")
    response = api_upload(stack, api, lesion, jpeg_bytes)
    assert response.status_code == 201
    image = LesionImage.objects.get()
    wait_until(lambda: any(not w.alive() for w in stack.workers), timeout=30, what="a worker to die", logs=stack.logs())
    killed = time.monotonic()
    assert clinical(image).get().status == "running"  # its lease runs out; its message stays unacknowledged

    wait_until(succeeded([image]), timeout=RECOVERY_BUDGET, what="recovery", logs=stack.logs())
    recovered = time.monotonic() - killed
    print(f"\nworker SIGKILLed mid-task: predicted {recovered:.1f} s later (lease {LEASE_SECONDS} s)")
    assert_one_finished_prediction_and_every_file(stack, [image])
    assert clinical(image).get().attempts == 2  # the killed start and the one that finished


def test_a_pool_process_killed_mid_task_has_its_message_redelivered_and_the_row_recovered(
    healthy, api, lesion, jpeg_bytes, active_model
):
    stack = healthy
    stack.fault("kill-pool")
    t0 = time.monotonic()
    assert api_upload(stack, api, lesion, jpeg_bytes).status_code == 201
    image = LesionImage.objects.get()
    wait_until(succeeded([image]), timeout=RECOVERY_BUDGET, what="recovery", logs=stack.logs())
    print(f"\npool process SIGKILLed mid-task: predicted {time.monotonic() - t0:.1f} s after the upload")
    # The parent noticed its pool process died (reject_on_worker_lost: the message went back to the queue).
    wait_until(
        lambda: any("WorkerLostError" in worker.output() for worker in stack.workers),
        timeout=30,
        what="the worker to report its lost pool process",
        logs=stack.logs(),
    )
    assert_one_finished_prediction_and_every_file(stack, [image])
    assert clinical(image).get().attempts == 2
    assert all(worker.alive() for worker in stack.workers)


def test_duplicate_deliveries_to_two_workers_compute_once(healthy, api, lesion, jpeg_bytes, active_model):
    stack = healthy
    stack.fault("slow", "2")  # long enough for both workers to hold a delivery at once
    assert api_upload(stack, api, lesion, jpeg_bytes).status_code == 201
    image = LesionImage.objects.get()
    prediction = clinical(image).get()
    stack.send("inference.tasks.run_prediction_task", args=[str(prediction.pk)], queue="inference")

    wait_until(succeeded([image]), timeout=RECOVERY_BUDGET, what="the prediction", logs=stack.logs())

    def declined():
        line = f"Prediction {prediction.pk} is leased by a live run"
        return sum(worker.output().count(line) for worker in stack.workers)

    # The other delivery reached the other worker while the first run held the lease.
    wait_until(lambda: declined() == 1, timeout=10, what="the duplicate to be declined", logs=stack.logs())
    time.sleep(1)
    prediction.refresh_from_db()
    assert prediction.attempts == 1 and declined() == 1
    assert_one_finished_prediction_and_every_file(stack, [image])


def test_a_run_killed_at_the_hard_time_limit_is_not_stranded(healthy, api, lesion, jpeg_bytes, active_model):
    stack = healthy
    stack.fault("hang")
    t0 = time.monotonic()
    assert api_upload(stack, api, lesion, jpeg_bytes).status_code == 201
    image = LesionImage.objects.get()

    budget = max(TIME_LIMIT + LEASE_SECONDS + SWEEP_SECONDS + 20, RECOVERY_BUDGET)
    wait_until(succeeded([image]), timeout=budget, what="recovery after the hard time limit", logs=stack.logs())
    print(f"\nhard time limit ({TIME_LIMIT} s): predicted {time.monotonic() - t0:.1f} s after the upload")
    assert any("Hard time limit" in w.output() for w in stack.workers)
    assert_one_finished_prediction_and_every_file(stack, [image])
    assert clinical(image).get().attempts == 2


def test_the_worker_health_command_pings_a_live_worker(healthy):
    import subprocess
    import sys

    from .conftest import REPO

    worker = healthy.workers[0]
    node = f"{worker.name}@{__import__('socket').gethostname()}"
    command = [sys.executable, "manage.py", "worker_health", "--hostname", node, "--timeout", "5"]
    ok = subprocess.run(command, cwd=REPO, env=worker.env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(
        [*command[:-4], "--hostname", "nobody@nowhere", "--timeout", "1"],
        cwd=REPO,
        env=worker.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "did not answer" in missing.stderr


def worker_health(worker, *, timeout=5):
    import socket
    import subprocess
    import sys

    from .conftest import REPO

    node = f"{worker.name}@{socket.gethostname()}"
    command = [sys.executable, "manage.py", "worker_health", "--hostname", node, "--timeout", str(timeout)]
    return subprocess.run(command, cwd=REPO, env=worker.env, capture_output=True, text=True, timeout=60)


def test_the_worker_health_command_fails_a_worker_cut_off_from_postgresql(healthy):
    """worker2 reaches PostgreSQL through the proxy: cut, it still answers pings but is reported unhealthy."""
    stack = healthy
    cut_off, connected = stack.workers[1], stack.workers[0]
    assert worker_health(cut_off).returncode == 0
    stack.db_proxy.cut()
    try:
        failed = worker_health(cut_off)
        assert failed.returncode == 1, failed.stdout
        assert "cannot reach the database: OperationalError" in failed.stderr
        assert worker_health(connected).returncode == 0  # the other worker is unaffected
    finally:
        stack.db_proxy.restore()
    recovered = worker_health(cut_off)
    assert recovered.returncode == 0, recovered.stderr
    assert "database reachable" in recovered.stdout


def test_a_database_outage_on_the_working_worker_leaves_the_row_recoverable(
    healthy, owner, lesion, jpeg_bytes, active_model, monkeypatch
):
    """The worker running a prediction loses PostgreSQL mid-run: the row is not stranded.

    worker2 reaches PostgreSQL through a proxy the test cuts (the shared
    server is never stopped); worker1 keeps its connection. worker2's
    heartbeat and final UPDATE fail, its lease expires, the sweeper queues
    the row again and worker1 finishes it.
    """
    from celery import current_app

    from cases.services import add_lesion_image

    stack = healthy
    proxied = stack.workers[1]
    monkeypatch.setattr(current_app, "send_task", lambda *args, **kwargs: None)  # sent by hand below
    image = add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic")
    monkeypatch.undo()
    prediction = clinical(image).get()
    stack.fault("slow", "2")
    stack.send("inference.tasks.run_prediction_task", args=[str(prediction.pk)], queue="proxied")
    wait_until(lambda: clinical(image).get().status == "running", timeout=30, what="worker2's run to start")
    stack.db_proxy.cut()
    cut = time.monotonic()

    # Up to 60 s: the cut-off worker also takes sweep messages (and fails them) while it waits
    # for PostgreSQL, so under load the healthy worker's sweeps can come late (docs/operations.md).
    wait_until(succeeded([image]), timeout=RECOVERY_BUDGET, what="recovery after the outage", logs=stack.logs())
    recovered = time.monotonic() - cut
    print(f"\ndatabase lost by the working worker: predicted by another {recovered:.1f} s later")
    assert "lease not renewed" in proxied.output() or "OperationalError" in proxied.output()
    assert_one_finished_prediction_and_every_file(stack, [image])
    assert clinical(image).get().attempts == 2
    stack.db_proxy.restore()


def test_a_broker_that_accepts_but_never_answers_does_not_hang_uploads(healthy, api, lesion, jpeg_bytes, active_model):
    """A partition or an overloaded Redis: connections open, nothing comes back."""
    import socket

    stack = healthy
    stack.redis.stop()
    blackhole = socket.create_server(("127.0.0.1", stack.redis.port), backlog=128)  # never accepts
    try:
        t0 = time.monotonic()
        response = api_upload(stack, api, lesion, jpeg_bytes, timeout=60)
        answered = time.monotonic() - t0
    finally:
        blackhole.close()
    assert response.status_code == 201, response.text
    # Two publish tries, each at most a 2 s connect and a 3 s read (plus a loaded CI machine's slack).
    # It must not hang: the broker timeout is about 9 s; 60 s leaves room for a busy machine.
    assert answered < 60, f"the upload waited {answered:.1f} s for the broker"
    image = LesionImage.objects.get()
    assert (stack.media / image.image.name).is_file()

    stack.redis.start()
    back = time.monotonic()
    wait_until(
        succeeded([image]), timeout=RECOVERY_BUDGET, what="the prediction after the broker returned", logs=stack.logs()
    )
    print(
        f"\nunresponsive broker: upload answered in {answered:.1f} s; predicted {time.monotonic() - back:.1f} s later"
    )
    assert_one_finished_prediction_and_every_file(stack, [image])
