"""A minimal asyncio client of the Parsec wire protocol (docs/protocol.md#transports): websocket `/ws` with the
signed authenticated handshake, one request at a time; plus the two HTTP calls the setup needs."""
from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from protocol import codec
from tests.testkit.certs import TestDevice

USER_AGENT = "parsec/v2.17.0"


class ProtocolError(RuntimeError):
    pass


class OpTimeout(ProtocolError):
    """No reply in time: the connection can no longer be used (a late reply would be misread)."""


# Seconds a request may wait for its reply (and a handshake for its result).
REPLY_TIMEOUT = 20.0


class Conn:
    """One authenticated websocket session."""

    def __init__(self, ws: ClientConnection, device: TestDevice) -> None:
        self.ws = ws
        self.device = device

    @classmethod
    async def open(cls, ws_url: str, device: TestDevice) -> Conn:
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                return await cls._open(ws_url, device)
        except TimeoutError:
            raise OpTimeout(f"handshake: not done within {REPLY_TIMEOUT} s") from None

    @classmethod
    async def _open(cls, ws_url: str, device: TestDevice) -> Conn:
        ws = await connect(
            ws_url,
            max_size=None,
            compression=None,
            ping_interval=None,  # the bench measures the server, not keepalives
            open_timeout=30,
            close_timeout=5,
            user_agent_header=USER_AGENT,
            max_queue=None,
        )
        try:
            challenge = codec.unpackb(await ws.recv(decode=False))
            if challenge.get("handshake") != "challenge":
                raise ProtocolError(f"expected a challenge, got {challenge!r}")
            await ws.send(codec.packb(device.authenticated_answer(challenge["challenge"])))
            result = codec.unpackb(await ws.recv(decode=False))
            if result.get("result") != "ok":
                raise ProtocolError(f"handshake refused: {result!r}")
        except BaseException:
            await ws.close()
            raise
        return cls(ws, device)

    async def send(self, cmd: str, **fields: Any) -> None:
        await self.ws.send(codec.packb({"cmd": cmd, **fields}))

    async def recv(self, timeout: float | None = REPLY_TIMEOUT) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout):
                return codec.unpackb(await self.ws.recv(decode=False))
        except TimeoutError:
            raise OpTimeout(f"no reply within {timeout} s") from None

    async def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        await self.send(cmd, **fields)
        try:
            return await self.recv()
        except OpTimeout as exc:
            raise OpTimeout(f"{cmd}: {exc}") from None

    async def call_ok(self, cmd: str, **fields: Any) -> dict[str, Any]:
        reply = await self.call(cmd, **fields)
        if reply.get("status") != "ok":
            raise ProtocolError(f"{cmd}: {_short(reply)}")
        return reply

    async def close(self) -> None:
        await self.ws.close()


def _short(reply: dict[str, Any]) -> str:
    text = repr({key: (f"<{len(value)} bytes>" if isinstance(value, bytes) else value) for key, value in reply.items()})
    return text if len(text) < 400 else text[:400] + "..."


def http_json(url: str, body: dict[str, Any], token: str, timeout: float = 30) -> dict[str, Any]:
    """POST JSON to the administration API."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ProtocolError(f"POST {url}: HTTP {exc.code} {exc.read()[:300]!r}") from None


def http_msgpack(url: str, body: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """POST one msgpack command to an anonymous route."""
    request = urllib.request.Request(
        url, data=codec.packb(body), method="POST",
        headers={"Content-Type": "application/msgpack", "User-Agent": USER_AGENT},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return codec.unpackb(response.read())
    except urllib.error.HTTPError as exc:
        raise ProtocolError(f"POST {url}: HTTP {exc.code} {exc.read()[:300]!r}") from None


def wait_http(url: str, timeout: float, process=None) -> None:
    """Wait until `url` answers any HTTP status (the server is listening)."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise ProtocolError(f"server exited with code {process.returncode} before listening")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise ProtocolError(f"server not listening on {url} after {timeout}s") from None
            time.sleep(0.2)
