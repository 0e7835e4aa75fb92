"""Settings: what the environment selects, variable names, and no side effects on import."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from skincare.environment import RENAMED

REPO = Path(__file__).resolve().parents[1]
SETTINGS_DIR = REPO / "skincare" / "settings"
SETTINGS_MODULES = sorted(
    f"skincare.settings.{path.stem}" for path in SETTINGS_DIR.glob("*.py") if path.stem != "__init__"
)
# Variables that select what settings do; each test starts without them.
CONFIGURING = {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL"}
CONFIGURING |= set(RENAMED) | set(RENAMED.values())
CONFIGURING |= {name for name in os.environ if name.startswith("SKINCARE_")}

PRINT = (
    "import django; from django.conf import settings; django.setup();"
    "print(settings.DATABASES['default']['ENGINE']); print(settings.CELERY_BROKER_URL);"
    "print(settings.STORAGES['default']['BACKEND'])"
)


def clean_env(tmp_path, **env):
    clean = {k: v for k, v in os.environ.items() if k not in CONFIGURING}
    clean.update({"SKINCARE_VAR_DIR": str(tmp_path / "var"), "PYTHONDONTWRITEBYTECODE": "1", **env})
    return clean


def run(code, env, *args, cwd=REPO):
    command = [sys.executable, "-c", code, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def settings_with(tmp_path, **env):
    completed = run(PRINT, clean_env(tmp_path, DJANGO_SETTINGS_MODULE="skincare.settings.dev", **env))
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.split()


def test_with_nothing_configured_it_runs_embedded(tmp_path):
    assert settings_with(tmp_path) == [
        "django.db.backends.sqlite3",
        "filesystem://",
        "django.core.files.storage.FileSystemStorage",
    ]


def test_the_environment_moves_it_onto_postgres_redis_and_s3(tmp_path):
    assert settings_with(
        tmp_path,
        DATABASE_URL="postgres://u@db:5432/skincare",
        CELERY_BROKER_URL="redis://redis:6379/0",
        SKINCARE_STORAGE_BACKEND="s3",
        AWS_STORAGE_BUCKET_NAME="bucket",
    ) == ["django.db.backends.postgresql", "redis://redis:6379/0", "storages.backends.s3.S3Storage"]


def test_production_settings_require_a_secret(tmp_path):
    completed = run(PRINT, clean_env(tmp_path, DJANGO_SETTINGS_MODULE="skincare.settings.production"))
    assert completed.returncode != 0
    assert "SKINCARE_SECRET_KEY" in completed.stderr


# --- variable names: one rule, old names still read ----------------------------

READ = (
    "import json; from django.conf import settings;"
    "print(json.dumps([settings.SECRET_KEY, settings.STORAGES['default']['BACKEND'], settings.TIME_ZONE,"
    " str(settings.MEDIA_ROOT), settings.LOGGING['root']['level'], settings.SESSION_COOKIE_SECURE]))"
)


def read_settings(tmp_path, **env):
    completed = run(READ, clean_env(tmp_path, DJANGO_SETTINGS_MODULE="skincare.settings.production", **env))
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_the_new_names_configure_it(tmp_path):
    assert read_settings(
        tmp_path,
        SKINCARE_SECRET_KEY="new-secret",
        SKINCARE_STORAGE_BACKEND="s3",
        AWS_STORAGE_BUCKET_NAME="bucket",
        SKINCARE_TIME_ZONE="Europe/Madrid",
        SKINCARE_MEDIA_ROOT="/srv/media",
        SKINCARE_LOG_LEVEL="WARNING",
        SKINCARE_SECURE_COOKIES="false",
    ) == ["new-secret", "storages.backends.s3.S3Storage", "Europe/Madrid", "/srv/media", "WARNING", False]


def test_an_existing_deployment_with_the_old_names_keeps_working(tmp_path):
    assert read_settings(
        tmp_path,
        DJANGO_SECRET_KEY="old-secret",
        STORAGE_BACKEND="s3",
        AWS_STORAGE_BUCKET_NAME="bucket",
        TIME_ZONE="Europe/Madrid",
        MEDIA_ROOT="/srv/media",
        LOG_LEVEL="WARNING",
        DJANGO_SECURE_COOKIES="false",
    ) == ["old-secret", "storages.backends.s3.S3Storage", "Europe/Madrid", "/srv/media", "WARNING", False]


def test_the_new_name_wins_over_the_old_one(tmp_path):
    secret, backend, *_ = read_settings(
        tmp_path,
        SKINCARE_SECRET_KEY="new",
        DJANGO_SECRET_KEY="old",
        SKINCARE_STORAGE_BACKEND="local",
        STORAGE_BACKEND="s3",
    )
    assert (secret, backend) == ("new", "django.core.files.storage.FileSystemStorage")


def test_a_dotenv_file_is_read_without_touching_os_environ(tmp_path):
    from skincare.environment import settings_env

    (tmp_path / ".env").write_text("SKINCARE_TIME_ZONE=Europe/Madrid\nLOG_LEVEL=DEBUG\nCACHE_URL=dummycache://\n")
    before = dict(os.environ)
    env = settings_env(tmp_path)
    assert env("SKINCARE_TIME_ZONE") == "Europe/Madrid"
    assert env("SKINCARE_LOG_LEVEL") == "DEBUG"  # an old name in .env works too
    assert dict(os.environ) == before


def env_names_read_by_settings():
    """Every variable name the settings modules read (env("X"), env.int("X", ...), env.db("X"), ...)."""
    names = set()
    for path in SETTINGS_DIR.glob("*.py"):
        names |= set(re.findall(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\"", path.read_text()))
    return names


def test_variable_names_follow_the_rule():
    standard = {"DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL"}
    names = env_names_read_by_settings()
    assert "SKINCARE_MODEL_CHECK_SECONDS" in names and "DATABASE_URL" in names  # the pattern finds them
    odd = {name for name in names if not name.startswith(("SKINCARE_", "AWS_")) and name not in standard}
    assert not odd, f"name these SKINCARE_* (README, Configuration): {sorted(odd)}"
    assert not set(RENAMED.values()) & names, "settings read the new names; the old ones via RENAMED"
    assert all(new.startswith("SKINCARE_") for new in RENAMED)


def test_the_readme_documents_every_variable_and_its_old_name():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}
    missing = env_names_read_by_settings() - documented
    assert not missing, f"add to the README's configuration table: {sorted(missing)}"
    for new, old in RENAMED.items():
        row = next((row for row in rows if f"`{new}`" in row.split("|")[1]), "")
        assert f"`{old}`" in row.split("|")[2], f"README: {new} row should name its old name {old}"


# --- no side effects on import; process start does them -------------------------

IMPORT_AND_COMPARE = """
import importlib, json, os, sys
before = dict(os.environ)
importlib.import_module(sys.argv[1])
after = dict(os.environ)
print(json.dumps({k: [before.get(k), after.get(k)] for k in set(before) | set(after) if before.get(k) != after.get(k)}))
"""


def tree(*roots):
    """Every path under ``roots`` (skipping .git and the virtualenv), with its size for files."""
    found = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in (".git", ".venv")]
            found[dirpath] = None
            for name in filenames:
                path = os.path.join(dirpath, name)
                found[path] = os.path.getsize(path) if os.path.isfile(path) else None
    return found


@pytest.mark.parametrize("module", SETTINGS_MODULES)
def test_importing_settings_creates_nothing_and_leaves_the_environment_alone(module, tmp_path):
    # Embedded defaults (SQLite, the filesystem broker): the mode that used to create folders.
    # DJANGO_SETTINGS_MODULE names the module, as when Django imports it.
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = clean_env(tmp_path, DJANGO_SETTINGS_MODULE=module, HOME=str(home), PYTHONPATH=str(REPO))
    env["SKINCARE_SECRET_KEY"] = "a-secret"  # production refuses to load without one
    repo_before, tmp_before = tree(REPO), tree(tmp_path)

    completed = run(IMPORT_AND_COMPARE, env, module, cwd=cwd)

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {}, "os.environ changed"
    assert not (tmp_path / "var").exists()
    assert tree(tmp_path) == tmp_before
    assert tree(REPO) == repo_before


PREPARE = """
import json, os
from skincare.environment import prepare_process
prepare_process()
print(json.dumps([os.environ.get("KERAS_HOME"), os.environ.get("TF_CPP_MIN_LOG_LEVEL")]))
"""


def test_process_start_creates_the_embedded_folders_and_sets_keras_home(tmp_path):
    env = clean_env(tmp_path, DJANGO_SETTINGS_MODULE="skincare.settings.dev")
    completed = run(PREPARE, env)
    assert completed.returncode == 0, completed.stderr
    var = tmp_path / "var"
    assert json.loads(completed.stdout) == [str(var / "keras"), "2"]
    assert all((var / "broker" / folder).is_dir() for folder in ("queue", "processed", "control"))
    assert var.is_dir()  # for the SQLite database


def test_what_is_already_set_wins_at_process_start(tmp_path):
    env = clean_env(
        tmp_path, DJANGO_SETTINGS_MODULE="skincare.settings.dev", KERAS_HOME="/tmp/k", TF_CPP_MIN_LOG_LEVEL="3"
    )
    completed = run(PREPARE, env)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == ["/tmp/k", "3"]


def test_a_celery_process_prepares_itself_once_configured(tmp_path):
    # The worker and beat: `celery -A skincare ...` configures the app before it talks to the broker.
    code = "import os; from skincare.celery import app; app.conf.broker_url; print(os.environ['KERAS_HOME'])"
    completed = run(code, clean_env(tmp_path, DJANGO_SETTINGS_MODULE="skincare.settings.dev"))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == str(tmp_path / "var" / "keras")
    assert (tmp_path / "var" / "broker" / "queue").is_dir()


def test_manage_py_prepares_the_process(tmp_path):
    env = clean_env(tmp_path, DJANGO_SETTINGS_MODULE="skincare.settings.dev")
    completed = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "var" / "broker" / "queue").is_dir()
