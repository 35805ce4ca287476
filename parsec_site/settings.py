"""Django settings for parsec-django.

Every PARSEC_* variable is read here, once, through django-environ (see `config.py`).
"""
from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from pathlib import Path

import environ

from parsec_site import logging as parsec_logging
from parsec_site.config import (
    ServerConfig,
    csrf_trusted_origins,
    django_secret_key,
    load_server_config,
    proxy_ssl_header,
)

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
PARSEC = load_server_config(env)

SECRET_KEY = django_secret_key(env, PARSEC)

# Django's own debug pages stay off: they would leak settings. `PARSEC.debug` is the protocol's.
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "protocol",
    "organizations",
    "invites",
    "realms",
    "blocks",
    "pki",
    "sequester",
    # The site-level app, on top of all the others (its admin extends theirs): see server/apps.py.
    "server",
]

MIDDLEWARE = [
    # Outermost: the access log line and metrics see every answer, redirects and errors included.
    "parsec_site.middleware.RequestLogMiddleware",
    "parsec_site.middleware.ForwardProtoMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The console's stylesheets and scripts (WhiteNoise), before anything that needs a session.
    "parsec_site.middleware.StaticFilesMiddleware",
    # `--admin-port`: requests on that port see the console's URLs only.
    "parsec_site.middleware.AdminPortMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The HTML pages in the visitor's language (Accept-Language).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "parsec_site.urls"
ASGI_APPLICATION = "parsec_site.asgi.application"

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


def _mocked_database_path() -> Path:
    # MOCKED is a SQLite file in RAM (/dev/shm when there is one), private to this process and removed
    # at exit. Not a shared-cache `mode=memory` database: its table locks fail concurrent writers at
    # once ("database table is locked") instead of waiting, and protocol/db.py runs ORM calls in
    # parallel worker threads.
    ram = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="parsec-mocked-", dir=ram if ram.is_dir() else None))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder / "parsec.sqlite3"


