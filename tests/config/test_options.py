"""The `run` option table (docs/configuration.md#options, docs/configuration.md#rules,
docs/configuration.md#three-ways-to-start): flags, variables, defaults, --dev, embedded default."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from blocks.stores.config import LocalBlockstore, MockedBlockstore
from parsec_site import cli
from parsec_site.addr import BackendAddr
from parsec_site.config import (
    OPTIONS,
    ServerConfig,
    check_supported,
    load_server_config,
)

# Every option: a valid raw value, the ServerConfig field it sets and the parsed value.
SAMPLES: dict[str, tuple[str, str, Any]] = {
    "PARSEC_HOST": ("0.0.0.0", "host", "0.0.0.0"),
    "PARSEC_PORT": ("8443", "port", 8443),
    "PARSEC_DB": ("postgresql://u:p@db.example:5432/parsec", "db_url", "postgresql://u:p@db.example:5432/parsec"),
    "PARSEC_DB_MIN_CONNECTIONS": ("2", "db_min_connections", 2),
    "PARSEC_DB_MAX_CONNECTIONS": ("20", "db_max_connections", 20),
    "PARSEC_MAXIMUM_DATABASE_CONNECTION_ATTEMPTS": ("0", "maximum_database_connection_attempts", 0),
    "PARSEC_PAUSE_BEFORE_RETRY_DATABASE_CONNECTION": ("2.5", "pause_before_retry_database_connection", 2.5),
    "PARSEC_BLOCKSTORE": ("POSTGRESQL", "blockstore", ("POSTGRESQL",)),
    "PARSEC_ADMINISTRATION_TOKEN": ("T0k3n", "administration_token", "T0k3n"),
    "PARSEC_SPONTANEOUS_ORGANIZATION_BOOTSTRAP": ("true", "spontaneous_organization_bootstrap", True),
    "PARSEC_ORGANIZATION_BOOTSTRAP_WEBHOOK": (
        "https://hook.example/x", "organization_bootstrap_webhook", "https://hook.example/x"
    ),
    "PARSEC_ORGANIZATION_INITIAL_ACTIVE_USERS_LIMIT": ("10", "organization_initial_active_users_limit", 10),
    "PARSEC_ORGANIZATION_INITIAL_USER_PROFILE_OUTSIDER_ALLOWED": (
        "false", "organization_initial_user_profile_outsider_allowed", False
    ),
    "PARSEC_BACKEND_ADDR": (
        "parsec://parsec.example.com", "backend_addr", BackendAddr("parsec.example.com", 443, True)
    ),
    "PARSEC_EMAIL_HOST": ("smtp.example.com", "email_host", "smtp.example.com"),
    "PARSEC_EMAIL_PORT": ("587", "email_port", 587),
    "PARSEC_EMAIL_HOST_USER": ("bob", "email_host_user", "bob"),
    "PARSEC_EMAIL_HOST_PASSWORD": ("pa$$", "email_host_password", "pa$$"),
    "PARSEC_EMAIL_USE_SSL": ("yes", "email_use_ssl", True),
    "PARSEC_EMAIL_USE_TLS": ("on", "email_use_tls", True),
    "PARSEC_EMAIL_SENDER": ("Parsec <parsec@example.com>", "email_sender", "Parsec <parsec@example.com>"),
    "PARSEC_EMAIL_LANGUAGE": ("FR", "email_language", "fr"),
    "PARSEC_FORWARD_PROTO_ENFORCE_HTTPS": (
        "X-Forwarded-Proto:https", "forward_proto_enforce_https", ("X-Forwarded-Proto", "https")
    ),
    "PARSEC_SSL_KEYFILE": ("{key}", "ssl_keyfile", "{key}"),
    "PARSEC_SSL_CERTFILE": ("{cert}", "ssl_certfile", "{cert}"),
    "PARSEC_LOG_LEVEL": ("warning", "log_level", "WARNING"),
    "PARSEC_LOG_FORMAT": ("json", "log_format", "JSON"),
    "PARSEC_LOG_FILE": ("/tmp/parsec.log", "log_file", "/tmp/parsec.log"),
    "PARSEC_SENTRY_DSN": ("https://key@sentry.example/42", "sentry_dsn", "https://key@sentry.example/42"),
    "PARSEC_SENTRY_ENVIRONMENT": ("staging", "sentry_environment", "staging"),
    "PARSEC_SSE_KEEPALIVE": ("0", "sse_keepalive", 0),
    "PARSEC_REDIS_URL": ("redis://redis:6379/0", "redis_url", "redis://redis:6379/0"),
    "PARSEC_WORKERS": ("4", "workers", 4),
    "PARSEC_FD": ("3", "fd", 3),
    "PARSEC_SHUTDOWN_GRACE": ("2.5", "shutdown_grace", 2.5),
    "PARSEC_DB_STATEMENT_TIMEOUT": ("12.5", "db_statement_timeout", 12.5),
    "PARSEC_HANDSHAKE_TIMEOUT": ("5", "handshake_timeout", 5.0),
    "PARSEC_REQUEST_TIMEOUT": ("12.5", "request_timeout", 12.5),
    "PARSEC_MAX_CONNECTIONS": ("500", "max_connections", 500),
    "PARSEC_MAX_CONNECTIONS_PER_ORGANIZATION": ("50", "max_connections_per_organization", 50),
    "PARSEC_MAX_COMMANDS_PER_SECOND": ("20", "max_commands_per_second", 20.0),
    "PARSEC_METRICS_TOKEN": ("metrics-token", "metrics_token", "metrics-token"),
    "PARSEC_METRICS_PORT": ("9100", "metrics_port", 9100),
    "PARSEC_DATA_DIR": ("/srv/parsec", "data_dir", Path("/srv/parsec")),
    "DEBUG": ("1", "debug", True),
    "PARSEC_ADMIN": ("off", "admin_enabled", False),
    "PARSEC_ADMIN_PREFIX": ("/ops/console/", "admin_prefix", "ops/console"),
    "PARSEC_ADMIN_PORT": ("6778", "admin_port", 6778),
    "PARSEC_ADMIN_HOST": ("127.0.0.1", "admin_host", "127.0.0.1"),
    "PARSEC_ADMIN_FD": ("4", "admin_fd", 4),
}


def load(**variables: str) -> ServerConfig:
    return load_server_config(cli.environ_reader(variables))


def sample(env_name: str, tmp_path: Path) -> tuple[str, str, Any]:
    raw, field_name, expected = SAMPLES[env_name]
    files = {"{key}": tmp_path / "key.pem", "{cert}": tmp_path / "cert.pem"}
    for placeholder, path in files.items():
        path.touch()
        raw = raw.replace(placeholder, str(path))
        expected = expected.replace(placeholder, str(path)) if isinstance(expected, str) else expected
    return raw, field_name, expected


def test_samples_cover_the_whole_table() -> None:
    assert set(SAMPLES) == {option.env for option in OPTIONS}


@pytest.mark.parametrize("option", OPTIONS, ids=lambda option: option.env)
def test_every_option_from_its_flag_and_its_variable(option, tmp_path: Path) -> None:
    raw, field_name, expected = sample(option.env, tmp_path)
    companions = {"PARSEC_SSL_KEYFILE": "PARSEC_SSL_CERTFILE", "PARSEC_SSL_CERTFILE": "PARSEC_SSL_KEYFILE",
                  "PARSEC_ADMIN_HOST": "PARSEC_ADMIN_PORT", "PARSEC_ADMIN_FD": "PARSEC_ADMIN_PORT"}
    extra = {}
    if option.env in companions:
        extra[companions[option.env]] = sample(companions[option.env], tmp_path)[0]

    for flag in option.flags:
        args = [flag] if option.kind == "switch" else [flag, raw]
        _, given, remaining = cli.parse_run_arguments(args, {})
        assert given == {option.env: "true" if option.kind == "switch" else raw}
        assert remaining == []
        assert getattr(load(**given, **extra), field_name) == expected

    assert getattr(load(**{option.env: raw}, **extra), field_name) == expected


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    config = load()
    assert (config.host, config.port) == ("127.0.0.1", 6777)
    assert (config.db_min_connections, config.db_max_connections) == (5, 7)
    assert (config.maximum_database_connection_attempts, config.pause_before_retry_database_connection) == (10, 1.0)
    assert config.data_dir == tmp_path / "var"
    assert config.db_kind == "SQLITE" and config.sqlite_path == tmp_path / "var" / "parsec.sqlite3"
    assert config.blockstore_config == MockedBlockstore()
    assert config.spontaneous_organization_bootstrap is False
    assert config.organization_bootstrap_webhook is None
    assert config.organization_initial_active_users_limit is None
    assert config.organization_initial_user_profile_outsider_allowed is True
    assert config.backend_addr is None
    assert (config.email_host, config.email_port, config.email_sender) == ("MOCKED", 25, "no-reply@parsec.com")
    assert (config.email_use_ssl, config.email_use_tls, config.email_language) == (False, False, "en")
    assert (config.log_level, config.log_format, config.log_file) == ("INFO", "CONSOLE", None)
    assert (config.sentry_dsn, config.sentry_environment, config.sse_keepalive) == (None, "production", 30)
    assert (config.redis_url, config.debug) == (None, False)


@pytest.mark.parametrize("raw", ["1", "true", "True", "t", "yes", "Y", "on", "ON"])
def test_boolean_true_spellings(raw: str) -> None:
    assert load(DEBUG=raw).debug is True
    assert load(PARSEC_EMAIL_USE_SSL=raw).email_use_ssl is True
    config = load(PARSEC_ORGANIZATION_INITIAL_USER_PROFILE_OUTSIDER_ALLOWED=raw)
    assert config.organization_initial_user_profile_outsider_allowed is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "f", "no", "N", "off", "OFF"])
def test_boolean_false_spellings(raw: str) -> None:
    assert load(DEBUG=raw).debug is False
    assert load(PARSEC_SPONTANEOUS_ORGANIZATION_BOOTSTRAP=raw).spontaneous_organization_bootstrap is False
    config = load(PARSEC_ORGANIZATION_INITIAL_USER_PROFILE_OUTSIDER_ALLOWED=raw)
    assert config.organization_initial_user_profile_outsider_allowed is False


def test_empty_variable_means_unset() -> None:
    assert load(DEBUG="", PARSEC_PORT="").port == 6777


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"DEBUG": "maybe"}, "--debug / DEBUG: invalid value 'maybe': expected a boolean"),
        ({"PARSEC_PORT": "abc"}, "--port / PARSEC_PORT: invalid value 'abc': expected an integer"),
        ({"PARSEC_PORT": "70000"}, "--port / PARSEC_PORT: invalid value '70000': expected a port number"),
        ({"PARSEC_DB": "foo://"}, "--db / PARSEC_DB: invalid value: expected MOCKED, postgresql://"),
        ({"PARSEC_DB": "postgresql://db.example"}, "--db / PARSEC_DB: invalid value: the PostgreSQL URL needs a"),
        ({"PARSEC_DB": "sqlite:///"}, "--db / PARSEC_DB: invalid value: expected MOCKED"),
        ({"PARSEC_LOG_LEVEL": "LOUD"}, "--log-level / PARSEC_LOG_LEVEL: invalid value 'LOUD': expected one of DEBUG"),
        ({"PARSEC_LOG_FORMAT": "XML"}, "--log-format / PARSEC_LOG_FORMAT: invalid value 'XML'"),
        ({"PARSEC_EMAIL_LANGUAGE": "de"}, "--email-language / PARSEC_EMAIL_LANGUAGE: invalid value 'de'"),
        ({"PARSEC_EMAIL_SENDER": "nobody"}, "--email-sender / PARSEC_EMAIL_SENDER: invalid value 'nobody'"),
        ({"PARSEC_DB_MIN_CONNECTIONS": "-1"}, "--db-min-connections / PARSEC_DB_MIN_CONNECTIONS: invalid value '-1'"),
        (
            {"PARSEC_DB_MIN_CONNECTIONS": "8", "PARSEC_DB_MAX_CONNECTIONS": "4"},
            "--db-max-connections / PARSEC_DB_MAX_CONNECTIONS: must be >= --db-min-connections (8)",
        ),
        (
            {"PARSEC_PAUSE_BEFORE_RETRY_DATABASE_CONNECTION": "soon"},
            "--pause-before-retry-database-connection / PARSEC_PAUSE_BEFORE_RETRY_DATABASE_CONNECTION: invalid",
        ),
        ({"PARSEC_BACKEND_ADDR": "https://x"}, "--backend-addr / PARSEC_BACKEND_ADDR: invalid value 'https://x'"),
        ({"PARSEC_ORGANIZATION_BOOTSTRAP_WEBHOOK": "ftp://x"}, "--organization-bootstrap-webhook / "),
        ({"PARSEC_FORWARD_PROTO_ENFORCE_HTTPS": "X-Forwarded-Proto"}, "--forward-proto-enforce-https / "),
        ({"PARSEC_SSL_KEYFILE": "/nonexistent.pem"}, "--ssl-keyfile / PARSEC_SSL_KEYFILE: file not found"),
        ({"PARSEC_SENTRY_DSN": "nope"}, "--sentry-dsn / PARSEC_SENTRY_DSN: invalid value: expected https://"),
        ({"PARSEC_REDIS_URL": "http://redis"}, "--redis-url / PARSEC_REDIS_URL: invalid value: expected a redis://"),
        ({"PARSEC_BLOCKSTORE": "nope"}, "--blockstore / PARSEC_BLOCKSTORE: invalid blockstore type `nope`"),
    ],
)
def test_bad_values_name_their_option(variables: dict[str, str], message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as error:
        load(**variables)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_secret_values_are_not_echoed() -> None:
    with pytest.raises(ImproperlyConfigured) as error:
        load(PARSEC_DB="mysql://root:hunter2@db/parsec")
    assert "hunter2" not in str(error.value)
    assert "hunter2" not in repr(load(PARSEC_DB="postgresql://root:hunter2@db/parsec"))


def test_ssl_files_go_together(tmp_path: Path) -> None:
    (tmp_path / "key.pem").touch()
    with pytest.raises(ImproperlyConfigured, match=r"^--ssl-certfile / PARSEC_SSL_CERTFILE: .* go together"):
        load(PARSEC_SSL_KEYFILE=str(tmp_path / "key.pem"))


def test_log_file_dash_is_stderr() -> None:
    assert load(PARSEC_LOG_FILE="-").log_file is None


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"PARSEC_EMAIL_HOST": "smtp.example.com"}, "--email-sender / PARSEC_EMAIL_SENDER: required unless"),
        (
            {"PARSEC_WORKERS": "2", "PARSEC_DB": "postgresql://db/parsec", "PARSEC_BLOCKSTORE": "POSTGRESQL"},
            "--workers / PARSEC_WORKERS: several processes need --redis-url",
        ),
        ({"PARSEC_WORKERS": "2", "PARSEC_DB": "MOCKED"}, "--workers / PARSEC_WORKERS: several processes need a shared database"),
    ],
)
def test_later_features_are_refused_only_when_used(variables: dict[str, str], message: str) -> None:
    config = load(**variables)
    with pytest.raises(ImproperlyConfigured) as error:
        check_supported(config)
    assert str(error.value).startswith(message)


def test_tls_sentry_and_log_options_pass(tmp_path: Path) -> None:
    (tmp_path / "key.pem").touch()
    (tmp_path / "cert.pem").touch()
    check_supported(load(
        PARSEC_SSL_KEYFILE=str(tmp_path / "key.pem"), PARSEC_SSL_CERTFILE=str(tmp_path / "cert.pem"),
        PARSEC_SENTRY_DSN="https://key@sentry.example/1", PARSEC_LOG_FORMAT="JSON", PARSEC_LOG_FILE="/tmp/x.log",
    ))


def test_supported_features_pass(tmp_path: Path) -> None:
    for blockstore in ("MOCKED", "postgresql", f"LOCAL:{tmp_path}"):
        check_supported(load(PARSEC_BLOCKSTORE=blockstore, PARSEC_LOG_FILE="-", PARSEC_LOG_FORMAT="console"))


# --- PARSEC_CMD_ARGS and precedence (§5) ---------------------------------------------------------


def test_cmd_args_are_appended_with_variables_expanded() -> None:
    environ = {
        "DB_URL": "postgres:///parsec",
        "SPACED": "a b",
        "PARSEC_CMD_ARGS": "--db=$DB_URL  --host=${HOST_NAME}\t--sentry-environment=$SPACED --email-host-user=$UNKNOWN",
        "HOST_NAME": "0.0.0.0",
    }
    assert cli.cmd_args(environ) == [
        "--db=postgres:///parsec", "--host=0.0.0.0", "--sentry-environment=a b", "--email-host-user=$UNKNOWN"
    ]
    _, given, _ = cli.parse_run_arguments(["--port", "1234"], environ)
    assert given == {
        "PARSEC_PORT": "1234",
        "PARSEC_DB": "postgres:///parsec",
        "PARSEC_HOST": "0.0.0.0",
        "PARSEC_SENTRY_ENVIRONMENT": "a b",
        "PARSEC_EMAIL_HOST_USER": "$UNKNOWN",
    }


def test_last_value_wins_and_cmd_args_come_last() -> None:
    _, given, _ = cli.parse_run_arguments(["-P", "1", "--port", "2"], {})
    assert given["PARSEC_PORT"] == "2"
    _, given, _ = cli.parse_run_arguments(["--port", "2"], {"PARSEC_CMD_ARGS": "--port 3"})
    assert given["PARSEC_PORT"] == "3"


def test_blockstore_is_repeatable_and_a_list_in_the_environment() -> None:
    _, given, _ = cli.parse_run_arguments(["-b", "RAID1:0:MOCKED", "--blockstore", "RAID1:1:MOCKED"], {})
    assert given == {"PARSEC_BLOCKSTORE": "RAID1:0:MOCKED RAID1:1:MOCKED"}
    config = load(PARSEC_BLOCKSTORE=" RAID1:0:MOCKED\n RAID1:1:MOCKED ")
    assert config.blockstore == ("RAID1:0:MOCKED", "RAID1:1:MOCKED")


def test_command_line_wins_over_variables(tmp_path: Path) -> None:
    environ = {
        "PARSEC_PORT": "1111", "PARSEC_HOST": "10.0.0.1", "PARSEC_LOG_LEVEL": "ERROR", "PARSEC_DATA_DIR": str(tmp_path),
    }
    cli.configure_run(["--dev", "--port", "2222", "-l", "debug"], environ)
    config = load(**environ)
    assert (config.port, config.host, config.log_level) == (2222, "10.0.0.1", "DEBUG")


def test_unknown_arguments_are_left_for_django() -> None:
    _, given, remaining = cli.parse_run_arguments(["--verbosity", "2", "--port", "9", "--traceback"], {})
    assert given == {"PARSEC_PORT": "9"}
    assert remaining == ["--verbosity", "2", "--traceback"]


def test_abbreviations_are_not_accepted() -> None:
    _, given, remaining = cli.parse_run_arguments(["--po", "9"], {})
    assert given == {} and remaining == ["--po", "9"]


def test_missing_flag_value_is_an_error() -> None:
    with pytest.raises(ImproperlyConfigured, match="--port"):
        cli.parse_run_arguments(["--port"], {})


# --- --dev (§6) ----------------------------------------------------------------------------------


def test_dev_fills_every_option_not_given() -> None:
    environ: dict[str, str] = {}
    startup, remaining = cli.configure_run(["--dev"], environ)
    assert startup == cli.Startup(dev=True, embedded=None) and remaining == []
    assert environ == {
        "DEBUG": "true",
        "PARSEC_DB": "MOCKED",
        "PARSEC_BLOCKSTORE": "MOCKED",
        "PARSEC_ADMINISTRATION_TOKEN": "s3cr3t",
        "PARSEC_EMAIL_HOST": "MOCKED",
        "PARSEC_EMAIL_SENDER": "no-reply@parsec.com",
        "PARSEC_BACKEND_ADDR": "parsec://localhost:6777",
    }
    config = load(**environ)
    assert config.backend_addr == BackendAddr("localhost", 6777, use_ssl=True)
    assert config.debug and config.db_kind == "MOCKED"


def test_dev_keeps_what_is_given() -> None:
    environ = {"PARSEC_ADMINISTRATION_TOKEN": "from-env", "PARSEC_PORT": "7000"}
    cli.configure_run(["--dev", "--db", "MOCKED", "-b", "POSTGRESQL", "--backend-addr", "parsec://x.example"], environ)
    assert environ["PARSEC_ADMINISTRATION_TOKEN"] == "from-env"
    assert environ["PARSEC_BLOCKSTORE"] == "POSTGRESQL"
    assert environ["PARSEC_BACKEND_ADDR"] == "parsec://x.example"


def test_dev_backend_addr_follows_the_port() -> None:
    environ: dict[str, str] = {}
    cli.configure_run(["--dev", "-P", "8888"], environ)
    assert environ["PARSEC_BACKEND_ADDR"] == "parsec://localhost:8888"


# --- required options and the embedded default --------------------------------------------------


def test_partial_configuration_requires_the_rest() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^--blockstore / PARSEC_BLOCKSTORE: required"):
        cli.configure_run(["--db", "MOCKED"], {})
    with pytest.raises(ImproperlyConfigured, match=r"^--backend-addr / PARSEC_BACKEND_ADDR: required"):
        cli.configure_run(["--db", "MOCKED", "-b", "MOCKED", "--administration-token", "x"], {})
    environ = {"PARSEC_DB": "MOCKED", "PARSEC_BLOCKSTORE": "MOCKED", "PARSEC_ADMINISTRATION_TOKEN": "x",
               "PARSEC_BACKEND_ADDR": "parsec://x.example"}
    with pytest.raises(ImproperlyConfigured, match=r"^--email-host / PARSEC_EMAIL_HOST: required"):
        cli.configure_run([], environ)
    environ["PARSEC_EMAIL_HOST"] = "MOCKED"
    assert cli.configure_run([], environ)[0] == cli.Startup(dev=False, embedded=None)


def test_embedded_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    environ = {"PARSEC_DATA_DIR": str(data_dir)}
    startup, _ = cli.configure_run(["--port", "7001"], environ)
    token = (data_dir / "administration_token").read_text().strip()
    assert len(token) == 64
    assert startup.embedded == cli.EmbeddedSetup(
        data_dir=data_dir,
        token_file=data_dir / "administration_token",
        create_organization_command=(
            f"PARSEC_DATA_DIR={data_dir} PARSEC_BACKEND_ADDR='parsec://localhost:7001?no_ssl=true' "
            "python manage.py create_organization <NAME>"
        ),
    )
    assert environ["PARSEC_ADMINISTRATION_TOKEN"] == token
    assert capsys.readouterr().out.count(token) == 1
    config = load(**environ)
    assert config.sqlite_path == data_dir / "parsec.sqlite3"
    assert config.blockstore_config == LocalBlockstore(path=data_dir / "blocks")
    assert config.backend_addr == BackendAddr("localhost", 7001, use_ssl=False)
    assert config.email_kind == "MOCKED"

    # Next start: same token, not shown again.
    environ = {"PARSEC_DATA_DIR": str(data_dir)}
    cli.configure_run([], environ)
    assert environ["PARSEC_ADMINISTRATION_TOKEN"] == token
    assert token not in capsys.readouterr().out

    # Other commands find the embedded setup's files.
    environ = {"PARSEC_DATA_DIR": str(data_dir)}
    cli.configure_other(environ)
    assert environ["PARSEC_ADMINISTRATION_TOKEN"] == token
    assert load(**environ).sqlite_path == data_dir / "parsec.sqlite3"
    assert environ["PARSEC_BACKEND_ADDR"] == "parsec://localhost:6777?no_ssl=true"


def test_embedded_default_in_the_default_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    startup, _ = cli.configure_run(["--host", "0.0.0.0"], {})
    assert startup.embedded is not None and startup.embedded.data_dir == tmp_path / "var"
    assert startup.embedded.create_organization_command == "python manage.py create_organization <NAME>"


def test_embedded_default_is_not_generated_on_a_bad_value(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^--port / PARSEC_PORT"):
        cli.configure_run(["--port", "abc", "--data-dir", str(tmp_path / "data")], {})
    assert not (tmp_path / "data").exists()


def test_blockstore_path_with_colons_is_escaped(tmp_path: Path) -> None:
    data_dir = tmp_path / "a:b"
    environ = {"PARSEC_DATA_DIR": str(data_dir)}
    cli.configure_run([], environ)
    assert load(**environ).blockstore_config == LocalBlockstore(path=data_dir / "blocks")


# --- manage.py's entry point ---------------------------------------------------------------------


def test_prepare_environment_strips_consumed_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "STARTUP", None)
    argv = ["manage.py", "run", "--dev", "-v", "2", "--port", "7002"]
    environ: dict[str, str] = {}
    cli.prepare_environment(argv, environ)
    assert argv == ["manage.py", "run", "-v", "2"]
    assert environ["PARSEC_PORT"] == "7002"
    assert cli.STARTUP == cli.Startup(dev=True, embedded=None)


def test_prepare_environment_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.prepare_environment(["manage.py", "run", "--dev", "--port", "abc"], {})
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "Error: --port / PARSEC_PORT: invalid value 'abc': expected an integer\n"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.prepare_environment(["manage.py", "run", "--version"], {})
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("parsec-django 0.1.0")


def test_migrate_takes_db_and_dry_run(tmp_path: Path) -> None:
    argv = ["manage.py", "migrate", "--db", f"sqlite:///{tmp_path}/sub/x.sqlite3", "--dry-run", "organizations"]
    environ = {"PARSEC_DATA_DIR": str(tmp_path)}
    cli.prepare_environment(argv, environ)
    assert argv == ["manage.py", "migrate", "organizations", "--plan"]
    assert environ["PARSEC_DB"] == f"sqlite:///{tmp_path}/sub/x.sqlite3"
    assert (tmp_path / "sub").is_dir()


def test_migrate_reads_the_database_from_cmd_args() -> None:
    environ = {"PARSEC_CMD_ARGS": "--db=$URL --port 1", "URL": "postgresql://h/parsec"}
    argv = ["manage.py", "migrate"]
    cli.prepare_environment(argv, environ)
    assert argv == ["manage.py", "migrate"]
    assert environ["PARSEC_DB"] == "postgresql://h/parsec"


def test_docs_list_every_option() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for option in OPTIONS:
        row = next((line for line in docs.splitlines() if line.startswith(f"| `{option.flags[0]}`")), None)
        assert row is not None, option.flags[0]
        assert all(f"`{flag}`" in row for flag in option.flags) and f"`{option.env}`" in row
        assert row.split("|")[3].strip() == option.shown_default, option.flags[0]


def test_help_shows_every_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # argparse would cut the longest variable names
    help_text = " ".join(cli.build_run_parser().format_help().split())
    for option in OPTIONS:
        assert f"[env {option.env}, default: {option.shown_default.replace('`', '')}]" in help_text, option.env


def test_smtp_email_host_is_accepted_with_a_sender() -> None:
    config = load(PARSEC_EMAIL_HOST="smtp.example.com", PARSEC_EMAIL_SENDER="parsec@example.com")
    check_supported(config)
    assert config.email_kind == "SMTP"
