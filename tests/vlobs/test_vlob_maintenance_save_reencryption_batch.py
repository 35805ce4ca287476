"""`vlob_maintenance_save_reencryption_batch` (docs/protocol.md#reencryption-batches): one test per reply status."""
from __future__ import annotations

import uuid

import pytest

from realms.models import Realm, RealmVlobUpdate, VlobAtom
from tests.conftest import World, add_device, bootstrap_organization, connect_as, create_realm
from tests.realms.helpers import delete_realm, events_of, subscribed
from tests.vlobs.helpers import OK, finish_reencryption, member, new_vlob, read_vlob, start_reencryption, update_vlob

pytestmark = pytest.mark.django_db(transaction=True)


async def save_batch(client, realm_id, batch, encryption_revision=2):
    return await client.command(
        "vlob_maintenance_save_reencryption_batch", realm_id=realm_id, encryption_revision=encryption_revision,
        batch=batch,
    )


def entry(vlob_id: uuid.UUID, version: int, blob: bytes = b"<re-encrypted>") -> dict:
    return {"vlob_id": vlob_id, "version": version, "blob": blob}


@pytest.fixture
async def two_vlobs(world: World, alice_ws, realm_id) -> tuple[uuid.UUID, uuid.UUID]:
    """Vlob a (versions 1 by alice, 2 by carol) and b (version 1) in revision 1; re-encryption to 2 started."""
    carol = await member(world, alice_ws, realm_id, "carol", "CONTRIBUTOR")
    a = await new_vlob(alice_ws, realm_id, blob=b"<a1>")
    assert await update_vlob(await connect_as(carol), a, 2, blob=b"<a2>") == OK
    b = await new_vlob(alice_ws, realm_id, blob=b"<b1>")
    await start_reencryption(alice_ws, realm_id, 2, ["alice", "carol"])
    return a, b


async def test_ok(world: World, alice_ws, realm_id, two_vlobs):
    a, b = two_vlobs
    reply = await save_batch(alice_ws, realm_id, [entry(a, 1, b"<A1>"), entry(a, 2, b"<A2>")])
    assert reply == {"status": "ok", "total": 3, "done": 2}
    # The copies keep author and timestamp of the originals, with the new blob and revision.
    for version in (1, 2):
        original = await VlobAtom.objects.aget(vlob_id=a, version=version, encryption_revision=1)
        copy = await VlobAtom.objects.aget(vlob_id=a, version=version, encryption_revision=2)
        kept = (copy.author_id, copy.created_on, copy.realm_id)
        assert kept == (original.author_id, original.created_on, original.realm_id)
        assert (bytes(copy.blob), copy.size) == (f"<A{version}>".encode(), 4)
    assert await save_batch(alice_ws, realm_id, [entry(b, 1)]) == {"status": "ok", "total": 3, "done": 3}


async def test_ok_empty_batch_reports_progress(world: World, alice_ws, realm_id, two_vlobs):
    assert await save_batch(alice_ws, realm_id, []) == {"status": "ok", "total": 3, "done": 0}


async def test_ok_already_saved_versions_are_kept(world: World, alice_ws, realm_id, two_vlobs):
    a, _ = two_vlobs
    await save_batch(alice_ws, realm_id, [entry(a, 1, b"<first>")])
    reply = await save_batch(alice_ws, realm_id, [entry(a, 1, b"<second>"), entry(a, 1, b"<third>")])
    assert reply == {"status": "ok", "total": 3, "done": 1}
    copy = await VlobAtom.objects.aget(vlob_id=a, version=1, encryption_revision=2)
    assert bytes(copy.blob) == b"<first>"


async def test_ok_repeated_entry_in_one_batch_keeps_the_first(world: World, alice_ws, realm_id, two_vlobs):
    a, _ = two_vlobs
    assert (await save_batch(alice_ws, realm_id, [entry(a, 1, b"<first>"), entry(a, 1, b"<second>")]))["done"] == 1
    assert bytes((await VlobAtom.objects.aget(vlob_id=a, version=1, encryption_revision=2)).blob) == b"<first>"


