"""Protocol handlers of the user family (user_get, user_create, user_revoke, device_create, human_find)."""
from __future__ import annotations

from typing import Any

from organizations.services import users
from protocol import replies, types
from protocol.db import run_sync
from protocol.registry import Family, command
from protocol.session import AuthenticatedSession


@command("user_get", family=Family.AUTHENTICATED, request={"user_id": types.UserID})
async def user_get(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(users.user_get, session=session, **req)


@command(
    "user_create",
    family=Family.AUTHENTICATED,
    request={
        "user_certificate": types.Bytes,
        "device_certificate": types.Bytes,
        "redacted_user_certificate": types.Bytes,
        "redacted_device_certificate": types.Bytes,
    },
)
async def user_create(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(users.user_create, session=session, **req)


@command("user_revoke", family=Family.AUTHENTICATED, request={"revoked_user_certificate": types.Bytes})
async def user_revoke(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(users.user_revoke, session=session, **req)


@command(
    "device_create",
    family=Family.AUTHENTICATED,
    request={"device_certificate": types.Bytes, "redacted_device_certificate": types.Bytes},
)
async def device_create(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(users.device_create, session=session, **req)


class _AnyInteger(types.FieldType):
    """Any msgpack integer: `human_find` checks the ranges of `page` and `per_page` itself."""

    name = "Integer"

    def decode(self, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise types.FieldError(f"expected an integer, got {type(value).__name__}")
        return value


def _invalid_message(errors: str) -> replies.Reply:
    # The reference's form for values of the right type but out of range (docs/protocol.md#command-loop).
    return {"status": "bad_message", "errors": errors, "reason": "Invalid message."}


@command(
    "human_find",
    family=Family.AUTHENTICATED,
    request={
        "query": types.Optional(types.String),
        "omit_revoked": types.Boolean,
        "omit_non_human": types.Boolean,
        "page": _AnyInteger(),
        "per_page": _AnyInteger(),
    },
)
async def human_find(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    try:
        page = types.NonZeroInteger.decode(req["page"])
    except types.FieldError as exc:
        return _invalid_message(f"page: {exc}")
    try:
        per_page = types.IntegerBetween1And100.decode(req["per_page"])
    except types.FieldError as exc:
        return _invalid_message(f"per_page: {exc}")
    return await run_sync(
        users.human_find,
        session=session,
        query=req["query"],
        omit_revoked=req["omit_revoked"],
        omit_non_human=req["omit_non_human"],
        page=page,
        per_page=per_page,
    )
