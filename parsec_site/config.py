"""The server's configuration: every `parsec backend run` option, read once from PARSEC_* variables.

`manage.py` turns command-line flags into these variables before Django starts (see `cli.py`),
so this module is the single reader of the environment. `OPTIONS` is the one table of options:
the command line parser, the error messages and docs/configuration.md all follow it.
"""
from __future__ import annotations

import os
import re
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")


@dataclass(frozen=True)
class BackendAddr:
    """The public `parsec://host[:port][?no_ssl=true]` address of this server."""

    hostname: str
    port: int
    use_ssl: bool

    @classmethod
    def parse(cls, url: str) -> BackendAddr:
        parts = urlsplit(url)
        if parts.scheme != "parsec" or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError("expected parsec://<host>[:<port>][?no_ssl=true]")
        no_ssl_values = parse_qs(parts.query).get("no_ssl", [])
        if len(no_ssl_values) > 1 or (no_ssl_values and no_ssl_values[0] not in ("true", "false")):
            raise ValueError("`no_ssl` must be given at most once, as `true` or `false`")
        use_ssl = no_ssl_values != ["true"]
        port = parts.port or (443 if use_ssl else 80)
        return cls(hostname=parts.hostname, port=port, use_ssl=use_ssl)

    @property
    def netloc(self) -> str:
        default_port = 443 if self.use_ssl else 80
        return self.hostname if self.port == default_port else f"{self.hostname}:{self.port}"

    def to_url(self, path: str = "", query: str = "") -> str:
        """`parsec://` URL, with `no_ssl=true` first in the query as the client writes it."""
        params = [] if self.use_ssl else ["no_ssl=true"]
        if query:
            params.append(query)
        suffix = f"?{'&'.join(params)}" if params else ""
        return f"parsec://{self.netloc}{path}{suffix}"

    def to_http_url(self, path: str = "") -> str:
        scheme = "https" if self.use_ssl else "http"
        return f"{scheme}://{self.netloc}{path}"


# --- Blockstore (docs/configuration.md#blockstore) --------------------------------------------


@dataclass(frozen=True)
class MockedBlockstore:
    kind = "MOCKED"


@dataclass(frozen=True)
class PostgreSQLBlockstore:
    """Blocks in the metadata database (whatever its kind: the reference's `POSTGRESQL` name is kept)."""

    kind = "POSTGRESQL"


@dataclass(frozen=True)
class LocalBlockstore:
    """Ours: one file per block under a folder."""

    path: Path
    kind = "LOCAL"


@dataclass(frozen=True)
class S3Blockstore:
    endpoint_url: str | None
    region: str
    bucket: str
    key: str = field(repr=False)
    secret: str = field(repr=False)
    kind = "S3"


@dataclass(frozen=True)
class SwiftBlockstore:
    auth_url: str
    tenant: str
    container: str
    user: str
    password: str = field(repr=False)
    kind = "SWIFT"


SingleBlockstore = MockedBlockstore | PostgreSQLBlockstore | LocalBlockstore | S3Blockstore | SwiftBlockstore
RaidMode = Literal["RAID0", "RAID1", "RAID5"]


@dataclass(frozen=True)
class RaidBlockstore:
    mode: RaidMode
    nodes: tuple[SingleBlockstore, ...]

    @property
    def kind(self) -> str:
        return self.mode


BlockstoreConfig = SingleBlockstore | RaidBlockstore

SINGLE_BLOCKSTORE_GRAMMAR = (
    "MOCKED, POSTGRESQL, LOCAL:<path>, s3:[<endpoint_url>]:<region>:<bucket>:<key>:<secret> "
    "or swift:<auth_url>:<tenant>:<container>:<user>:<password>"
)


