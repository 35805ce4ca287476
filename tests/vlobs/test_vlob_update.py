"""`vlob_update` (docs/protocol.md#vlob-update): one test per reply status, every rule tried and refused, and races."""
from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta

import pytest

from organizations.models import Organization
from protocol.db import Prepared
from protocol.types import RealmArchivingConfiguration
from realms import sql
from realms.models import Realm, RealmUserChange, RealmVlobUpdate, VlobAtom
from realms.services import vlobs
from tests.conftest import World, add_device, bootstrap_organization, connect_as, create_realm
from tests.realms.helpers import delete_realm, events_of, grant, later, subscribed, update_archiving
from tests.testkit import certs
from tests.vlobs.helpers import OK, member, new_vlob, read_vlob, start_reencryption, sync_reply, update_vlob

pytestmark = pytest.mark.django_db(transaction=True)


async def versions_of(vlob_id: uuid.UUID) -> list[int]:
    rows = VlobAtom.objects.filter(vlob_id=vlob_id).order_by("version").values_list("version", flat=True)
    return [version async for version in rows]


# ok -------------------------------------------------------------------------------------------


async def test_ok(world: World, alice_ws, realm_id, vlob_id):
    timestamp = certs.now()
    assert await update_vlob(alice_ws, vlob_id, 2, timestamp=timestamp, blob=b"<v2>") == OK
    atom = await VlobAtom.objects.select_related("author").aget(vlob_id=vlob_id, version=2)
    assert (bytes(atom.blob), atom.size, atom.encryption_revision) == (b"<v2>", 4, 1)
    assert (atom.author.device_id, atom.created_on) == (world.alice.device_id, timestamp)
    realm = await Realm.objects.aget(realm_id=realm_id)
    assert realm.checkpoint == 2
    update = await RealmVlobUpdate.objects.aget(realm=realm, index=2)
    assert (update.vlob_id, update.version) == (vlob_id, 2)
    change = await RealmUserChange.objects.aget(realm=realm, user__user_id="alice")
    assert change.last_vlob_update == timestamp


async def test_ok_by_another_writer(world: World, alice_ws, realm_id, vlob_id):
    carol = await member(world, alice_ws, realm_id, "carol", "CONTRIBUTOR")
    assert await update_vlob(await connect_as(carol), vlob_id, 2) == OK
    atom = await VlobAtom.objects.select_related("author").aget(vlob_id=vlob_id, version=2)
    assert atom.author.device_id == "carol@dev1"


async def test_ok_equal_timestamp(world: World, alice_ws, realm_id):
    timestamp = certs.now()
    vlob_id = await new_vlob(alice_ws, realm_id, timestamp=timestamp)
    assert await update_vlob(alice_ws, vlob_id, 2, timestamp=timestamp) == OK


async def test_ok_emits_vlobs_updated(world: World, alice_ws, realm_id, vlob_id, bob):
    alice2 = await add_device(world.alice, "dev2")
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    author_listener, alice2_listener, bob_listener = [await subscribed(d) for d in (world.alice, alice2, bob)]
    assert await update_vlob(alice_ws, vlob_id, 2) == OK
    expected = {
        "status": "ok", "event": "realm.vlobs_updated", "realm_id": realm_id, "checkpoint": 2, "src_id": vlob_id,
        "src_version": 2,
    }
    assert await events_of(alice2_listener) == [expected]
    assert await events_of(bob_listener) == [expected]
    assert await events_of(author_listener) == []


# not_found ------------------------------------------------------------------------------------


async def test_not_found(world: World, alice_ws, realm_id):
    assert await update_vlob(alice_ws, uuid.uuid4(), 2) == {"status": "not_found", "reason": None}


async def test_not_found_vlob_of_another_organization(world: World):
    other = await bootstrap_organization("OtherOrg")
    other_ws = await connect_as(other.alice)
    other_vlob_id = await new_vlob(other_ws, await create_realm(other_ws, other.alice))
    alice_ws = await connect_as(world.alice)
    assert await update_vlob(alice_ws, other_vlob_id, 2) == {"status": "not_found", "reason": None}
    assert await versions_of(other_vlob_id) == [1]


# not_allowed ----------------------------------------------------------------------------------


async def test_not_allowed_reader(world: World, alice_ws, realm_id, vlob_id):
    reader = await member(world, alice_ws, realm_id, "bob", "READER")
    assert await update_vlob(await connect_as(reader), vlob_id, 2) == {"status": "not_allowed"}
    assert await versions_of(vlob_id) == [1]


async def test_not_allowed_without_role(world: World, realm_id, vlob_id, bob):
    assert await update_vlob(await connect_as(bob), vlob_id, 2) == {"status": "not_allowed"}


