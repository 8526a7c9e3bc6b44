"""r1lab settings.

Configuration is read from the environment here and nowhere else. Every variable has an
embedded default so that `make demo` needs nothing but Python: SQLite under var/, Celery's
filesystem broker under var/, the in-memory channel layer. Setting DATABASE_URL / REDIS_URL
switches to PostgreSQL / Redis. The README has the table of every variable.
"""
from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("R1LAB_VAR_DIR", BASE_DIR / "var")).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no).")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from exc


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once into var/ (demo only)."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _env_bool("DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("R1LAB_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "daphne",  # before staticfiles: `runserver` serves ASGI (HTTP + WebSocket)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "axes",  # login rate limiting (see "Auth" below)
    "channels",
    "r1lab.accounts",
    "r1lab.tracking",
    "r1lab.pipelines",
    "r1lab.curation",
    "r1lab.rollouts",
    "r1lab.lab",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "r1lab.middleware.RejectNulQueryMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "r1lab.urls"
ASGI_APPLICATION = "r1lab.asgi.application"
WSGI_APPLICATION = "r1lab.wsgi.application"

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
                "r1lab.accounts.context_processors.roles",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
if DATABASE_URL:
    try:
        _db = dj_database_url.parse(DATABASE_URL, conn_max_age=_env_int("R1LAB_DB_CONN_MAX_AGE", 0))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL ({exc}).") from exc
    if _db.get("ENGINE") != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            f"DATABASE_URL must be a postgres:// URL (got engine {_db.get('ENGINE')!r}); "
            "unset it to use the embedded SQLite database."
        )
    _db.setdefault("OPTIONS", {})["connect_timeout"] = 5
    # A connection pool (psycopg_pool) for the web server: under ASGI every request runs its sync
    # view on a thread of its own, so per-thread connections (CONN_MAX_AGE) are never reused and
    # each request paid a new connection. On by default in the web server (r1lab/asgi.py sets
    # r1lab.WEB_SERVER) unless persistent connections are asked for; other processes (Celery
    # workers, management commands) keep a connection per thread.
    import r1lab as _r1lab

    _pool = os.environ.get("R1LAB_DB_POOL", "1" if _r1lab.WEB_SERVER and not _db.get("CONN_MAX_AGE") else "0").strip()
    if _pool not in ("0", "1"):
        raise ImproperlyConfigured(f"R1LAB_DB_POOL={_pool!r}: use 1 (pool connections) or 0.")
    if _pool == "1":
        if _db.get("CONN_MAX_AGE"):
            raise ImproperlyConfigured(
                "R1LAB_DB_CONN_MAX_AGE > 0 and a connection pool exclude each other; the web server pools "
                "connections by default: unset R1LAB_DB_CONN_MAX_AGE, or set R1LAB_DB_POOL=0.")
        _db["OPTIONS"]["pool"] = {"min_size": 1, "max_size": _env_int("R1LAB_DB_POOL_MAX", 20), "timeout": 10}
    DATABASES = {"default": _db}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": Path(os.environ.get("R1LAB_SQLITE_PATH", VAR_DIR / "r1lab.sqlite3")),
            # WAL: the web server, the worker and the ingest API write concurrently.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "TEST": {"NAME": str(VAR_DIR / "test.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker + results, channel layer --------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "").strip()
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL must start with redis://, rediss:// or unix:// (got {REDIS_URL!r}).")

CELERY_TASK_QUEUES_NAMES = ("gpu", "default")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A training stage may run for days; the message must not be re-delivered while the
        # worker still holds it (acks_late). Redis re-delivers after this timeout.
        "visibility_timeout": _env_int("R1LAB_VISIBILITY_TIMEOUT_S", 7 * 24 * 3600),
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, the same 5 s channels_redis
            # blocks in BZPOPMIN for: under load the read timed out first, the consumer died and its
            # WebSocket closed (seen in benchmarks/live_latency.py). A read timeout well above it.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}],
                       "capacity": 1500, "expiry": 30},
        }
    }
