"""`ping`: debug-only echo command of invited and authenticated sessions."""
from __future__ import annotations

from typing import Any

from protocol import replies, types
from protocol.events import emit_organization_event_on_commit
from protocol.registry import Family, command
from protocol.session import AuthenticatedSession


@command(
    "ping",
    family=(Family.AUTHENTICATED, Family.INVITED),
    request={"ping": types.String},
    debug_only=True,
)
async def ping(session: Any, req: dict[str, Any]) -> replies.Reply:
    if isinstance(session, AuthenticatedSession):
        # No transaction here: the event leaves at once, to the organization's other devices.
        emit_organization_event_on_commit(
            organization_pk=session.organization_pk,
            event={"event": "pinged", "ping": req["ping"]},
            exclude_device_pk=session.device_pk,
        )
    return replies.ok(pong=req["ping"])