async def test_ok_unknown_entries_are_ignored(world: World, alice_ws, realm_id, two_vlobs):
    a, _ = two_vlobs
    other_realm_id = await create_realm(alice_ws, world.alice)
    foreign = await new_vlob(alice_ws, other_realm_id)
    other = await bootstrap_organization("OtherOrg")
    other_ws = await connect_as(other.alice)
    other_org_vlob = await new_vlob(other_ws, await create_realm(other_ws, other.alice))
    unknown = [(uuid.uuid4(), 1), (a, 3), (a, 0), (a, 2**64 - 1), (foreign, 1), (other_org_vlob, 1)]
    batch = [entry(vlob_id, version) for vlob_id, version in unknown]
    assert await save_batch(alice_ws, realm_id, batch) == {"status": "ok", "total": 3, "done": 0}
    # Nothing leaked into the other realms either.
    assert not await VlobAtom.objects.filter(encryption_revision=2).aexists()


async def test_ok_no_checkpoint_and_no_vlob_event(world: World, alice_ws, realm_id, two_vlobs):
    a, b = two_vlobs
    alice2 = await add_device(world.alice, "dev2")
    listener = await subscribed(alice2)
    await save_batch(alice_ws, realm_id, [entry(a, 1), entry(a, 2), entry(b, 1)])
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 3
    assert await RealmVlobUpdate.objects.acount() == 3
    assert await events_of(listener) == []


async def test_ok_full_reencryption_then_finish(world: World, alice_ws, realm_id, two_vlobs):
    a, b = two_vlobs
    assert await finish_reencryption(alice_ws, realm_id, 2) == {"status": "maintenance_error", "reason": None}
    await save_batch(alice_ws, realm_id, [entry(a, 1, b"<A1>"), entry(a, 2, b"<A2>"), entry(b, 1, b"<B1>")])
    assert await finish_reencryption(alice_ws, realm_id, 2) == OK
    assert (await read_vlob(alice_ws, a, encryption_revision=2))["blob"] == b"<A2>"
    # Writes continue in the new revision, with the next version and checkpoint.
    assert await update_vlob(alice_ws, a, 3, encryption_revision=2) == OK
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 4


async def test_not_found(world: World, alice_ws):
    assert await save_batch(alice_ws, uuid.uuid4(), []) == {"status": "not_found", "reason": None}


@pytest.mark.parametrize("role", ["MANAGER", "CONTRIBUTOR", "READER"])
async def test_not_allowed_not_owner(world: World, alice_ws, realm_id, role):
    device = await member(world, alice_ws, realm_id, "bob", role)
    vlob_id = await new_vlob(alice_ws, realm_id)
    await start_reencryption(alice_ws, realm_id, 2, ["alice", "bob"])
    assert await save_batch(await connect_as(device), realm_id, [entry(vlob_id, 1)]) == {"status": "not_allowed"}
    assert not await VlobAtom.objects.filter(encryption_revision=2).aexists()


async def test_not_allowed_without_role(world: World, realm_id, two_vlobs, bob):
    a, _ = two_vlobs
    assert await save_batch(await connect_as(bob), realm_id, [entry(a, 1)]) == {"status": "not_allowed"}


async def test_not_in_maintenance(world: World, alice_ws, realm_id, vlob_id):
    for encryption_revision in (1, 2):
        reply = await save_batch(alice_ws, realm_id, [entry(vlob_id, 1)], encryption_revision=encryption_revision)
        assert reply == {"status": "not_in_maintenance", "reason": None}
    assert await VlobAtom.objects.acount() == 1


@pytest.mark.parametrize("encryption_revision", [0, 1, 3])
async def test_bad_encryption_revision(world: World, alice_ws, realm_id, two_vlobs, encryption_revision):
    a, _ = two_vlobs
    reply = await save_batch(alice_ws, realm_id, [entry(a, 1)], encryption_revision=encryption_revision)
    assert reply == {"status": "bad_encryption_revision"}
    assert not await VlobAtom.objects.exclude(encryption_revision=1).aexists()


async def test_realm_deleted(world: World, alice_ws, realm_id, two_vlobs):
    await delete_realm(world, alice_ws, world.alice, realm_id)
    assert await save_batch(alice_ws, realm_id, []) == {"status": "realm_deleted"}
