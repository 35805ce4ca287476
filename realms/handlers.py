"""Protocol handlers of the realm family (realms, roles, archiving, maintenance, vlobs, messages):
decode, call the service, encode its outcome (realms/outcomes.py)."""
from __future__ import annotations

from typing import Any

from protocol import replies, types
from protocol.db import run_sync
from protocol.loop_db import run_on_loop_or_sync
from protocol.registry import Family, command
from protocol.session import AuthenticatedSession
from realms.outcomes import to_reply
from realms.services import maintenance, messages, realms, vlobs

SEQUESTER_BLOB = types.Introduced(types.Optional(types.Map(types.SequesterServiceID, types.Bytes)), "2.8", "3.2")


@command("realm_create", family=Family.AUTHENTICATED, request={"role_certificate": types.Bytes})
async def realm_create(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_sync(realms.realm_create, session=session, **req)
    return to_reply("realm_create", outcome)


@command("realm_status", family=Family.AUTHENTICATED, request={"realm_id": types.RealmID})
async def realm_status(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_sync(realms.realm_status, session=session, **req)
    return to_reply("realm_status", outcome)


@command("realm_stats", family=Family.AUTHENTICATED, request={"realm_id": types.RealmID})
async def realm_stats(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_sync(realms.realm_stats, session=session, **req)
    return to_reply("realm_stats", outcome)


@command("realm_get_role_certificates", family=Family.AUTHENTICATED, request={"realm_id": types.RealmID})
async def realm_get_role_certificates(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_sync(realms.realm_get_role_certificates, session=session, **req)
    return to_reply("realm_get_role_certificates", outcome)


@command(
    "realm_update_roles",
    family=Family.AUTHENTICATED,
    request={"role_certificate": types.Bytes, "recipient_message": types.Optional(types.Bytes)},
)
async def realm_update_roles(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_sync(realms.realm_update_roles, session=session, **req)
    return to_reply("realm_update_roles", outcome)


@command("realm_update_archiving", family=Family.AUTHENTICATED, request={"archiving_certificate": types.Bytes})
async def realm_update_archiving(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_sync(realms.realm_update_archiving, session=session, **req)
    return to_reply("realm_update_archiving", outcome)


@command("archiving_config", family=Family.AUTHENTICATED)
async def archiving_config(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_sync(realms.archiving_config, session=session)
    return to_reply("archiving_config", outcome)


@command("message_get", family=Family.AUTHENTICATED, request={"offset": types.Index})
async def message_get(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_sync(messages.message_get, session=session, **req)
    return to_reply("message_get", outcome)


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
    outcome = await run_sync(maintenance.realm_start_reencryption_maintenance, session=session, **req)
    return to_reply("realm_start_reencryption_maintenance", outcome)


@command(
    "realm_finish_reencryption_maintenance",
    family=Family.AUTHENTICATED,
    request={"realm_id": types.RealmID, "encryption_revision": types.Index},
)
async def realm_finish_reencryption_maintenance(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_sync(maintenance.realm_finish_reencryption_maintenance, session=session, **req)
    return to_reply("realm_finish_reencryption_maintenance", outcome)


@command(
    "vlob_create",
    family=Family.AUTHENTICATED,
    request={
        "realm_id": types.RealmID,
        "encryption_revision": types.Index,
        "vlob_id": types.VlobID,
        "timestamp": types.DateTime,
        "blob": types.Bytes,
        "sequester_blob": SEQUESTER_BLOB,
    },
)
async def vlob_create(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_on_loop_or_sync(vlobs.vlob_create_on_loop, vlobs.vlob_create, session=session, **req)
    return to_reply("vlob_create", outcome)


@command(
    "vlob_update",
    family=Family.AUTHENTICATED,
    request={
        "encryption_revision": types.Index,
        "vlob_id": types.VlobID,
        "timestamp": types.DateTime,
        "version": types.Version,
        "blob": types.Bytes,
        "sequester_blob": SEQUESTER_BLOB,
    },
)
async def vlob_update(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_on_loop_or_sync(vlobs.vlob_update_on_loop, vlobs.vlob_update, session=session, **req)
    return to_reply("vlob_update", outcome)


@command(
    "vlob_read",
    family=Family.AUTHENTICATED,
    request={
        "encryption_revision": types.Index,
        "vlob_id": types.VlobID,
        "version": types.Optional(types.Version),
        "timestamp": types.Optional(types.DateTime),
    },
)
async def vlob_read(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_on_loop_or_sync(vlobs.vlob_read_on_loop, vlobs.vlob_read, session=session, **req)
    return to_reply("vlob_read", outcome)


@command(
    "vlob_poll_changes",
    family=Family.AUTHENTICATED,
    request={"realm_id": types.RealmID, "last_checkpoint": types.Index},
)
async def vlob_poll_changes(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_sync(vlobs.vlob_poll_changes, session=session, **req)
    return to_reply("vlob_poll_changes", outcome)


@command("vlob_list_versions", family=Family.AUTHENTICATED, request={"vlob_id": types.VlobID})
async def vlob_list_versions(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_sync(vlobs.vlob_list_versions, session=session, **req)
    return to_reply("vlob_list_versions", outcome)


@command(
    "vlob_maintenance_get_reencryption_batch",
    family=Family.AUTHENTICATED,
    request={"realm_id": types.RealmID, "encryption_revision": types.Index, "size": types.Size},
)
async def vlob_maintenance_get_reencryption_batch(
    session: AuthenticatedSession, req: dict[str, Any]
) -> replies.Reply:
    outcome = await run_sync(vlobs.vlob_maintenance_get_reencryption_batch, session=session, **req)
    return to_reply("vlob_maintenance_get_reencryption_batch", outcome)


@command(
    "vlob_maintenance_save_reencryption_batch",
    family=Family.AUTHENTICATED,
    request={
        "realm_id": types.RealmID,
        "encryption_revision": types.Index,
        "batch": types.List(types.ReencryptionBatchEntry),
    },
)
async def vlob_maintenance_save_reencryption_batch(
    session: AuthenticatedSession, req: dict[str, Any]
) -> replies.Reply:
    outcome = await run_sync(vlobs.vlob_maintenance_save_reencryption_batch, session=session, **req)
    return to_reply("vlob_maintenance_save_reencryption_batch", outcome)
