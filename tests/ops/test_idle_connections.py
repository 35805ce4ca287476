"""Idle or slow attackers are dropped, over real sockets of a real `manage.py run --dev`.

* a websocket that gets the challenge and never answers is closed after `--handshake-timeout`;
* a connection trickling its websocket upgrade (or an HTTP request) a byte at a time is dropped after
  `--request-timeout`, while a normal request on a kept-alive connection is not; so is a TLS handshake
  that never finishes;
* past `--max-connections`, a websocket is closed at once with 1013 and the reason.

The bounds are short here (seconds); what is checked is that the server does drop, not how fast.
"""
from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.interop.conftest import our_server_env, start_our_server
from tests.interop.refclient import stop_process, wait_http_ready
from tests.pgcluster import free_port

HANDSHAKE_TIMEOUT = 1.5
REQUEST_TIMEOUT = 2.0
MAX_CONNECTIONS = 3
MARGIN = 10.0  # a busy machine: the close comes at the bound, checked with room
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("idle") / "server.log"
    port = free_port()
    process = start_our_server(
        log, port, "--dev", env=our_server_env(
            PARSEC_HANDSHAKE_TIMEOUT=str(HANDSHAKE_TIMEOUT), PARSEC_REQUEST_TIMEOUT=str(REQUEST_TIMEOUT),
            PARSEC_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        ),
    )
    try:
        wait_http_ready(f"http://127.0.0.1:{port}/health/live", process, 60, log)
        yield port
    finally:
        stop_process(process)
        assert "Traceback" not in Path(log).read_text(errors="replace")


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server ends the connection (EOF or reset) within `seconds`; what it sent is dropped."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not sock.recv(4096):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def test_silent_websocket_is_closed_after_the_handshake_timeout(server: int):
    with connect(f"ws://127.0.0.1:{server}/ws", open_timeout=10) as ws:
        challenge = ws.recv(timeout=10)
        assert b"challenge" in challenge
        opened = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=HANDSHAKE_TIMEOUT + MARGIN)
        assert time.monotonic() - opened >= HANDSHAKE_TIMEOUT - 0.2
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


def test_trickled_websocket_upgrade_is_dropped(server: int):
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        started = time.monotonic()
        sent = 0
        try:
            # One byte every 0.1 s: twisted's idle timer would restart with each of them.
            for byte in UPGRADE:
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.1)
                if time.monotonic() - started > REQUEST_TIMEOUT + MARGIN:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < len(UPGRADE), "the whole upgrade went through: the connection was never dropped"
        assert closed_within(sock, MARGIN)
        assert time.monotonic() - started >= REQUEST_TIMEOUT - 0.2


def test_partial_http_request_is_dropped(server: int):
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(b"POST /anonymous/Org HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123")
        assert closed_within(sock, REQUEST_TIMEOUT + MARGIN)


def test_whole_requests_on_a_kept_alive_connection_are_served(server: int):
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += sock.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200")
            time.sleep(REQUEST_TIMEOUT / 2)
        # Idle past the bound since the last reply: dropped like any other unfinished request.
        assert closed_within(sock, REQUEST_TIMEOUT + MARGIN)


def test_websocket_past_the_connection_limit_is_closed_with_a_reason(server: int):
    opened = [connect(f"ws://127.0.0.1:{server}/ws", open_timeout=10) for _ in range(MAX_CONNECTIONS)]
    try:
        for ws in opened:
            ws.recv(timeout=10)  # the challenge: each holds a slot
        with connect(f"ws://127.0.0.1:{server}/ws", open_timeout=10) as refused:
            with pytest.raises(ConnectionClosed) as closed:
                refused.recv(timeout=10)
            assert closed.value.rcvd.code == 1013
            assert closed.value.rcvd.reason == "Server at its connection limit, try again later"
    finally:
        for ws in opened:
            ws.close()
    # Slots are given back: a new connection gets its challenge.
    deadline = time.monotonic() + MARGIN
    while True:
        with connect(f"ws://127.0.0.1:{server}/ws", open_timeout=10) as ws:
            try:
                assert b"challenge" in ws.recv(timeout=10)
                break
            except ConnectionClosed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    folder = tmp_path_factory.mktemp("idle-tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )
    log = folder / "server.log"
    port = free_port()
    process = start_our_server(
        log, port, "--dev", "--ssl-keyfile", str(folder / "key.pem"), "--ssl-certfile", str(folder / "cert.pem"),
        env=our_server_env(PARSEC_REQUEST_TIMEOUT=str(REQUEST_TIMEOUT)),
    )
    try:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        deadline = time.monotonic() + 60
        while True:  # ready once it answers over TLS
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                    with context.wrap_socket(raw) as tls:
                        tls.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        if tls.recv(100).startswith(b"HTTP/1.1 200"):
                            break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.2)
        yield port
    finally:
        stop_process(process)


def test_unfinished_tls_handshake_is_dropped(tls_server: int):
    with socket.create_connection(("127.0.0.1", tls_server), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01")  # the start of a ClientHello record, and nothing more
        assert closed_within(sock, REQUEST_TIMEOUT + MARGIN)
