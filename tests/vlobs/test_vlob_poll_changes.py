"""`vlob_poll_changes` (docs/protocol.md#vlob-poll-changes): one test per reply status."""
from __future__ import annotations

import uuid

import pytest

from realms.models import MaintenanceType, Realm
from realms.services import vlobs
from tests.conftest import World, bootstrap_organization, connect_as, create_realm
from tests.realms.helpers import delete_realm, grant
from tests.testkit import certs
from tests.vlobs.helpers import OK, member, new_vlob, reencrypt_all, start_reencryption, sync_reply, update_vlob

pytestmark = pytest.mark.django_db(transaction=True)


async def poll(client, realm_id, last_checkpoint=0):
    return await client.command("vlob_poll_changes", realm_id=realm_id, last_checkpoint=last_checkpoint)


async def test_ok_realm_without_writes(world: World, alice_ws, realm_id):
    assert await poll(alice_ws, realm_id) == {"status": "ok", "changes": {}, "current_checkpoint": 0}


async def test_ok(world: World, alice_ws, realm_id):
    a = await new_vlob(alice_ws, realm_id)  # checkpoint 1
    b = await new_vlob(alice_ws, realm_id)  # 2
    assert await update_vlob(alice_ws, a, 2) == OK  # 3
    assert await update_vlob(alice_ws, a, 3) == OK  # 4
    assert await poll(alice_ws, realm_id, 0) == {"status": "ok", "changes": {a: 3, b: 1}, "current_checkpoint": 4}
    assert await poll(alice_ws, realm_id, 1) == {"status": "ok", "changes": {a: 3, b: 1}, "current_checkpoint": 4}
    assert await poll(alice_ws, realm_id, 2) == {"status": "ok", "changes": {a: 3}, "current_checkpoint": 4}
    assert await poll(alice_ws, realm_id, 4) == {"status": "ok", "changes": {}, "current_checkpoint": 4}


@pytest.mark.parametrize("last_checkpoint", [5, 2**63, 2**64 - 1])
async def test_ok_checkpoint_from_the_future(world: World, alice_ws, realm_id, vlob_id, last_checkpoint):
    reply = await poll(alice_ws, realm_id, last_checkpoint)
    assert reply == {"status": "ok", "changes": {}, "current_checkpoint": 1}


async def test_ok_only_this_realm(world: World, alice_ws, realm_id, vlob_id):
    other_realm_id = await create_realm(alice_ws, world.alice)
    other_vlob_id = await new_vlob(alice_ws, other_realm_id)
    assert (await poll(alice_ws, realm_id))["changes"] == {vlob_id: 1}
    assert (await poll(alice_ws, other_realm_id))["changes"] == {other_vlob_id: 1}


async def test_ok_reader(world: World, alice_ws, realm_id, vlob_id):
    reader = await member(world, alice_ws, realm_id, "bob", "READER")
    assert (await poll(await connect_as(reader), realm_id))["changes"] == {vlob_id: 1}


async def test_ok_during_reencryption_without_checkpoint_change(world: World, alice_ws, realm_id, vlob_id):
    await start_reencryption(alice_ws, realm_id, 2, ["alice"])
    await reencrypt_all(alice_ws, realm_id, 2)
    assert await poll(alice_ws, realm_id) == {"status": "ok", "changes": {vlob_id: 1}, "current_checkpoint": 1}


async def test_not_found(world: World, alice_ws):
    # The client creates its user manifest realm when it gets this.
    assert await poll(alice_ws, uuid.uuid4()) == {"status": "not_found", "reason": None}


async def test_not_found_realm_of_another_organization(world: World):
    other = await bootstrap_organization("OtherOrg")
    other_realm_id = await create_realm(await connect_as(other.alice), other.alice)
    assert await poll(await connect_as(world.alice), other_realm_id) == {"status": "not_found", "reason": None}


async def test_not_allowed(world: World, alice_ws, realm_id, vlob_id, bob):
    assert await poll(await connect_as(bob), realm_id) == {"status": "not_allowed"}


async def test_not_allowed_after_role_removed(world: World, alice_ws, realm_id, vlob_id):
    reader = await member(world, alice_ws, realm_id, "bob", "READER")
    await grant(alice_ws, world.alice, realm_id, "bob", None)
    assert await poll(await connect_as(reader), realm_id) == {"status": "not_allowed"}


async def test_in_maintenance(world: World, alice_ws, realm_id):
    # Only a maintenance other than re-encryption (never started in practice) refuses reads.
    await Realm.objects.filter(realm_id=realm_id).aupdate(
        maintenance_type=MaintenanceType.GARBAGE_COLLECTION, maintenance_started_on=certs.now()
    )
    assert await poll(alice_ws, realm_id) == {"status": "in_maintenance"}


async def test_realm_deleted(world: World, alice_ws, realm_id):
    await delete_realm(world, alice_ws, world.alice, realm_id)
    assert await poll(alice_ws, realm_id) == {"status": "realm_deleted"}


def test_query_budget(sync_realm, django_assert_max_num_queries):
    session = sync_realm.session
    vlob_id = uuid.uuid4()
    create = sync_reply(vlobs.vlob_create,
        session=session, realm_id=sync_realm.realm_id, encryption_revision=1, vlob_id=vlob_id, timestamp=certs.now(),
        blob=b"<v1>", sequester_blob=None,
    )
    assert create == OK
    # realm, archiving, role, changes
    with django_assert_max_num_queries(4):
        reply = sync_reply(vlobs.vlob_poll_changes, session=session, realm_id=sync_realm.realm_id, last_checkpoint=0)
    assert reply == {"status": "ok", "changes": {vlob_id: 1}, "current_checkpoint": 1}
    # Nothing new: the realm's checkpoint says so, no change log query.
    with django_assert_max_num_queries(3):
        sync_reply(vlobs.vlob_poll_changes, session=session, realm_id=sync_realm.realm_id, last_checkpoint=1)
