"""`realm_finish_reencryption_maintenance` (docs/protocol.md#realm-finish-reencryption-maintenance): one test per reply
status."""
from __future__ import annotations

import uuid

import pytest

from realms.models import Realm
from tests.conftest import World, add_device, connect_as
from tests.realms.helpers import delete_realm, events_of, grant, store_vlob_atom, subscribed_each
from tests.testkit import certs

pytestmark = pytest.mark.django_db(transaction=True)


async def start(client, realm_id, participants=("alice",)):
    reply = await client.command(
        "realm_start_reencryption_maintenance", realm_id=realm_id, encryption_revision=2, timestamp=certs.now(),
        per_participant_message={user_id: b"key" for user_id in participants},
    )
    assert reply == {"status": "ok"}


async def finish(client, realm_id, encryption_revision=2):
    return await client.command(
        "realm_finish_reencryption_maintenance", realm_id=realm_id, encryption_revision=encryption_revision
    )


async def test_ok(world: World, alice_ws, realm_id):
    vlob_a = await store_vlob_atom(realm_id, world.alice, version=1)
    await store_vlob_atom(realm_id, world.alice, vlob_id=vlob_a, version=2)
    vlob_b = await store_vlob_atom(realm_id, world.alice, version=1)
    await start(alice_ws, realm_id)
    for vlob_id, version in ((vlob_a, 1), (vlob_a, 2), (vlob_b, 1)):
        await store_vlob_atom(realm_id, world.alice, vlob_id=vlob_id, version=version, encryption_revision=2)
    assert await finish(alice_ws, realm_id) == {"status": "ok"}
    realm = await Realm.objects.aget(realm_id=realm_id)
    assert (realm.maintenance_type, realm.maintenance_started_on, realm.maintenance_started_by_id) == (None, None, None)
    assert realm.encryption_revision == 2
    assert (await alice_ws.command("realm_status", realm_id=realm_id))["in_maintenance"] is False


async def test_ok_empty_realm(world: World, alice_ws, realm_id):
    await start(alice_ws, realm_id)
    assert await finish(alice_ws, realm_id) == {"status": "ok"}


async def test_ok_emits_maintenance_finished_to_members_except_the_author_device(world: World, alice_ws, realm_id, bob):
    alice2 = await add_device(world.alice, "dev2")
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    await start(alice_ws, realm_id, ["alice", "bob"])
    listeners = await subscribed_each(alice1=world.alice, alice2=alice2, bob=bob)
    assert await finish(alice_ws, realm_id) == {"status": "ok"}
    finished = {"status": "ok", "event": "realm.maintenance_finished", "realm_id": realm_id, "encryption_revision": 2}
    assert await events_of(listeners["bob"]) == [finished]
    assert await events_of(listeners["alice2"]) == [finished]
    assert await events_of(listeners["alice1"]) == []


async def test_maintenance_error(world: World, alice_ws, realm_id):
    vlob_id = await store_vlob_atom(realm_id, world.alice, version=1)
    await store_vlob_atom(realm_id, world.alice, vlob_id=vlob_id, version=2)
    await start(alice_ws, realm_id)
    await store_vlob_atom(realm_id, world.alice, vlob_id=vlob_id, version=1, encryption_revision=2)
    # Version 2 is not re-encrypted yet.
    assert await finish(alice_ws, realm_id) == {"status": "maintenance_error", "reason": None}
    assert (await Realm.objects.aget(realm_id=realm_id)).maintenance_type == "REENCRYPTION"
    await store_vlob_atom(realm_id, world.alice, vlob_id=vlob_id, version=2, encryption_revision=2)
    assert await finish(alice_ws, realm_id) == {"status": "ok"}


async def test_not_in_maintenance(world: World, alice_ws, realm_id):
    assert await finish(alice_ws, realm_id, encryption_revision=1) == {"status": "not_in_maintenance", "reason": None}
    # Checked before the revision.
    assert await finish(alice_ws, realm_id, encryption_revision=2) == {"status": "not_in_maintenance", "reason": None}


@pytest.mark.parametrize("revision", [1, 3])
async def test_bad_encryption_revision(world: World, alice_ws, realm_id, revision):
    await start(alice_ws, realm_id)
    assert await finish(alice_ws, realm_id, encryption_revision=revision) == {"status": "bad_encryption_revision"}


@pytest.mark.parametrize("role", ["MANAGER", "CONTRIBUTOR", "READER", None])
async def test_not_allowed(world: World, alice_ws, realm_id, bob, role):
    participants = ["alice"]
    if role is not None:
        await grant(alice_ws, world.alice, realm_id, "bob", role)
        participants.append("bob")
    await start(alice_ws, realm_id, participants)
    bob_ws = await connect_as(bob)
    assert await finish(bob_ws, realm_id) == {"status": "not_allowed"}
    assert (await Realm.objects.aget(realm_id=realm_id)).maintenance_type == "REENCRYPTION"


async def test_not_found(world: World, alice_ws):
    assert await finish(alice_ws, uuid.uuid4()) == {"status": "not_found", "reason": None}


async def test_realm_deleted(world: World, alice_ws, realm_id):
    await start(alice_ws, realm_id)
    await delete_realm(world, alice_ws, world.alice, realm_id)
    assert await finish(alice_ws, realm_id) == {"status": "realm_deleted"}
