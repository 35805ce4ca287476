"""Shared steps of the vlob tests: vlob commands with defaults, members, re-encryption, sync sessions."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Callable

from organizations.models import Device
from protocol.session import AuthenticatedSession
from realms.outcomes import Outcome, to_reply
from tests.conftest import World, add_user
from tests.realms.helpers import grant
from tests.testkit import certs
from tests.testkit.certs import TestDevice
from tests.testkit.ws import WsClient

OK = {"status": "ok"}


def sync_reply(service: Callable[..., Outcome], **kwargs: Any) -> dict[str, Any]:
    """Calls a realm-family service directly (query budgets) and encodes its outcome as its handler does."""
    return to_reply(service.__name__, service(**kwargs))


async def create_vlob(
    client: WsClient,
    realm_id: uuid.UUID,
    *,
    vlob_id: uuid.UUID | None = None,
    timestamp: datetime | None = None,
    blob: bytes = b"<version 1>",
    encryption_revision: int = 1,
    sequester_blob: dict[uuid.UUID, bytes] | None = None,
) -> dict[str, Any]:
    return await client.command(
        "vlob_create",
        realm_id=realm_id,
        encryption_revision=encryption_revision,
        vlob_id=vlob_id or uuid.uuid4(),
        timestamp=timestamp or certs.now(),
        blob=blob,
        sequester_blob=sequester_blob,
    )


async def new_vlob(client: WsClient, realm_id: uuid.UUID, **fields: Any) -> uuid.UUID:
    vlob_id = fields.pop("vlob_id", None) or uuid.uuid4()
    assert await create_vlob(client, realm_id, vlob_id=vlob_id, **fields) == OK
    return vlob_id


async def update_vlob(
    client: WsClient,
    vlob_id: uuid.UUID,
    version: int,
    *,
    timestamp: datetime | None = None,
    blob: bytes | None = None,
    encryption_revision: int = 1,
    sequester_blob: dict[uuid.UUID, bytes] | None = None,
) -> dict[str, Any]:
    return await client.command(
        "vlob_update",
        encryption_revision=encryption_revision,
        vlob_id=vlob_id,
        timestamp=timestamp or certs.now(),
        version=version,
        blob=blob if blob is not None else f"<version {version}>".encode(),
        sequester_blob=sequester_blob,
    )


async def read_vlob(
    client: WsClient,
    vlob_id: uuid.UUID,
    *,
    version: int | None = None,
    timestamp: datetime | None = None,
    encryption_revision: int = 1,
) -> dict[str, Any]:
    return await client.command(
        "vlob_read", encryption_revision=encryption_revision, vlob_id=vlob_id, version=version, timestamp=timestamp
    )


async def member(
    world: World, owner_ws: WsClient, realm_id: uuid.UUID, user_id: str, role: str, *, profile: str = "STANDARD"
) -> TestDevice:
    """A new user given `role` in the realm by alice, through `realm_update_roles`."""
    device = await add_user(world, user_id, profile=profile)
    await grant(owner_ws, world.alice, realm_id, user_id, role)
    return device


async def start_reencryption(
    owner_ws: WsClient, realm_id: uuid.UUID, encryption_revision: int, participants: list[str]
) -> None:
    reply = await owner_ws.command(
        "realm_start_reencryption_maintenance",
        realm_id=realm_id,
        encryption_revision=encryption_revision,
        timestamp=certs.now(),
        per_participant_message={user_id: b"<new key>" for user_id in participants},
    )
    assert reply == OK, reply


async def finish_reencryption(owner_ws: WsClient, realm_id: uuid.UUID, encryption_revision: int) -> dict[str, Any]:
    return await owner_ws.command(
        "realm_finish_reencryption_maintenance", realm_id=realm_id, encryption_revision=encryption_revision
    )


async def reencrypt_all(owner_ws: WsClient, realm_id: uuid.UUID, encryption_revision: int) -> None:
    """What the client does between start and finish: fetch, re-encrypt (here: tag), save, until done."""
    while True:
        reply = await owner_ws.command(
            "vlob_maintenance_get_reencryption_batch",
            realm_id=realm_id,
            encryption_revision=encryption_revision,
            size=2,
        )
        batch = [{**entry, "blob": b"R" + entry["blob"]} for entry in reply["batch"]]
        saved = await owner_ws.command(
            "vlob_maintenance_save_reencryption_batch",
            realm_id=realm_id,
            encryption_revision=encryption_revision,
            batch=batch,
        )
        if saved["done"] == saved["total"]:
            return


def session_of(device: TestDevice) -> AuthenticatedSession:
    """The session the consumer builds after a handshake, for calling services directly."""
    row = Device.objects.select_related("user", "organization").get(
        organization__organization_id=device.organization_id, device_id=device.device_id
    )
    return AuthenticatedSession(
        organization_pk=row.organization_id,
        organization_id=row.organization.organization_id,
        user_pk=row.user_id,
        user_id=row.user.user_id,
        device_pk=row.pk,
        device_id=row.device_id,
        profile=row.user.profile,
        api_version=(3, 4),
        verify_key=device.verify_key,
    )
