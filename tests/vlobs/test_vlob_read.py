"""`vlob_read` (docs/protocol.md#vlob-read): one test per reply status, version selection, re-encryption reads."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from realms.models import RealmUserRole
from realms.services import vlobs
from tests.conftest import World, bootstrap_organization, connect_as, create_realm
from tests.realms.helpers import delete_realm, grant, later
from tests.testkit import certs
from tests.vlobs.helpers import (
    OK,
    finish_reencryption,
    member,
    new_vlob,
    read_vlob,
    reencrypt_all,
    start_reencryption,
    sync_reply,
    update_vlob,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def role_timestamp(realm_id: uuid.UUID, user_id: str) -> datetime:
    return (
        await RealmUserRole.objects.filter(realm__realm_id=realm_id, user__user_id=user_id)
        .order_by("-certified_on")
        .values_list("certified_on", flat=True)
        .afirst()
    )


async def three_versions(client, realm_id) -> tuple[uuid.UUID, list[datetime]]:
    """A vlob with versions 1, 2, 3 dated 1 s apart (in the future, after alice's role)."""
    timestamps = [later(10), later(11), later(12)]
    vlob_id = await new_vlob(client, realm_id, timestamp=timestamps[0], blob=b"<version 1>")
    for version, timestamp in enumerate(timestamps[1:], start=2):
        assert await update_vlob(client, vlob_id, version, timestamp=timestamp) == OK
    return vlob_id, timestamps


# ok -------------------------------------------------------------------------------------------


async def test_ok_latest(world: World, alice_ws, realm_id):
    vlob_id, timestamps = await three_versions(alice_ws, realm_id)
    assert await read_vlob(alice_ws, vlob_id) == {
        "status": "ok",
        "version": 3,
        "blob": b"<version 3>",
        "author": world.alice.device_id,
        "timestamp": timestamps[2],
        "author_last_role_granted_on": await role_timestamp(realm_id, "alice"),
    }


@pytest.mark.parametrize("version", [1, 2, 3])
async def test_ok_by_version(world: World, alice_ws, realm_id, version):
    vlob_id, timestamps = await three_versions(alice_ws, realm_id)
    reply = await read_vlob(alice_ws, vlob_id, version=version)
    assert (reply["version"], reply["blob"], reply["timestamp"]) == (
        version, f"<version {version}>".encode(), timestamps[version - 1]
    )


async def test_ok_version_wins_over_timestamp(world: World, alice_ws, realm_id):
    vlob_id, timestamps = await three_versions(alice_ws, realm_id)
    assert (await read_vlob(alice_ws, vlob_id, version=1, timestamp=timestamps[2]))["version"] == 1


@pytest.mark.parametrize(
    "at, expected",
    [(0, 1), (timedelta(microseconds=999_999), 1), (1, 2), (2, 3), (timedelta(days=1), 3)],
)
async def test_ok_by_timestamp(world: World, alice_ws, realm_id, at, expected):
    # The highest version whose timestamp is <= the given one.
    vlob_id, timestamps = await three_versions(alice_ws, realm_id)
    timestamp = timestamps[0] + at if isinstance(at, timedelta) else timestamps[at]
    assert (await read_vlob(alice_ws, vlob_id, timestamp=timestamp))["version"] == expected


@pytest.mark.parametrize("microsecond", [0, 1, 123_456, 999_999])
async def test_ok_timestamp_echoed_to_the_microsecond(world: World, alice_ws, realm_id, microsecond):
    timestamp = later(5).replace(microsecond=microsecond)
    vlob_id = await new_vlob(alice_ws, realm_id, timestamp=timestamp)
    reply = await read_vlob(alice_ws, vlob_id)
    assert reply["timestamp"] == timestamp and reply["timestamp"].microsecond == microsecond
    assert (await read_vlob(alice_ws, vlob_id, timestamp=timestamp))["version"] == 1
    just_before = timestamp - timedelta(microseconds=1)
    assert (await read_vlob(alice_ws, vlob_id, timestamp=just_before))["status"] == "bad_version"


async def test_ok_reader(world: World, alice_ws, realm_id, vlob_id):
    reader = await member(world, alice_ws, realm_id, "bob", "READER")
    assert (await read_vlob(await connect_as(reader), vlob_id))["blob"] == b"<version 1>"


async def test_ok_author_last_role_granted_on_is_the_authors_latest_role(world: World, alice_ws, realm_id):
    carol = await member(world, alice_ws, realm_id, "carol", "CONTRIBUTOR")
    carol_ws = await connect_as(carol)
    vlob_id = await new_vlob(carol_ws, realm_id)
    carol_role = await role_timestamp(realm_id, "carol")
    assert (await read_vlob(alice_ws, vlob_id))["author_last_role_granted_on"] == carol_role
    # Any later role certificate of the author counts, even a removal.
    removal = later(1)
    await grant(alice_ws, world.alice, realm_id, "carol", None, timestamp=removal)
    reply = await read_vlob(alice_ws, vlob_id)
    assert (reply["author"], reply["author_last_role_granted_on"]) == ("carol@dev1", removal)


async def test_ok_author_last_role_granted_on_is_per_realm(world: World, alice_ws, realm_id, vlob_id):
    # alice's newer role in another realm does not count.
    await create_realm(alice_ws, world.alice)
    alice_role = await role_timestamp(realm_id, "alice")
    assert (await read_vlob(alice_ws, vlob_id))["author_last_role_granted_on"] == alice_role


# not_found ------------------------------------------------------------------------------------


async def test_not_found(world: World, alice_ws, realm_id):
    assert await read_vlob(alice_ws, uuid.uuid4()) == {"status": "not_found", "reason": None}


async def test_not_found_vlob_of_another_organization(world: World):
    other = await bootstrap_organization("OtherOrg")
    other_ws = await connect_as(other.alice)
    other_vlob_id = await new_vlob(other_ws, await create_realm(other_ws, other.alice))
    alice_ws = await connect_as(world.alice)
    assert await read_vlob(alice_ws, other_vlob_id) == {"status": "not_found", "reason": None}


# not_allowed ----------------------------------------------------------------------------------


async def test_not_allowed_without_role(world: World, realm_id, vlob_id, bob):
    bob_ws = await connect_as(bob)
    assert await read_vlob(bob_ws, vlob_id) == {"status": "not_allowed"}
    # Not even a hint about versions.
    assert await read_vlob(bob_ws, vlob_id, version=99) == {"status": "not_allowed"}


async def test_not_allowed_after_role_removed(world: World, alice_ws, realm_id, vlob_id):
    reader = await member(world, alice_ws, realm_id, "bob", "READER")
    reader_ws = await connect_as(reader)
    assert (await read_vlob(reader_ws, vlob_id))["status"] == "ok"
    await grant(alice_ws, world.alice, realm_id, "bob", None)
    assert await read_vlob(reader_ws, vlob_id) == {"status": "not_allowed"}


# bad_version ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 4, 2**31, 2**64 - 1])
async def test_bad_version(world: World, alice_ws, realm_id, version):
    vlob_id, _ = await three_versions(alice_ws, realm_id)
    assert await read_vlob(alice_ws, vlob_id, version=version) == {"status": "bad_version"}


async def test_bad_version_timestamp_before_the_first_version(world: World, alice_ws, realm_id):
    vlob_id, timestamps = await three_versions(alice_ws, realm_id)
    for timestamp in (timestamps[0] - timedelta(microseconds=1), datetime(1970, 1, 1, tzinfo=UTC)):
        assert await read_vlob(alice_ws, vlob_id, timestamp=timestamp) == {"status": "bad_version"}


# bad_encryption_revision / in_maintenance / re-encryption -------------------------------------


@pytest.mark.parametrize("encryption_revision", [0, 2, 2**64 - 1])
async def test_bad_encryption_revision(world: World, alice_ws, realm_id, vlob_id, encryption_revision):
    reply = await read_vlob(alice_ws, vlob_id, encryption_revision=encryption_revision)
    assert reply == {"status": "bad_encryption_revision"}


async def test_in_maintenance_with_the_new_revision(world: World, alice_ws, realm_id, vlob_id):
    await start_reencryption(alice_ws, realm_id, 2, ["alice"])
    assert await read_vlob(alice_ws, vlob_id, encryption_revision=2) == {"status": "in_maintenance"}
    # Even once the version was re-encrypted.
    await reencrypt_all(alice_ws, realm_id, 2)
    assert await read_vlob(alice_ws, vlob_id, encryption_revision=2) == {"status": "in_maintenance"}


@pytest.mark.parametrize("encryption_revision", [0, 3])
async def test_bad_encryption_revision_during_reencryption(
    world: World, alice_ws, realm_id, vlob_id, encryption_revision
):
    await start_reencryption(alice_ws, realm_id, 2, ["alice"])
    reply = await read_vlob(alice_ws, vlob_id, encryption_revision=encryption_revision)
    assert reply == {"status": "bad_encryption_revision"}


async def test_ok_reencryption_reads_the_previous_revision_then_the_new_one(world: World, alice_ws, realm_id, vlob_id):
    reader = await member(world, alice_ws, realm_id, "bob", "READER")
    reader_ws = await connect_as(reader)
    await start_reencryption(alice_ws, realm_id, 2, ["alice", "bob"])
    await reencrypt_all(alice_ws, realm_id, 2)
    during = await read_vlob(reader_ws, vlob_id, encryption_revision=1)
    assert (during["status"], during["blob"]) == ("ok", b"<version 1>")
    assert await finish_reencryption(alice_ws, realm_id, 2) == OK
    after = await read_vlob(reader_ws, vlob_id, encryption_revision=2)
    assert after["blob"] == b"R<version 1>"
    assert (after["timestamp"], after["author"]) == (during["timestamp"], during["author"])
    assert await read_vlob(reader_ws, vlob_id, encryption_revision=1) == {"status": "bad_encryption_revision"}


# realm_deleted --------------------------------------------------------------------------------


async def test_realm_deleted(world: World, alice_ws, realm_id, vlob_id):
    await delete_realm(world, alice_ws, world.alice, realm_id)
    assert await read_vlob(alice_ws, vlob_id) == {"status": "realm_deleted"}


# query budget ---------------------------------------------------------------------------------


def test_query_budget(sync_realm, django_assert_max_num_queries):
    session = sync_realm.session
    vlob_id = uuid.uuid4()
    create = sync_reply(vlobs.vlob_create,
        session=session, realm_id=sync_realm.realm_id, encryption_revision=1, vlob_id=vlob_id, timestamp=certs.now(),
        blob=b"<v1>", sequester_blob=None,
    )
    assert create == OK
    # atom with realm, author and author's latest role; archiving; role
    with django_assert_max_num_queries(3):
        reply = sync_reply(
            vlobs.vlob_read, session=session, encryption_revision=1, vlob_id=vlob_id, version=None, timestamp=None
        )
    assert reply["status"] == "ok"
