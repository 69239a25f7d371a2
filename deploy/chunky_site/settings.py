"""Settings of the bundled chunky_redis service. Everything comes from the environment.

With no REDIS_URL the service runs on the embedded default: an in-process
fakeredis and eager Celery tasks. That is for trying it out on one process.
"""

import os
from pathlib import Path

from corsheaders.defaults import default_headers, default_methods
from django.core.exceptions import ImproperlyConfigured

from chunky_redis.core.redis_clients import celery_broker_for
from chunky_redis.protocols import rufh_fields, tus_headers

BASE_DIR = Path(__file__).resolve().parent
REPO_DIR = BASE_DIR.parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# `make run` (deploy/run.sh) makes a random development key in var/secret_key when none is set.
# Anything else that runs with a real Redis and DEBUG off must be given one: without it, or with
# the example value of deploy/k8s/secret.yaml, the service refuses to start.
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not DEBUG and os.environ.get("REDIS_URL"):
    if not SECRET_KEY:
        raise ImproperlyConfigured("Set SECRET_KEY in the environment.")
    if SECRET_KEY.startswith("change-me"):
        raise ImproperlyConfigured("SECRET_KEY is still the example value: set a random one.")
SECRET_KEY = SECRET_KEY or "insecure-only-for-trying-chunky-redis-out"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "corsheaders",
    "chunky_redis",
    "chunky_site",
]

# Kept short on purpose: every middleware runs once per chunk.
MIDDLEWARE = [
    "corsheaders.middleware.CorsMiddleware",  # first: it answers preflights itself
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files under gunicorn, DEBUG or not
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "chunky_site.urls"
WSGI_APPLICATION = "chunky_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SQLITE_PATH", str(REPO_DIR / "var" / "db.sqlite3")),
    }
}
# No table is needed for uploads; sessions are signed cookies so the service needs no migrations.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

USE_TZ = True
TIME_ZONE = "UTC"

VAR_DIR = Path(os.environ.get("CHUNKY_VAR_DIR", REPO_DIR / "var"))
STATIC_URL = "/static/"
NODE_MODULES = REPO_DIR / "node_modules"
# The demo page's libraries come from npm (package.json, installed by `npm ci`); only the folders
# the page loads are published, each under static/vendor/<package>/.
STATICFILES_DIRS = [
    (f"vendor/{package}", NODE_MODULES / package / folder)
    for package, folder in [("jquery", "dist"), ("blueimp-file-upload", "js"), ("spark-md5", "")]
    if (NODE_MODULES / package / folder).is_dir()
]
if (NODE_MODULES / ".chunky-demo").is_dir():  # the Uppy page's bundle (npm run build-demo)
    STATICFILES_DIRS.append(("vendor/uppy-demo", NODE_MODULES / ".chunky-demo"))
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None  # for `collectstatic` output, if wanted
WHITENOISE_USE_FINDERS = True  # serve the app and npm folders as they are, no collectstatic
MEDIA_ROOT = os.environ.get("MEDIA_ROOT", str(VAR_DIR / "media"))
MEDIA_URL = os.environ.get("MEDIA_URL", "/media/")
# The site serves MEDIA_ROOT at MEDIA_URL itself, always as downloads (chunky_site/views.py).
CHUNKY_SERVE_MEDIA = env_bool("CHUNKY_SERVE_MEDIA", True)
# /healthz fails when the upload directory has less free space than this.
CHUNKY_HEALTH_MIN_FREE_BYTES = int(os.environ.get("CHUNKY_HEALTH_MIN_FREE_BYTES") or 1 << 20)

# Behind a proxy (deploy/nginx/chunky_redis.conf, an ingress), status_url and Location are built
# from the host, port and scheme the client used, which the proxy forwards in X-Forwarded-*.
# Trust those headers only when every request comes through such a proxy: a client that reaches
# gunicorn directly could set them to anything.
USE_X_FORWARDED_HOST = env_bool("USE_X_FORWARDED_HOST", False)
USE_X_FORWARDED_PORT = env_bool("USE_X_FORWARDED_PORT", False)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# -- chunky_redis -------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
CHUNKY_REDIS_REDIS_URL = REDIS_URL or None
CHUNKY_REDIS_UPLOAD_DIR = os.environ.get("CHUNKY_UPLOAD_DIR", str(VAR_DIR / "chunks"))
CHUNKY_REDIS_FINAL_STORAGE = os.environ.get("CHUNKY_FINAL_STORAGE") or None
# "s3": chunks go into S3 multipart uploads in the final storage's bucket (no shared volume).
CHUNKY_REDIS_CHUNK_STORAGE = os.environ.get("CHUNKY_CHUNK_STORAGE") or "filesystem"
if os.environ.get("CHUNKY_S3_PART_SIZE"):
    CHUNKY_REDIS_S3_PART_SIZE = int(os.environ["CHUNKY_S3_PART_SIZE"])