async def test_not_allowed_after_demotion(world: World, alice_ws, realm_id, vlob_id):
    carol = await member(world, alice_ws, realm_id, "carol", "CONTRIBUTOR")
    carol_ws = await connect_as(carol)
    assert await update_vlob(carol_ws, vlob_id, 2) == OK
    await grant(alice_ws, world.alice, realm_id, "carol", "READER")
    assert await update_vlob(carol_ws, vlob_id, 3) == {"status": "not_allowed"}


# bad_version ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1, 3, 2**31, 2**64 - 1])
async def test_bad_version(world: World, alice_ws, realm_id, vlob_id, version):
    assert await update_vlob(alice_ws, vlob_id, version) == {"status": "bad_version"}
    assert await versions_of(vlob_id) == [1]
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 1


async def test_bad_version_is_checked_before_timestamp(world: World, alice_ws, realm_id):
    first = later(5)
    vlob_id = await new_vlob(alice_ws, realm_id, timestamp=first)
    assert await update_vlob(alice_ws, vlob_id, 3, timestamp=certs.now()) == {"status": "bad_version"}


async def test_bad_version_decided_by_the_database(world: World, alice_ws, realm_id, vlob_id, monkeypatch):
    # A stale view of the last version (as a racing writer would have) must not create a duplicate.
    assert await update_vlob(alice_ws, vlob_id, 2) == OK
    stale = sql.VLOB_UPDATE_STATE.sql.replace('SELECT v."version" FROM', 'SELECT v."version" - 1 FROM')
    assert stale != sql.VLOB_UPDATE_STATE.sql
    monkeypatch.setattr(sql, "VLOB_UPDATE_STATE", Prepared("stale", stale))
    assert await update_vlob(alice_ws, vlob_id, 2, blob=b"<duplicate>") == {"status": "bad_version"}
    monkeypatch.undo()
    assert await versions_of(vlob_id) == [1, 2]
    assert (await read_vlob(alice_ws, vlob_id, version=2))["blob"] == b"<version 2>"
    # Nothing of the refused write survived: no checkpoint, no change log entry.
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 2
    assert await RealmVlobUpdate.objects.acount() == 2


# require_greater_timestamp --------------------------------------------------------------------


async def test_require_greater_timestamp_previous_version(world: World, alice_ws, realm_id):
    first = later(5)
    vlob_id = await new_vlob(alice_ws, realm_id, timestamp=first)
    reply = await update_vlob(alice_ws, vlob_id, 2, timestamp=first - timedelta(microseconds=1))
    assert reply == {"status": "require_greater_timestamp", "strictly_greater_than": first}


async def test_require_greater_timestamp_role(world: World, alice_ws, realm_id, vlob_id, bob):
    role_timestamp = later(10)
    await grant(alice_ws, world.alice, realm_id, "bob", "CONTRIBUTOR", timestamp=role_timestamp)
    reply = await update_vlob(await connect_as(bob), vlob_id, 2, timestamp=role_timestamp)
    assert reply == {"status": "require_greater_timestamp", "strictly_greater_than": role_timestamp}


# bad_timestamp --------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [timedelta(seconds=-301), timedelta(seconds=321)])
async def test_bad_timestamp(world: World, alice_ws, realm_id, vlob_id, offset):
    timestamp = certs.now() - offset
    reply = await update_vlob(alice_ws, vlob_id, 2, timestamp=timestamp)
    assert reply.pop("backend_timestamp") - certs.now() < timedelta(seconds=5)
    assert reply == {
        "status": "bad_timestamp", "reason": None, "ballpark_client_early_offset": 300.0,
        "ballpark_client_late_offset": 320.0, "client_timestamp": timestamp,
    }


# bad_encryption_revision / in_maintenance -----------------------------------------------------


@pytest.mark.parametrize("encryption_revision", [0, 2])
async def test_bad_encryption_revision(world: World, alice_ws, realm_id, vlob_id, encryption_revision):
    reply = await update_vlob(alice_ws, vlob_id, 2, encryption_revision=encryption_revision)
    assert reply == {"status": "bad_encryption_revision"}


@pytest.mark.parametrize("encryption_revision", [1, 2])
async def test_in_maintenance(world: World, alice_ws, realm_id, vlob_id, encryption_revision):
    await start_reencryption(alice_ws, realm_id, 2, ["alice"])
    reply = await update_vlob(alice_ws, vlob_id, 2, encryption_revision=encryption_revision)
    assert reply == {"status": "in_maintenance"}


# sequester ------------------------------------------------------------------------------------


async def test_not_a_sequestered_organization(world: World, alice_ws, realm_id, vlob_id):
    reply = await update_vlob(alice_ws, vlob_id, 2, sequester_blob={uuid.uuid4(): b"<sequestered>"})
    assert reply == {"status": "not_a_sequestered_organization"}


