"""The events of `GET /authenticated/<org>/events` (docs/protocol.md#sse): one subscription per stream, resumable.

A stream is what an `events_subscribe`d websocket is, without the websocket: the same subscription (realm
groups, per-connection filtering, the 100 undelivered events cap) living on a channel of its own. Each event
written gets the id `<stream>-<n>`. When the HTTP connection ends, the stream keeps collecting for
`RESUME_WINDOW` seconds: a reconnection sending `Last-Event-ID` in that window gets what it has not seen (the
last `HISTORY` events written are kept for those lost in flight), then the live ones. When a resumption is not
possible (unknown id — another process, too late —, more than 100 events missed, a closed stream), the new
stream starts with an `event:missed_events` message so that the client resynchronises instead of believing it
saw everything (the 2.17 server has no ids; this is what the 3.x servers do).
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import secrets
from collections import deque
from typing import Any, Awaitable, Callable

from protocol import events
from protocol.groups import leave_groups, organization_group, user_group
from protocol.session import AuthenticatedSession, ConnectionState

# Long enough for a client to notice a dead connection and reconnect; short enough that a client gone for
# good does not keep its subscription (and the process's memory) for long.
RESUME_WINDOW = 60.0
HISTORY = events.MAX_PENDING_EVENTS

KEEPALIVE = b":keepalive\n\n"
MISSED_EVENTS = b"event:missed_events\ndata:\n\n"

# This process's open streams by token: only those can be resumed here.
STREAMS: dict[str, EventStream] = {}


class EventStream:
    """A `protocol.session.Connection` of its own (channel, groups, state, close), outliving its HTTP requests."""

    def __init__(self, session: AuthenticatedSession, layer: Any) -> None:
        self.token = secrets.token_hex(12)
        self.session = dataclasses.replace(session, connection=self)
        self.channel_layer = layer
        self.channel_name = ""
        self.state = ConnectionState()
        self.groups_joined: list[str] = []
        self.phase = "ready"
        self.written = 0  # number of the last event written
        self.history: deque[tuple[int, bytes]] = deque(maxlen=HISTORY)
        self.receiver: asyncio.Task | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.attachment: object | None = None

    async def open(self) -> None:
        self.channel_name = await self.channel_layer.new_channel()
        self.receiver = asyncio.create_task(self._receive())
        try:
            for group in (organization_group(self.session.organization_pk), user_group(self.session.user_pk)):
                await self.channel_layer.group_add(group, self.channel_name)
                self.groups_joined.append(group)
            # The registered command itself: the stream's subscription is exactly a websocket's.
            await events.events_subscribe(self.session, {})
        except BaseException:
            await self.close_session()  # e.g. the database out of reach: the request answers 503
            raise
        STREAMS[self.token] = self

    @property
    def is_closing(self) -> bool:
        return self.phase == "closed"

    @property
    def subscription(self) -> events.Subscription:
        assert self.state.subscription is not None
        return self.state.subscription

    async def _receive(self) -> None:
        while self.phase == "ready":
            message = await self.channel_layer.receive(self.channel_name)
            if message["type"] == "parsec.event":
                await events.deliver(self, message)
            elif message["type"] == "session.close":
                # The user revoked or frozen, the organization expired: the stream ends, for good.
                await self.close_session()

    async def close_session(self, code: int = 1000, reason: str | None = None) -> None:
        if self.phase == "closed":
            return
        self.phase = "closed"
        STREAMS.pop(self.token, None)
        if self.expiry is not None:
            self.expiry.cancel()
        if self.state.subscription is not None:
            self.subscription.arrived.set()  # wakes the writer, which sees the stream closed
        if self.receiver is not None and self.receiver is not asyncio.current_task():
            self.receiver.cancel()
        await leave_groups(self.channel_layer, self.groups_joined, self.channel_name)
        self.groups_joined.clear()

    def replay_from(self, last_seen: int) -> list[tuple[int, bytes]] | None:
        """The events written after `last_seen`, or None when some are no longer kept."""
        if last_seen > self.written:
            return None
        oldest = self.history[0][0] if self.history else self.written + 1
        if last_seen < oldest - 1:
            return None
        return [(number, payload) for number, payload in self.history if number > last_seen]

    async def follow(
        self, write: Callable[[bytes], Awaitable[None]], keepalive: float, replay: list[tuple[int, bytes]]
    ) -> None:
        """Writes `replay` then the live events, with keepalives, until the stream closes or another
        connection resumes it (or the caller is cancelled: its connection ended)."""
        attachment = self.attachment = object()
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        try:
            for number, replayed in replay:
                await write(_frame(self.token, number, replayed))
            subscription = self.subscription
            subscription.arrived.set()  # a previous writer taken over wakes and leaves
            while self.phase == "ready" and self.attachment is attachment:
                payload = subscription.pop()
                if payload is not None:
                    self.written += 1
                    self.history.append((self.written, payload))
                    await write(_frame(self.token, self.written, payload))
                    continue
                try:
                    await asyncio.wait_for(subscription.arrived.wait(), keepalive if keepalive > 0 else None)
                except TimeoutError:
                    await write(KEEPALIVE)
        finally:
            if self.attachment is attachment:
                self.attachment = None
                if self.phase == "ready":
                    loop = asyncio.get_running_loop()
                    self.expiry = loop.call_later(RESUME_WINDOW, lambda: asyncio.ensure_future(self.close_session()))


def _frame(token: str, number: int, payload: bytes) -> bytes:
    return b"data:" + base64.b64encode(payload) + b"\nid:" + f"{token}-{number}".encode() + b"\n\n"


def resumable(last_event_id: str | None, session: AuthenticatedSession) -> tuple[EventStream, list] | None:
    """The stream `Last-Event-ID` names, if it is this device's and nothing it has not seen is lost."""
    if not last_event_id:
        return None
    token, _, number = last_event_id.strip().partition("-")
    stream = STREAMS.get(token)
    if stream is None or stream.phase != "ready" or stream.session.device_pk != session.device_pk:
        return None
    if not number.isdigit():
        return None
    replay = stream.replay_from(int(number))
    return None if replay is None else (stream, replay)
