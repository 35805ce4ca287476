"""`ping`: debug-only echo command of invited and authenticated sessions."""
from __future__ import annotations

from typing import Any

from protocol import replies, types
from protocol.registry import Family, command


@command(
    "ping",
    family=(Family.AUTHENTICATED, Family.INVITED),
    request={"ping": types.String},
    debug_only=True,
)
async def ping(session: Any, req: dict[str, Any]) -> replies.Reply:
    return replies.ok(pong=req["ping"])
