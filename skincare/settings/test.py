"""The test suite: always real PostgreSQL and Redis (never SQLite or a fake broker)."""

from pathlib import Path

from .base import *  # noqa: F403
from .base import REDIS_BROKER_SOCKET_OPTIONS, SKINCARE_BROKER_VISIBILITY_TIMEOUT, VAR_DIR, env, persistent_connections

SECRET_KEY = "test-only-not-secret"
DEBUG = False
DATABASES = {
    "default": persistent_connections(env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/skincare"), 0),
}
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/14")
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": SKINCARE_BROKER_VISIBILITY_TIMEOUT,
    **REDIS_BROKER_SOCKET_OPTIONS,
}
MEDIA_ROOT = Path(env("SKINCARE_MEDIA_ROOT", default=str(VAR_DIR / "test-media")))
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "base_url": None},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
SKINCARE_MODEL_CACHE_DIR = Path(env("SKINCARE_MODEL_CACHE_DIR", default=str(VAR_DIR / "test-model-cache")))
# Hashing passwords slowly buys nothing in tests.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Serve static files through the finders: tests never run collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