else:
    _celery_dir = VAR_DIR / "celery"
    for _sub in ("in", "processed", "results", "control"):
        (_celery_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "r1fs://localhost/"  # r1lab/broker.py: filesystem transport, atomic writes
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "in"),
        "data_folder_out": str(_celery_dir / "in"),
        "processed_folder": str(_celery_dir / "processed"),
        "control_folder": str(_celery_dir / "control"),  # broadcast (inspect, revoke)
        "store_processed": False,
        "polling_interval": 0.01,
    }
    CELERY_RESULT_BACKEND = f"file://{_celery_dir / 'results'}"
    # In-memory: one process only. Pages fall back to polling for what the worker writes.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # one training stage at a time per worker process
CELERY_TASK_TIME_LIMIT = None  # never kill a training stage on a global limit
CELERY_TASK_SOFT_TIME_LIMIT = None
CELERY_TASK_TRACK_STARTED = True
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = _env_bool("R1LAB_CELERY_EAGER", False)
# pipelines: the lost-worker sweep (a running stage with no heartbeat for
# R1LAB_HEARTBEAT_TIMEOUT_S becomes `failed (worker lost)`); every R1LAB_LOST_SWEEP_S seconds, so a
# lost stage is found within timeout + interval (45 + 10 s by default, under a minute).
R1LAB_LOST_SWEEP_S = _env_int("R1LAB_LOST_SWEEP_S", 10)
# tracking: alarms that notify (tracking/alert_services.py): every R1LAB_ALERT_SCAN_S seconds the
# curves of runs that reported lately are checked and silent runs found stale; what fires is sent
# (webhook, e-mail) by tasks on the default queue.
R1LAB_ALERT_SCAN_S = _env_int("R1LAB_ALERT_SCAN_S", 30)
CELERY_BEAT_SCHEDULE = {
    "pipelines-mark-lost-workers": {
        "task": "pipelines.mark_lost_workers",
        "schedule": float(R1LAB_LOST_SWEEP_S),
        "options": {"queue": "default", "expires": R1LAB_LOST_SWEEP_S * 3},
    },
    "tracking-scan-alarms": {
        "task": "tracking.scan_alarms",
        "schedule": float(R1LAB_ALERT_SCAN_S),
        "options": {"queue": "default", "expires": R1LAB_ALERT_SCAN_S * 3},
    },
}