CHUNKY_REDIS_ALLOW_ANONYMOUS = env_bool("CHUNKY_ALLOW_ANONYMOUS", True)
CHUNKY_REDIS_FSYNC = env_bool("CHUNKY_FSYNC", True)
# Deferred durability (docs/correctness.md): a chunk is recorded from the page cache, and the file is
# synced every 16 MiB and at the upload's end; after a power loss an upload resumes from its last
# synced byte and never completes with a byte the client did not send. The library's default is 0
# (an fdatasync per chunk). Set 0 where the pods or hosts that serve one upload do not share one
# kernel (deploy/k8s/configmap.yaml): each would re-read the other's unsynced bytes.
CHUNKY_REDIS_SYNC_EVERY = int(os.environ.get("CHUNKY_SYNC_EVERY") or 16 << 20)
if os.environ.get("CHUNKY_MAX_BYTES"):
    CHUNKY_REDIS_MAX_BYTES = int(os.environ["CHUNKY_MAX_BYTES"])
if os.environ.get("CHUNKY_MAX_UPLOADS_IN_FLIGHT"):
    CHUNKY_REDIS_MAX_UPLOADS_IN_FLIGHT = int(os.environ["CHUNKY_MAX_UPLOADS_IN_FLIGHT"])
if os.environ.get("CHUNKY_MAX_BYTES_IN_FLIGHT"):
    CHUNKY_REDIS_MAX_BYTES_IN_FLIGHT = int(os.environ["CHUNKY_MAX_BYTES_IN_FLIGHT"])
if os.environ.get("CHUNKY_EXPIRATION_SECONDS"):
    CHUNKY_REDIS_EXPIRATION = float(os.environ["CHUNKY_EXPIRATION_SECONDS"])
CHUNKY_REDIS_CHECKSUM_ALGORITHM = os.environ.get("CHUNKY_CHECKSUM_ALGORITHM", "md5")
if os.environ.get("CHUNKY_LOCK_TIMEOUT_SECONDS"):
    CHUNKY_REDIS_LOCK_TIMEOUT = float(os.environ["CHUNKY_LOCK_TIMEOUT_SECONDS"])
CHUNKY_REDIS_SLIDING_EXPIRATION = env_bool("CHUNKY_SLIDING_EXPIRATION", False)
if os.environ.get("CHUNKY_WAIT_REPLICAS"):
    CHUNKY_REDIS_WAIT_REPLICAS = int(os.environ["CHUNKY_WAIT_REPLICAS"])
if os.environ.get("CHUNKY_WAIT_TIMEOUT_SECONDS"):
    CHUNKY_REDIS_WAIT_TIMEOUT = float(os.environ["CHUNKY_WAIT_TIMEOUT_SECONDS"])
if os.environ.get("CHUNKY_SWEEP_INTERVAL_SECONDS"):
    CHUNKY_REDIS_SWEEP_INTERVAL = float(os.environ["CHUNKY_SWEEP_INTERVAL_SECONDS"])
if os.environ.get("CHUNKY_ORPHAN_GRACE_SECONDS"):
    CHUNKY_REDIS_ORPHAN_GRACE = float(os.environ["CHUNKY_ORPHAN_GRACE_SECONDS"])
if os.environ.get("CHUNKY_FINALIZE_LEASE_SECONDS"):
    CHUNKY_REDIS_FINALIZE_LEASE = float(os.environ["CHUNKY_FINALIZE_LEASE_SECONDS"])
if os.environ.get("CHUNKY_REQUEUE_AFTER_SECONDS"):
    CHUNKY_REDIS_REQUEUE_AFTER = float(os.environ["CHUNKY_REQUEUE_AFTER_SECONDS"])
if os.environ.get("CHUNKY_LOCK_REQUEST_TIMEOUT_SECONDS"):
    CHUNKY_REDIS_LOCK_REQUEST_TIMEOUT = float(os.environ["CHUNKY_LOCK_REQUEST_TIMEOUT_SECONDS"])
if os.environ.get("CHUNKY_REDIS_TIMEOUT_SECONDS"):
    CHUNKY_REDIS_REDIS_SOCKET_TIMEOUT = float(os.environ["CHUNKY_REDIS_TIMEOUT_SECONDS"])
