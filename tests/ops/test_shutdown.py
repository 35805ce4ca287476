"""Graceful shutdown of a real `manage.py run`: on SIGTERM it stops accepting, lets running commands
finish (within `--shutdown-grace`), closes the sessions with 1001 "going away", and exits with 0.

The sessions are real websocket clients of a server subprocess, on the run's database kind. A command
"doing work" is an `invite_new` whose invitation e-mail goes to an SMTP server of the test that holds
the message until told (so the command is known to be running when the signal comes); the commands
that only wait for someone else are a waiting `events_listen` and an invitation step waiting for a
claimer who never comes.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from nacl.public import PrivateKey
from websockets.exceptions import ConnectionClosed

from tests.interop.conftest import our_server_env, start_our_server
from tests.interop.refclient import stop_process, wait_http_ready
from tests.pgcluster import PgCluster, free_port
from tests.testkit import cross_process

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMPTLY = 3.0  # refusing connections, closing idle waits: at once, with room for a busy machine
EXIT_MARGIN = 8.0  # after the grace: the close handshakes, cancelled tasks, the exit (server.py: at most ~4 s)


class HeldSmtp:
    """An SMTP server that takes each message but answers its DATA only once released."""

    def __init__(self) -> None:
        self.receiving = threading.Event()
        self.released = threading.Event()
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.receiving.set()
        await asyncio.get_running_loop().run_in_executor(None, self.released.wait, 60)
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path
    db_url: str
    smtp: HeldSmtp

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def database() -> str:
    """A migrated database of the run's kind, for this module's servers (one after the other)."""
    pg_port = os.environ.get("PARSEC_TEST_PG_PORT")
    if pg_port:
        cluster = PgCluster(data_dir=Path("/nonexistent"), port=int(pg_port), process_owner=None)
        db_url = cluster.create_database(f"shutdown_{uuid.uuid4().hex[:8]}")
    else:
        db_url = f"sqlite:///{tempfile.mkdtemp(prefix='parsec-shutdown-')}/parsec.sqlite3"
    subprocess.run([str(REPO_ROOT / ".venv/bin/python"), "manage.py", "migrate", "--no-input"],
                   cwd=REPO_ROOT, env=our_server_env(PARSEC_DB=db_url), check=True, stdout=subprocess.DEVNULL,
                   timeout=120)
    return db_url


@pytest.fixture
def start_server(database: str, tmp_path: Path) -> Iterator[Any]:
    started: list[tuple[subprocess.Popen, HeldSmtp, Controller]] = []

    def start(grace: float) -> Server:
        smtp = HeldSmtp()
        smtp_port = free_port()
        controller = Controller(smtp, hostname="127.0.0.1", port=smtp_port)
        controller.start()
        port = free_port()
        log = tmp_path / f"server-{port}.log"
        process = start_our_server(
            log, port, "--db", database, "--blockstore", "POSTGRESQL", "--shutdown-grace", str(grace),
            "--administration-token", cross_process.ADMIN_TOKEN,
            "--backend-addr", f"parsec://127.0.0.1:{port}?no_ssl=true",
            "--email-host", "127.0.0.1", "--email-port", str(smtp_port), "--email-sender", "parsec@example.com",
            env=our_server_env(),
        )
        started.append((process, smtp, controller))
        wait_http_ready(f"http://127.0.0.1:{port}/health/live", process, 60, log)
        return Server(process=process, port=port, log=log, db_url=database, smtp=smtp)

    yield start
    for process, smtp, controller in started:
        smtp.released.set()
        stop_process(process)
        controller.stop()


# --- helpers -------------------------------------------------------------------------------------


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


async def wait_refusing(port: int, deadline: float) -> float:
    while not await asyncio.to_thread(refuses_connections, port):
        assert time.monotonic() < deadline, "the server still accepts connections"
        await asyncio.sleep(0.05)
    return time.monotonic()


async def close_code(ws: cross_process.Ws, deadline: float) -> int | None:
    """The close code the server sends (None: the connection was cut without a close frame)."""
    try:
        message = await asyncio.wait_for(ws.connection.recv(), max(deadline - time.monotonic(), 0.01))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
    except TimeoutError:
        raise AssertionError("the session is still open") from None
    raise AssertionError(f"received {message!r} instead of the close")


def greeter_half_posted(db_url: str) -> bool:
    """Whether a greeter's `invite_1_greeter_wait_peer` has committed its public key."""
    query = "SELECT COUNT(*) FROM invites_invitation WHERE conduit_greeter_payload IS NOT NULL"
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as db:
            return db.execute(query).fetchone()[0] > 0
    import psycopg

    with psycopg.connect(db_url) as db:
        return db.execute(query).fetchone()[0] > 0


async def wait_for(predicate: Any, *args: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate, *args):
        assert time.monotonic() < deadline, f"{predicate.__name__} still false after {timeout}s"
        await asyncio.sleep(0.05)


