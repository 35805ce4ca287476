"""`--sentry-dsn`: unhandled errors of command handlers and views reach Sentry, without user data.

A local HTTP server stands in for the Sentry host of the DSN and keeps the envelopes it receives.
"""
from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
import sentry_sdk
from django.test import AsyncClient

from parsec_site.logging import REDACTOR
from parsec_site.sentry import init_sentry
from protocol import codec, types
from protocol.registry import Family, command
from tests.conftest import World, connect_as

pytestmark = pytest.mark.django_db(transaction=True)

FRAME_MARKER = "frame-content-that-must-stay-here"
BODY_MARKER = b"body-content-that-must-stay-here"


@command("test_sentry_crash", family=Family.AUTHENTICATED, request={"secret": types.String})
async def crash(session, req):
    raise RuntimeError("a bug in a command handler")


class SentryStandIn(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.envelopes: list[list[dict[str, Any]]] = []
        self.raw: list[bytes] = []

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.server_address[1]}/1"

    def events(self, timeout: float = 10) -> list[dict[str, Any]]:
        sentry_sdk.flush(timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [item for envelope in self.envelopes for item in envelope if "exception" in item]
            if found:
                return found
            time.sleep(0.05)
        return []


class _Handler(BaseHTTPRequestHandler):
    server: SentryStandIn

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        encoding = self.headers.get("Content-Encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        self.server.raw.append(body)
        # An envelope: a header line, then (item header, item payload) line pairs.
        lines = body.split(b"\n")
        items = []
        for line in lines[2::2]:
            try:
                items.append(json.loads(line))
            except ValueError:
                pass
        self.server.envelopes.append(items)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sentry() -> Iterator[SentryStandIn]:
    server = SentryStandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    REDACTOR.register("configured-secret-value")
    init_sentry(dsn=server.dsn, environment="tests", release="parsec-django@test")
    try:
        yield server
    finally:
        sentry_sdk.get_client().close()
        # No DSN and no integrations: Sentry's patched Django cursor then calls Django's own code
        # directly, so the tests that follow do not run Sentry scopes in every database thread.
        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)
        REDACTOR.clear()
        server.shutdown()


async def test_error_in_a_command_handler_arrives_without_the_frame(world: World, sentry: SentryStandIn):
    client = await connect_as(world.alice)
    await client.send({"cmd": "test_sentry_crash", "secret": FRAME_MARKER})
    # The client gets the error reply and keeps its session; Sentry gets one event.
    assert await client.receive() == {"status": "internal_error", "reason": "Internal server error"}
    assert await client.command("ping", ping="after") == {"status": "ok", "pong": "after"}
    [event] = sentry.events()
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError" and exception["value"] == "a bug in a command handler"
    assert event["environment"] == "tests" and event["release"] == "parsec-django@test"
    assert "request" not in event
    raw = b"".join(sentry.raw)
    assert FRAME_MARKER.encode() not in raw
    # No local variables of the frames (they hold the request and the session).
    assert all("vars" not in frame for frame in exception["stacktrace"]["frames"])


async def test_error_in_a_view_arrives_without_body_query_or_credentials(world: World, sentry: SentryStandIn,
                                                                          monkeypatch):
    from protocol import http

    def broken_lookup(*args, **kwargs):
        raise ValueError("configured-secret-value leaked into a message")

    monkeypatch.setattr(http, "lookup", broken_lookup)
    response = await AsyncClient(raise_request_exception=False).post(
        f"/anonymous/{world.organization_id}?token=query-token-value",
        data=codec.packb({"cmd": "organization_bootstrap", "x": BODY_MARKER}), content_type="application/msgpack",
        headers={"Authorization": "Bearer header-token-value", "Cookie": "sessionid=cookie-value"},
    )
    assert response.status_code == 500
    [event] = sentry.events()
    assert event["exception"]["values"][-1]["type"] == "ValueError"
    # The test client skips the ASGI handler where Sentry reads the request; under daphne it is there.
    request = event.get("request", {})
    assert "data" not in request and "query_string" not in request and "cookies" not in request
    raw = b"".join(sentry.raw)
    for marker in (BODY_MARKER, b"query-token-value", b"header-token-value", b"cookie-value",
                   b"configured-secret-value"):
        assert marker not in raw, marker
