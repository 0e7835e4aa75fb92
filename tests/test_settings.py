import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRINT = (
    "import django; from django.conf import settings; django.setup();"
    "print(settings.DATABASES['default']['ENGINE']); print(settings.CELERY_BROKER_URL);"
    "print(settings.STORAGES['default']['BACKEND'])"
)


def settings_with(tmp_path, **env):
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "STORAGE_BACKEND"}}
    clean.update({"DJANGO_SETTINGS_MODULE": "skincare.settings.dev", "SKINCARE_VAR_DIR": str(tmp_path), **env})
    completed = subprocess.run([sys.executable, "-c", PRINT], cwd=REPO, env=clean, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.split()


def test_with_nothing_configured_it_runs_embedded(tmp_path):
    assert settings_with(tmp_path) == [
        "django.db.backends.sqlite3",
        "filesystem://",
        "django.core.files.storage.FileSystemStorage",
    ]
    assert (tmp_path / "broker" / "queue").is_dir()


def test_the_environment_moves_it_onto_postgres_redis_and_s3(tmp_path):
    assert settings_with(
        tmp_path,
        DATABASE_URL="postgres://u@db:5432/skincare",
        CELERY_BROKER_URL="redis://redis:6379/0",
        STORAGE_BACKEND="s3",
        AWS_STORAGE_BUCKET_NAME="bucket",
    ) == ["django.db.backends.postgresql", "redis://redis:6379/0", "storages.backends.s3.S3Storage"]


def test_production_settings_require_a_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    env["DJANGO_SETTINGS_MODULE"] = "skincare.settings.production"
    completed = subprocess.run([sys.executable, "-c", PRINT], cwd=REPO, env=env, capture_output=True, text=True)
    assert completed.returncode != 0
    assert "DJANGO_SECRET_KEY" in completed.stderr
