"""The Celery application shared by web (to queue) and worker (to run).

Importing this module must stay cheap: the worker's parent process imports
every task module before it forks its pool, so nothing here (or in a task
module) may import TensorFlow or load a model. See inference/runtime.py.
"""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skincare.settings.dev")

app = Celery("skincare")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _prepare_process(sender, **kwargs):
    """Prepare the process once the app has read its settings (skincare.environment.prepare_process).

    This runs in any process that uses the app (worker, beat, a web process
    queueing a task), before it talks to the broker: the filesystem broker's
    spool folders exist, and a worker sets KERAS_HOME before it forks its pool.
    Not at import: importing the settings imports this module and must have
    no side effects.
    """
    from .environment import prepare_process

    prepare_process()


@signals.worker_init.connect
def _register_worker_checks(**kwargs):
    """The control command ``manage.py worker_health`` asks a worker (inference/worker_checks.py)."""
    from inference import worker_checks  # noqa: F401  (registers on import)


# How a worker is started everywhere Python starts one (tests, benchmarks):
# prefork, because only it enforces hard time limits, with one pool process
# (TensorFlow uses the cores for one image at a time; scale with workers).
# scripts/demo.sh and docker/compose.yml spell out the same command.
WORKER_ARGS = ["-A", "skincare", "worker", "-Q", "inference,default", "--pool", "prefork", "--concurrency", "1"]
