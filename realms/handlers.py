"""Protocol handlers of the realm family (and of messages): decode, call the service, encode."""
from __future__ import annotations

from typing import Any

from protocol import replies, types
from protocol.db import run_sync
from protocol.registry import Family, command
from protocol.session import AuthenticatedSession
from realms import services


@command("realm_create", family=Family.AUTHENTICATED, request={"role_certificate": types.Bytes})
async def realm_create(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(services.realm_create, session=session, **req)


@command("realm_status", family=Family.AUTHENTICATED, request={"realm_id": types.RealmID})
async def realm_status(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(services.realm_status, session=session, **req)


@command("realm_stats", family=Family.AUTHENTICATED, request={"realm_id": types.RealmID})
async def realm_stats(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(services.realm_stats, session=session, **req)


@command("realm_get_role_certificates", family=Family.AUTHENTICATED, request={"realm_id": types.RealmID})
async def realm_get_role_certificates(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(services.realm_get_role_certificates, session=session, **req)


@command(
    "realm_update_roles",
    family=Family.AUTHENTICATED,
    request={"role_certificate": types.Bytes, "recipient_message": types.Optional(types.Bytes)},
)
async def realm_update_roles(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(services.realm_update_roles, session=session, **req)


@command("realm_update_archiving", family=Family.AUTHENTICATED, request={"archiving_certificate": types.Bytes})
async def realm_update_archiving(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(services.realm_update_archiving, session=session, **req)


@command("archiving_config", family=Family.AUTHENTICATED)
async def archiving_config(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(services.archiving_config, session=session)


@command("message_get", family=Family.AUTHENTICATED, request={"offset": types.Index})
async def message_get(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(services.message_get, session=session, **req)


@command(
    "realm_start_reencryption_maintenance",
    family=Family.AUTHENTICATED,
    request={
        "realm_id": types.RealmID,
        "encryption_revision": types.Index,
        "timestamp": types.DateTime,
        "per_participant_message": types.Map(types.UserID, types.Bytes),
    },
)
async def realm_start_reencryption_maintenance(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(services.realm_start_reencryption_maintenance, session=session, **req)


@command(
    "realm_finish_reencryption_maintenance",
    family=Family.AUTHENTICATED,
    request={"realm_id": types.RealmID, "encryption_revision": types.Index},
)
async def realm_finish_reencryption_maintenance(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(services.realm_finish_reencryption_maintenance, session=session, **req)
