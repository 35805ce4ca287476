"""Reaching live websocket sessions from anywhere (any process), through the channel layer.

Sessions join groups named after what can end them: their organization, their user, their
invitation; subscribed sessions also join one group per realm their user holds (realm events).
Messages are sent after the transaction that caused them commits.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger("parsec.protocol")


def organization_group(organization_pk: int) -> str:
    return f"parsec.org.{organization_pk}"


def user_group(user_pk: int) -> str:
    return f"parsec.user.{user_pk}"


def invitation_group(invitation_pk: int) -> str:
    return f"parsec.invitation.{invitation_pk}"


def realm_group(organization_pk: int, realm_hex: str) -> str:
    """The subscribed connections of the realm's members: its events reach them and nobody else."""
    return f"parsec.realm.{organization_pk}.{realm_hex}"


async def join_groups(layer: Any, groups: list[str], channel: str) -> None:
    """Add the channel to every group: at once on the in-process layer, concurrently on the others (Redis:
    one round trip per group otherwise)."""
    bulk = getattr(layer, "group_add_many", None)
    if bulk is not None:
        bulk(groups, channel)
    elif groups:
        await asyncio.gather(*(layer.group_add(group, channel) for group in groups))


async def leave_groups(layer: Any, groups: list[str], channel: str) -> None:
    """Take the channel out of every group (a session's end), as `join_groups` adds it."""
    bulk = getattr(layer, "group_discard_many", None)
    if bulk is not None:
        bulk(groups, channel)
    elif groups:
        await asyncio.gather(*(layer.group_discard(group, channel) for group in groups))


_background_sends: set[asyncio.Task] = set()

# The event loop of the async code that called into the current sync code (set by `run_sync`):
# messages of a commit are handed to it without the calling thread waiting for their delivery.
caller_loop: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "caller_loop", default=None
)


def _start_send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    task = asyncio.get_running_loop().create_task(layer.group_send(group, message))
    _background_sends.add(task)
    task.add_done_callback(_send_done)


def _send_done(task: asyncio.Task) -> None:
    _background_sends.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("Channel layer send failed", exc_info=task.exception())


def send_to_group_on_commit(group: str, message: dict[str, Any]) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        # Called from async code, where no transaction is open: send right away.
        _start_send(group, message)
        return

    loop = caller_loop.get()

    def send() -> None:
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(_start_send, group, message)
            return
        # Sync code not called from our event loop (a management command, a sync view).
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(group, message)

    transaction.on_commit(send)


CLOSE_SESSION: dict[str, Any] = {"type": "session.close"}


def close_organization_sessions_on_commit(organization_pk: int) -> None:
    send_to_group_on_commit(organization_group(organization_pk), CLOSE_SESSION)


def close_user_sessions_on_commit(user_pk: int) -> None:
    send_to_group_on_commit(user_group(user_pk), CLOSE_SESSION)


def close_invitation_sessions_on_commit(invitation_pk: int) -> None:
    send_to_group_on_commit(invitation_group(invitation_pk), CLOSE_SESSION)