async def exit_code(process: subprocess.Popen, deadline: float) -> int:
    try:
        return await asyncio.to_thread(process.wait, max(deadline - time.monotonic(), 0.01))
    except subprocess.TimeoutExpired:
        pytest.fail("the server did not exit in time")


# --- tests ---------------------------------------------------------------------------------------


async def test_sigterm_lets_running_commands_finish_and_abandons_waits(start_server):
    grace = 8.0
    server = start_server(grace)
    alice = await asyncio.to_thread(cross_process.create_organization, server.port, "ShutdownOrg")

    # Waiting for events: nothing to finish.
    listener = await cross_process.authenticated(server.port, alice)
    await listener.send({"cmd": "events_listen", "wait": True})
    # Waiting for a claimer who never comes: nothing of ours to finish either.
    greeter = await cross_process.authenticated(server.port, alice)
    invitation = await greeter.command("invite_new", type="DEVICE", send_email=False)
    assert invitation["status"] == "ok", invitation
    await greeter.send({"cmd": "invite_1_greeter_wait_peer", "token": invitation["token"],
                        "greeter_public_key": bytes(PrivateKey.generate().public_key)})
    await wait_for(greeter_half_posted, server.db_url)
    # Doing work: creating an invitation and sending its e-mail, held by the SMTP server.
    mailer = await cross_process.authenticated(server.port, alice)
    await mailer.send({"cmd": "invite_new", "type": "USER", "claimer_email": "bob@example.com", "send_email": True})
    assert await asyncio.to_thread(server.smtp.receiving.wait, 10), server.log_tail()
    assert await listener.nothing_received(0.1) and await greeter.nothing_received(0.1)

    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)

    # No new connection, at once, while the running command still runs.
    await wait_refusing(server.port, deadline=signalled + PROMPTLY)
    # The waits are abandoned: their sessions are closed with 1001 without holding the shutdown.
    assert await close_code(listener, deadline=signalled + PROMPTLY) == 1001, server.log_tail()
    assert await close_code(greeter, deadline=signalled + PROMPTLY) == 1001, server.log_tail()
    assert server.process.poll() is None  # still waiting for the e-mail

    # The command doing work finishes and replies, then its session is closed.
    server.smtp.released.set()
    reply = await mailer.receive(timeout=grace)
    assert reply["status"] == "ok" and reply["email_sent"] == "SUCCESS", reply
    assert len(server.smtp.messages) == 1
    assert await close_code(mailer, deadline=signalled + grace) == 1001

    # Then the process stops, before the grace was over: nothing was left to wait for.
    assert await exit_code(server.process, deadline=signalled + grace) == 0, server.log_tail()
    log = server.log_tail()
    assert "SIGTERM received" in log and "Closed 3 websocket session(s)" in log
    assert "still busy" not in log


async def test_a_command_past_the_grace_is_cancelled_and_its_session_closed(start_server):
    grace = 2.0
    server = start_server(grace)
    alice = await asyncio.to_thread(cross_process.create_organization, server.port, "LateOrg")
    mailer = await cross_process.authenticated(server.port, alice)
    await mailer.send({"cmd": "invite_new", "type": "USER", "claimer_email": "carol@example.com", "send_email": True})
    assert await asyncio.to_thread(server.smtp.receiving.wait, 10), server.log_tail()

    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    await wait_refusing(server.port, deadline=signalled + PROMPTLY)
    # The e-mail is still held at the grace's end: no reply, a 1001 close all the same.
    assert await close_code(mailer, deadline=signalled + grace + PROMPTLY) == 1001, server.log_tail()
    assert time.monotonic() - signalled >= grace - 0.5
    assert await exit_code(server.process, deadline=signalled + grace + EXIT_MARGIN) == 0, server.log_tail()
    assert "1 session(s) still busy after 2.0s" in server.log_tail()


async def test_a_second_sigterm_stops_at_once(start_server):
    grace = 30.0
    server = start_server(grace)
    alice = await asyncio.to_thread(cross_process.create_organization, server.port, "HurriedOrg")
    mailer = await cross_process.authenticated(server.port, alice)
    await mailer.send({"cmd": "invite_new", "type": "USER", "claimer_email": "dan@example.com", "send_email": True})
    assert await asyncio.to_thread(server.smtp.receiving.wait, 10), server.log_tail()

    server.process.send_signal(signal.SIGTERM)
    await wait_refusing(server.port, deadline=time.monotonic() + PROMPTLY)
    assert await mailer.nothing_received(0.2) and server.process.poll() is None  # waiting for the e-mail
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    # Neither the grace nor the thread still blocked on the SMTP server hold it.
    assert await exit_code(server.process, deadline=signalled + EXIT_MARGIN) == 0, server.log_tail()
    assert await close_code(mailer, deadline=time.monotonic() + PROMPTLY) in (None, 1001)
    assert "Second SIGTERM: stopping now" in server.log_tail()