def _sqlite_settings(path: Path) -> dict:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        # Tests get a file beside it, not Django's default shared-cache memory database, whose table
        # locks refuse concurrent writers instead of queueing them as the server's SQLite does.
        "TEST": {"NAME": str(path.with_name(f"{path.stem}-test{path.suffix}"))},
        "OPTIONS": {
            "timeout": 30,
            # Writers queue up instead of failing with "database is locked" mid-transaction.
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


def _log_reconnect_failed(pool: object) -> None:
    logging.getLogger("parsec.db").error(
        "Cannot reconnect to the database after %ss; still retrying on demand", PARSEC_POOL_RECONNECT_TIMEOUT
    )


# Lost connections: the pool tries to replace them for as long as the configured attempts would take.
PARSEC_POOL_RECONNECT_TIMEOUT = max(
    PARSEC.maximum_database_connection_attempts * PARSEC.pause_before_retry_database_connection, 1.0
)


def _loop_pool_settings(config: ServerConfig) -> dict | None:
    """The event loop's pool for the vlob hot path (protocol/loop_db.py), PostgreSQL only: a third of
    --db-max-connections (and of the minimum), at least one; the worker threads' pool keeps the rest,
    which every other command and the blockstore share, so the server never holds more connections
    than configured. None below two connections."""
    if config.db_kind in ("MOCKED", "SQLITE") or config.db_max_connections < 2:
        return None
    max_size = max(1, config.db_max_connections // 3)
    return {
        "min_size": min(config.db_min_connections // 3, max_size),
        "max_size": max_size,
        # Not the 30 s of the other pool: a command that finds no loop connection at once (all busy,
        # or the database restarting) runs in a worker thread instead of waiting here first.
        "timeout": 1,
        "reconnect_timeout": PARSEC_POOL_RECONNECT_TIMEOUT,
    }


def _database_settings(config: ServerConfig) -> dict:
    if config.db_kind == "MOCKED":
        return _sqlite_settings(_mocked_database_path())
    if config.db_kind == "SQLITE":
        return _sqlite_settings(config.sqlite_path)
    database = env.db_url_config(config.db_url.replace("postgresql://", "postgres://", 1))
    database["ENGINE"] = "django.db.backends.postgresql"
    # No health query per checkout (one round trip per command, ~15-30% of a vlob command):
    # protocol/db.py retries a call whose pooled connection turns out dead before its first statement.
    database["CONN_HEALTH_CHECKS"] = False
    options = database.setdefault("OPTIONS", {})
    if config.db_statement_timeout > 0:
        # libpq's startup options: set once per pooled connection, no round trip per command. Kept
        # after any `options` of the URL so that ours wins.
        timeout = f"-c statement_timeout={round(config.db_statement_timeout * 1000)}"
        options["options"] = f"{options['options']} {timeout}" if options.get("options") else timeout
    loop_pool = _loop_pool_settings(config)
    options["pool"] = {
        "min_size": config.db_min_connections - (loop_pool["min_size"] if loop_pool else 0),
        "max_size": config.db_max_connections - (loop_pool["max_size"] if loop_pool else 0),
        "timeout": 30,
        "reconnect_timeout": PARSEC_POOL_RECONNECT_TIMEOUT,
        "reconnect_failed": _log_reconnect_failed,
    }
    return database


DATABASES = {"default": _database_settings(PARSEC)}
PARSEC_LOOP_POOL = _loop_pool_settings(PARSEC)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channels drops a group membership after a day (group_expiry) by default, so that a session
# connected longer silently stops receiving events and closes. Parsec clients stay connected for
# days: memberships last as long as their session (discarded at disconnect).
GROUP_MEMBERSHIP_LIFETIME = 10 * 365 * 24 * 3600


REDIS_SOCKET_TIMEOUT = 20.0


def channel_layers(redis_url: str | None) -> dict:
    """Redis when configured (several processes act as one server), else the in-process layer."""
    if redis_url:
        return {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    # A session's receive is a blocking BZPOPMIN of 5 s (channels_redis' brpop_timeout); redis-py's
                    # default socket timeout is 5 s too (redis 8.2), so the read could give up first and crash the
                    # session (1011). A longer bound still notices a Redis that went silent.
                    "hosts": [{"address": redis_url, "socket_timeout": REDIS_SOCKET_TIMEOUT}],
                    "capacity": 1000,
                    "group_expiry": GROUP_MEMBERSHIP_LIFETIME,
                },
            }
        }
    return {
        "default": {
            "BACKEND": "protocol.layers.LocalChannelLayer",
            "CONFIG": {"capacity": 1000, "group_expiry": GROUP_MEMBERSHIP_LIFETIME},
        }
    }


CHANNEL_LAYERS = channel_layers(PARSEC.redis_url)

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("fr", "Français")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise serves them: from STATIC_ROOT once `collectstatic` ran (scripts/start.sh, the Docker image),
# straight from the apps' folders (Django's finders) in debug/--dev or when nothing was collected.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = PARSEC.debug or not STATIC_ROOT.is_dir()
WHITENOISE_AUTOREFRESH = PARSEC.debug

# Behind a TLS-terminating proxy (`--forward-proto-enforce-https`) Django must know the request was HTTPS,
# and the public origin (`--backend-addr`) is trusted by the console's CSRF check.
SECURE_PROXY_SSL_HEADER = proxy_ssl_header(PARSEC)
CSRF_TRUSTED_ORIGINS = csrf_trusted_origins(PARSEC)

# The HTTP RPC routes answer 413 themselves above 1 MiB; let Django hand them the body.
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024

# docs/configuration.md#options: structlog renders every logger's lines (CONSOLE or JSON) and redacts them.
LOGGING = parsec_logging.logging_config(level=PARSEC.log_level, log_format=PARSEC.log_format, log_file=PARSEC.log_file)
parsec_logging.configure_structlog()
parsec_logging.REDACTOR.register(*parsec_logging.configured_secrets(PARSEC), SECRET_KEY)

if PARSEC.sentry_dsn:
    from parsec_site.cli import version
    from parsec_site.sentry import init_sentry

    init_sentry(dsn=PARSEC.sentry_dsn, environment=PARSEC.sentry_environment, release=f"parsec-django@{version()}")

# Sequester webhook services (docs/protocol.md#sequester-checks): how long a vlob write waits for the service's answer
# before replying `timeout`. The reference has no limit; a stuck service must not hold a writer forever.
SEQUESTER_WEBHOOK_TIMEOUT = 30.0
