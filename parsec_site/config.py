"""The server's configuration: every `parsec backend run` option, read once from PARSEC_* variables.

`manage.py` turns command-line flags into these variables before Django starts (see `cli.py`),
so this module is the single reader of the environment. `OPTIONS` is the one table of options:
each option's flags, variable and default are written there once, and the command line parser,
`--help`, the error messages, the values read here and docs/configuration.md (checked by
tests/config/test_options.py) all follow it.
"""
from __future__ import annotations

import os
import re
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, TypeVar
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from blocks.stores.config import BlockstoreConfig, RaidBlockstore, parse_blockstore
from parsec_site.addr import BackendAddr

T = TypeVar("T")


# --- The option table (docs/configuration.md#options, plus our own options) --------------------

OptionKind = Literal["value", "switch", "list"]


@dataclass(frozen=True)
class Unset:
    """An option without a default value: absent (None, or off for a switch) unless given.

    `meaning` is what its absence means, for the Default column of docs/configuration.md and `--help`.
    """

    meaning: str = "none"


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    env: str
    kind: OptionKind
    # The one place each default is written: the value taken when neither flag nor variable is given,
    # as it would be written in the variable (read by the same parser), or Unset.
    default: str | Unset
    help: str
    metavar: str | None = None
    secret: bool = False  # values never echoed in errors

    @property
    def dest(self) -> str:
        return self.flags[0].removeprefix("--").replace("-", "_")

    @property
    def label(self) -> str:
        return f"{self.flags[0]} / {self.env}"

    @property
    def shown_default(self) -> str:
        """The Default column of docs/configuration.md (Markdown); `--help` shows it without backticks."""
        if isinstance(self.default, Unset):
            return self.default.meaning
        return self.default if self.kind == "switch" else f"`{self.default}`"


