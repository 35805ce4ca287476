"""Turns `manage.py run` (and `migrate`) flags into PARSEC_* variables, before Django reads its settings.

The reference reads each option from its flag, else its variable; we parse the flags here and export
them, so `settings.py` (through `config.load_server_config`) stays the only reader of the values.
`run` also gets `PARSEC_CMD_ARGS` (docs/configuration.md#rules), `--dev`
(docs/configuration.md#three-ways-to-start) and our embedded default: with none of `--db`, `--blockstore`,
`--administration-token`, a SQLite database, a block folder and an administration token kept in the data folder.
"""
from __future__ import annotations

import argparse
import os
import re
import secrets
import shlex
import sys
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from environ import Env
from django.core.exceptions import ImproperlyConfigured

from parsec_site.addr import BackendAddr
from parsec_site.config import (
    DEFAULT_DATA_DIR,
    MOCKED_EMAIL_SENDER,
    OPTIONS,
    ServerConfig,
    check_supported,
    default_value,
    load_server_config,
    option_error,
    read_or_create_secret,
)

DEFAULT_PORT = int(default_value("PARSEC_PORT"))
DEV_ADMINISTRATION_TOKEN = "s3cr3t"
ADMINISTRATION_TOKEN_FILE = "administration_token"
# Without any of these, `run` starts the embedded default (and other commands find its files).
EMBEDDED_TRIGGERS = ("PARSEC_DB", "PARSEC_BLOCKSTORE", "PARSEC_ADMINISTRATION_TOKEN")
REQUIRED_FOR_RUN = ("PARSEC_DB", "PARSEC_BLOCKSTORE", "PARSEC_ADMINISTRATION_TOKEN", "PARSEC_BACKEND_ADDR",
                    "PARSEC_EMAIL_HOST")
LOCAL_HOSTS = ("", "127.0.0.1", "0.0.0.0", "::", "::1", "localhost")


@dataclass(frozen=True)
class EmbeddedSetup:
    data_dir: Path
    token_file: Path
    create_organization_command: str


@dataclass(frozen=True)
class Startup:
    """What `manage.py run` decided before Django started; the `run` command (same process) reads it."""

    dev: bool
    embedded: EmbeddedSetup | None


STARTUP: Startup | None = None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ImproperlyConfigured(message)


def build_run_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="manage.py run",
        description="Start the Parsec server. Every option can also be given through its environment variable; "
        "PARSEC_CMD_ARGS is appended to the command line. See docs/configuration.md.",
        allow_abbrev=False,
    )
    for option in OPTIONS:
        help_text = f"{option.help} [env {option.env}, default: {option.shown_default.replace('`', '')}]"
        if option.kind == "switch":
            parser.add_argument(*option.flags, dest=option.dest, action="store_true", default=None, help=help_text)
        elif option.kind == "list":
            parser.add_argument(*option.flags, dest=option.dest, action="append", metavar=option.metavar,
                                help=help_text)
        else:
            parser.add_argument(*option.flags, dest=option.dest, metavar=option.metavar, help=help_text)
    parser.add_argument("--dev", action="store_true", help="development shortcut: MOCKED database, blockstore "
                        "and e-mail, debug on, administration token s3cr3t")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})")


