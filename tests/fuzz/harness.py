"""Driving the server with drawn requests: one session per family, the properties checked per reply.

Hypothesis runs its examples in a worker thread; each example's exchange runs on the test's event
loop (where the in-process server lives), so that failures shrink like any hypothesis test.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import codec
from tests.testkit.ws import WsClient

# Commands that may rightly wait for a peer or an event instead of replying (docs/protocol.md#command-loop).
WAITING_COMMANDS = {
    "events_listen",
    "invite_1_greeter_wait_peer", "invite_2a_greeter_get_hashed_nonce", "invite_3a_greeter_wait_peer_trust",
    "invite_3b_greeter_signify_trust", "invite_4_greeter_communicate",
    "invite_1_claimer_wait_peer", "invite_2a_claimer_send_hashed_nonce", "invite_2b_claimer_send_nonce",
    "invite_3a_claimer_signify_trust", "invite_3b_claimer_wait_peer_trust", "invite_4_claimer_communicate",
}
WAITING_GRACE = 0.3  # seconds a waiting command gets to answer before the session is replaced
REPLY_TIMEOUT = 30.0


class ErrorLog(logging.Handler):
    """Every ERROR record of the run: a crash logs one (with its traceback), nothing else does."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def describe(self) -> str:
        return "\n".join(f"{record.name}: {record.getMessage()}" for record in self.records)


def is_status_reply(reply: Any) -> bool:
    return isinstance(reply, dict) and isinstance(reply.get("status"), str)


class WsSession:
    """A session of one family that is replaced whenever a request leaves it waiting or closed."""

    def __init__(self, connect: Callable[[], Awaitable[WsClient]]) -> None:
        self.connect = connect
        self.client: WsClient | None = None

    async def open(self) -> None:
        self.client = await self.connect()

    async def replace(self) -> None:
        await self.close()
        self.client = await self.connect()

    async def exchange(self, frame: bytes, cmd: Any) -> dict[str, Any] | None:
        """Send one frame; the reply map, or None when the command waits (or the spec closes the session)."""
        assert self.client is not None
        await self.client.send_raw(bytes_data=frame)
        waits = cmd in WAITING_COMMANDS
        try:
            message = await self.client.communicator.receive_output(WAITING_GRACE if waits else REPLY_TIMEOUT)
        except TimeoutError:
            assert waits, f"no reply to a {cmd!r} request within {REPLY_TIMEOUT} s"
            await self.replace()
            return None
        if message["type"] == "websocket.close":
            # Only a clean close, where the spec says (a claimer's invitation gone...): never 1011.
            assert message.get("code", 1000) == 1000, f"session closed with {message.get('code')} on {cmd!r}"
            await self.replace()
            return None
        assert message["type"] == "websocket.send" and message.get("bytes") is not None, message
        reply = codec.unpackb(message["bytes"])
        assert is_status_reply(reply), f"not a {{status: ...}} reply to {cmd!r}: {reply!r}"[:500]
        return reply

    async def close(self) -> None:
        # A session the server already closed has nothing left to disconnect.
        if self.client is not None and not self.client.communicator.future.done():
            await self.client.close()
        self.client = None


def run_examples(strategy: st.SearchStrategy[Any], check: Callable[[Any], Awaitable[None]], examples: int,
                 loop: asyncio.AbstractEventLoop) -> None:
    """Run `check` on `examples` draws of `strategy` (call from a worker thread, not from `loop`)."""

    @settings(
        max_examples=examples, deadline=None, database=None, derandomize=False, print_blob=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def property_holds(drawn: Any) -> None:
        asyncio.run_coroutine_threadsafe(check(drawn), loop).result(REPLY_TIMEOUT * 2)

    property_holds()


async def fuzz(strategy: st.SearchStrategy[Any], check: Callable[[Any], Awaitable[None]], examples: int) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(run_examples, strategy, check, examples, loop)