OPTIONS: tuple[Option, ...] = (
    Option(("--host", "-H"), "PARSEC_HOST", "value", "127.0.0.1", "listen address", "HOST"),
    Option(("--port", "-P"), "PARSEC_PORT", "value", "6777", "listen port", "PORT"),
    Option(
        ("--db",), "PARSEC_DB", "value", Unset("required"),
        "MOCKED (in memory, lost at exit), postgresql://... / postgres://... or sqlite:///<path> "
        "(sqlite:////<absolute path>)", "URL", secret=True,
    ),
    Option(("--db-min-connections",), "PARSEC_DB_MIN_CONNECTIONS", "value", "5", "PostgreSQL pool min size", "N"),
    Option(("--db-max-connections",), "PARSEC_DB_MAX_CONNECTIONS", "value", "7", "PostgreSQL pool max size", "N"),
    Option(
        ("--maximum-database-connection-attempts",), "PARSEC_MAXIMUM_DATABASE_CONNECTION_ATTEMPTS", "value", "10",
        "connection retries before giving up (0 = never retry)", "N",
    ),
    Option(
        ("--pause-before-retry-database-connection",), "PARSEC_PAUSE_BEFORE_RETRY_DATABASE_CONNECTION", "value",
        "1.0", "seconds between connection attempts", "SECONDS",
    ),
    Option(
        ("--db-statement-timeout",), "PARSEC_DB_STATEMENT_TIMEOUT", "value", "30",
        "longest a database statement may run, in seconds (0 = no limit; ours)", "SECONDS",
    ),
    Option(
        ("--blockstore", "-b"), "PARSEC_BLOCKSTORE", "list", Unset("required"),
        "block storage (repeatable for RAID; environment: whitespace-separated list), see docs/configuration.md",
        "CONFIG", secret=True,
    ),
    Option(
        ("--administration-token",), "PARSEC_ADMINISTRATION_TOKEN", "value", Unset("required"),
        "bearer token of the administration API", "TOKEN", secret=True,
    ),
    Option(
        ("--spontaneous-organization-bootstrap",), "PARSEC_SPONTANEOUS_ORGANIZATION_BOOTSTRAP", "switch", "off",
        "allow bootstrapping organizations never created through the administration API",
    ),
    Option(
        ("--organization-bootstrap-webhook",), "PARSEC_ORGANIZATION_BOOTSTRAP_WEBHOOK", "value", Unset(),
        "URL POSTed after each organization bootstrap", "URL",
    ),
    Option(
        ("--organization-initial-active-users-limit",), "PARSEC_ORGANIZATION_INITIAL_ACTIVE_USERS_LIMIT", "value",
        Unset("none (no limit)"), "active users limit of new organizations", "N",
    ),
    Option(
        ("--organization-initial-user-profile-outsider-allowed",),
        "PARSEC_ORGANIZATION_INITIAL_USER_PROFILE_OUTSIDER_ALLOWED", "value", "true",
        "whether new organizations allow the OUTSIDER profile (takes a boolean)", "BOOLEAN",
    ),
    Option(
        ("--backend-addr",), "PARSEC_BACKEND_ADDR", "value", Unset("required"),
        "public parsec://host[:port][?no_ssl=true] address, used in e-mails and /redirect", "URL",
    ),
    Option(
        ("--email-host",), "PARSEC_EMAIL_HOST", "value", Unset("required"), "SMTP host, or MOCKED", "HOST",
    ),
    Option(("--email-port",), "PARSEC_EMAIL_PORT", "value", "25", "SMTP port", "PORT"),
    Option(("--email-host-user",), "PARSEC_EMAIL_HOST_USER", "value", Unset(), "SMTP login", "USER"),
    Option(
        ("--email-host-password",), "PARSEC_EMAIL_HOST_PASSWORD", "value", Unset(), "SMTP password", "PASSWORD",
        secret=True,
    ),
    Option(("--email-use-ssl",), "PARSEC_EMAIL_USE_SSL", "switch", "off", "SMTP over implicit TLS"),
    Option(
        ("--email-use-tls",), "PARSEC_EMAIL_USE_TLS", "switch", "off", "STARTTLS (ignored with --email-use-ssl)",
    ),
    Option(
        ("--email-sender",), "PARSEC_EMAIL_SENDER", "value", Unset("none (`no-reply@parsec.com` with MOCKED)"),
        "From address; required unless --email-host=MOCKED", "ADDRESS",
    ),
    Option(
        ("--email-language",), "PARSEC_EMAIL_LANGUAGE", "value", "en", "e-mail language: en or fr (ours)", "LANG",
    ),
    Option(
        ("--forward-proto-enforce-https",), "PARSEC_FORWARD_PROTO_ENFORCE_HTTPS", "value", Unset(),
        "<header>:<value> marking requests that came over HTTPS, e.g. X-Forwarded-Proto:https", "HEADER:VALUE",
    ),
    Option(("--ssl-keyfile",), "PARSEC_SSL_KEYFILE", "value", Unset(), "TLS key file (PEM)", "FILE"),
    Option(
        ("--ssl-certfile",), "PARSEC_SSL_CERTFILE", "value", Unset(),
        "TLS certificate file (PEM; the chain may follow the certificate)", "FILE",
    ),
    Option(
        ("--log-level", "-l"), "PARSEC_LOG_LEVEL", "value", "INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL", "LEVEL",
    ),
    Option(
        ("--log-format", "-f"), "PARSEC_LOG_FORMAT", "value", "CONSOLE", "CONSOLE or JSON", "FORMAT",
    ),
    Option(
        ("--log-file", "-o"), "PARSEC_LOG_FILE", "value", Unset("stderr"), "log file (`-` = stderr)", "FILE",
    ),
    Option(
        ("--sentry-dsn",), "PARSEC_SENTRY_DSN", "value", Unset(), "Sentry DSN: report errors (no user data)", "DSN",
        secret=True,
    ),
    Option(("--sentry-environment",), "PARSEC_SENTRY_ENVIRONMENT", "value", "production", "Sentry environment", "NAME"),
    Option(
        ("--sse-keepalive",), "PARSEC_SSE_KEEPALIVE", "value", "30",
        "seconds between SSE keepalive comments (<= 0 disables)", "SECONDS",
    ),
    Option(
        ("--redis-url",), "PARSEC_REDIS_URL", "value", Unset("none (in-process events)"),
        "redis:// URL of the channel layer, needed to run several server processes (ours)", "URL", secret=True,
    ),
    Option(
        ("--workers",), "PARSEC_WORKERS", "value", "1",
        "server processes sharing the port; more than 1 needs --redis-url and a shared database (ours)", "N",
    ),
    Option(
        ("--fd",), "PARSEC_FD", "value", Unset(),
        "serve on this inherited listening socket instead of --host/--port (ours; used by --workers)", "FD",
    ),
    Option(
        ("--shutdown-grace",), "PARSEC_SHUTDOWN_GRACE", "value", "10",
        "seconds running commands get to finish on SIGTERM before the sessions close (ours)", "SECONDS",
    ),
    Option(
        ("--handshake-timeout",), "PARSEC_HANDSHAKE_TIMEOUT", "value", "30",
        "seconds a websocket gets to answer the handshake challenge before it is closed (ours)", "SECONDS",
    ),
    Option(
        ("--request-timeout",), "PARSEC_REQUEST_TIMEOUT", "value", "60",
        "seconds an HTTP request or websocket upgrade (TLS included) gets to arrive whole before the "
        "connection is dropped (ours)", "SECONDS",
    ),
    Option(
        ("--max-connections",), "PARSEC_MAX_CONNECTIONS", "value", "10000",
        "websocket connections per server process; more are closed with 1013 (ours)", "N",
    ),
    Option(
        ("--max-connections-per-organization",), "PARSEC_MAX_CONNECTIONS_PER_ORGANIZATION", "value", "8000",
        "websocket sessions of one organization per server process; more are closed with 1013 (ours)", "N",
    ),
    Option(
        ("--max-commands-per-second",), "PARSEC_MAX_COMMANDS_PER_SECOND", "value", "1000",
        "commands one connection may send per second (burst of as many); beyond, its commands wait (ours)", "N",
    ),
    Option(
        ("--metrics-token",), "PARSEC_METRICS_TOKEN", "value", Unset("none (no `/metrics`)"),
        "bearer token of /metrics, Prometheus format (ours)", "TOKEN", secret=True,
    ),
    Option(
        ("--metrics-port",), "PARSEC_METRICS_PORT", "value", Unset(),
        "also serve the metrics, without token, on this port of --host (ours)", "PORT",
    ),
    Option(
        ("--data-dir",), "PARSEC_DATA_DIR", "value", "./var",
        "folder of the embedded default (SQLite, blocks, administration token) and of the Django secret key (ours)",
        "PATH",
    ),
    Option(("--debug",), "DEBUG", "switch", "off", "debug mode: `ping` command, verbose `server` header"),
    Option(
        ("--admin",), "PARSEC_ADMIN", "value", "on",
        "the operators' web console (Django admin): on or off (ours)", "BOOLEAN",
    ),
    Option(
        ("--admin-prefix",), "PARSEC_ADMIN_PREFIX", "value", "admin",
        "URL path of the web console, e.g. `ops/console` (ours)", "PATH",
    ),
    Option(
        ("--admin-port",), "PARSEC_ADMIN_PORT", "value", Unset("none (the client port)"),
        "serve the web console only on this port, not on the clients' --port (ours)", "PORT",
    ),
    Option(
        ("--admin-host",), "PARSEC_ADMIN_HOST", "value", Unset("`--host`"),
        "listen address of --admin-port, e.g. 127.0.0.1 to keep the console local (ours)", "HOST",
    ),
    Option(
        ("--admin-fd",), "PARSEC_ADMIN_FD", "value", Unset(),
        "serve --admin-port on this inherited listening socket (ours; used by --workers, or with --fd)", "FD",
    ),
)

