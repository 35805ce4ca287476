"""Protocol handlers of the block family (block_create, block_read): decode, call the service."""
from __future__ import annotations

from typing import Any

from blocks import services
from protocol import replies, types
from protocol.registry import Family, command
from protocol.session import AuthenticatedSession


@command(
    "block_create",
    family=Family.AUTHENTICATED,
    request={"block_id": types.BlockID, "realm_id": types.RealmID, "block": types.Bytes},
)
async def block_create(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await services.block_create(
        session=session, block_id=req["block_id"], realm_id=req["realm_id"], block=req["block"]
    )


@command("block_read", family=Family.AUTHENTICATED, request={"block_id": types.BlockID})
async def block_read(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await services.block_read(session=session, block_id=req["block_id"])
