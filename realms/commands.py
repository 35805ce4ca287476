"""Protocol handlers of the realm family: decode, call the service, encode."""
from __future__ import annotations

from typing import Any

from protocol import replies, types
from protocol.db import run_sync
from protocol.registry import Family, command
from protocol.session import AuthenticatedSession
from realms import services


@command("realm_create", family=Family.AUTHENTICATED, request={"role_certificate": types.Bytes})
async def realm_create(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(services.realm_create, session=session, role_certificate=req["role_certificate"])