def expand_variables(text: str, environ: Mapping[str, str]) -> str:
    """`$VAR` and `${VAR}` like `os.path.expandvars`: unknown variables stay as written."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).removeprefix("{").removesuffix("}")
        return environ.get(name, match.group(0))

    return _VARIABLE.sub(replace, text)


def cmd_args(environ: Mapping[str, str]) -> list[str]:
    # Split first, expand after: a variable holding spaces stays one argument.
    return [expand_variables(piece, environ) for piece in environ.get("PARSEC_CMD_ARGS", "").split()]


def _effective(name: str, given: Mapping[str, str], environ: Mapping[str, str]) -> str | None:
    return given.get(name) or environ.get(name) or None


def _port(given: Mapping[str, str], environ: Mapping[str, str]) -> int:
    raw = _effective("PARSEC_PORT", given, environ)
    try:
        return int(raw) if raw else DEFAULT_PORT
    except ValueError:
        return DEFAULT_PORT  # reported by the configuration check


def embedded_backend_addr(host: str | None, port: int) -> str:
    hostname = "localhost" if (host or "") in LOCAL_HOSTS or ":" in (host or "") else host
    return f"parsec://{hostname}:{port}?no_ssl=true"


def _escape_blockstore_path(path: Path) -> str:
    return str(path).replace("\\", "\\\\").replace(":", "\\:")


def _embedded_defaults(given: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """Database and blocks in the data folder, MOCKED e-mail, a local `no_ssl` address."""
    data_dir = Path(_effective("PARSEC_DATA_DIR", given, environ) or DEFAULT_DATA_DIR).resolve()
    if any(char.isspace() for char in str(data_dir)):
        # PARSEC_BLOCKSTORE is a whitespace-separated list.
        raise option_error("PARSEC_DATA_DIR", "the embedded setup needs a path without whitespace")
    defaults = {
        "PARSEC_DB": f"sqlite:///{data_dir / 'parsec.sqlite3'}",
        "PARSEC_BLOCKSTORE": f"LOCAL:{_escape_blockstore_path(data_dir / 'blocks')}",
        "PARSEC_BACKEND_ADDR": embedded_backend_addr(_effective("PARSEC_HOST", given, environ), _port(given, environ)),
        "PARSEC_EMAIL_HOST": "MOCKED",
    }
    return {name: value for name, value in defaults.items() if not _effective(name, given, environ)}


def _dev_defaults(given: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    defaults = {
        "DEBUG": "true",
        "PARSEC_DB": "MOCKED",
        "PARSEC_BLOCKSTORE": "MOCKED",
        "PARSEC_ADMINISTRATION_TOKEN": DEV_ADMINISTRATION_TOKEN,
        "PARSEC_EMAIL_HOST": "MOCKED",
        "PARSEC_EMAIL_SENDER": MOCKED_EMAIL_SENDER,
        # No `no_ssl=true`, as in the reference: generated URLs point to TLS even though --dev serves none.
        "PARSEC_BACKEND_ADDR": f"parsec://localhost:{_port(given, environ)}",
    }
    return {name: value for name, value in defaults.items() if not _effective(name, given, environ)}


def environ_reader(environ: Mapping[str, str]) -> Env:
    """django-environ's reader over `environ` (os.environ, or a dict in tests)."""
    env = Env()
    env.ENVIRON = environ
    return env


