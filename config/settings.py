"""DeepMiner Studio settings, read from the environment (django-environ).

With nothing set: SQLite under var/, Celery's filesystem broker under var/broker, results in the
database, a generated SECRET_KEY kept in var/. Set DATABASE_URL / CELERY_BROKER_URL for
PostgreSQL / Redis. Every variable read here is listed in ENV_VARS (docker/compose.yaml is
tested against it).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# Every environment variable the settings read, with its meaning (docs + the compose test).
ENV_VARS = {
    "DEEPMINER_VAR_DIR": "folder for the SQLite file, broker folders, media and the generated secret",
    "SECRET_KEY": "Django secret key (generated into var/ when unset)",
    "DEBUG": "Django debug mode (off unless set)",
    "ALLOWED_HOSTS": "comma-separated host names",
    "CSRF_TRUSTED_ORIGINS": "comma-separated origins for CSRF behind a proxy",
    "DATABASE_URL": "database, e.g. postgres://user@host:5432/db (SQLite file under var/ when unset)",
    "CELERY_BROKER_URL": "broker, e.g. redis://host:6379/0 (filesystem broker under var/ when unset)",
    "CELERY_RESULT_BACKEND": "Celery result store (the database when unset)",
    "CELERY_TASK_ALWAYS_EAGER": "run tasks in-process (tests of pure services only)",
    "CELERY_GPU_QUEUE": "queue for training, mining and batch explanation jobs (workers started with -Q); unset: one queue",
    "DEEPMINER_DEVICE": "auto (a GPU when the worker has one), cpu or cuda: where a worker computes",
    "DEEPMINER_PRECISION": "auto (bf16, else fp16 autocast on a GPU; fp32 on the CPU), fp32, bf16 or fp16",
    "MEDIA_ROOT": "where images, patches, masks and checkpoints are written",
    "DEEPMINER_S3_BUCKET": "media in this S3-compatible bucket instead of MEDIA_ROOT (unset: the filesystem)",
    "AWS_S3_ENDPOINT_URL": "the bucket's S3 endpoint, e.g. http://minio:9000 (unset: AWS)",
    "AWS_S3_REGION_NAME": "the bucket's region",
    "AWS_ACCESS_KEY_ID": "the bucket's access key (unset: boto3's own chain, e.g. an instance role)",
    "AWS_SECRET_ACCESS_KEY": "the bucket's secret key",
    "AWS_S3_ADDRESSING_STYLE": "path or virtual bucket addressing (unset: boto3's choice)",
    "DEEPMINER_MEDIA_REDIRECT": "on a bucket, send signed-in users to presigned URLs instead of streaming media (default on)",
    "DEEPMINER_MEDIA_URL_SECONDS": "lifetime of a presigned media URL, in seconds",
    "MEDIA_CACHE_DIR": "local copies of bucket objects a worker needs as files (checkpoints)",
    "MEDIA_CACHE_MAX_MB": "most megabytes that local cache holds (least recently used copies go first)",
    "JOB_HEARTBEAT_TIMEOUT": "seconds without a heartbeat after which a running job counts as dead",
    "MAX_IMAGE_PIXELS": "largest image (in pixels) an import or an upload accepts",
    "UPLOAD_MAX_BYTES": "largest image file (in bytes) the explain-an-image upload accepts",
    "IMPORT_ROOTS": "comma-separated absolute folders admins may import from in the browser (unset: folder import off)",
    "IMPORT_STAGING_DIR": "private folder where uploaded import zips wait for their job (web and workers share it)",
    "IMPORT_UPLOAD_MAX_BYTES": "largest dataset zip (in bytes) the browser import accepts",
    "IMPORT_ZIP_MAX_MEMBERS": "most files a dataset zip may hold",
    "IMPORT_ZIP_MAX_BYTES": "largest total uncompressed size (in bytes) of a dataset zip",
    "IMPORT_ZIP_MAX_RATIO": "highest compression ratio a dataset zip (and each large member) may have: above it, a zip bomb",
    "AXES_FAILURE_LIMIT": "failed sign-ins in a row (per username, and per address) before a lockout",
    "AXES_COOLOFF_MINUTES": "how long a sign-in lockout lasts",
    "API_THROTTLE_USER": "API request rate per signed-in user, e.g. 3000/minute",
    "API_THROTTLE_ANON": "API request rate per anonymous address, e.g. 60/minute",
    "API_BASIC_AUTH": "accept HTTP basic auth on the API (off: sessions only)",
    "HTTPS": "served over HTTPS (behind a TLS proxy): turns on the five settings below unless each is set",
    "SECURE_SSL_REDIRECT": "redirect plain-HTTP requests to HTTPS (default: HTTPS)",
    "SECURE_HSTS_SECONDS": "Strict-Transport-Security max-age (default: a year with HTTPS, else 0: no header)",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "HSTS for every subdomain too (default: HTTPS)",
    "SECURE_HSTS_PRELOAD": "HSTS preload flag (default: HTTPS)",
    "SESSION_COOKIE_SECURE": "session cookie only over HTTPS (default: HTTPS)",
    "CSRF_COOKIE_SECURE": "CSRF cookie only over HTTPS (default: HTTPS)",
    "SECURE_PROXY_SSL_HEADER": "header and value a trusted TLS proxy sets, e.g. HTTP_X_FORWARDED_PROTO,https",
}

env = environ.Env()
VAR_DIR = Path(env.str("DEEPMINER_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _local_secret_key() -> str:
    """A per-checkout random key, so nothing secret is ever in the code."""
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        tmp = key_file.with_suffix(".tmp")
        tmp.write_text(secrets.token_urlsafe(50))
        tmp.replace(key_file)
    return key_file.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="") or _local_secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

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
    "axes",
    "csp",
    "django_celery_results",
    "annotator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "annotator.middleware.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "annotator.middleware.LoginRequiredMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: turns a lockout into its response
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

# --- Database -------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write the same file: WAL lets readers run beside a writer,
    # IMMEDIATE transactions take the write lock up front instead of failing half way.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = 60
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out user or address before the password check
    "django.contrib.auth.backends.ModelBackend",
]
# Failed sign-ins: after AXES_FAILURE_LIMIT in a row for one username, or from one address, that username
# (or address) is locked out for AXES_COOLOFF_MINUTES; a successful sign-in resets the count.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- HTTPS and browser protections ---------------------------------------------------------------
# HTTPS=true (the compose deployment's default) turns on the redirect, HSTS and secure cookies together, so
# `manage.py check --deploy` is clean; each can still be set on its own. Off by default: `make demo` and the
# tests serve plain HTTP. /healthz stays reachable over HTTP for the container's health check.
HTTPS = env.bool("HTTPS", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=HTTPS)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=HTTPS)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=HTTPS)
# Trust X-Forwarded-Proto (or the named header) only when a proxy that always sets it is in front.
_proxy_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_header and len(_proxy_header) != 2:
    raise ImproperlyConfigured("SECURE_PROXY_SSL_HEADER is 'HEADER,value', e.g. HTTP_X_FORWARDED_PROTO,https")
SECURE_PROXY_SSL_HEADER = (_proxy_header[0], _proxy_header[1]) if _proxy_header else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): everything from this origin only, no inline script or style (the
# templates keep their JavaScript in static/ and set computed sizes through the CSSOM), no plugins, no
# framing. data: images are Swagger UI's icons.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
# Browser features no page uses are switched off (annotator.middleware.PermissionsPolicyMiddleware).
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()"
)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Files ----------------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on a missing folder
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Media in an S3-compatible bucket when DEEPMINER_S3_BUCKET is set (django-storages; annotator.files writes
# every object whole). Private objects, overwritten in place (a renamed object would orphan its row), served
# to signed-in users by the media view: a redirect to a short-lived presigned URL, or streamed by the app.
S3_MEDIA_BUCKET = env.str("DEEPMINER_S3_BUCKET", default="")


def _bucket_origins(*, bucket_name: str, endpoint_url: str | None, region_name: str | None, **_: object) -> list[str]:
    """The origins presigned URLs of ``bucket_name`` can have (path or virtual-host addressing)."""
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        return [f"{parts.scheme}://{parts.netloc}", f"{parts.scheme}://{bucket_name}.{parts.netloc}"]
    hosts = ["s3.amazonaws.com", *([f"s3.{region_name}.amazonaws.com"] if region_name else [])]
    return [f"https://{prefix}{host}" for host in hosts for prefix in ("", f"{bucket_name}.")]


MEDIA_REDIRECT = env.bool("DEEPMINER_MEDIA_REDIRECT", default=True)
MEDIA_URL_SECONDS = env.int("DEEPMINER_MEDIA_URL_SECONDS", default=300)


def s3_media_storage(bucket_name: str) -> dict[str, Any]:
    """The STORAGES entry of the S3-compatible bucket ``bucket_name`` from the AWS_* variables."""
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket_name,
            "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("AWS_S3_REGION_NAME", default="") or None,
            "access_key": env.str("AWS_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("AWS_SECRET_ACCESS_KEY", default="") or None,
            "addressing_style": env.str("AWS_S3_ADDRESSING_STYLE", default="") or None,
            "signature_version": "s3v4",
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": MEDIA_URL_SECONDS,
            "file_overwrite": True,
        },
    }


# The same for a bucket other code names (manage.py move_installation --media-to s3://bucket).
S3_MEDIA_STORAGE = s3_media_storage
if S3_MEDIA_BUCKET:
    STORAGES["default"] = s3_media_storage(S3_MEDIA_BUCKET)
    if MEDIA_REDIRECT:  # the pages' <img> then load from the bucket's origin
        CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"] += _bucket_origins(**STORAGES["default"]["OPTIONS"])
MEDIA_CACHE_DIR = Path(env.str("MEDIA_CACHE_DIR", default=str(VAR_DIR / "media-cache")))
MEDIA_CACHE_MAX_BYTES = env.int("MEDIA_CACHE_MAX_MB", default=4096) * 1024 * 1024
# Serve static files straight from the source folders; no collectstatic step for `make demo`.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
MAX_IMAGE_PIXELS = env.int("MAX_IMAGE_PIXELS", default=100_000_000)
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=200 * 1024 * 1024)  # a 16-bit DICOM mammogram: ~50 MB
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Browser import (annotator.services.dataset_imports): folders only under these roots (resolved, so a symlink
# cannot lead out); uploaded zips wait in a private staging folder, checked against these caps before any
# member is unpacked.
IMPORT_ROOTS = [str(Path(root)) for root in env.list("IMPORT_ROOTS", default=[]) if root.strip()]
_relative_roots = [root for root in IMPORT_ROOTS if not Path(root).is_absolute()]
if _relative_roots:
    raise ImproperlyConfigured(f"IMPORT_ROOTS must be absolute folders: {', '.join(_relative_roots)}")
IMPORT_STAGING_DIR = Path(env.str("IMPORT_STAGING_DIR", default=str(VAR_DIR / "import-staging")))
IMPORT_UPLOAD_MAX_BYTES = env.int("IMPORT_UPLOAD_MAX_BYTES", default=2 * 1024**3)
IMPORT_ZIP_MAX_MEMBERS = env.int("IMPORT_ZIP_MAX_MEMBERS", default=100_000)
IMPORT_ZIP_MAX_BYTES = env.int("IMPORT_ZIP_MAX_BYTES", default=20 * 1024**3)
IMPORT_ZIP_MAX_RATIO = env.float("IMPORT_ZIP_MAX_RATIO", default=100.0)  # PNG and DICOM rarely pass 10
# Media files (annotator.files and uploads) readable by the group, so a web server or worker running as
# another user of the group reads what this one wrote (and the world does not: patient images).
FILE_UPLOAD_PERMISSIONS = 0o640

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Sessions for the browser; HTTP basic auth (a password hash on every call) only where enabled.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        *(["rest_framework.authentication.BasicAuthentication"] if env.bool("API_BASIC_AUTH", default=False) else []),
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="60/minute"),
        "user": env.str("API_THROTTLE_USER", default="3000/minute"),
    },
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON nested beyond a bound is a 400, not a RecursionError; forms and uploads as DRF parses them.
    "DEFAULT_PARSER_CLASSES": [
        "annotator.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "annotator.api.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "annotator.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "DeepMiner Studio API",
    "DESCRIPTION": "Datasets, images, jobs, units and annotations of DeepMiner Studio.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],  # the schema is for signed-in users
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Every operation documents the error answers it can give (one JSON shape for all of them).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "annotator.api.schema.add_error_responses",
    ],
    # Two models have a `kind` field with different choices: name each enum after its model.
    "ENUM_NAME_OVERRIDES": {
        "DatasetKindEnum": "annotator.models.Dataset.Kind",
        "JobKindEnum": "annotator.models.Job.Kind",
    },
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    BROKER_DIR = VAR_DIR / "broker"
    _folders = {
        "data_folder_in": BROKER_DIR / "out",
        "data_folder_out": BROKER_DIR / "out",  # producer and consumer share one queue folder
        "processed_folder": BROKER_DIR / "processed",
        "control_folder": BROKER_DIR / "control",  # else kombu writes ./control in the working directory
    }
    for _folder in _folders.values():
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **{name: str(path) for name, path in _folders.items()},
        "store_processed": False,
        # The filesystem broker polls its folder; the default 1 s delays every hand-off (a mining chord's
        # second shard, its merge) by up to a second. Listing one folder 5 times a second costs nothing.
        "polling_interval": 0.2,
    }
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="django-db")
CELERY_RESULT_EXTENDED = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_GPU_QUEUE = env.str("CELERY_GPU_QUEUE", default="")
DEEPMINER_DEVICE = env.str("DEEPMINER_DEVICE", default="auto")
DEEPMINER_PRECISION = env.str("DEEPMINER_PRECISION", default="auto")
CELERY_TASK_ACKS_LATE = True  # a killed worker's task is not silently lost
CELERY_TASK_REJECT_ON_WORKER_LOST = False  # ...but not re-run blindly either: the job row says failed
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # long jobs: never hold a second one hostage
CELERY_TASK_TRACK_STARTED = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
JOB_HEARTBEAT_TIMEOUT = env.int("JOB_HEARTBEAT_TIMEOUT", default=120)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
