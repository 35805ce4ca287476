"""Protocol handlers of the vlob family (vlob_create, vlob_read, ...): decode, call the service, encode."""
from __future__ import annotations

from typing import Any

from protocol import replies, types
from protocol.db import run_sync
from protocol.registry import Family, command
from protocol.session import AuthenticatedSession
from realms import vlobs

SEQUESTER_BLOB = types.Introduced(types.Optional(types.Map(types.SequesterServiceID, types.Bytes)), "2.8", "3.2")


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
    return await run_sync(vlobs.vlob_create, session=session, **req)


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
    return await run_sync(vlobs.vlob_update, session=session, **req)


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
    return await run_sync(vlobs.vlob_read, session=session, **req)


@command(
    "vlob_poll_changes",
    family=Family.AUTHENTICATED,
    request={"realm_id": types.RealmID, "last_checkpoint": types.Index},
)
async def vlob_poll_changes(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(vlobs.vlob_poll_changes, session=session, **req)


@command("vlob_list_versions", family=Family.AUTHENTICATED, request={"vlob_id": types.VlobID})
async def vlob_list_versions(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(vlobs.vlob_list_versions, session=session, **req)


@command(
    "vlob_maintenance_get_reencryption_batch",
    family=Family.AUTHENTICATED,
    request={"realm_id": types.RealmID, "encryption_revision": types.Index, "size": types.Size},
)
async def vlob_maintenance_get_reencryption_batch(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return await run_sync(vlobs.vlob_maintenance_get_reencryption_batch, session=session, **req)


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
    return await run_sync(vlobs.vlob_maintenance_save_reencryption_batch, session=session, **req)
