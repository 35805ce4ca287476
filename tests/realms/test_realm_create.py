"""`realm_create` (docs/protocol.md#realm-create): one test per reply status."""
from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from nacl.signing import SigningKey

from realms.models import Realm, RealmUserRole
from tests.conftest import World, add_device, add_user, connect_as, create_realm
from tests.testkit import certs

pytestmark = pytest.mark.django_db(transaction=True)


def role_certificate(device, *, signing_key=None, author=None, timestamp=None, realm_id=None, user_id=None, role="OWNER"):
    return certs.realm_role_certificate(
        signing_key or device.signing_key, author=author or device.device_id, timestamp=timestamp or certs.now(),
        realm_id=realm_id or uuid.uuid4(), user_id=user_id or device.user_id, role=role,
    )


async def test_ok(world: World):
    client = await connect_as(world.alice)
    certificate = role_certificate(world.alice)
    assert await client.command("realm_create", role_certificate=certificate) == {"status": "ok"}
    realm = await Realm.objects.aget()
    assert (realm.encryption_revision, realm.checkpoint, realm.maintenance_type) == (1, 0, None)
    role = await RealmUserRole.objects.aget(realm=realm)
    assert role.role == "OWNER" and bytes(role.certificate) == certificate


async def test_ok_emits_roles_updated_to_all_devices_of_the_author(world: World):
    alice2 = await add_device(world.alice, "dev2")
    bob = await add_user(world, "bob")
    listeners = {}
    for name, device in [("alice1", world.alice), ("alice2", alice2), ("bob", bob)]:
        listeners[name] = await connect_as(device)
        assert await listeners[name].command("events_subscribe") == {"status": "ok"}
    client = await connect_as(world.alice)
    realm_id = await create_realm(client, world.alice)
    await asyncio.sleep(0.1)
    expected = {"status": "ok", "event": "realm.roles_updated", "realm_id": realm_id, "role": "OWNER"}
    assert await listeners["alice1"].command("events_listen", wait=False) == expected
    assert await listeners["alice2"].command("events_listen", wait=False) == expected
    assert await listeners["bob"].command("events_listen", wait=False) == {"status": "no_events"}


async def test_outsider_can_create(world: World):
    outsider = await add_user(world, "olga", profile="OUTSIDER")
    client = await connect_as(outsider)
    await create_realm(client, outsider)


async def test_invalid_certification_other_signer(world: World):
    client = await connect_as(world.alice)
    reply = await client.command("realm_create", role_certificate=role_certificate(world.alice, signing_key=SigningKey.generate()))
    assert reply["status"] == "invalid_certification"


async def test_invalid_certification_other_author(world: World):
    bob = await add_user(world, "bob")
    client = await connect_as(world.alice)
    reply = await client.command("realm_create", role_certificate=role_certificate(world.alice, author=bob.device_id))
    assert reply["status"] == "invalid_certification"


async def test_invalid_certification_garbage(world: World):
    client = await connect_as(world.alice)
    assert (await client.command("realm_create", role_certificate=b"\x00" * 100))["status"] == "invalid_certification"


async def test_bad_timestamp(world: World):
    client = await connect_as(world.alice)
    old = certs.now() - timedelta(minutes=10)
    reply = await client.command("realm_create", role_certificate=role_certificate(world.alice, timestamp=old))
    assert reply["status"] == "bad_timestamp"
    assert reply["client_timestamp"] == old and reply["reason"] is None


@pytest.mark.parametrize("change", [{"user_id": "bob"}, {"role": "MANAGER"}, {"role": None}])
async def test_invalid_data(world: World, change):
    client = await connect_as(world.alice)
    reply = await client.command("realm_create", role_certificate=role_certificate(world.alice, **change))
    assert reply["status"] == "invalid_data"


async def test_already_exists(world: World):
    client = await connect_as(world.alice)
    realm_id = await create_realm(client, world.alice)
    reply = await client.command("realm_create", role_certificate=role_certificate(world.alice, realm_id=realm_id))
    assert reply == {"status": "already_exists"}
