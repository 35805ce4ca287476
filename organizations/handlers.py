"""Protocol handlers of the organization family: decode, call the service, encode."""
from __future__ import annotations

from typing import Any

from django.conf import settings

from organizations.services import organizations as services
from organizations.models import Profile
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
    if outcome.webhook_payload is not None and webhook_url:
        # After commit, before replying, as the reference does; a failure is only logged.
        await run_sync(post_bootstrap_webhook, webhook_url, outcome.webhook_payload)
    return outcome.reply


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
    outcome = await run_sync(services.organization_create, organization_id=req["organization_id"])
    if isinstance(outcome, services.AdministrationError):
        return replies.reply("already_exists")
    return replies.ok(bootstrap_token=outcome.bootstrap_token)


@command("organization_config", family=Family.AUTHENTICATED)
async def organization_config(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    config = await run_sync(services.organization_config, organization_pk=session.organization_pk)
    if config is None:
        return replies.reply("not_found")
    return replies.ok(
        active_users_limit=config.active_users_limit,
        minimum_archiving_period=config.minimum_archiving_period,
        sequester_authority_certificate=config.sequester_authority_certificate,
        sequester_services_certificates=config.sequester_services_certificates,
        user_profile_outsider_allowed=config.user_profile_outsider_allowed,
    )


@command("organization_stats", family=Family.AUTHENTICATED)
async def organization_stats(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    if session.profile != Profile.ADMIN:
        # The reference sends no explanation.
        return replies.reply("not_allowed", reason=None)
    stats = await run_sync(services.organization_stats, organization_id=session.organization_id)
    if isinstance(stats, services.AdministrationError):
        return replies.reply("not_found")
    return replies.ok(
        active_users=stats.active_users,
        data_size=stats.data_size,
        metadata_size=stats.metadata_size,
        realms=stats.realms,
        users=stats.users,
        users_per_profile_detail=[item.as_dict() for item in stats.users_per_profile_detail],
    )