def split_with_escaping(text: str) -> list[str]:
    """Split on `:`; `\\:` is a literal colon, `\\\\` a literal backslash, `\\` + other is kept as is."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars, None)
            if following is None:
                current.append("\\")
            elif following in ("\\", ":"):
                current.append(following)
            else:
                current.append("\\" + following)
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _with_https_default(url: str) -> str:
    # An endpoint without scheme gets TLS, like the reference (`s3:foo.com:...` -> https://foo.com).
    return url if not url or url.startswith(("http://", "https://")) else f"https://{url}"


def _check_fields(
    kind: str, grammar: str, names: tuple[str, ...], fields: list[str], required: tuple[str, ...]
) -> None:
    """Point at the bad part of an S3 / Swift value: the field count (unescaped `:`) or an empty field."""
    if len(fields) != len(names):
        raise ValueError(
            f"invalid {kind} config, expected `{grammar}`: {len(names)} fields after the prefix, got {len(fields)} "
            "(write `\\:` for a `:` inside a field, e.g. `http\\://host\\:9000`)"
        )
    for name, value in zip(names, fields):
        if name in required and not value:
            raise ValueError(f"invalid {kind} config, expected `{grammar}`: <{name}> is empty")


def _check_url(kind: str, name: str, url: str) -> None:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"invalid {kind} config: <{name}> `{url}` has a bad port") from None
    if not parts.hostname:
        raise ValueError(f"invalid {kind} config: <{name}> `{url}` has no host")


def parse_single_blockstore(value: str) -> SingleBlockstore:
    if value.upper() == "MOCKED":
        return MockedBlockstore()
    if value.upper() == "POSTGRESQL":
        return PostgreSQLBlockstore()
    prefix, *fields = split_with_escaping(value)
    if prefix.upper() == "LOCAL":
        if len(fields) != 1 or not fields[0]:
            raise ValueError("invalid LOCAL config, expected `LOCAL:<path>` (write `\\:` for a `:` in the path)")
        return LocalBlockstore(path=Path(fields[0]).resolve())
    if prefix.upper() == "S3":
        _check_fields(
            "S3", "s3:[<endpoint_url>]:<region>:<bucket>:<key>:<secret>",
            ("endpoint_url", "region", "bucket", "key", "secret"), fields, required=("bucket",),
        )
        endpoint_url, region, bucket, key, secret = fields
        endpoint_url = _with_https_default(endpoint_url)
        if endpoint_url:
            _check_url("S3", "endpoint_url", endpoint_url)
        return S3Blockstore(endpoint_url=endpoint_url or None, region=region, bucket=bucket, key=key, secret=secret)
    if prefix.upper() == "SWIFT":
        _check_fields(
            "Swift", "swift:<auth_url>:<tenant>:<container>:<user>:<password>",
            ("auth_url", "tenant", "container", "user", "password"), fields, required=("auth_url", "container", "user"),
        )
        auth_url, tenant, container, user, password = fields
        auth_url = _with_https_default(auth_url)
        _check_url("Swift", "auth_url", auth_url)
        return SwiftBlockstore(auth_url=auth_url, tenant=tenant, container=container, user=user, password=password)
    raise ValueError(f"invalid blockstore type `{prefix}`, expected {SINGLE_BLOCKSTORE_GRAMMAR}")


def parse_blockstore(values: tuple[str, ...]) -> BlockstoreConfig:
    """One single store, or several `RAID<0|1|5>:<node index>:<single store>` values of one RAID mode."""
    if not values:
        raise ValueError("no blockstore given")
    raid_nodes: dict[str | None, list[tuple[int | None, str]]] = {}
    for value in values:
        parts = value.split(":", 2)
        # RAID only with a prefix *and* 3 parts, like the reference: `RAID1` alone is a bad single store.
        if parts[0].upper() in ("RAID0", "RAID1", "RAID5") and len(parts) == 3:
            prefix, raw_index, node_value = parts
            try:
                index: int | None = int(raw_index)
            except ValueError:
                raise ValueError(f"invalid node index `{raw_index}` (must be an integer)") from None
            raid_nodes.setdefault(prefix.upper(), []).append((index, node_value))
        else:
            raid_nodes.setdefault(None, []).append((None, value))
    if len(raid_nodes) != 1:
        modes = ", ".join(sorted(mode or "non-RAID" for mode in raid_nodes))
        raise ValueError(f"multiple blockstore configs using different RAID modes ({modes})")
    [(mode, nodes)] = raid_nodes.items()
    if mode is None:
        if len(nodes) != 1:
            raise ValueError("multiple blockstore configs are only available in RAID mode")
        return parse_single_blockstore(nodes[0][1])
    by_index: dict[int, str] = {}
    for index, node_value in nodes:
        assert index is not None
        if index in by_index:
            raise ValueError(f"duplicate node index `{index}` in {mode} config")
        by_index[index] = node_value
    for expected in range(len(nodes)):
        if expected not in by_index:
            raise ValueError(f"Missing node index `{expected}` in {mode} config")
    if mode == "RAID5" and len(nodes) < 3:
        raise ValueError("RAID5 blockstore needs at least 3 nodes")
    parsed: list[SingleBlockstore] = []
    for index in range(len(nodes)):
        try:
            parsed.append(parse_single_blockstore(by_index[index]))
        except ValueError as exc:
            raise ValueError(f"{mode} node {index}: {exc}") from None
    return RaidBlockstore(mode=mode, nodes=tuple(parsed))  # type: ignore[arg-type]


# --- The option table (docs/configuration.md#options, plus our own options) --------------------

OptionKind = Literal["value", "switch", "list"]


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    env: str
    kind: OptionKind
    default: str  # as documented
    help: str
    metavar: str | None = None
    secret: bool = False  # values never echoed in errors
    status: str = "supported"

    @property
    def dest(self) -> str:
        return self.flags[0].removeprefix("--").replace("-", "_")

    @property
    def label(self) -> str:
        return f"{self.flags[0]} / {self.env}"


FOR_SMTP = "supported"

OPTIONS: tuple[Option, ...] = (
    Option(("--host", "-H"), "PARSEC_HOST", "value", "127.0.0.1", "listen address", "HOST"),
    Option(("--port", "-P"), "PARSEC_PORT", "value", "6777", "listen port", "PORT"),
    Option(
        ("--db",), "PARSEC_DB", "value", "required",
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
        ("--blockstore", "-b"), "PARSEC_BLOCKSTORE", "list", "required",
        "block storage (repeatable for RAID; environment: whitespace-separated list), see docs/configuration.md",
        "CONFIG", secret=True,
    ),
    Option(
        ("--administration-token",), "PARSEC_ADMINISTRATION_TOKEN", "value", "required",
        "bearer token of the administration API", "TOKEN", secret=True,
    ),
    Option(
        ("--spontaneous-organization-bootstrap",), "PARSEC_SPONTANEOUS_ORGANIZATION_BOOTSTRAP", "switch", "off",
        "allow bootstrapping organizations never created through the administration API",
    ),
    Option(
        ("--organization-bootstrap-webhook",), "PARSEC_ORGANIZATION_BOOTSTRAP_WEBHOOK", "value", "none",
        "URL POSTed after each organization bootstrap", "URL",
    ),
    Option(
        ("--organization-initial-active-users-limit",), "PARSEC_ORGANIZATION_INITIAL_ACTIVE_USERS_LIMIT", "value",
        "none (no limit)", "active users limit of new organizations", "N",
    ),
    Option(
        ("--organization-initial-user-profile-outsider-allowed",),
        "PARSEC_ORGANIZATION_INITIAL_USER_PROFILE_OUTSIDER_ALLOWED", "value", "true",
        "whether new organizations allow the OUTSIDER profile (takes a boolean)", "BOOLEAN",
    ),
    Option(
        ("--backend-addr",), "PARSEC_BACKEND_ADDR", "value", "required",
        "public parsec://host[:port][?no_ssl=true] address, used in e-mails and /redirect", "URL",
    ),
    Option(
        ("--email-host",), "PARSEC_EMAIL_HOST", "value", "required", "SMTP host, or MOCKED", "HOST",
        status="supported",
    ),
    Option(("--email-port",), "PARSEC_EMAIL_PORT", "value", "25", "SMTP port", "PORT", status=FOR_SMTP),
    Option(("--email-host-user",), "PARSEC_EMAIL_HOST_USER", "value", "none", "SMTP login", "USER", status=FOR_SMTP),
    Option(
        ("--email-host-password",), "PARSEC_EMAIL_HOST_PASSWORD", "value", "none", "SMTP password", "PASSWORD",
        secret=True, status=FOR_SMTP,
    ),
    Option(("--email-use-ssl",), "PARSEC_EMAIL_USE_SSL", "switch", "off", "SMTP over implicit TLS", status=FOR_SMTP),
    Option(
        ("--email-use-tls",), "PARSEC_EMAIL_USE_TLS", "switch", "off", "STARTTLS (ignored with --email-use-ssl)",
        status=FOR_SMTP,
    ),
    Option(
        ("--email-sender",), "PARSEC_EMAIL_SENDER", "value", "none (no-reply@parsec.com with MOCKED)",
        "From address; required unless --email-host=MOCKED", "ADDRESS",
    ),
    Option(
        ("--email-language",), "PARSEC_EMAIL_LANGUAGE", "value", "en", "e-mail language: en or fr (ours)", "LANG",
    ),
    Option(
        ("--forward-proto-enforce-https",), "PARSEC_FORWARD_PROTO_ENFORCE_HTTPS", "value", "none",
        "<header>:<value> marking requests that came over HTTPS, e.g. X-Forwarded-Proto:https", "HEADER:VALUE",
    ),
    Option(("--ssl-keyfile",), "PARSEC_SSL_KEYFILE", "value", "none", "TLS key file (PEM)", "FILE"),
    Option(
        ("--ssl-certfile",), "PARSEC_SSL_CERTFILE", "value", "none",
        "TLS certificate file (PEM; the chain may follow the certificate)", "FILE",
    ),
    Option(
        ("--log-level", "-l"), "PARSEC_LOG_LEVEL", "value", "INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL", "LEVEL",
    ),
    Option(
        ("--log-format", "-f"), "PARSEC_LOG_FORMAT", "value", "CONSOLE", "CONSOLE or JSON", "FORMAT",
    ),
    Option(
        ("--log-file", "-o"), "PARSEC_LOG_FILE", "value", "stderr", "log file (`-` = stderr)", "FILE",
    ),
    Option(
        ("--sentry-dsn",), "PARSEC_SENTRY_DSN", "value", "none", "Sentry DSN: report errors (no user data)", "DSN",
        secret=True,
    ),
    Option(("--sentry-environment",), "PARSEC_SENTRY_ENVIRONMENT", "value", "production", "Sentry environment", "NAME"),
    Option(
        ("--sse-keepalive",), "PARSEC_SSE_KEEPALIVE", "value", "30",
        "seconds between SSE keepalive comments (<= 0 disables)", "SECONDS",
    ),
    Option(
        ("--redis-url",), "PARSEC_REDIS_URL", "value", "none (in-process events)",
        "redis:// URL of the channel layer, needed to run several server processes (ours)", "URL", secret=True,
    ),
    Option(
        ("--workers",), "PARSEC_WORKERS", "value", "1",
        "server processes sharing the port; more than 1 needs --redis-url and a shared database (ours)", "N",
    ),
    Option(
        ("--fd",), "PARSEC_FD", "value", "none",
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
        ("--metrics-token",), "PARSEC_METRICS_TOKEN", "value", "none (no /metrics)",
        "bearer token of /metrics, Prometheus format (ours)", "TOKEN", secret=True,
    ),
    Option(
        ("--metrics-port",), "PARSEC_METRICS_PORT", "value", "none",
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
        ("--admin-port",), "PARSEC_ADMIN_PORT", "value", "none (the client port)",
        "serve the web console only on this port, not on the clients' --port (ours)", "PORT",
    ),
    Option(
        ("--admin-host",), "PARSEC_ADMIN_HOST", "value", "--host",
        "listen address of --admin-port, e.g. 127.0.0.1 to keep the console local (ours)", "HOST",
    ),
    Option(
        ("--admin-fd",), "PARSEC_ADMIN_FD", "value", "none",
        "serve --admin-port on this inherited listening socket (ours; used by --workers, or with --fd)", "FD",
    ),
)

OPTIONS_BY_ENV: dict[str, Option] = {option.env: option for option in OPTIONS}

MOCKED_EMAIL_SENDER = "no-reply@parsec.com"
DEFAULT_DATA_DIR = "var"
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
    admin_enabled: bool = True
    admin_prefix: str = "admin"
    admin_host: str | None = None
    admin_port: int | None = None
    admin_fd: int | None = None

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

    def get(name: str, parse: Callable[[str], T], default: T) -> T:
        value = raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError as exc:
            option = OPTIONS_BY_ENV.get(name)
            shown = "" if option is None or option.secret else f" {value!r}"
            raise option_error(name, f"invalid value{shown}: {exc}") from None

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

    host = get("PARSEC_HOST", str.strip, "127.0.0.1")
    listen_port = get("PARSEC_PORT", port, 6777)
    data_dir = get("PARSEC_DATA_DIR", lambda value: Path(value).resolve(), Path(DEFAULT_DATA_DIR).resolve())
    db_url = get("PARSEC_DB", _validate_db_url, f"sqlite:///{data_dir / 'parsec.sqlite3'}")
    db_min = get("PARSEC_DB_MIN_CONNECTIONS", then(_parse_int, at_least(0)), 5)
    db_max = get("PARSEC_DB_MAX_CONNECTIONS", then(_parse_int, at_least(1)), 7)
    if db_max < db_min:
        raise option_error("PARSEC_DB_MAX_CONNECTIONS", f"must be >= --db-min-connections ({db_min})")
    attempts = get("PARSEC_MAXIMUM_DATABASE_CONNECTION_ATTEMPTS", then(_parse_int, at_least(0)), 10)
    pause = get("PARSEC_PAUSE_BEFORE_RETRY_DATABASE_CONNECTION", then(_parse_float, at_least(0)), 1.0)

    blockstore = tuple((raw("PARSEC_BLOCKSTORE") or "MOCKED").split())
    try:
        blockstore_config = parse_blockstore(blockstore)
    except ValueError as exc:
        raise option_error("PARSEC_BLOCKSTORE", str(exc)) from None

    email_host = get("PARSEC_EMAIL_HOST", str.strip, "MOCKED")
    email_sender = get("PARSEC_EMAIL_SENDER", str.strip, None)
    if email_sender is not None and "@" not in email_sender:
        raise option_error("PARSEC_EMAIL_SENDER", f"invalid value {email_sender!r}: expected an e-mail address")
    if email_sender is None and email_host.upper() == "MOCKED":
        email_sender = MOCKED_EMAIL_SENDER

    ssl_keyfile = get("PARSEC_SSL_KEYFILE", str, None)
    ssl_certfile = get("PARSEC_SSL_CERTFILE", str, None)
    for name, path in (("PARSEC_SSL_KEYFILE", ssl_keyfile), ("PARSEC_SSL_CERTFILE", ssl_certfile)):
        if path is not None and not os.path.isfile(path):
            raise option_error(name, f"file not found: {path}")
    if (ssl_keyfile is None) != (ssl_certfile is None):
        missing = "PARSEC_SSL_CERTFILE" if ssl_certfile is None else "PARSEC_SSL_KEYFILE"
        raise option_error(missing, "--ssl-keyfile and --ssl-certfile go together")

    log_file = get("PARSEC_LOG_FILE", str, None)

    admin_port = get("PARSEC_ADMIN_PORT", port, None)
    if admin_port is not None and admin_port == listen_port:
        raise option_error("PARSEC_ADMIN_PORT", "must differ from --port (leave it unset to serve the console there)")
    metrics_port_value = get("PARSEC_METRICS_PORT", port, None)
    if admin_port is not None and admin_port == metrics_port_value:
        raise option_error("PARSEC_ADMIN_PORT", "must differ from --metrics-port")
    admin_host = get("PARSEC_ADMIN_HOST", str.strip, None)
    if admin_host is not None and admin_port is None:
        raise option_error("PARSEC_ADMIN_HOST", "goes with --admin-port")
    admin_fd = get("PARSEC_ADMIN_FD", then(_parse_int, at_least(0)), None)
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
        db_statement_timeout=get("PARSEC_DB_STATEMENT_TIMEOUT", then(_parse_float, at_least(0)), 30.0),
        blockstore=blockstore,
        administration_token=raw("PARSEC_ADMINISTRATION_TOKEN") or "",
        spontaneous_organization_bootstrap=get("PARSEC_SPONTANEOUS_ORGANIZATION_BOOTSTRAP", parse_bool, False),
        organization_bootstrap_webhook=get("PARSEC_ORGANIZATION_BOOTSTRAP_WEBHOOK", _validate_http_url, None),
        organization_initial_active_users_limit=get(
            "PARSEC_ORGANIZATION_INITIAL_ACTIVE_USERS_LIMIT", then(_parse_int, at_least(0)), None
        ),
        organization_initial_user_profile_outsider_allowed=get(
            "PARSEC_ORGANIZATION_INITIAL_USER_PROFILE_OUTSIDER_ALLOWED", parse_bool, True
        ),
        backend_addr=get("PARSEC_BACKEND_ADDR", BackendAddr.parse, None),
        email_host=email_host,
        email_port=get("PARSEC_EMAIL_PORT", port, 25),
        email_host_user=get("PARSEC_EMAIL_HOST_USER", str, None),
        email_host_password=get("PARSEC_EMAIL_HOST_PASSWORD", str, None),
        email_use_ssl=get("PARSEC_EMAIL_USE_SSL", parse_bool, False),
        email_use_tls=get("PARSEC_EMAIL_USE_TLS", parse_bool, False),
        email_sender=email_sender,
        email_language=get("PARSEC_EMAIL_LANGUAGE", choice(EMAIL_LANGUAGES, str.lower), "en"),
        forward_proto_enforce_https=get("PARSEC_FORWARD_PROTO_ENFORCE_HTTPS", _validate_forward_header, None),
        ssl_keyfile=ssl_keyfile,
        ssl_certfile=ssl_certfile,
        log_level=get("PARSEC_LOG_LEVEL", choice(LOG_LEVELS, str.upper), "INFO"),
        log_format=get("PARSEC_LOG_FORMAT", choice(LOG_FORMATS, str.upper), "CONSOLE"),
        log_file=None if log_file in (None, "-") else log_file,
        sentry_dsn=get("PARSEC_SENTRY_DSN", _validate_sentry_dsn, None),
        sentry_environment=get("PARSEC_SENTRY_ENVIRONMENT", str, "production"),
        sse_keepalive=get("PARSEC_SSE_KEEPALIVE", _parse_int, 30),
        redis_url=get("PARSEC_REDIS_URL", _validate_redis_url, None),
        workers=get("PARSEC_WORKERS", then(_parse_int, at_least(1)), 1),
        fd=get("PARSEC_FD", then(_parse_int, at_least(0)), None),
        shutdown_grace=get("PARSEC_SHUTDOWN_GRACE", then(_parse_float, at_least(0)), 10.0),
        handshake_timeout=get("PARSEC_HANDSHAKE_TIMEOUT", then(_parse_float, at_least(0.1)), 30.0),
        request_timeout=get("PARSEC_REQUEST_TIMEOUT", then(_parse_float, at_least(0.1)), 60.0),
        max_connections=get("PARSEC_MAX_CONNECTIONS", then(_parse_int, at_least(1)), 10000),
        max_connections_per_organization=get(
            "PARSEC_MAX_CONNECTIONS_PER_ORGANIZATION", then(_parse_int, at_least(1)), 8000
        ),
        max_commands_per_second=get("PARSEC_MAX_COMMANDS_PER_SECOND", then(_parse_float, at_least(1)), 1000.0),
        metrics_token=raw("PARSEC_METRICS_TOKEN"),
        metrics_port=metrics_port_value,
        data_dir=data_dir,
        debug=get("DEBUG", parse_bool, False),
        blockstore_config=blockstore_config,
        admin_enabled=get("PARSEC_ADMIN", parse_bool, True),
        admin_prefix=get("PARSEC_ADMIN_PREFIX", _validate_admin_prefix, "admin"),
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