# --- E-mail (alarm notifications) -----------------------------------------------------------------
# Django's SMTP backend; without R1LAB_EMAIL_HOST it tries localhost:25 and the notifications page
# shows the delivery failing with the error. Tests use Django's in-memory backend.
EMAIL_BACKEND = os.environ.get("R1LAB_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = os.environ.get("R1LAB_EMAIL_HOST", "localhost")
EMAIL_PORT = _env_int("R1LAB_EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("R1LAB_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("R1LAB_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("R1LAB_EMAIL_TLS", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = os.environ.get("R1LAB_EMAIL_FROM", "r1lab@localhost")

# --- Auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True

# Login rate limiting (django-axes): R1LAB_LOGIN_FAILURE_LIMIT failed logins for one username from
# one address lock that pair out for R1LAB_LOGIN_COOLOFF_S (each try while locked out restarts
# the wait). Per username *and* address, so that someone guessing cannot lock the real user
# out from elsewhere. Behind a proxy run daphne with --proxy-headers, or every client shares
# the proxy's address. Bearer tokens (the API) never go through authenticate(): not counted.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = _env_int("R1LAB_LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(seconds=_env_int("R1LAB_LOGIN_COOLOFF_S", 15 * 60))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "r1lab.accounts.views.login_locked_out"

# --- HTTPS (production) -----------------------------------------------------------------------
# R1LAB_SECURE=1: the lab is served over HTTPS (daphne with TLS, or behind a TLS proxy). With it
# `manage.py check --deploy` passes (README, "Production"). Off by default: `make demo` is plain
# HTTP on 127.0.0.1, where secure-only cookies would never be sent back.
R1LAB_SECURE = _env_bool("R1LAB_SECURE", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = R1LAB_SECURE
SECURE_SSL_REDIRECT = R1LAB_SECURE
# Not redirected: a load balancer's plain-HTTP probe, and API clients (a trainer inside the
# cluster may post to http://lab:8000 directly; a redirect cannot protect a token it has sent
# already, and clients do not re-send a POST body to a redirect).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^api/"]
SECURE_HSTS_SECONDS = _env_int("R1LAB_HSTS_SECONDS", 365 * 24 * 3600 if R1LAB_SECURE else 0)
# Sent with max-age (check --deploy asks for both): they cover only this host's own subdomains,
# and `preload` makes the host eligible for browsers' preload lists; nothing is submitted.
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0


def _proxy_ssl_header() -> tuple[str, str] | None:
    """R1LAB_PROXY_SSL_HEADER=X-Forwarded-Proto: the header a TLS proxy sets to `https`.

    Only set it behind a proxy that always sets (overwrites) that header: a client could
    otherwise claim HTTPS."""
    raw = os.environ.get("R1LAB_PROXY_SSL_HEADER", "").strip()
    if not raw:
        return None
    if not all(c.isalnum() or c == "-" for c in raw):
        raise ImproperlyConfigured(f"R1LAB_PROXY_SSL_HEADER={raw!r} is not a header name (e.g. X-Forwarded-Proto).")
    return "HTTP_" + raw.upper().replace("-", "_"), "https"


SECURE_PROXY_SSL_HEADER = _proxy_ssl_header()

# --- i18n / static ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"


def _plotly_js_dir() -> Path:
    """plotly.min.js ships inside the plotly package: serve that copy, never a CDN."""
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data"


STATICFILES_DIRS = [BASE_DIR / "static", ("vendor/plotly", _plotly_js_dir())]

# The largest request body (forms, uploads), enforced while it arrives (r1lab/bodylimit.py);
# the ingest API has its own, R1LAB_INGEST_MAX_BYTES.
R1LAB_MAX_BODY_BYTES = _env_int("R1LAB_MAX_BODY_BYTES", 32 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = R1LAB_MAX_BODY_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024

# --- r1lab's own settings ----------------------------------------------------------------------
# Where stages write checkpoints, datasets and logs: a disk every GPU worker shares.
R1LAB_DATA_DIR = Path(os.environ.get("R1LAB_DATA_DIR", VAR_DIR / "data")).resolve()
# A dataset upload (prompt set, cold-start import) larger than this is read and checked by a
# Celery task on the `default` queue, with progress on the page; smaller ones at once, in the request.
R1LAB_IMPORT_BACKGROUND_BYTES = _env_int("R1LAB_IMPORT_BACKGROUND_BYTES", 2 * 1024 * 1024)
# The URL a trainer subprocess uses to reach this server's ingest API.
R1LAB_PUBLIC_URL = os.environ.get("R1LAB_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# An open WebSocket re-checks that its user may still use it this often (a deactivation made
# through the ORM closes it at once; this catches the rest: r1lab/accounts/consumers.py).
R1LAB_WS_RECHECK_S = _env_int("R1LAB_WS_RECHECK_S", 60)
# A run that has not reported for this long is shown `stale`.
R1LAB_STALE_AFTER_S = _env_int("R1LAB_STALE_AFTER_S", 120)
# A running stage whose worker has not heartbeated for this long is `failed (worker lost)`.
R1LAB_HEARTBEAT_TIMEOUT_S = _env_int("R1LAB_HEARTBEAT_TIMEOUT_S", 45)
# Python interpreter used to start trainers (the worker itself never imports torch).
R1LAB_TRAINER_PYTHON = os.environ.get("R1LAB_TRAINER_PYTHON", "")
# Largest body POST /api/v1/runs/{id}/log accepts (413 above it); clients batch below it.
R1LAB_INGEST_MAX_BYTES = _env_int("R1LAB_INGEST_MAX_BYTES", 16 * 1024 * 1024)
# Distinct metric keys one run may have (RL trainers log 1,000–3,000; one bad batch once made 70k).
R1LAB_MAX_KEYS_PER_RUN = _env_int("R1LAB_MAX_KEYS_PER_RUN", 10000)
# Extra environment names (or PREFIX_*) a trainer inherits from its worker, comma-separated.
R1LAB_TRAINER_ENV_ALLOW = os.environ.get("R1LAB_TRAINER_ENV_ALLOW", "")
# Registering a base model runs `python -m training_backend inspect-model PATH` (torch and
# transformers, in a subprocess): it is killed and the folder refused after this many seconds.
R1LAB_MODEL_CHECK_TIMEOUT_S = _env_int("R1LAB_MODEL_CHECK_TIMEOUT_S", 120)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("R1LAB_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
