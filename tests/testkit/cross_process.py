"""Two real `manage.py run` servers sharing one database and a Redis channel layer, and a websocket client.

Used by the tests that check that several server processes act as one server.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol import codec
from tests.pgcluster import PgCluster, free_port
from tests.testkit.certs import TestDevice, bootstrap_material

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = uuid.uuid4().hex
PYTHON = str(REPO_ROOT / ".venv/bin/python")

def _wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[list[int]]:
    """Ports of two servers on one database (the run's kind) and one Redis."""
    folder = tmp_path_factory.mktemp("cross-process")
    pg_port = os.environ.get("PARSEC_TEST_PG_PORT")
    if pg_port:
        cluster = PgCluster(data_dir=Path("/nonexistent"), port=int(pg_port), process_owner=None)
        db_url = cluster.create_database(f"cross_{uuid.uuid4().hex[:8]}")
    else:
        db_url = f"sqlite:///{tempfile.mkdtemp(prefix='parsec-cross-')}/parsec.sqlite3"
    processes: list[subprocess.Popen] = []
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    processes.append(redis)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARSEC_") and k != "DEBUG"}
    env.update(PYTHONUNBUFFERED="1", PARSEC_DB=db_url)
    try:
        subprocess.run([PYTHON, "manage.py", "migrate", "--no-input"], cwd=REPO_ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        ports = [free_port(), free_port()]
        for port in ports:
            log = folder / f"server-{port}.log"
            with open(log, "wb") as output:
                process = subprocess.Popen(
                    [PYTHON, "manage.py", "run", "--host", "127.0.0.1", "--port", str(port),
                     "--administration-token", ADMIN_TOKEN, "--email-host", "MOCKED", "--blockstore", "MOCKED",
                     "--backend-addr", f"parsec://127.0.0.1:{port}?no_ssl=true",
                     "--redis-url", f"redis://127.0.0.1:{redis_port}"],
                    cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                )
            processes.append(process)
            _wait_ready(f"http://127.0.0.1:{port}/", process, log)
        yield ports
    finally:
        for process in reversed(processes):
            _stop(process)


class Ws:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    @classmethod
    async def open(cls, port: int) -> tuple[Ws, dict[str, Any]]:
        ws = cls(await connect(f"ws://127.0.0.1:{port}/ws", max_size=None))
        return ws, await ws.receive()

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(codec.packb(message))

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        return codec.unpackb(await asyncio.wait_for(self.connection.recv(), timeout))

    async def command(self, cmd: str, **fields: Any) -> dict[str, Any]:
        await self.send({"cmd": cmd, **fields})
        return await self.receive()

    async def nothing_received(self, delay: float = 0.3) -> bool:
        try:
            await asyncio.wait_for(self.connection.recv(), delay)
        except TimeoutError:
            return True
        return False

    async def closed(self, timeout: float = 10) -> bool:
        try:
            await asyncio.wait_for(self.connection.recv(), timeout)
        except ConnectionClosed:
            return True
        return False


async def authenticated(port: int, device: TestDevice) -> Ws:
    ws, challenge = await Ws.open(port)
    await ws.send(device.authenticated_answer(challenge["challenge"]))
    assert await ws.receive() == {"handshake": "result", "result": "ok"}
    return ws


async def invited(port: int, organization_id: str, token: uuid.UUID) -> Ws:
    ws, _ = await Ws.open(port)
    await ws.send({"handshake": "answer", "type": "INVITED", "client_api_version": [3, 4],
                   "organization_id": organization_id, "invitation_type": "DEVICE", "token": token})
    assert await ws.receive() == {"handshake": "result", "result": "ok"}
    return ws


def create_organization(port: int, organization_id: str) -> TestDevice:
    import json

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/administration/organizations",
        data=json.dumps({"organization_id": organization_id}).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        bootstrap_token = json.loads(response.read())["bootstrap_token"]
    material = bootstrap_material(organization_id, "alice", "dev1", "alice@example.com", "Alice")
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/anonymous/{organization_id}",
        data=codec.packb({"cmd": "organization_bootstrap", "bootstrap_token": bootstrap_token, **material.request_fields}),
        headers={"Content-Type": "application/msgpack"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        assert codec.unpackb(response.read()) == {"status": "ok"}
    return material.device
