"""`/health/ready` follows PostgreSQL: 503 while it is stopped, 200 again once it is back, same server process.

Real processes: a PostgreSQL cluster of this module's own (never the tests' shared one, which other
tests use), `manage.py migrate`, then `manage.py run` on it with the POSTGRESQL blockstore. The database
is stopped with `pg_ctl stop -m fast` (which also ends the server's pooled connections) and started
again on the same data folder and port.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.interop.conftest import our_server_env, start_our_server
from tests.interop.refclient import stop_process, wait_http_ready
from tests.pgcluster import PgCluster, _pg_bin_dir, free_port, start_cluster
from tests.testkit import cross_process
from tests.testkit.certs import TestDevice

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTAGE_TIMEOUT = 20.0  # the probe connects with a 3 s timeout, and a refused connection fails at once
RECOVERY_TIMEOUT = 30.0
COMMAND_TIMEOUT = 5.0  # a command after the database came back: no waiting on dead connections
URLOPEN = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


def stop_postgresql(cluster: PgCluster) -> None:
    cluster._run(str(_pg_bin_dir() / "pg_ctl"), "-D", str(cluster.data_dir), "-m", "fast", "-w", "stop")


def restart_postgresql(cluster: PgCluster) -> None:
    # With the options of its last start (postmaster.opts): same data folder, port and socket folder.
    # A stopped cluster is started ("trying to start server anyway").
    cluster._run(str(_pg_bin_dir() / "pg_ctl"), "-D", str(cluster.data_dir), "-m", "fast", "-w",
                 "-l", str(cluster.data_dir.parent / "log"), "restart")


def get(port: int, path: str) -> tuple[int | None, Any]:
    """Status and JSON body (None, None when nothing answers)."""
    try:
        with URLOPEN(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None, None


def poll(port: int, path: str, status: int, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    seen: tuple[int | None, Any] = (None, None)
    while time.monotonic() < deadline:
        seen = get(port, path)
        if seen[0] == status:
            return seen[1]
        time.sleep(0.25)
    pytest.fail(f"{path} still answers {seen} after {timeout}s, expected {status}")


@dataclass
class Running:
    cluster: PgCluster
    process: subprocess.Popen
    port: int
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    cluster = start_cluster()  # private: this module stops and starts it
    process = None
    try:
        env = our_server_env(PARSEC_DB=cluster.url)
        subprocess.run([str(REPO_ROOT / ".venv/bin/python"), "manage.py", "migrate", "--no-input"],
                       cwd=REPO_ROOT, env=env, check=True, stdout=subprocess.DEVNULL, timeout=120)
        port = free_port()
        log = tmp_path_factory.mktemp("health-postgres") / "server.log"
        process = start_our_server(
            log, port, "--db", cluster.url, "--blockstore", "POSTGRESQL",
            "--administration-token", cross_process.ADMIN_TOKEN, "--email-host", "MOCKED",
            "--backend-addr", f"parsec://127.0.0.1:{port}?no_ssl=true",
            env=our_server_env(),
        )
        wait_http_ready(f"http://127.0.0.1:{port}/health/live", process, 60, log)
        yield Running(cluster=cluster, process=process, port=port, log=log)
    finally:
        if process is not None:
            stop_process(process)
        cluster.stop()


async def invite_list(ws: cross_process.Ws, timeout: float = 10) -> dict[str, Any]:
    await ws.send({"cmd": "invite_list"})
    return await ws.receive(timeout)


async def test_ready_follows_postgresql_without_restart(running: Running):
    server, port = running.process, running.port
    pid = server.pid
    # Blocking steps run in a thread: the websocket client keeps serving its connection meanwhile.
    call = asyncio.to_thread

    status, body = await call(get, port, "/health/ready")
    assert status == 200, (body, running.log_tail())
    assert body["status"] == "ok"
    assert all(check["status"] == "ok" for check in body["checks"].values()), body

    # A session and pooled connections in use before the outage.
    alice: TestDevice = await call(cross_process.create_organization, port, "HealthOrg")
    ws = await cross_process.authenticated(port, alice)
    assert (await invite_list(ws))["status"] == "ok"

    await call(stop_postgresql, running.cluster)
    body = await call(poll, port, "/health/ready", 503, OUTAGE_TIMEOUT)
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["status"] == "error", body
    assert body["checks"]["database"]["error"]  # the exception type: no host nor credential
    assert "127.0.0.1" not in json.dumps(body) and "parsec@" not in json.dumps(body)
    assert await call(get, port, "/health/live") == (200, {"status": "ok"})  # a restart would not help
    assert server.poll() is None

    await call(restart_postgresql, running.cluster)
    body = await call(poll, port, "/health/ready", 200, RECOVERY_TIMEOUT)
    assert body["status"] == "ok"
    assert all(check["status"] == "ok" for check in body["checks"].values()), body
    assert server.poll() is None and server.pid == pid, running.log_tail()

    # The session opened before the outage still works, at once, though the pooled connections died
    # with the database (once, the pool's checkout retried them for 30 s and the session was closed).
    assert (await invite_list(ws, timeout=COMMAND_TIMEOUT))["status"] == "ok", running.log_tail()
    # And a new one (its handshake reads the database).
    fresh = await cross_process.authenticated(port, alice)
    assert (await invite_list(fresh))["status"] == "ok"
    await fresh.connection.close()
    await ws.connection.close()
    assert await call(get, port, "/health/live") == (200, {"status": "ok"})
    assert server.poll() is None and server.pid == pid


async def test_database_restarted_between_two_probes(running: Running):
    """A restart shorter than the probes' period: no probe fails, yet every pooled connection died."""
    call = asyncio.to_thread
    alice: TestDevice = await call(cross_process.create_organization, running.port, "QuickRestartOrg")
    ws = await cross_process.authenticated(running.port, alice)
    assert (await invite_list(ws))["status"] == "ok"

    await call(restart_postgresql, running.cluster)
    # The database's start time changed: the probe has the pool drop the connections of the old one.
    status, body = await call(get, running.port, "/health/ready")
    assert status == 200, (body, running.log_tail())
    assert (await invite_list(ws, timeout=COMMAND_TIMEOUT))["status"] == "ok", running.log_tail()
    await ws.connection.close()
    assert running.process.poll() is None