OPTIONS_BY_ENV: dict[str, Option] = {option.env: option for option in OPTIONS}


def default_value(env_name: str) -> str:
    """The default of an option that has one, as written in the table (what `manage.py run` assumes unset)."""
    default = OPTIONS_BY_ENV[env_name].default
    assert not isinstance(default, Unset), f"{env_name} has no default value"
    return default


MOCKED_EMAIL_SENDER = "no-reply@parsec.com"
DEFAULT_DATA_DIR = default_value("PARSEC_DATA_DIR")
TRUE_STRINGS = frozenset({"1", "true", "t", "yes", "y", "on"})
FALSE_STRINGS = frozenset({"0", "false", "f", "no", "n", "off"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("CONSOLE", "JSON")
EMAIL_LANGUAGES = ("en", "fr")
# First path segments the clients, the pages and the API use: the console cannot take them.
RESERVED_PATHS = frozenset({"ws", "anonymous", "authenticated", "invited", "redirect", "health", "metrics",
                            "administration", "static"})


def option_error(env_name: str, message: str) -> ImproperlyConfigured:
    option = OPTIONS_BY_ENV.get(env_name)
    return ImproperlyConfigured(f"{option.label if option else env_name}: {message}")


def parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in TRUE_STRINGS:
        return True
    if lowered in FALSE_STRINGS:
        return False
    raise ValueError("expected a boolean (1/true/yes/on or 0/false/no/off)")


def _parse_int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("expected an integer") from None


def _parse_float(raw: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ValueError("expected a number") from None


# --- ServerConfig --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    db_url: str = field(repr=False)
    db_min_connections: int
    db_max_connections: int
    maximum_database_connection_attempts: int
    pause_before_retry_database_connection: float
    db_statement_timeout: float
    blockstore: tuple[str, ...] = field(repr=False)  # raw values; `blockstore_config` is the parsed form
    administration_token: str = field(repr=False)
    spontaneous_organization_bootstrap: bool
    organization_bootstrap_webhook: str | None
    organization_initial_active_users_limit: int | None
    organization_initial_user_profile_outsider_allowed: bool
    backend_addr: BackendAddr | None
    email_host: str
    email_port: int
    email_host_user: str | None
    email_host_password: str | None = field(repr=False)
    email_use_ssl: bool
    email_use_tls: bool
    email_sender: str | None
    email_language: str
    forward_proto_enforce_https: tuple[str, str] | None
    ssl_keyfile: str | None
    ssl_certfile: str | None
    log_level: str
    log_format: str
    log_file: str | None  # None = stderr
    sentry_dsn: str | None = field(repr=False)
    sentry_environment: str
    sse_keepalive: int
    redis_url: str | None = field(repr=False)
    workers: int
    fd: int | None
    shutdown_grace: float
    handshake_timeout: float
    request_timeout: float
    max_connections: int
    max_connections_per_organization: int
    max_commands_per_second: float
    metrics_token: str | None = field(repr=False)
    metrics_port: int | None
    data_dir: Path
    debug: bool
    blockstore_config: BlockstoreConfig
    # The web console (ours): off, or at its own prefix, or only on its own port.
    admin_enabled: bool
    admin_prefix: str
    admin_host: str | None
    admin_port: int | None
    admin_fd: int | None

    @property
    def admin_url_prefix(self) -> str | None:
        """`<prefix>/` where the console is routed, None when it is off."""
        return f"{self.admin_prefix}/" if self.admin_enabled else None

    @property
    def db_kind(self) -> str:
        if self.db_url.upper() == "MOCKED":
            return "MOCKED"
        if self.db_url.startswith("sqlite:"):
            return "SQLITE"
        return "POSTGRESQL"

    @property
    def sqlite_path(self) -> Path:
        """`sqlite:///relative/path` or `sqlite:////absolute/path`, as SQLAlchemy writes them."""
        assert self.db_kind == "SQLITE"
        return Path(self.db_url.removeprefix("sqlite:///")).resolve()

    @property
    def email_kind(self) -> str:
        return "MOCKED" if self.email_host.upper() == "MOCKED" else "SMTP"


def _validate_db_url(url: str) -> str:
    if url.upper() == "MOCKED":
        return "MOCKED"
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        if not parts.path.strip("/"):
            raise ValueError("the PostgreSQL URL needs a database name: postgresql://[user[:pass]@]host[:port]/name")
        return url
    if url.startswith("sqlite:///") and url.removeprefix("sqlite:///").strip("/"):
        return url
    raise ValueError("expected MOCKED, postgresql://..., postgres://... or sqlite:///<path>")


def _validate_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    return url


def _validate_redis_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return url


def _validate_sentry_dsn(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme not in ("http", "https") or not parts.username or not parts.hostname or not parts.path.strip("/"):
        raise ValueError("expected https://<key>@<host>/<project>")
    return dsn


_ADMIN_PREFIX = re.compile(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*")


def _validate_admin_prefix(raw: str) -> str:
    prefix = raw.strip().strip("/")
    if not _ADMIN_PREFIX.fullmatch(prefix):
        raise ValueError("expected a URL path such as `admin` or `ops/console` (letters, digits, . _ ~ - and /)")
    if prefix.split("/", 1)[0] in RESERVED_PATHS:
        raise ValueError(f"`{prefix.split('/', 1)[0]}` is a route of the server itself")
    return prefix


def _validate_forward_header(raw: str) -> tuple[str, str]:
    header, sep, value = raw.partition(":")
    if not sep or not header.strip() or not value.strip():
        raise ValueError("expected <header>:<value>, e.g. X-Forwarded-Proto:https")
    return header.strip(), value.strip()


def load_server_config(env: environ.Env) -> ServerConfig:
    """Read and validate every option's variable; a bad value names its option and variable."""

    def raw(name: str) -> str | None:
        # Read verbatim from the environment django-environ wraps: its `$VAR` proxying would
        # rewrite secrets (tokens, passwords) that happen to start with `$`. Empty means unset.
        value = env.ENVIRON.get(name)
        return value if value else None

    def parsed(name: str, parse: Callable[[str], T], value: str) -> T:
        try:
            return parse(value)
        except ValueError as exc:
            option = OPTIONS_BY_ENV.get(name)
            shown = "" if option is None or option.secret else f" {value!r}"
            raise option_error(name, f"invalid value{shown}: {exc}") from None

    def get(name: str, parse: Callable[[str], T]) -> T:
        """An option with a default value in the table: the given value, else the default, parsed alike."""
        return parsed(name, parse, raw(name) or default_value(name))

    def get_optional(name: str, parse: Callable[[str], T]) -> T | None:
        """An option the table leaves Unset: None when it is not given."""
        assert isinstance(OPTIONS_BY_ENV[name].default, Unset), f"{name} has a default value: use get()"
        value = raw(name)
        return None if value is None else parsed(name, parse, value)

    def at_least(minimum: int | float) -> Callable[[int | float], int | float]:
        def check(value):
            if value < minimum:
                raise ValueError(f"must be >= {minimum}")
            return value

        return check

    def choice(choices: tuple[str, ...], normalize: Callable[[str], str]) -> Callable[[str], str]:
        def check(value: str) -> str:
            normalized = normalize(value.strip())
            if normalized not in choices:
                raise ValueError(f"expected one of {', '.join(choices)}")
            return normalized

        return check

    def port(value: str) -> int:
        number = _parse_int(value)
        if not 1 <= number <= 65535:
            raise ValueError("expected a port number between 1 and 65535")
        return number

    def then(first: Callable[[str], T], second: Callable) -> Callable[[str], T]:
        return lambda value: second(first(value))

    host = get("PARSEC_HOST", str.strip)
    listen_port = get("PARSEC_PORT", port)
    data_dir = get("PARSEC_DATA_DIR", lambda value: Path(value).resolve())
    # --db, --blockstore and --email-host are required by `run` (cli.REQUIRED_FOR_RUN, or the embedded default
    # fills them); other commands and the tests get these fallbacks.
    db_url = get_optional("PARSEC_DB", _validate_db_url) or f"sqlite:///{data_dir / 'parsec.sqlite3'}"
    db_min = get("PARSEC_DB_MIN_CONNECTIONS", then(_parse_int, at_least(0)))
    db_max = get("PARSEC_DB_MAX_CONNECTIONS", then(_parse_int, at_least(1)))
    if db_max < db_min:
        raise option_error("PARSEC_DB_MAX_CONNECTIONS", f"must be >= --db-min-connections ({db_min})")
    attempts = get("PARSEC_MAXIMUM_DATABASE_CONNECTION_ATTEMPTS", then(_parse_int, at_least(0)))
    pause = get("PARSEC_PAUSE_BEFORE_RETRY_DATABASE_CONNECTION", then(_parse_float, at_least(0)))

    blockstore = tuple((raw("PARSEC_BLOCKSTORE") or "MOCKED").split())
    try:
        blockstore_config = parse_blockstore(blockstore)
    except ValueError as exc:
        raise option_error("PARSEC_BLOCKSTORE", str(exc)) from None

    email_host = get_optional("PARSEC_EMAIL_HOST", str.strip)
    if email_host is None:
        email_host = "MOCKED"
    email_sender = get_optional("PARSEC_EMAIL_SENDER", str.strip)
    if email_sender is not None and "@" not in email_sender:
        raise option_error("PARSEC_EMAIL_SENDER", f"invalid value {email_sender!r}: expected an e-mail address")
    if email_sender is None and email_host.upper() == "MOCKED":
        email_sender = MOCKED_EMAIL_SENDER

    ssl_keyfile = get_optional("PARSEC_SSL_KEYFILE", str)
    ssl_certfile = get_optional("PARSEC_SSL_CERTFILE", str)
    for name, path in (("PARSEC_SSL_KEYFILE", ssl_keyfile), ("PARSEC_SSL_CERTFILE", ssl_certfile)):
        if path is not None and not os.path.isfile(path):
            raise option_error(name, f"file not found: {path}")
    if (ssl_keyfile is None) != (ssl_certfile is None):
        missing = "PARSEC_SSL_CERTFILE" if ssl_certfile is None else "PARSEC_SSL_KEYFILE"
        raise option_error(missing, "--ssl-keyfile and --ssl-certfile go together")

    log_file = get_optional("PARSEC_LOG_FILE", str)

    admin_port = get_optional("PARSEC_ADMIN_PORT", port)
    if admin_port is not None and admin_port == listen_port:
        raise option_error("PARSEC_ADMIN_PORT", "must differ from --port (leave it unset to serve the console there)")
    metrics_port_value = get_optional("PARSEC_METRICS_PORT", port)
    if admin_port is not None and admin_port == metrics_port_value:
        raise option_error("PARSEC_ADMIN_PORT", "must differ from --metrics-port")
    admin_host = get_optional("PARSEC_ADMIN_HOST", str.strip)
    if admin_host is not None and admin_port is None:
        raise option_error("PARSEC_ADMIN_HOST", "goes with --admin-port")
    admin_fd = get_optional("PARSEC_ADMIN_FD", then(_parse_int, at_least(0)))
    if admin_fd is not None and admin_port is None:
        raise option_error("PARSEC_ADMIN_FD", "goes with --admin-port (the port the socket listens on)")

    return ServerConfig(
        host=host,
        port=listen_port,
        db_url=db_url,
        db_min_connections=db_min,
        db_max_connections=db_max,
        maximum_database_connection_attempts=attempts,
        pause_before_retry_database_connection=pause,
        db_statement_timeout=get("PARSEC_DB_STATEMENT_TIMEOUT", then(_parse_float, at_least(0))),
        blockstore=blockstore,
        administration_token=raw("PARSEC_ADMINISTRATION_TOKEN") or "",
        spontaneous_organization_bootstrap=get("PARSEC_SPONTANEOUS_ORGANIZATION_BOOTSTRAP", parse_bool),
        organization_bootstrap_webhook=get_optional("PARSEC_ORGANIZATION_BOOTSTRAP_WEBHOOK", _validate_http_url),
        organization_initial_active_users_limit=get_optional(
            "PARSEC_ORGANIZATION_INITIAL_ACTIVE_USERS_LIMIT", then(_parse_int, at_least(0))
        ),
        organization_initial_user_profile_outsider_allowed=get(
            "PARSEC_ORGANIZATION_INITIAL_USER_PROFILE_OUTSIDER_ALLOWED", parse_bool
        ),
        backend_addr=get_optional("PARSEC_BACKEND_ADDR", BackendAddr.parse),
        email_host=email_host,
        email_port=get("PARSEC_EMAIL_PORT", port),
        email_host_user=get_optional("PARSEC_EMAIL_HOST_USER", str),
        email_host_password=get_optional("PARSEC_EMAIL_HOST_PASSWORD", str),
        email_use_ssl=get("PARSEC_EMAIL_USE_SSL", parse_bool),
        email_use_tls=get("PARSEC_EMAIL_USE_TLS", parse_bool),
        email_sender=email_sender,
        email_language=get("PARSEC_EMAIL_LANGUAGE", choice(EMAIL_LANGUAGES, str.lower)),
        forward_proto_enforce_https=get_optional("PARSEC_FORWARD_PROTO_ENFORCE_HTTPS", _validate_forward_header),
        ssl_keyfile=ssl_keyfile,
        ssl_certfile=ssl_certfile,
        log_level=get("PARSEC_LOG_LEVEL", choice(LOG_LEVELS, str.upper)),
        log_format=get("PARSEC_LOG_FORMAT", choice(LOG_FORMATS, str.upper)),
        log_file=None if log_file in (None, "-") else log_file,
        sentry_dsn=get_optional("PARSEC_SENTRY_DSN", _validate_sentry_dsn),
        sentry_environment=get("PARSEC_SENTRY_ENVIRONMENT", str),
        sse_keepalive=get("PARSEC_SSE_KEEPALIVE", _parse_int),
        redis_url=get_optional("PARSEC_REDIS_URL", _validate_redis_url),
        workers=get("PARSEC_WORKERS", then(_parse_int, at_least(1))),
        fd=get_optional("PARSEC_FD", then(_parse_int, at_least(0))),
        shutdown_grace=get("PARSEC_SHUTDOWN_GRACE", then(_parse_float, at_least(0))),
        handshake_timeout=get("PARSEC_HANDSHAKE_TIMEOUT", then(_parse_float, at_least(0.1))),
        request_timeout=get("PARSEC_REQUEST_TIMEOUT", then(_parse_float, at_least(0.1))),
        max_connections=get("PARSEC_MAX_CONNECTIONS", then(_parse_int, at_least(1))),
        max_connections_per_organization=get(
            "PARSEC_MAX_CONNECTIONS_PER_ORGANIZATION", then(_parse_int, at_least(1))
        ),
        max_commands_per_second=get("PARSEC_MAX_COMMANDS_PER_SECOND", then(_parse_float, at_least(1))),
        metrics_token=raw("PARSEC_METRICS_TOKEN"),
        metrics_port=metrics_port_value,
        data_dir=data_dir,
        debug=get("DEBUG", parse_bool),
        blockstore_config=blockstore_config,
        admin_enabled=get("PARSEC_ADMIN", parse_bool),
        admin_prefix=get("PARSEC_ADMIN_PREFIX", _validate_admin_prefix),
        admin_host=admin_host,
        admin_port=admin_port,
        admin_fd=admin_fd,
    )


SUPPORTED_BLOCKSTORES = ("MOCKED", "POSTGRESQL", "LOCAL", "S3", "SWIFT", "RAID0", "RAID1", "RAID5")


def check_supported(config: ServerConfig) -> None:
    """Refuse, at `run`, options whose feature is not built yet (their values are already validated)."""
    if config.blockstore_config.kind not in SUPPORTED_BLOCKSTORES:
        raise option_error(
            "PARSEC_BLOCKSTORE",
            f"{config.blockstore_config.kind} blockstore is not supported yet (use MOCKED, POSTGRESQL or LOCAL:<path>)",
        )
    if config.email_kind == "SMTP" and config.email_sender is None:
        raise option_error("PARSEC_EMAIL_SENDER", "required unless --email-host=MOCKED")
    if config.workers > 1:
        # Each process would have its own in-memory data, and events would not cross processes.
        if config.db_kind == "MOCKED":
            raise option_error("PARSEC_WORKERS", "several processes need a shared database, not --db=MOCKED")
        if "MOCKED" in _blockstore_kinds(config.blockstore_config):
            raise option_error("PARSEC_WORKERS", "several processes need a shared blockstore, not MOCKED")
        if config.redis_url is None:
            raise option_error("PARSEC_WORKERS", "several processes need --redis-url (the Redis channel layer)")
        if config.fd is not None:
            raise option_error("PARSEC_FD", "--fd serves one process; --workers binds --host/--port itself")
    if config.admin_port is not None and config.fd is not None and config.admin_fd is None:
        # The clients' socket is inherited: the console's must be too.
        raise option_error("PARSEC_ADMIN_PORT", "with --fd, give the console's inherited socket with --admin-fd")


def _blockstore_kinds(store: BlockstoreConfig) -> set[str]:
    return {node.kind for node in store.nodes} if isinstance(store, RaidBlockstore) else {store.kind}


def proxy_ssl_header(config: ServerConfig) -> tuple[str, str] | None:
    """Django's SECURE_PROXY_SSL_HEADER from `--forward-proto-enforce-https`: which requests came over HTTPS.

    Behind a proxy that terminates TLS, Django would otherwise take every request for plain HTTP, and the
    console's login POST (its Origin `https://...`) would fail the CSRF origin check.
    """
    if config.forward_proto_enforce_https is None:
        return None
    header, value = config.forward_proto_enforce_https
    return "HTTP_" + header.upper().replace("-", "_"), value


def csrf_trusted_origins(config: ServerConfig) -> list[str]:
    """The public origin of `--backend-addr`: proxies that rewrite `Host` (dropping the port) still pass."""
    if config.backend_addr is None:
        return []
    return [config.backend_addr.to_http_url()]


SECRET_KEY_FILE = "django_secret_key"


def django_secret_key(env: environ.Env, config: ServerConfig) -> str:
    """DJANGO_SECRET_KEY, else a key generated once into the data folder (a fresh one per MOCKED process)."""
    explicit = env.ENVIRON.get("DJANGO_SECRET_KEY")
    if explicit:
        return explicit
    if config.db_kind == "MOCKED":
        return secrets.token_urlsafe(50)
    try:
        return read_or_create_secret(config.data_dir / SECRET_KEY_FILE, lambda: secrets.token_urlsafe(50))
    except OSError as exc:
        raise option_error(
            "PARSEC_DATA_DIR", f"DJANGO_SECRET_KEY is not set and no key can be kept in {config.data_dir}: {exc}"
        ) from None


def read_or_create_secret(path: Path, generate: Callable[[], str]) -> str:
    """The secret in `path`, created (mode 0600) if absent; concurrent first starts agree on one value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as file:
                file.write(generate() + "\n")
            # link() fails if another process got there first: then its value is the one kept.
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    value = path.read_text().strip()
    if not value:
        raise OSError(f"{path} is empty")
    return value
