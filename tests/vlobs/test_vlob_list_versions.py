"""`vlob_list_versions` (docs/protocol.md#vlob-list-versions): one test per reply status."""
from __future__ import annotations

import uuid

import pytest

from realms.models import MaintenanceType, Realm
from realms.services import vlobs
from tests.conftest import World, bootstrap_organization, connect_as, create_realm
from tests.realms.helpers import delete_realm, later
from tests.testkit import certs
from tests.vlobs.helpers import (
    OK,
    finish_reencryption,
    member,
    new_vlob,
    reencrypt_all,
    start_reencryption,
    sync_reply,
    update_vlob,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def list_versions(client, vlob_id):
    return await client.command("vlob_list_versions", vlob_id=vlob_id)


async def test_ok(world: World, alice_ws, realm_id):
    carol = await member(world, alice_ws, realm_id, "carol", "CONTRIBUTOR")
    t1, t2 = later(5).replace(microsecond=1), later(6).replace(microsecond=999_999)
    vlob_id = await new_vlob(alice_ws, realm_id, timestamp=t1)
    assert await update_vlob(await connect_as(carol), vlob_id, 2, timestamp=t2) == OK
    assert await list_versions(alice_ws, vlob_id) == {
        "status": "ok",
        "versions": {1: [t1, "alice@dev1"], 2: [t2, "carol@dev1"]},
    }


async def test_ok_reader(world: World, alice_ws, realm_id, vlob_id):
    reader = await member(world, alice_ws, realm_id, "bob", "READER")
    assert list((await list_versions(await connect_as(reader), vlob_id))["versions"]) == [1]


async def test_ok_each_version_once_during_and_after_reencryption(world: World, alice_ws, realm_id, vlob_id):
    assert await update_vlob(alice_ws, vlob_id, 2) == OK
    before = await list_versions(alice_ws, vlob_id)
    await start_reencryption(alice_ws, realm_id, 2, ["alice"])
    await alice_ws.command(
        "vlob_maintenance_save_reencryption_batch", realm_id=realm_id, encryption_revision=2,
        batch=[{"vlob_id": vlob_id, "version": 1, "blob": b"<re-encrypted>"}],
    )
    assert await list_versions(alice_ws, vlob_id) == before
    await reencrypt_all(alice_ws, realm_id, 2)
    assert await finish_reencryption(alice_ws, realm_id, 2) == OK
    assert await list_versions(alice_ws, vlob_id) == before


async def test_not_found(world: World, alice_ws):
    assert await list_versions(alice_ws, uuid.uuid4()) == {"status": "not_found", "reason": None}


async def test_not_found_vlob_of_another_organization(world: World):
    other = await bootstrap_organization("OtherOrg")
    other_ws = await connect_as(other.alice)
    other_vlob_id = await new_vlob(other_ws, await create_realm(other_ws, other.alice))
    assert await list_versions(await connect_as(world.alice), other_vlob_id) == {"status": "not_found", "reason": None}


async def test_not_allowed(world: World, realm_id, vlob_id, bob):
    assert await list_versions(await connect_as(bob), vlob_id) == {"status": "not_allowed"}


async def test_in_maintenance(world: World, alice_ws, realm_id, vlob_id):
    await Realm.objects.filter(realm_id=realm_id).aupdate(
        maintenance_type=MaintenanceType.GARBAGE_COLLECTION, maintenance_started_on=certs.now()
    )
    assert await list_versions(alice_ws, vlob_id) == {"status": "in_maintenance"}


async def test_realm_deleted(world: World, alice_ws, realm_id, vlob_id):
    await delete_realm(world, alice_ws, world.alice, realm_id)
    assert await list_versions(alice_ws, vlob_id) == {"status": "realm_deleted"}


def test_query_budget(sync_realm, django_assert_max_num_queries):
    session = sync_realm.session
    vlob_id = uuid.uuid4()
    create = sync_reply(vlobs.vlob_create,
        session=session, realm_id=sync_realm.realm_id, encryption_revision=1, vlob_id=vlob_id, timestamp=certs.now(),
        blob=b"<v1>", sequester_blob=None,
    )
    assert create == OK
    # realm by vlob, archiving, role, versions with authors
    with django_assert_max_num_queries(4):
        reply = sync_reply(vlobs.vlob_list_versions, session=session, vlob_id=vlob_id)
    assert list(reply["versions"]) == [1]
