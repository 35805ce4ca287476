"""`vlob_maintenance_get_reencryption_batch` (docs/protocol.md#reencryption-batches): one test per reply status."""
from __future__ import annotations

import uuid

import pytest

from tests.conftest import World, bootstrap_organization, connect_as, create_realm
from tests.realms.helpers import delete_realm, grant
from tests.vlobs.helpers import OK, member, new_vlob, start_reencryption, update_vlob

pytestmark = pytest.mark.django_db(transaction=True)


async def get_batch(client, realm_id, encryption_revision=2, size=100):
    return await client.command(
        "vlob_maintenance_get_reencryption_batch", realm_id=realm_id, encryption_revision=encryption_revision, size=size
    )


async def save_batch(client, realm_id, batch, encryption_revision=2):
    return await client.command(
        "vlob_maintenance_save_reencryption_batch", realm_id=realm_id, encryption_revision=encryption_revision,
        batch=batch,
    )


def entries(reply) -> set[tuple[uuid.UUID, int, bytes]]:
    return {(entry["vlob_id"], entry["version"], entry["blob"]) for entry in reply["batch"]}


@pytest.fixture
async def two_vlobs(alice_ws, realm_id) -> tuple[uuid.UUID, uuid.UUID]:
    """Vlob a (versions 1, 2) and vlob b (version 1) in revision 1, then re-encryption to revision 2 started."""
    a = await new_vlob(alice_ws, realm_id, blob=b"<a1>")
    assert await update_vlob(alice_ws, a, 2, blob=b"<a2>") == OK
    b = await new_vlob(alice_ws, realm_id, blob=b"<b1>")
    await start_reencryption(alice_ws, realm_id, 2, ["alice"])
    return a, b


async def test_ok(world: World, alice_ws, realm_id, two_vlobs):
    a, b = two_vlobs
    reply = await get_batch(alice_ws, realm_id)
    assert reply["status"] == "ok" and list(reply) == ["status", "batch"]
    assert entries(reply) == {(a, 1, b"<a1>"), (a, 2, b"<a2>"), (b, 1, b"<b1>")}
    assert all(list(entry) == ["vlob_id", "version", "blob"] for entry in reply["batch"])


async def test_ok_size_limits_the_batch(world: World, alice_ws, realm_id, two_vlobs):
    assert len((await get_batch(alice_ws, realm_id, size=2))["batch"]) == 2
    assert await get_batch(alice_ws, realm_id, size=0) == {"status": "ok", "batch": []}
    assert len((await get_batch(alice_ws, realm_id, size=2**64 - 1))["batch"]) == 3


async def test_ok_saved_versions_are_not_given_again(world: World, alice_ws, realm_id, two_vlobs):
    a, b = two_vlobs
    assert (await save_batch(alice_ws, realm_id, [{"vlob_id": a, "version": 2, "blob": b"<A2>"}]))["done"] == 1
    assert entries(await get_batch(alice_ws, realm_id)) == {(a, 1, b"<a1>"), (b, 1, b"<b1>")}
    rest = [{"vlob_id": a, "version": 1, "blob": b"x"}, {"vlob_id": b, "version": 1, "blob": b"y"}]
    await save_batch(alice_ws, realm_id, rest)
    assert await get_batch(alice_ws, realm_id) == {"status": "ok", "batch": []}


async def test_ok_only_this_realm(world: World, alice_ws, realm_id, two_vlobs):
    other_realm_id = await create_realm(alice_ws, world.alice)
    await new_vlob(alice_ws, other_realm_id)
    assert len((await get_batch(alice_ws, realm_id))["batch"]) == 3


async def test_ok_empty_realm(world: World, alice_ws, realm_id):
    await start_reencryption(alice_ws, realm_id, 2, ["alice"])
    assert await get_batch(alice_ws, realm_id) == {"status": "ok", "batch": []}


async def test_not_found(world: World, alice_ws):
    assert await get_batch(alice_ws, uuid.uuid4()) == {"status": "not_found", "reason": None}


async def test_not_found_realm_of_another_organization(world: World, alice_ws, realm_id, two_vlobs):
    other = await bootstrap_organization("OtherOrg")
    other_ws = await connect_as(other.alice)
    # Same realm id in the other organization: it must not reach this organization's realm.
    await create_realm(other_ws, other.alice, realm_id=realm_id)
    assert await get_batch(other_ws, realm_id) == {"status": "not_in_maintenance", "reason": None}
    assert await get_batch(other_ws, uuid.uuid4()) == {"status": "not_found", "reason": None}


@pytest.mark.parametrize("role", ["MANAGER", "CONTRIBUTOR", "READER"])
async def test_not_allowed_not_owner(world: World, alice_ws, realm_id, role):
    device = await member(world, alice_ws, realm_id, "bob", role)
    await start_reencryption(alice_ws, realm_id, 2, ["alice", "bob"])
    assert await get_batch(await connect_as(device), realm_id) == {"status": "not_allowed"}


async def test_not_allowed_without_role(world: World, alice_ws, realm_id, two_vlobs, bob):
    assert await get_batch(await connect_as(bob), realm_id) == {"status": "not_allowed"}


async def test_not_allowed_former_owner(world: World, alice_ws, realm_id):
    oscar = await member(world, alice_ws, realm_id, "oscar", "OWNER")
    await grant(alice_ws, world.alice, realm_id, "oscar", "READER")
    await start_reencryption(alice_ws, realm_id, 2, ["alice", "oscar"])
    assert await get_batch(await connect_as(oscar), realm_id) == {"status": "not_allowed"}


async def test_not_in_maintenance(world: World, alice_ws, realm_id, vlob_id):
    for encryption_revision in (1, 2):
        reply = await get_batch(alice_ws, realm_id, encryption_revision=encryption_revision)
        assert reply == {"status": "not_in_maintenance", "reason": None}


@pytest.mark.parametrize("encryption_revision", [0, 1, 3, 2**64 - 1])
async def test_bad_encryption_revision(world: World, alice_ws, realm_id, two_vlobs, encryption_revision):
    reply = await get_batch(alice_ws, realm_id, encryption_revision=encryption_revision)
    assert reply == {"status": "bad_encryption_revision"}


async def test_realm_deleted(world: World, alice_ws, realm_id, two_vlobs):
    await delete_realm(world, alice_ws, world.alice, realm_id)
    assert await get_batch(alice_ws, realm_id) == {"status": "realm_deleted"}
