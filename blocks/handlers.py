"""Protocol handlers of the block family (block_create, block_read): decode, call, `blocks.outcomes.to_reply`."""
from __future__ import annotations

from typing import Any

from blocks import orchestration
from blocks.outcomes import to_reply
from protocol import replies, types
from protocol.registry import Family, command
from protocol.session import AuthenticatedSession


@command(
    "block_create",
    family=Family.AUTHENTICATED,
    request={"block_id": types.BlockID, "realm_id": types.RealmID, "block": types.Bytes},
)
async def block_create(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return to_reply(
        await orchestration.block_create(
            session=session, block_id=req["block_id"], realm_id=req["realm_id"], block=req["block"]
        )
    )


@command("block_read", family=Family.AUTHENTICATED, request={"block_id": types.BlockID})
async def block_read(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return to_reply(await orchestration.block_read(session=session, block_id=req["block_id"]))
