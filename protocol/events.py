"""Events (docs/protocol.md#events): emitted after commit through the channel layer, queued per connection.

An event travels as an already-encoded `events_listen` reply, so every process and every
connection shares one encoding, and the channel layer (msgpack in channels-redis) never sees
UUIDs or datetimes. The routing facts travel beside it.
"""
from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from protocol import codec, hooks, replies, types
from protocol.db import run_sync
from protocol.groups import join_groups, organization_group, realm_group, send_to_group_on_commit, user_group
from protocol.registry import Family, command
from protocol.session import AuthenticatedSession, Connection

# A connection with more undelivered events than this is closed; the client resynchronises.
MAX_PENDING_EVENTS = 100
NO_EVENTS = codec.packb({"status": "no_events"})


def _message(event: dict[str, Any], *, realm_id: uuid.UUID | None, exclude_device_pk: int | None) -> dict[str, Any]:
    return {
        "type": "parsec.event",
        "payload": codec.packb({"status": "ok", **event}),
        "realm": realm_id.hex if realm_id is not None else None,
        "exclude_device": exclude_device_pk,
        # `realm.roles_updated` changes the receiving connection's realm set.
        "role_change": event["event"] == "realm.roles_updated",
        "role": event.get("role"),
    }


def emit_realm_event_on_commit(
    *, organization_pk: int, realm_id: uuid.UUID, event: dict[str, Any], exclude_device_pk: int | None
) -> None:
    """To the connections listening to the realm (its members), usually minus the author device.

    Only the realm's group: a write costs the same whatever the number of other sessions of the
    organization (with 5,000 of them, fanning out to the organization group made a writer's p99 ~400×).
    """
    send_to_group_on_commit(
        realm_group(organization_pk, realm_id.hex),
        _message(event, realm_id=realm_id, exclude_device_pk=exclude_device_pk),
    )


def emit_user_event_on_commit(*, user_pk: int, event: dict[str, Any], realm_id: uuid.UUID | None = None) -> None:
    """To every connection of one user (all its devices); `realm_id` only for `realm.roles_updated`."""
    send_to_group_on_commit(user_group(user_pk), _message(event, realm_id=realm_id, exclude_device_pk=None))


def emit_organization_event_on_commit(
    *, organization_pk: int, event: dict[str, Any], exclude_device_pk: int | None = None
) -> None:
    """To every connection of the organization."""
    send_to_group_on_commit(
        organization_group(organization_pk), _message(event, realm_id=None, exclude_device_pk=exclude_device_pk)
    )


@dataclass
class Subscription:
    """What one subscribed connection listens to, and what it has not collected yet."""

    organization_pk: int
    device_pk: int
    realms: set[str]
    pending: deque[bytes] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, message: dict[str, Any]) -> bool:
        """Queue the event if it is for this connection; False when the queue overflows."""
        if message["exclude_device"] is not None and message["exclude_device"] == self.device_pk:
            return True
        realm = message["realm"]
        if message["role_change"]:
            if message["role"] is None:
                self.realms.discard(realm)
            else:
                self.realms.add(realm)
        elif realm is not None and realm not in self.realms:
            return True
        if len(self.pending) >= MAX_PENDING_EVENTS:
            return False
        self.pending.append(message["payload"])
        self.arrived.set()
        return True

    def pop(self) -> bytes | None:
        if not self.pending:
            self.arrived.clear()
            return None
        payload = self.pending.popleft()
        if not self.pending:
            self.arrived.clear()
        return payload


def subscription_of(session: AuthenticatedSession) -> Subscription | None:
    assert session.connection is not None
    return session.connection.state.subscription


async def deliver(connection: Connection, message: dict[str, Any]) -> None:
    """Called by the consumer for each `parsec.event` message of its groups."""
    subscription = connection.state.subscription
    if subscription is None:
        return  # events that happened before `events_subscribe` are not queued
    if not subscription.offer(message):
        await connection.close_session()
        return
    if message["role_change"]:
        # Shared or unshared mid-session: follow the realm's group. Events sent before the join
        # completes are not seen here, but the client resynchronises a realm it has just been given.
        # One left behind (an event already queued for this channel) is dropped by `offer`'s realm set.
        group = realm_group(subscription.organization_pk, message["realm"])
        if message["role"] is None:
            await _leave(connection, group)
        else:
            await _join(connection, group)


async def _join(connection: Connection, group: str) -> None:
    joined = connection.state.realm_groups  # a user may hold thousands
    if group not in joined:
        joined.add(group)
        connection.groups_joined.append(group)  # the consumer leaves them all at disconnect
        await connection.channel_layer.group_add(group, connection.channel_name)


async def _leave(connection: Connection, group: str) -> None:
    joined = connection.state.realm_groups
    if group in joined:
        joined.discard(group)
        connection.groups_joined.remove(group)
        await connection.channel_layer.group_discard(group, connection.channel_name)


def _current_realm_ids(user_pk: int) -> set[str]:
    # Realms are an app's data: the realms app registers how to read a user's set (protocol.hooks).
    return hooks.user_realm_ids(user_pk)


@command("events_subscribe", family=Family.AUTHENTICATED)
async def events_subscribe(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    if subscription_of(session) is None:
        connection = session.connection
        assert connection is not None
        # Registered before reading the realms: a role change racing the query is kept, not lost.
        subscription = Subscription(organization_pk=session.organization_pk, device_pk=session.device_pk, realms=set())
        connection.state.subscription = subscription
        subscription.realms |= await run_sync(_current_realm_ids, session.user_pk)
        # One call for all the realm groups (thousands for some users), not one awaited join each.
        joined = connection.state.realm_groups
        new_groups = [
            group for group in (realm_group(session.organization_pk, realm) for realm in subscription.realms)
            if group not in joined
        ]
        joined.update(new_groups)
        connection.groups_joined.extend(new_groups)  # the consumer leaves them all at disconnect
        await join_groups(connection.channel_layer, new_groups, connection.channel_name)
    return replies.ok()


@command("events_listen", family=Family.AUTHENTICATED, request={"wait": types.Boolean}, cancellable=True)
async def events_listen(session: AuthenticatedSession, req: dict[str, Any]) -> bytes:
    subscription = subscription_of(session)
    if not req["wait"]:
        payload = subscription.pop() if subscription is not None else None
        return payload if payload is not None else NO_EVENTS
    if subscription is None:
        # Without a subscription nothing will ever come; only a new request ends the wait.
        await asyncio.Event().wait()
    assert subscription is not None  # the wait above never ends
    while True:
        await subscription.arrived.wait()
        payload = subscription.pop()
        if payload is not None:
            return payload