if os.environ.get("CHUNKY_REDIS_CONNECT_TIMEOUT_SECONDS"):
    CHUNKY_REDIS_REDIS_CONNECT_TIMEOUT = float(os.environ["CHUNKY_REDIS_CONNECT_TIMEOUT_SECONDS"])
# Prometheus metrics at /metrics (docs/howto/metrics.md): off by default. The sample nginx never
# serves them; elsewhere set CHUNKY_METRICS_TOKEN, which Prometheus then sends as a bearer token.
CHUNKY_REDIS_METRICS = env_bool("CHUNKY_METRICS", False)
CHUNKY_REDIS_METRICS_TOKEN = os.environ.get("CHUNKY_METRICS_TOKEN") or None
if CHUNKY_REDIS_METRICS_TOKEN and CHUNKY_REDIS_METRICS_TOKEN.startswith("change-me"):
    raise ImproperlyConfigured("CHUNKY_METRICS_TOKEN is still the example value: set a random one.")
if os.environ.get("CHUNKY_METRICS_WORKER_PORT"):  # each Celery worker's own metrics server
    CHUNKY_REDIS_METRICS_WORKER_PORT = int(os.environ["CHUNKY_METRICS_WORKER_PORT"])

# -- Celery (tasks/) ----------------------------------------------------------
# The broker is the same Redis by default (a Sentinel URL becomes Celery's sentinel:// transport;
# a Redis Cluster cannot be a broker, so CELERY_BROKER_URL must then name one); with no Redis at
# all, tasks run eagerly in the web process.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "memory://"
_broker_options: dict = {}
if REDIS_URL and not os.environ.get("CELERY_BROKER_URL"):
    try:
        CELERY_BROKER_URL, _broker_options = celery_broker_for(REDIS_URL)
    except ValueError as e:
        raise ImproperlyConfigured(f"REDIS_URL: {e}. Set CELERY_BROKER_URL.") from e
CELERY_TASK_ALWAYS_EAGER = env_bool(
    "CELERY_TASK_ALWAYS_EAGER", not (os.environ.get("CELERY_BROKER_URL") or REDIS_URL)
)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = (
    1  # with acks_late, do not hoard tasks a dying worker would delay
)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's default gives up after 100 attempts (about 45 minutes of outage) and the worker exits;
# None: it keeps trying however long the broker is away, and resumes when it is back.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Redis broker: a worker restores the unacknowledged messages of dead workers under a mutex in
# Redis. kombu holds it for up to 300 s by default, so a worker killed while holding it blocked every
# redelivery for five minutes; the restore itself takes milliseconds. (Other brokers ignore this.)
_broker_options.setdefault("unacked_mutex_expire", 5)
if os.environ.get("CELERY_VISIBILITY_TIMEOUT"):
    _broker_options["visibility_timeout"] = float(os.environ["CELERY_VISIBILITY_TIMEOUT"])
if _broker_options:
    CELERY_BROKER_TRANSPORT_OPTIONS = _broker_options

# The project's loggers print through their own handler and do not propagate: in the Celery
# worker, Celery puts its own handler on the root logger (worker_hijack_root_logger), and a record
# that also reached the root was printed twice. The format is Celery's, so worker logs read as one.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        name: {
            "handlers": ["console"],
            "level": os.environ.get("CHUNKY_LOG_LEVEL", "INFO"),
            "propagate": False,
        }
        for name in ("chunky_redis", "chunky_site")
    },
}

# CORS (django-cors-headers), for browser clients on another origin (tus-js-client, Uppy):
# CORS_ALLOWED_ORIGINS lists the origins ("*" for any; none by default). The tus and IETF draft
# requests' headers are allowed, and the headers of their answers exposed to the page's script.
_cors_origins = env_list("CORS_ALLOWED_ORIGINS", "")
CORS_ALLOW_ALL_ORIGINS = _cors_origins == ["*"]
CORS_ALLOWED_ORIGINS = [] if CORS_ALLOW_ALL_ORIGINS else _cors_origins
_cors_request = (*tus_headers.REQUEST_HEADERS, *rufh_fields.REQUEST_HEADERS)
CORS_ALLOW_HEADERS = (*default_headers, *dict.fromkeys(h.lower() for h in _cors_request))
CORS_EXPOSE_HEADERS = list(
    dict.fromkeys((*tus_headers.EXPOSED_HEADERS, *rufh_fields.RESPONSE_HEADERS))
)
CORS_ALLOW_METHODS = (*default_methods, "HEAD")
