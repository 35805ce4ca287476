"""Reaching live websocket sessions from anywhere (any process), through the channel layer.

Sessions join groups named after what can end them: their organization, their user, their
invitation. Messages are sent after the transaction that caused them commits.
"""
from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


def organization_group(organization_pk: int) -> str:
    return f"parsec.org.{organization_pk}"


def user_group(user_pk: int) -> str:
    return f"parsec.user.{user_pk}"


def invitation_group(invitation_pk: int) -> str:
    return f"parsec.invitation.{invitation_pk}"


_background_sends: set[asyncio.Task] = set()


def send_to_group_on_commit(group: str, message: dict[str, Any]) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        # Called from async code, where no transaction is open: send right away.
        layer = get_channel_layer()
        task = loop.create_task(layer.group_send(group, message))
        _background_sends.add(task)
        task.add_done_callback(_background_sends.discard)
        return

    def send() -> None:
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
