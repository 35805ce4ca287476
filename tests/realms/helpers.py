"""Shared steps of the realm tests: certificates, grants, archiving, listeners, vlob rows."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

from nacl.signing import SigningKey

from organizations.models import Organization, User
from protocol.types import RealmArchivingConfiguration
from realms.models import Realm, RealmUserChange, VlobAtom
from tests.conftest import World, connect_as
from tests.testkit import certs
from tests.testkit.certs import TestDevice
from tests.testkit.ws import WsClient

NO_EVENTS = {"status": "no_events"}
# Event fan-out goes through the channel layer after commit; this is long enough in-process.
EVENT_DELAY = 0.1


def role_certificate(
    author: TestDevice,
    *,
    realm_id: uuid.UUID,
    user_id: str,
    role: str | None,
    timestamp: datetime | None = None,
    signing_key: SigningKey | None = None,
    author_id: str | None = None,
) -> bytes:
    return certs.realm_role_certificate(
        signing_key or author.signing_key,
        author=author_id or author.device_id,
        timestamp=timestamp or certs.now(),
        realm_id=realm_id,
        user_id=user_id,
        role=role,
    )


def archiving_certificate(
    author: TestDevice,
    *,
    realm_id: uuid.UUID,
    configuration: RealmArchivingConfiguration,
    timestamp: datetime | None = None,
    signing_key: SigningKey | None = None,
    author_id: str | None = None,
) -> bytes:
    return certs.realm_archiving_certificate(
        signing_key or author.signing_key,
        author=author_id or author.device_id,
        timestamp=timestamp or certs.now(),
        realm_id=realm_id,
        configuration=configuration,
    )


async def update_roles(
    client: WsClient,
    author: TestDevice,
    realm_id: uuid.UUID,
    user_id: str,
    role: str | None,
    *,
    timestamp: datetime | None = None,
    recipient_message: bytes | None = None,
) -> dict[str, Any]:
    certificate = role_certificate(author, realm_id=realm_id, user_id=user_id, role=role, timestamp=timestamp)
    return await client.command("realm_update_roles", role_certificate=certificate, recipient_message=recipient_message)


async def grant(
    client: WsClient, author: TestDevice, realm_id: uuid.UUID, user_id: str, role: str | None, **kw: Any
) -> None:
    assert await update_roles(client, author, realm_id, user_id, role, **kw) == {"status": "ok"}


async def update_archiving(
    client: WsClient,
    author: TestDevice,
    realm_id: uuid.UUID,
    configuration: RealmArchivingConfiguration,
    *,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    certificate = archiving_certificate(author, realm_id=realm_id, configuration=configuration, timestamp=timestamp)
    return await client.command("realm_update_archiving", archiving_certificate=certificate)


async def set_minimum_archiving_period(world: World, seconds: int) -> None:
    await Organization.objects.filter(organization_id=world.organization_id).aupdate(minimum_archiving_period=seconds)


async def delete_realm(world: World, client: WsClient, owner: TestDevice, realm_id: uuid.UUID) -> None:
    """Plan the realm's deletion for right now (minimum period 0), so it is deleted at once."""
    await set_minimum_archiving_period(world, 0)
    timestamp = certs.now()
    configuration = RealmArchivingConfiguration.deletion_planned(timestamp)
    reply = await update_archiving(client, owner, realm_id, configuration, timestamp=timestamp)
    assert reply == {"status": "ok"}


async def subscribed(device: TestDevice) -> WsClient:
    client = await connect_as(device)
    assert await client.command("events_subscribe") == {"status": "ok"}
    return client


async def subscribed_each(**devices: TestDevice) -> dict[str, WsClient]:
    """One subscribed listener connection per named device."""
    return {name: await subscribed(device) for name, device in devices.items()}


async def events_of(listener: WsClient) -> list[dict[str, Any]]:
    """Every event queued for the listener so far (after letting the fan-out happen)."""
    await asyncio.sleep(EVENT_DELAY)
    received = []
    while (reply := await listener.command("events_listen", wait=False)) != NO_EVENTS:
        received.append(reply)
    return received


async def revoke(user_id: str, world: World) -> None:
    """Mark the user revoked, as `user_revoke` stores it."""
    timestamp = certs.now()
    certificate = certs.revoked_user_certificate(
        world.alice.signing_key, author=world.alice.device_id, timestamp=timestamp, user_id=user_id
    )
    await User.objects.filter(organization__organization_id=world.organization_id, user_id=user_id).aupdate(
        revoked_on=timestamp, revoked_user_certificate=certificate
    )


async def store_vlob_atom(
    realm_id: uuid.UUID,
    author: TestDevice,
    *,
    vlob_id: uuid.UUID | None = None,
    version: int = 1,
    encryption_revision: int = 1,
    blob: bytes = b"<encrypted>",
    created_on: datetime | None = None,
) -> uuid.UUID:
    """One vlob version row, as a vlob write or a re-encryption batch stores it."""
    from organizations.models import Device

    realm = await Realm.objects.aget(realm_id=realm_id)
    device = await Device.objects.aget(device_id=author.device_id, organization_id=realm.organization_id)
    vlob_id = vlob_id or uuid.uuid4()
    await VlobAtom.objects.acreate(
        organization_id=realm.organization_id,
        realm=realm,
        vlob_id=vlob_id,
        version=version,
        encryption_revision=encryption_revision,
        blob=blob,
        size=len(blob),
        author=device,
        created_on=created_on or certs.now(),
    )
    return vlob_id


async def record_vlob_write(realm_id: uuid.UUID, user_id: str, timestamp: datetime) -> None:
    """The user's "last vlob write" in the realm, as vlob_create/vlob_update record it."""
    realm = await Realm.objects.aget(realm_id=realm_id)
    user = await User.objects.aget(organization_id=realm.organization_id, user_id=user_id)
    await RealmUserChange.objects.aupdate_or_create(realm=realm, user=user, defaults={"last_vlob_update": timestamp})


def later(seconds: float = 1.0) -> datetime:
    return certs.now() + timedelta(seconds=seconds)


async def store_block(
    realm_id: uuid.UUID, author: TestDevice, *, size: int, created_on: datetime | None = None
) -> None:
    """One block's metadata row, as `block_create` stores it after writing the data."""
    from django.apps import apps

    from organizations.models import Device

    block_model = apps.get_model("blocks", "Block")
    realm = await Realm.objects.aget(realm_id=realm_id)
    device = await Device.objects.aget(device_id=author.device_id, organization_id=realm.organization_id)
    await block_model.objects.acreate(
        organization_id=realm.organization_id, block_id=uuid.uuid4(), realm=realm, author=device, size=size,
        created_on=created_on or certs.now(),
    )