async def test_sequester_inconsistency(world: World, alice_ws, realm_id, vlob_id):
    await Organization.objects.filter(organization_id=world.organization_id).aupdate(
        sequester_authority_certificate=b"<authority>", sequester_authority_verify_key_der=b"<der>"
    )
    reply = await update_vlob(alice_ws, vlob_id, 2, sequester_blob={uuid.uuid4(): b"<sequestered>"})
    assert reply == {
        "status": "sequester_inconsistency",
        "sequester_authority_certificate": b"<authority>",
        "sequester_services_certificates": [],
    }
    assert await update_vlob(alice_ws, vlob_id, 2, sequester_blob=None) == OK


# realm_archived / realm_deleted ---------------------------------------------------------------


async def test_realm_archived(world: World, alice_ws, realm_id, vlob_id):
    assert (await update_archiving(alice_ws, world.alice, realm_id, RealmArchivingConfiguration.archived())) == OK
    assert await update_vlob(alice_ws, vlob_id, 2) == {"status": "realm_archived"}


async def test_realm_deleted(world: World, alice_ws, realm_id, vlob_id):
    await delete_realm(world, alice_ws, world.alice, realm_id)
    assert await update_vlob(alice_ws, vlob_id, 2) == {"status": "realm_deleted"}


# races ----------------------------------------------------------------------------------------

WRITERS = 10


async def test_concurrent_writers_of_one_version_exactly_one_wins(
    world: World, alice_ws, realm_id, vlob_id, concurrent_writers
):
    clients = [await connect_as(world.alice) for _ in range(WRITERS)]
    replies = await asyncio.gather(
        *(update_vlob(client, vlob_id, 2, blob=f"<writer {n}>".encode()) for n, client in enumerate(clients))
    )
    assert Counter(reply["status"] for reply in replies) == {"ok": 1, "bad_version": WRITERS - 1}
    winner = next(n for n, reply in enumerate(replies) if reply == OK)
    assert (await read_vlob(alice_ws, vlob_id))["blob"] == f"<writer {winner}>".encode()
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 2


async def test_concurrent_writers_keep_versions_and_checkpoints_dense(
    world: World, alice_ws, realm_id, vlob_id, concurrent_writers
):
    rounds = 3

    async def writer(n: int) -> tuple[int, int]:
        client = await connect_as(world.alice)
        won = lost = 0
        for _ in range(rounds):
            # Each writer also creates vlobs in the same realm: their checkpoints interleave.
            await new_vlob(client, realm_id)
            latest = (await read_vlob(client, vlob_id))["version"]
            reply = await update_vlob(client, vlob_id, latest + 1, blob=f"<writer {n}>".encode())
            assert reply["status"] in ("ok", "bad_version"), reply
            won, lost = (won + 1, lost) if reply == OK else (won, lost + 1)
        return won, lost

    results = await asyncio.gather(*(writer(n) for n in range(WRITERS)))
    won = sum(w for w, _ in results)
    assert won >= rounds  # at least one writer wins each round
    assert await versions_of(vlob_id) == list(range(1, won + 2))
    realm = await Realm.objects.aget(realm_id=realm_id)
    writes = 1 + WRITERS * rounds + won
    assert realm.checkpoint == writes
    log = RealmVlobUpdate.objects.filter(realm=realm).order_by("index")
    indexes = [index async for index in log.values_list("index", flat=True)]
    assert indexes == list(range(1, writes + 1))
    # The change log names each version of the raced vlob exactly once.
    logged = [version async for version in log.filter(vlob_id=vlob_id).values_list("version", flat=True)]
    assert logged == list(range(1, won + 2))
    poll = await alice_ws.command("vlob_poll_changes", realm_id=realm_id, last_checkpoint=0)
    assert poll["current_checkpoint"] == writes and poll["changes"][vlob_id] == won + 1


# query budget ---------------------------------------------------------------------------------


def test_query_budget(sync_realm, django_assert_max_num_queries):
    session = sync_realm.session
    vlob_id = uuid.uuid4()
    create = sync_reply(vlobs.vlob_create,
        session=session, realm_id=sync_realm.realm_id, encryption_revision=1, vlob_id=vlob_id, timestamp=certs.now(),
        blob=b"<v1>", sequester_blob=None,
    )
    assert create == OK
    # BEGIN, lock realm (by vlob), archiving, role, last version, insert atom, bump checkpoint, change log,
    # last write, COMMIT
    with django_assert_max_num_queries(10):
        reply = sync_reply(vlobs.vlob_update,
            session=session, encryption_revision=1, vlob_id=vlob_id, timestamp=certs.now(), version=2, blob=b"<v2>",
            sequester_blob=None,
        )
    assert reply == OK
