"""Protocol handlers of the organization and user families: decode, call the service, encode.

organization_bootstrap, organization_create, organization_config, organization_stats, user_get,
user_create, user_revoke, device_create, human_find. `organizations.outcomes.to_reply` is the one mapping of
their outcomes to the wire.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings

from organizations.outcomes import Bootstrapped, to_reply
from organizations.services import organizations as services
from organizations.services import users
from organizations.webhooks import post_bootstrap_webhook
from protocol import replies, types
from protocol.db import run_sync
from protocol.registry import Family, command
from protocol.session import AdministrationSession, AnonymousSession, AuthenticatedSession


@command(
    "organization_bootstrap",
    # The anonymous route, and the API v1 `anonymous` websocket of the 2.0-2.5 clients.
    family=(Family.ANONYMOUS, Family.APIV1_ANONYMOUS),
    request={
        "bootstrap_token": types.String,
        "root_verify_key": types.VerifyKey,
        "user_certificate": types.Bytes,
        "device_certificate": types.Bytes,
        "redacted_user_certificate": types.Bytes,
        "redacted_device_certificate": types.Bytes,
        "sequester_authority_certificate": types.Introduced(types.Optional(types.Bytes), "2.8", "3.2"),
    },
)
async def organization_bootstrap(session: AnonymousSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_sync(services.organization_bootstrap, organization_id=session.organization_id, **req)
    webhook_url = settings.PARSEC.organization_bootstrap_webhook
    if isinstance(outcome, Bootstrapped) and webhook_url:
        # After commit, before replying, as the reference does; a failure is only logged.
        await run_sync(post_bootstrap_webhook, webhook_url, outcome.webhook_payload)
    return to_reply(outcome)


@command(
    "organization_create",
    family=Family.APIV1_ADMINISTRATION,
    request={"organization_id": types.OrganizationID, "expiration_date": types.Optional(types.DateTime)},
)
async def organization_create(session: AdministrationSession, req: dict[str, Any]) -> replies.Reply:
    """The 2.0 CLI's `create_organization`: the administration API's creation, over API v1."""
    if req["expiration_date"] is not None:
        # Organizations expire when the administration API says so, not at a date set in advance.
        return replies.bad_message("expiration_date is not supported: expire the organization with the administration API")
    return to_reply(await run_sync(services.organization_create, organization_id=req["organization_id"]))


@command("organization_config", family=Family.AUTHENTICATED)
async def organization_config(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return to_reply(await run_sync(services.organization_config, organization_pk=session.organization_pk))


@command("organization_stats", family=Family.AUTHENTICATED)
async def organization_stats(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return to_reply(await run_sync(services.organization_stats, session=session))


# --- users and devices ---------------------------------------------------------------------------------------


@command("user_get", family=Family.AUTHENTICATED, request={"user_id": types.UserID})
async def user_get(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return to_reply(await run_sync(users.user_get, session=session, **req))


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
    return to_reply(await run_sync(users.user_create, session=session, **req))


@command("user_revoke", family=Family.AUTHENTICATED, request={"revoked_user_certificate": types.Bytes})
async def user_revoke(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return to_reply(await run_sync(users.user_revoke, session=session, **req))


@command(
    "device_create",
    family=Family.AUTHENTICATED,
    request={"device_certificate": types.Bytes, "redacted_device_certificate": types.Bytes},
)
async def device_create(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return to_reply(await run_sync(users.device_create, session=session, **req))


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
    outcome = await run_sync(
        users.human_find,
        session=session,
        query=req["query"],
        omit_revoked=req["omit_revoked"],
        omit_non_human=req["omit_non_human"],
        page=page,
        per_page=per_page,
    )
    return to_reply(outcome)
