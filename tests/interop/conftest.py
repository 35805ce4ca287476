"""Fixtures of the interoperability tests (official Parsec 2.17.0 client vs a server).

Tests take the generic ``server`` fixture (a ``ServerInfo``: ``.addr`` is the
``parsec://127.0.0.1:<port>?no_ssl=true`` backend address, ``.admin_token`` the
administration token). ``server`` is parametrized by server kind; a kind
``<kind>`` is served by a fixture named ``<kind>_server``. The kinds come from
``$PARSEC_INTEROP_SERVERS`` (comma separated, default ``ours``): ``ours`` is this
repository's server on PostgreSQL, ``reference`` the official 2.17.0 server, e.g.
``PARSEC_INTEROP_SERVERS=reference,ours`` runs every test against both.

Run: ``.venv/bin/python -m pytest tests/interop -q -p no:django -p no:cacheprovider``
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from .refclient import ParsecCli, ServerInfo, ensure_reference_client, free_port, stop_process, wait_http_ready

REFERENCE_DEV_ADMIN_TOKEN = "s3cr3t"  # what `parsec backend run --dev` uses
REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT = 60.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "interop: drives the official parsec-cloud 2.17.0 client against a server"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="session", autouse=True)
def close_database_pools():
    """Shadow tests/conftest.py's autouse DB fixture: these tests use no Django DB
    (and are normally run with ``-p no:django``)."""
    yield


@pytest.fixture(scope="session")
def reference_client() -> Path:
    """bin dir of the venv with the official parsec-cloud 2.17.0 (client and backend)."""
    return ensure_reference_client()


@pytest.fixture(scope="session")
def reference_server(reference_client: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """`parsec backend run --dev` (MOCKED db/blockstore/email, token s3cr3t) on a free port."""
    host, port = "127.0.0.1", free_port()
    log_path = tmp_path_factory.mktemp("reference-server") / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARSEC_", "PYTHON"))}
    env.update(PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1")
    env.pop("DEBUG", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(reference_client / "parsec"), "backend", "run", "--dev", "--host", host, "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    info = ServerInfo(
        kind="reference",
        addr=f"parsec://{host}:{port}?no_ssl=true",
        admin_token=REFERENCE_DEV_ADMIN_TOKEN,
        host=host,
        port=port,
        log_path=log_path,
        process=proc,
    )
    try:
        wait_http_ready(f"{info.http_url}/", proc, SERVER_START_TIMEOUT, log_path)
        yield info
    finally:
        stop_process(proc)


def _postgresql_database_for_interop() -> str:
    """A fresh database in the tests' throwaway cluster (or a new cluster when run alone)."""
    from tests.pgcluster import PgCluster, start_cluster

    port = os.environ.get("PARSEC_TEST_PG_PORT")
    cluster = PgCluster(data_dir=Path("/nonexistent"), port=int(port), process_owner=None) if port else start_cluster()
    return cluster.create_database(f"interop_{uuid.uuid4().hex[:8]}")


def our_server_env(**variables: str) -> dict[str, str]:
    """The environment of a server started from this repository: nothing inherited from the tests' PARSEC_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARSEC_") and k != "DEBUG"}
    env.update(PYTHONUNBUFFERED="1", **variables)
    return env


def start_our_server(log_path: Path, port: int, *args: str, env: dict[str, str]) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [str(REPO_ROOT / ".venv/bin/python"), "manage.py", "run", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
        )


@pytest.fixture(scope="session")
def ours_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """This repository's server: `manage.py migrate` then `manage.py run` on PostgreSQL, POSTGRESQL blocks."""
    db_url = _postgresql_database_for_interop()
    log_path = tmp_path_factory.mktemp("our-server") / "server.log"
    admin_token = uuid.uuid4().hex
    env = our_server_env(PARSEC_DB=db_url)
    subprocess.run(
        [str(REPO_ROOT / ".venv/bin/python"), "manage.py", "migrate", "--no-input"],
        cwd=REPO_ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
    )
    port = free_port()
    proc = start_our_server(
        log_path, port, "--blockstore", "POSTGRESQL", "--administration-token", admin_token,
        "--backend-addr", f"parsec://127.0.0.1:{port}?no_ssl=true", "--email-host", "MOCKED",
        env=env,
    )
    info = ServerInfo(
        kind="ours", addr=f"parsec://127.0.0.1:{port}?no_ssl=true", admin_token=admin_token,
        host="127.0.0.1", port=port, log_path=log_path, process=proc, db_url=db_url,
    )
    try:
        wait_http_ready(f"{info.http_url}/", proc, SERVER_START_TIMEOUT, log_path)
        yield info
    finally:
        stop_process(proc)


def _server_kinds() -> list[str]:
    return [k.strip() for k in os.environ.get("PARSEC_INTEROP_SERVERS", "ours").split(",") if k.strip()]


@pytest.fixture(scope="session", params=_server_kinds())
def server(request: pytest.FixtureRequest) -> ServerInfo:
    """The server under test: `<kind>_server` fixture for each kind in $PARSEC_INTEROP_SERVERS."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
def parsec_cli(reference_client: Path, tmp_path: Path) -> ParsecCli:
    """`parsec core` bound to a fresh isolated client home (HOME/XDG_* in tmp_path)."""
    return ParsecCli(reference_client, tmp_path / "client-home")


@pytest.fixture
def make_parsec_cli(reference_client: Path, tmp_path: Path):
    """Factory for extra isolated clients (e.g. a claimer): make_parsec_cli("bob")."""

    def _make(name: str) -> ParsecCli:
        return ParsecCli(reference_client, tmp_path / f"client-{name}")

    return _make


@pytest.fixture
def org_id() -> str:
    """A fresh organization id (the server fixtures are shared by the whole session)."""
    return f"Org{uuid.uuid4().hex[:12]}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On failure, append the server log tail to the report."""
    report = yield
    if report.failed and call.when == "call":
        info = getattr(item, "funcargs", {}).get("server")
        if isinstance(info, ServerInfo):
            tail = info.log_tail()
            if tail:
                report.sections.append((f"{info.kind} server log (tail)", tail))
    return report