def version() -> str:
    try:
        with open(Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as file:
            return tomllib.load(file)["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def _ensure_sqlite_folder(config: ServerConfig) -> None:
    if config.db_kind != "SQLITE":
        return
    try:
        config.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise option_error("PARSEC_DB", f"cannot create the database folder: {exc}") from None


def parse_run_arguments(
    args: list[str], environ: Mapping[str, str]
) -> tuple[argparse.Namespace, dict[str, str], list[str]]:
    """The command line plus PARSEC_CMD_ARGS: the variables the flags set, and what is left for Django."""
    namespace, remaining = build_run_parser().parse_known_args([*args, *cmd_args(environ)])
    given: dict[str, str] = {}
    for option in OPTIONS:
        value = getattr(namespace, option.dest)
        if value is None:
            continue
        if option.kind == "switch":
            given[option.env] = "true"
        elif option.kind == "list":
            if any(not item or any(char.isspace() for char in item) for item in value):
                raise option_error(option.env, "a value must be non-empty and without whitespace")
            given[option.env] = " ".join(value)
        else:
            given[option.env] = value
    return namespace, given, remaining


def configure_run(args: list[str], environ: MutableMapping[str, str]) -> tuple[Startup, list[str]]:
    """Export `run`'s options into `environ`, validate them; return the startup facts and Django's arguments."""
    namespace, given, remaining = parse_run_arguments(args, environ)
    if namespace.version:
        print(f"parsec-django {version()} (Parsec 2.17 server protocol)")
        raise SystemExit(0)

    if namespace.dev:
        given.update(_dev_defaults(given, environ))
    embedded = not any(_effective(name, given, environ) for name in EMBEDDED_TRIGGERS)
    if embedded:
        given.update(_embedded_defaults(given, environ))
    environ.update(given)

    config = load_server_config(environ_reader(environ))
    if not embedded:
        for name in REQUIRED_FOR_RUN:
            if not environ.get(name):
                raise option_error(
                    name,
                    "required (or use --dev, or give none of --db, --blockstore, --administration-token "
                    "for the embedded SQLite setup)",
                )
    check_supported(config)
    _ensure_sqlite_folder(config)

    embedded_setup = None
    if embedded:
        data_dir_given = bool(_effective("PARSEC_DATA_DIR", given, environ))
        embedded_setup = _embedded_token(config, environ, data_dir_given=data_dir_given)
    return Startup(dev=bool(namespace.dev), embedded=embedded_setup), remaining


def _embedded_token(config: ServerConfig, environ: MutableMapping[str, str], *, data_dir_given: bool) -> EmbeddedSetup:
    token_file = config.data_dir / ADMINISTRATION_TOKEN_FILE
    generated: list[str] = []

    def generate() -> str:
        generated.append(secrets.token_hex(32))
        return generated[0]

    try:
        token = read_or_create_secret(token_file, generate)
    except OSError as exc:
        raise option_error("PARSEC_DATA_DIR", f"cannot keep the administration token: {exc}") from None
    environ["PARSEC_ADMINISTRATION_TOKEN"] = token
    if generated and generated[0] == token:
        # Shown once; later starts read it from the file.
        print(f"Administration token (generated, kept in {token_file}): {token}", flush=True)
    else:
        print(f"Administration token: kept in {token_file}", flush=True)

    prefix = []
    if data_dir_given:
        prefix.append(f"PARSEC_DATA_DIR={shlex.quote(str(config.data_dir))}")
    assert config.backend_addr is not None
    if config.backend_addr != BackendAddr.parse(embedded_backend_addr(None, DEFAULT_PORT)):
        prefix.append(f"PARSEC_BACKEND_ADDR={shlex.quote(config.backend_addr.to_url())}")
    command = " ".join([*prefix, "python manage.py create_organization <NAME>"])
    return EmbeddedSetup(data_dir=config.data_dir, token_file=token_file, create_organization_command=command)


def configure_migrate(args: list[str], environ: MutableMapping[str, str]) -> list[str]:
    """`migrate` takes `--db` and `--data-dir` (also from PARSEC_CMD_ARGS) and the reference's `--dry-run`."""
    parser = _Parser(prog="manage.py migrate", add_help=False, allow_abbrev=False)
    parser.add_argument("--db", dest="db")
    parser.add_argument("--data-dir", dest="data_dir")
    parser.add_argument("--dry-run", dest="dry_run", action="store_true")
    namespace, remaining = parser.parse_known_args(args)
    # The deployment's PARSEC_CMD_ARGS names the database for `run`; `migrate` takes the same one.
    from_cmd_args, _ = build_run_parser().parse_known_args(cmd_args(environ))
    for name, dest in (("PARSEC_DB", "db"), ("PARSEC_DATA_DIR", "data_dir")):
        value = getattr(from_cmd_args, dest) or getattr(namespace, dest)
        if value:
            environ[name] = value
    if namespace.dry_run:
        remaining.append("--plan")
    _ensure_sqlite_folder(configure_other(environ))
    return remaining


def configure_sequester(command: str, args: list[str], environ: MutableMapping[str, str]) -> list[str]:
    """The `sequester_*` commands take the reference's database options (and `--blockstore` for the export)."""
    parser = _Parser(prog=f"manage.py {command}", add_help=False, allow_abbrev=False)
    variables = {"db": "PARSEC_DB", "db_min": "PARSEC_DB_MIN_CONNECTIONS", "db_max": "PARSEC_DB_MAX_CONNECTIONS"}
    parser.add_argument("--db", dest="db")
    parser.add_argument("--db-min-connections", dest="db_min")
    parser.add_argument("--db-max-connections", dest="db_max")
    if command == "sequester_export_realm":
        parser.add_argument("--blockstore", "-b", dest="blockstore", action="append")
    namespace, remaining = parser.parse_known_args(args)
    for dest, name in variables.items():
        if getattr(namespace, dest):
            environ[name] = getattr(namespace, dest)
    if getattr(namespace, "blockstore", None):
        environ["PARSEC_BLOCKSTORE"] = " ".join(namespace.blockstore)
    if environ.get("PARSEC_DB", "").upper() == "MOCKED":
        raise ImproperlyConfigured("MOCKED DB can not be used with sequester services")
    configure_other(environ)
    return remaining


def configure_other(environ: MutableMapping[str, str]) -> ServerConfig:
    """Any other command: find the embedded setup's files when nothing is configured; validate."""
    if not any(environ.get(name) for name in EMBEDDED_TRIGGERS):
        try:
            defaults = _embedded_defaults({}, environ)
        except ImproperlyConfigured:
            defaults = {}  # only `run` needs the embedded blockstore
        token_file = Path(environ.get("PARSEC_DATA_DIR") or DEFAULT_DATA_DIR).resolve() / ADMINISTRATION_TOKEN_FILE
        if token_file.is_file():
            defaults["PARSEC_ADMINISTRATION_TOKEN"] = token_file.read_text().strip()
        environ.update(defaults)
    return load_server_config(environ_reader(environ))


def prepare_environment(argv: list[str], environ: MutableMapping[str, str] | None = None) -> None:
    """Called by manage.py before Django starts; strips the options it consumed from `argv`."""
    global STARTUP
    environ = os.environ if environ is None else environ
    command = argv[1] if len(argv) > 1 else None
    try:
        if command == "run":
            STARTUP, remaining = configure_run(argv[2:], environ)
        elif command == "migrate":
            remaining = configure_migrate(argv[2:], environ)
        elif command and command.startswith("sequester_"):
            remaining = configure_sequester(command, argv[2:], environ)
        else:
            configure_other(environ)
            remaining = argv[2:]
    except ImproperlyConfigured as exc:
        # manage.py's own handler only wraps Django's part; same one-line format here.
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    argv[2:] = remaining
