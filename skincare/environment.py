"""skincare's environment variables: how settings read them, and what a process sets up at start.

The naming rule (README, "Configuration"): names that other software also
reads keep their standard spelling (``DJANGO_SETTINGS_MODULE``,
``DATABASE_URL``, ``CELERY_BROKER_URL``, ``CACHE_URL``, ``AWS_*`` as
django-storages and boto3 name them, ``KERAS_HOME``, ``TF_CPP_MIN_LOG_LEVEL``);
every other variable skincare reads is ``SKINCARE_*``. The names used before
that rule (``RENAMED``) are still read when the new name is unset, so an
existing deployment keeps working.

Importing this module, like importing the settings, has no side effects:
``prepare_process`` is what web, worker and beat processes call when they
start (manage.py, skincare/wsgi.py, and the Celery app once it is configured).
"""

import os
from collections import ChainMap
from collections.abc import Mapping
from pathlib import Path

import environ

# New name: the old name still accepted when the new one is unset.
RENAMED = {
    "SKINCARE_DEBUG": "DJANGO_DEBUG",
    "SKINCARE_SECRET_KEY": "DJANGO_SECRET_KEY",
    "SKINCARE_ALLOWED_HOSTS": "DJANGO_ALLOWED_HOSTS",
    "SKINCARE_CSRF_TRUSTED_ORIGINS": "DJANGO_CSRF_TRUSTED_ORIGINS",
    "SKINCARE_SECURE_COOKIES": "DJANGO_SECURE_COOKIES",
    "SKINCARE_TIME_ZONE": "TIME_ZONE",
    "SKINCARE_STATIC_ROOT": "STATIC_ROOT",
    "SKINCARE_MEDIA_ROOT": "MEDIA_ROOT",
    "SKINCARE_STORAGE_BACKEND": "STORAGE_BACKEND",
    "SKINCARE_LOG_LEVEL": "LOG_LEVEL",
}


class Env(environ.Env):
    """django-environ's reader over ``source`` (default ``os.environ``) that also accepts a variable's old name."""

    def __init__(self, source: Mapping[str, str] | None = None, **scheme):
        super().__init__(**scheme)
        self.ENVIRON = os.environ if source is None else source

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        old = RENAMED.get(var)
        if old is not None and var not in self.ENVIRON and old in self.ENVIRON:
            var = old
        return super().get_value(var, cast=cast, default=default, parse_default=parse_default)


def read_dotenv(path: Path) -> dict[str, str]:
    """The variables a ``.env`` file sets (django-environ's syntax), without putting them into ``os.environ``."""
    if not path.is_file():
        return {}

    class _Collect(environ.Env):
        ENVIRON: dict[str, str] = {}

    _Collect.read_env(path, overwrite=True)
    return dict(_Collect.ENVIRON)


def settings_env(base_dir: Path) -> Env:
    """The environment settings read: the process environment, then ``base_dir/.env`` for what it leaves unset."""
    return Env(ChainMap(os.environ, read_dotenv(base_dir / ".env")))


def prepare_process() -> None:
    """Set up what a web, worker or beat process needs from the (already selected) settings. Idempotent.

    - the ``.env`` file's variables join ``os.environ`` (unless already set), for
      libraries that read it directly (boto3's credentials, inference/runtime.py);
    - ``KERAS_HOME`` (under ``SKINCARE_VAR_DIR``) and ``TF_CPP_MIN_LOG_LEVEL`` are
      set unless already set, before TensorFlow is first imported in a worker's
      pool process (which inherits them from the worker's parent);
    - the embedded mode's folders exist: the SQLite database's folder and the
      filesystem broker's spool folders.
    """
    from django.conf import settings

    for key, value in read_dotenv(Path(settings.BASE_DIR) / ".env").items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("KERAS_HOME", str(Path(settings.VAR_DIR) / "keras"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3" and str(database["NAME"]) != ":memory:":
        Path(database["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
            if options.get(key):
                Path(options[key]).mkdir(parents=True, exist_ok=True)
