"""Settings shared by every environment, read from the environment.

With nothing set, skincare runs embedded: SQLite, a local private media
folder and kombu's filesystem broker under ``var/``. Setting
``DATABASE_URL``, ``CELERY_BROKER_URL`` and ``SKINCARE_STORAGE_BACKEND=s3``
moves it onto PostgreSQL, Redis and S3-compatible storage with the same code.

Every setting read from the environment is declared here (or in dev, test,
production) with its default; the README's configuration table lists them
all. Variable names follow one rule (skincare/environment.py): standard names
stay, everything else is ``SKINCARE_*``; old names are still accepted.

Why this module is long: it is the one place every environment variable is
declared, and the Celery delivery settings carry their arithmetic (time
limits, acknowledgement, visibility timeout) beside them.

Importing settings has no side effects: no folder is created and
``os.environ`` is left as it is. What a process needs at start (the embedded
mode's folders, ``KERAS_HOME``) is done by ``skincare.environment.prepare_process``.
"""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from skincare.environment import settings_env

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# The process environment, then a .env file in the repository root for what it leaves unset.
env = settings_env(BASE_DIR)

# Everything the embedded mode writes (database, media, broker spool, model
# cache) lives under one folder that is easy to find and to delete.
VAR_DIR = Path(env("SKINCARE_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("SKINCARE_DEBUG", default=False)
SECRET_KEY = env("SKINCARE_SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("SKINCARE_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("SKINCARE_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_htmx",
    "axes",
    # Our apps, foundation first; imports point one way, down this list
    # (docs/architecture.md, enforced by tests/test_architecture.py).
    "core",
    "cases",
    "inference",
    "api",
    "portal",
    "interop",
]

MIDDLEWARE = [
    # First: CSP, Permissions-Policy and no-store on every response (core/headers.py).
    "core.headers.SecurityHeadersMiddleware",
    # /healthz and /readyz, answered before host checks and sessions (docs/operations.md).
    "skincare.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # After authentication: it records who read which patient data (docs/security.md).
    "core.middleware.ReadAuditMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into its lockout page.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: it refuses a locked-out username/address before any
# password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Sign-in lockout: after this many failures for a username from one address,
# that pair is refused until the cool-off has passed (or an admin resets it).
AXES_FAILURE_LIMIT = env.int("SKINCARE_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("SKINCARE_LOGIN_COOLOFF_HOURS", default=0.25)  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_LOCKOUT_CALLABLE = "api.errors.lockout_response"  # the JSON error shape under /api/
AXES_RESET_ON_SUCCESS = True
# The client's address, for lockout, throttling and the audit trail alike (core/http.py):
# X-Forwarded-For is believed only through this many proxies in front of the
# application; 0 ignores it and uses the connection's address.
SKINCARE_TRUSTED_PROXIES = env.int("SKINCARE_TRUSTED_PROXIES", default=0)
AXES_CLIENT_IP_CALLABLE = "core.http.client_address"
# Read only if django-ipware is installed (it is not); kept in step with the above.
AXES_IPWARE_PROXY_COUNT = SKINCARE_TRUSTED_PROXIES
AXES_VERBOSE = False

# Sessions end after this much inactivity (each request renews the clock)
# and when the browser closes.
SESSION_COOKIE_AGE = env.int("SKINCARE_SESSION_SECONDS", default=30 * 60)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

ROOT_URLCONF = "skincare.urls"
WSGI_APPLICATION = "skincare.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Its folder is created at process start (skincare.environment.prepare_process).
    # The web server and the worker write to the same file: wait for the
    # other's lock instead of failing with "database is locked". IMMEDIATE
    # transactions take the write lock up front, so two writers queue rather
    # than deadlock when a reader upgrades to a writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})


def persistent_connections(database: dict, default_max_age: int) -> dict:
    """``database`` reusing its connection for ``SKINCARE_DB_CONN_MAX_AGE`` seconds (0: one per request).

    A gunicorn worker then skips PostgreSQL's connection set-up on every
    request (docs/benchmarks.md, "Upload path"); a reused connection is
    checked first, so one the database dropped is replaced rather than
    failing a request. 0 by default outside production: the development
    server starts a thread per request, and each thread would keep its own.
    """
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return database
    return {
        **database,
        "CONN_MAX_AGE": env.int("SKINCARE_DB_CONN_MAX_AGE", default=default_max_age),
        "CONN_HEALTH_CHECKS": True,
    }


DATABASES["default"] = persistent_connections(DATABASES["default"], 0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:home"
LOGOUT_REDIRECT_URL = "portal:login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env("SKINCARE_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("SKINCARE_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))

# Lesion images and model files are private: there is no MEDIA_URL route.
# Image bytes are served only by views that check who is asking
# (portal.views), and on S3 through short-lived presigned links.
STORAGE_BACKEND = env("SKINCARE_STORAGE_BACKEND", default="local")
MEDIA_ROOT = Path(env("SKINCARE_MEDIA_ROOT", default=str(VAR_DIR / "media")))
if STORAGE_BACKEND == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env("AWS_S3_ENDPOINT_URL", default=None),
            "region_name": env("AWS_S3_REGION_NAME", default=None),
            "default_acl": "private",
            "querystring_auth": True,
            "querystring_expire": env.int("AWS_QUERYSTRING_EXPIRE", default=300),
            "file_overwrite": False,
        },
    }
elif STORAGE_BACKEND == "local":
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "base_url": None},
    }
else:
    raise ImproperlyConfigured(f"SKINCARE_STORAGE_BACKEND must be 'local' or 's3', not {STORAGE_BACKEND!r}")
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Reads of patient data that the audit trail records (core.middleware): URL
# keywords naming a record, and the admin pages (change and list) of these models.
SKINCARE_AUDITED_URL_KWARGS = {
    "patient_id": "cases.patient",
    "lesion_id": "cases.lesion",
    "image_id": "cases.lesionimage",
    "prediction_id": "inference.prediction",
}
SKINCARE_AUDITED_ADMIN_MODELS = [
    "cases.patient",
    "cases.lesion",
    "cases.lesionimage",
    "cases.review",
    "inference.prediction",
]
# What cases.services.add_lesion_image calls, inside the upload's transaction,
# for every stored image: the one explicit hook from cases to inference.
SKINCARE_IMAGE_STORED_HOOK = "inference.services.request_prediction"
# What core.access.user_access_changed calls when a user's password, active
# flag or memberships change: revoke the device tokens they lost (api/tokens.py).
SKINCARE_USER_ACCESS_CHANGED_HOOK = "api.tokens.user_access_changed"
# Prometheus metrics at /metrics (skincare/metrics.py): off unless a token is
# set, which scrapes then send as "Authorization: Bearer <token>".
SKINCARE_METRICS_TOKEN = env("SKINCARE_METRICS_TOKEN", default="")
# Uploads: anything larger than this is refused before it is decoded.
SKINCARE_MAX_UPLOAD_BYTES = env.int("SKINCARE_MAX_UPLOAD_BYTES", default=25 * 1024 * 1024)
# Images in one portal upload; a larger request is refused before its body is read.
SKINCARE_MAX_UPLOAD_FILES = env.int("SKINCARE_MAX_UPLOAD_FILES", default=20)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# Inference.
# ``manage.py requeue_stale_predictions`` (a manual tool, no longer scheduled)
# queues again whatever is pending or running for longer than this.
SKINCARE_STALE_PREDICTION_SECONDS = env.int("SKINCARE_STALE_PREDICTION_SECONDS", default=600)
# Leases (docs/operations.md): a run holds its row for this long and renews
# it every third of it while it works; the sweeper, every
# SKINCARE_SWEEP_SECONDS, queues again a row whose lease expired (its worker
# died or was killed) or whose message never reached the broker. Recovery
# after a fault: at most lease + sweep interval (15 + 10 = 25 s by default).
SKINCARE_PREDICTION_LEASE_SECONDS = env.int("SKINCARE_PREDICTION_LEASE_SECONDS", default=15)
SKINCARE_SWEEP_SECONDS = env.float("SKINCARE_SWEEP_SECONDS", default=10.0)
# A pending row whose message the broker has not accepted (sent_at null) is
# given this long for its on-commit publish before the sweeper sends it.
SKINCARE_UNSENT_GRACE_SECONDS = env.int("SKINCARE_UNSENT_GRACE_SECONDS", default=10)
# Where a worker keeps verified local copies of model files from storage.
SKINCARE_MODEL_CACHE_DIR = Path(env("SKINCARE_MODEL_CACHE_DIR", default=str(VAR_DIR / "model-cache")))
# Time limits of one prediction run. Read by the worker when it imports
# inference.tasks: messages are sent by name and carry no limits, so the
# worker's own settings govern them.
SKINCARE_INFERENCE_SOFT_TIME_LIMIT = env.int("SKINCARE_INFERENCE_SOFT_TIME_LIMIT", default=120)
SKINCARE_INFERENCE_TIME_LIMIT = env.int("SKINCARE_INFERENCE_TIME_LIMIT", default=150)
if not 0 < SKINCARE_INFERENCE_SOFT_TIME_LIMIT < SKINCARE_INFERENCE_TIME_LIMIT:
    raise ImproperlyConfigured("SKINCARE_INFERENCE_SOFT_TIME_LIMIT must be below SKINCARE_INFERENCE_TIME_LIMIT")
# The longest a prediction task waits before a retry (inference/tasks.py) and
# the longest hard time limit of any other task (housekeeping).
SKINCARE_RETRY_BACKOFF_MAX_SECONDS = 300
HOUSEKEEPING_TIME_LIMIT = 660
# The worker's runtime: "auto" runs a model's ONNX export on ONNX Runtime when
# it has one (no TensorFlow in the pool process), TensorFlow otherwise.
SKINCARE_INFERENCE_BACKEND = env("SKINCARE_INFERENCE_BACKEND", default="auto")
if SKINCARE_INFERENCE_BACKEND not in ("auto", "onnx", "tensorflow"):
    raise ImproperlyConfigured("SKINCARE_INFERENCE_BACKEND must be auto, onnx or tensorflow")
# The admin waits this long for ``python -m inference validate`` to load an
# uploaded model in a child process (inference/registry.py); gunicorn kills a
# request after 60 s (docker/Dockerfile).
SKINCARE_MODEL_CHECK_SECONDS = env.int("SKINCARE_MODEL_CHECK_SECONDS", default=50)
# The registry's load check (inference.registry.load_check): empty runs the
# real one in a child process; tests about something else name a stand-in.
SKINCARE_MODEL_LOAD_CHECK = ""
# Files in storage with no row (an upload whose transaction rolled back) are
# deleted by the orphan sweeper once older than this.
SKINCARE_ORPHAN_FILE_SECONDS = env.int("SKINCARE_ORPHAN_FILE_SECONDS", default=3600)
# How long the API remembers an Idempotency-Key's first answer (docs/api.md).
SKINCARE_IDEMPOTENCY_KEY_DAYS = env.int("SKINCARE_IDEMPOTENCY_KEY_DAYS", default=7)

# Celery. Without CELERY_BROKER_URL the broker is a spool folder (kombu's
# filesystem transport): no server, but still a separate worker process. Its
# folders are created at process start (skincare.environment.prepare_process).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _spool = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_spool / "queue"),
        "data_folder_out": str(_spool / "queue"),
        "processed_folder": str(_spool / "processed"),
        "control_folder": str(_spool / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
# Redis redelivers a message that a worker took but never acknowledged once
# this many seconds have passed (a worker that died whole, parent and all).
# With acks_late a message stays unacknowledged for as long as its task
# runs, and a retry's message (countdown) is held unacknowledged until it is
# due: a timeout shorter than that would hand a running task to a second
# worker. So it must exceed the longest of
#   prediction: hard time limit + longest retry countdown = 150 + 300 = 450 s
#   housekeeping: hard time limit                          = 660 s
# plus a margin: 660 + 240 = 900 s. Leases, not this timeout, bound how long
# a prediction waits after its worker died (about 25 s, see the sweeper);
# the redelivered message then finds the row finished and does nothing.
SKINCARE_BROKER_VISIBILITY_TIMEOUT = env.int("SKINCARE_BROKER_VISIBILITY_TIMEOUT", default=900)
if SKINCARE_BROKER_VISIBILITY_TIMEOUT <= max(
    SKINCARE_INFERENCE_TIME_LIMIT + SKINCARE_RETRY_BACKOFF_MAX_SECONDS, HOUSEKEEPING_TIME_LIMIT
):
    raise ImproperlyConfigured(
        "SKINCARE_BROKER_VISIBILITY_TIMEOUT must exceed the longest time a task holds its message "
        "(time limit + retry countdown): see skincare/settings/base.py"
    )
# Socket timeouts: a broker that accepts connections but never answers (a
# partition, an overloaded Redis) must not hang an upload. With these, a
# publish gives up within a few seconds (and inference.queueing then skips
# the broker for a few seconds more), the upload answers, and the sweeper
# sends the prediction later. The socket timeout stays above the 1 s BRPOP
# a worker waits on.
REDIS_BROKER_SOCKET_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 3}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": SKINCARE_BROKER_VISIBILITY_TIMEOUT,
        **REDIS_BROKER_SOCKET_OPTIONS,
    }
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
# A worker that lost the broker lets its running predictions finish (their
# results are stored; their messages, no longer acknowledgeable, come back
# after the visibility timeout and find the rows finished).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True  # results live in Prediction rows, not a backend
# A task is acknowledged only after it finished, and re-delivered if its
# worker process died mid-way (reject_on_worker_lost) or was killed at the
# hard time limit (acks_on_failure_or_timeout False: the message goes back
# to the queue rather than being acknowledged); one message at a time so a
# long inference never holds a second image hostage behind it. A task that
# raised is not re-delivered (its message is rejected): the prediction task
# retries itself, and the lease brings back whatever is left running.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Inference gets its own queue so that short housekeeping tasks never wait
# behind a backlog of images (and workers can be scaled per queue).
CELERY_TASK_ROUTES = {
    "inference.tasks.run_prediction_task": {"queue": "inference"},
    # Minutes of CPU per run: a queue (and a worker) of its own, never ahead of predictions.
    "inference.tasks.adapt_site_model_task": {"queue": "training"},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"


def _every(seconds, task):
    """A beat entry whose message expires when the next one is due.

    "expires" for Celery's own scheduler, "expire_seconds" for
    django-celery-beat's. Expiry keeps runs from piling up behind a busy
    queue, and bounds redelivery: with task_acks_on_failure_or_timeout off, a
    task killed at its hard time limit goes back to the queue, and an expired
    message is dropped instead of being run again and again.
    """
    return {
        "task": task,
        "schedule": seconds,
        "options": {"expires": seconds, "expire_seconds": max(1, round(seconds))},
    }


CELERY_BEAT_SCHEDULE = {
    # Cheap (two indexed queries on tiny partial indexes, one Redis GET).
    "sweep-predictions": _every(SKINCARE_SWEEP_SECONDS, "inference.tasks.sweep_predictions_task"),
    "delete-orphan-image-files": _every(3600.0, "cases.tasks.delete_orphan_image_files_task"),
    "delete-orphan-heatmap-files": _every(3600.0, "inference.tasks.delete_orphan_heatmap_files_task"),
    "delete-old-form-submissions": _every(86400.0, "core.tasks.delete_old_form_submissions_task"),
    "delete-expired-idempotency-records": _every(86400.0, "api.tasks.delete_expired_idempotency_records_task"),
}
CELERY_TIMEZONE = TIME_ZONE

# KERAS_HOME (default VAR_DIR/keras) and TF_CPP_MIN_LOG_LEVEL (default 2)
# must be in the environment before TensorFlow is first imported (lazily, in
# a worker's pool process): skincare.environment.prepare_process sets them
# when a process starts, not these settings.

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("SKINCARE_LOG_LEVEL", default="INFO")},
}

# Cache: throttling counters (DRF) live here. Shared between processes only
# with CACHE_URL set (e.g. redis://redis:6379/1); the default is per process.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# The REST API for mobile apps (cases/api, docs/api.md).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Bearer first: its challenge is the WWW-Authenticate header of a 401.
        "api.authentication.DeviceTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",  # browsable API; enforces CSRF
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": [
        "api.throttling.UserThrottle",
        "api.throttling.TokenThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env("SKINCARE_API_USER_RATE", default="600/min"),
        "token": env("SKINCARE_API_TOKEN_RATE", default="300/min"),
        "uploads": env("SKINCARE_API_UPLOAD_RATE", default="120/min"),
        "auth": env("SKINCARE_API_AUTH_RATE", default="10/min"),
    },
    # DRF's own address lookup (any throttle not overriding get_ident) trusts the same hops.
    "NUM_PROXIES": SKINCARE_TRUSTED_PROXIES,
    "DEFAULT_PAGINATION_CLASS": "api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # JSON that is nested too deeply or repeats a key is a 400, not a 500 or a silent merge.
    "DEFAULT_PARSER_CLASSES": ["api.parsers.StrictJSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# Device tokens for the apps expire this many days after they were issued.
SKINCARE_API_TOKEN_DAYS = env.int("SKINCARE_API_TOKEN_DAYS", default=30)

SPECTACULAR_SETTINGS = {
    "TITLE": "skincare API",
    "DESCRIPTION": "Patients, lesions, lesion images, predictions and reviews for mobile apps. See docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.add_error_responses",
    ],
}
