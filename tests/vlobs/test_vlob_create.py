"""`vlob_create` (docs/protocol.md#vlob-create): one test per reply status, then every rule tried and refused."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from organizations.models import Organization
from protocol.db import Prepared
from protocol.types import RealmArchivingConfiguration
from realms import sql
from realms.models import Realm, RealmUserChange, RealmVlobUpdate, VlobAtom
from realms.services import vlobs
from tests.conftest import World, add_device, bootstrap_organization, connect_as, create_realm
from tests.realms.helpers import NO_EVENTS, delete_realm, events_of, grant, later, subscribed, update_archiving
from tests.testkit import certs
from tests.vlobs.helpers import OK, create_vlob, member, new_vlob, start_reencryption, sync_reply

pytestmark = pytest.mark.django_db(transaction=True)

SEQUESTER_AUTHORITY_CERTIFICATE = b"<sequester authority certificate>"


async def make_sequestered(world: World) -> None:
    await Organization.objects.filter(organization_id=world.organization_id).aupdate(
        sequester_authority_certificate=SEQUESTER_AUTHORITY_CERTIFICATE, sequester_authority_verify_key_der=b"<der>"
    )


# ok -------------------------------------------------------------------------------------------


async def test_ok(world: World, alice_ws, realm_id):
    vlob_id = uuid.uuid4()
    timestamp = certs.now()
    reply = await create_vlob(alice_ws, realm_id, vlob_id=vlob_id, timestamp=timestamp, blob=b"<blob>")
    assert reply == OK
    atom = await VlobAtom.objects.select_related("author", "realm").aget(vlob_id=vlob_id)
    assert (atom.version, atom.encryption_revision, bytes(atom.blob), atom.size) == (1, 1, b"<blob>", 6)
    assert (atom.author.device_id, atom.created_on, atom.realm.realm_id) == (world.alice.device_id, timestamp, realm_id)
    realm = await Realm.objects.aget(realm_id=realm_id)
    assert realm.checkpoint == 1
    update = await RealmVlobUpdate.objects.aget(realm=realm)
    assert (update.index, update.vlob_id, update.version) == (1, vlob_id, 1)
    change = await RealmUserChange.objects.aget(realm=realm, user__user_id="alice")
    assert change.last_vlob_update == timestamp


async def test_ok_by_every_writer_role(world: World, alice_ws, realm_id):
    for user_id, role in [("mallory", "MANAGER"), ("carol", "CONTRIBUTOR"), ("oscar", "OWNER")]:
        device = await member(world, alice_ws, realm_id, user_id, role)
        await new_vlob(await connect_as(device), realm_id)
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 3


async def test_ok_outsider_contributor(world: World, alice_ws, realm_id):
    olga = await member(world, alice_ws, realm_id, "olga", "CONTRIBUTOR", profile="OUTSIDER")
    await new_vlob(await connect_as(olga), realm_id)


async def test_ok_emits_vlobs_updated_to_members_except_author_device(world: World, alice_ws, realm_id, bob):
    alice2 = await add_device(world.alice, "dev2")
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    await member(world, alice_ws, realm_id, "carol", "CONTRIBUTOR")
    other_realm_id = await create_realm(alice_ws, world.alice)
    outsider_of_realm = await connect_as(await member(world, alice_ws, other_realm_id, "dave", "READER"))
    devices = {"alice1": world.alice, "alice2": alice2, "bob": bob}
    listeners = {name: await subscribed(device) for name, device in devices.items()}
    assert await outsider_of_realm.command("events_subscribe") == OK

    vlob_id = await new_vlob(alice_ws, realm_id)
    expected = {
        "status": "ok", "event": "realm.vlobs_updated", "realm_id": realm_id, "checkpoint": 1, "src_id": vlob_id,
        "src_version": 1,
    }
    assert await events_of(listeners["alice2"]) == [expected]
    assert await events_of(listeners["bob"]) == [expected]
    # Any connection of the author device is skipped; non-members hear nothing.
    assert await events_of(listeners["alice1"]) == []
    assert await events_of(outsider_of_realm) == []


async def test_ok_no_event_when_refused(world: World, alice_ws, realm_id, vlob_id):
    alice2 = await add_device(world.alice, "dev2")
    listener = await subscribed(alice2)
    assert (await create_vlob(alice_ws, realm_id, vlob_id=vlob_id))["status"] == "already_exists"
    assert await listener.command("events_listen", wait=False) == NO_EVENTS


async def test_ok_last_vlob_update_keeps_the_greatest(world: World, alice_ws, realm_id):
    late, early = later(20), later(10)
    await new_vlob(alice_ws, realm_id, timestamp=late)
    await new_vlob(alice_ws, realm_id, timestamp=early)
    change = await RealmUserChange.objects.aget(realm__realm_id=realm_id, user__user_id="alice")
    assert change.last_vlob_update == late


async def test_ok_same_vlob_id_in_another_organization(world: World, alice_ws, realm_id, vlob_id):
    other = await bootstrap_organization("OtherOrg")
    other_ws = await connect_as(other.alice)
    other_realm_id = await create_realm(other_ws, other.alice, realm_id=realm_id)
    assert await create_vlob(other_ws, other_realm_id, vlob_id=vlob_id) == OK


async def test_ok_vlob_id_equal_to_realm_id(world: World, alice_ws, realm_id):
    # The client's user manifest and workspace manifests use their realm id as vlob id.
    await new_vlob(alice_ws, realm_id, vlob_id=realm_id)


# already_exists -------------------------------------------------------------------------------


async def test_already_exists(world: World, alice_ws, realm_id, vlob_id):
    reply = await create_vlob(alice_ws, realm_id, vlob_id=vlob_id, blob=b"<other>")
    assert reply == {"status": "already_exists", "reason": None}
    assert await VlobAtom.objects.filter(vlob_id=vlob_id).acount() == 1
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 1


async def test_already_exists_in_another_realm(world: World, alice_ws, realm_id, vlob_id):
    other_realm_id = await create_realm(alice_ws, world.alice)
    assert await create_vlob(alice_ws, other_realm_id, vlob_id=vlob_id) == {"status": "already_exists", "reason": None}


async def test_already_exists_in_a_realm_of_another_revision(world: World, alice_ws, realm_id, vlob_id):
    # The unique constraint includes the revision: only the explicit check sees this one.
    other_realm_id = await create_realm(alice_ws, world.alice)
    await start_reencryption(alice_ws, other_realm_id, 2, ["alice"])
    await Realm.objects.filter(realm_id=other_realm_id).aupdate(maintenance_type=None, maintenance_started_on=None)
    reply = await create_vlob(alice_ws, other_realm_id, vlob_id=vlob_id, encryption_revision=2)
    assert reply == {"status": "already_exists", "reason": None}


async def test_already_exists_decided_by_the_database(world: World, alice_ws, realm_id, vlob_id, monkeypatch):
    # A concurrent creator in another realm (another lock) can pass the existence check at the same
    # time: with that check blinded, the unique constraint still refuses.
    blinded = sql.VLOB_CREATE_STATE.sql.replace("EXISTS(", "1 = 0 AND EXISTS(")
    assert blinded != sql.VLOB_CREATE_STATE.sql
    monkeypatch.setattr(sql, "VLOB_CREATE_STATE", Prepared("blinded", blinded))
    assert await create_vlob(alice_ws, realm_id, vlob_id=vlob_id) == {"status": "already_exists", "reason": None}
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 1
    assert await RealmVlobUpdate.objects.acount() == 1


# not_allowed ----------------------------------------------------------------------------------


async def test_not_allowed_unknown_realm(world: World, alice_ws):
    assert await create_vlob(alice_ws, uuid.uuid4()) == {"status": "not_allowed"}


async def test_not_allowed_realm_of_another_organization(world: World):
    other = await bootstrap_organization("OtherOrg")
    other_realm_id = await create_realm(await connect_as(other.alice), other.alice)
    alice_ws = await connect_as(world.alice)
    assert await create_vlob(alice_ws, other_realm_id) == {"status": "not_allowed"}
    assert not await VlobAtom.objects.aexists()


async def test_not_allowed_reader(world: World, alice_ws, realm_id):
    reader = await member(world, alice_ws, realm_id, "bob", "READER")
    assert await create_vlob(await connect_as(reader), realm_id) == {"status": "not_allowed"}


async def test_not_allowed_without_role(world: World, realm_id, bob):
    assert await create_vlob(await connect_as(bob), realm_id) == {"status": "not_allowed"}


async def test_not_allowed_after_role_removed(world: World, alice_ws, realm_id):
    carol = await member(world, alice_ws, realm_id, "carol", "CONTRIBUTOR")
    carol_ws = await connect_as(carol)
    await new_vlob(carol_ws, realm_id)
    await grant(alice_ws, world.alice, realm_id, "carol", None)
    assert await create_vlob(carol_ws, realm_id) == {"status": "not_allowed"}


# bad_encryption_revision / in_maintenance -----------------------------------------------------


@pytest.mark.parametrize("encryption_revision", [0, 2, 2**64 - 1])
async def test_bad_encryption_revision(world: World, alice_ws, realm_id, encryption_revision):
    reply = await create_vlob(alice_ws, realm_id, encryption_revision=encryption_revision)
    assert reply == {"status": "bad_encryption_revision"}


@pytest.mark.parametrize("encryption_revision", [1, 2])
async def test_in_maintenance(world: World, alice_ws, realm_id, encryption_revision):
    await start_reencryption(alice_ws, realm_id, 2, ["alice"])
    reply = await create_vlob(alice_ws, realm_id, encryption_revision=encryption_revision)
    assert reply == {"status": "in_maintenance"}


# require_greater_timestamp / bad_timestamp ----------------------------------------------------


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(seconds=5)])
async def test_require_greater_timestamp(world: World, alice_ws, realm_id, bob, offset):
    # Bob's role certificate is dated later than (or as) his write: the write must come after.
    role_timestamp = later(10)
    await grant(alice_ws, world.alice, realm_id, "bob", "CONTRIBUTOR", timestamp=role_timestamp)
    reply = await create_vlob(await connect_as(bob), realm_id, timestamp=role_timestamp - offset)
    assert reply == {"status": "require_greater_timestamp", "strictly_greater_than": role_timestamp}


@pytest.mark.parametrize("offset", [timedelta(seconds=-301), timedelta(seconds=321)])
async def test_bad_timestamp(world: World, alice_ws, realm_id, offset):
    timestamp = certs.now() - offset
    reply = await create_vlob(alice_ws, realm_id, timestamp=timestamp)
    assert reply.pop("backend_timestamp") - certs.now() < timedelta(seconds=5)
    assert reply == {
        "status": "bad_timestamp", "reason": None, "ballpark_client_early_offset": 300.0,
        "ballpark_client_late_offset": 320.0, "client_timestamp": timestamp,
    }


async def test_bad_timestamp_comes_first(world: World, alice_ws):
    # Even for a realm that does not exist.
    reply = await create_vlob(alice_ws, uuid.uuid4(), timestamp=certs.now() - timedelta(hours=1))
    assert reply["status"] == "bad_timestamp"


# sequester ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sequester_blob", [{uuid.uuid4(): b"<sequestered>"}, {}])
async def test_not_a_sequestered_organization(world: World, alice_ws, realm_id, sequester_blob):
    reply = await create_vlob(alice_ws, realm_id, sequester_blob=sequester_blob)
    assert reply == {"status": "not_a_sequestered_organization"}
    assert not await VlobAtom.objects.aexists()


async def test_sequester_inconsistency(world: World, alice_ws, realm_id):
    await make_sequestered(world)
    reply = await create_vlob(alice_ws, realm_id, sequester_blob={uuid.uuid4(): b"<sequestered>"})
    assert reply == {
        "status": "sequester_inconsistency",
        "sequester_authority_certificate": SEQUESTER_AUTHORITY_CERTIFICATE,
        "sequester_services_certificates": [],
    }
    assert not await VlobAtom.objects.aexists()


@pytest.mark.parametrize("sequester_blob", [None, {}])
async def test_ok_sequestered_organization_without_service(world: World, alice_ws, realm_id, sequester_blob):
    await make_sequestered(world)
    assert await create_vlob(alice_ws, realm_id, sequester_blob=sequester_blob) == OK


async def test_access_is_checked_before_sequester(world: World, alice_ws):
    assert await create_vlob(alice_ws, uuid.uuid4(), sequester_blob={}) == {"status": "not_allowed"}


# realm_archived / realm_deleted ---------------------------------------------------------------


@pytest.mark.parametrize(
    "configuration",
    [RealmArchivingConfiguration.archived(), RealmArchivingConfiguration.deletion_planned(later(60 * 60 * 24 * 60))],
)
async def test_realm_archived(world: World, alice_ws, realm_id, configuration):
    assert (await update_archiving(alice_ws, world.alice, realm_id, configuration)) == OK
    assert await create_vlob(alice_ws, realm_id) == {"status": "realm_archived"}


async def test_ok_after_unarchiving(world: World, alice_ws, realm_id):
    assert (await update_archiving(alice_ws, world.alice, realm_id, RealmArchivingConfiguration.archived())) == OK
    assert (await update_archiving(alice_ws, world.alice, realm_id, RealmArchivingConfiguration.available())) == OK
    await new_vlob(alice_ws, realm_id)


async def test_realm_deleted(world: World, alice_ws, realm_id):
    await delete_realm(world, alice_ws, world.alice, realm_id)
    assert await create_vlob(alice_ws, realm_id) == {"status": "realm_deleted"}


# malformed requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [{"vlob_id": "not-a-uuid"}, {"blob": "text"}, {"sequester_blob": {"x": b"y"}}, {"encryption_revision": -1},
     {"timestamp": 1.5}],
)
async def test_bad_message(world: World, alice_ws, realm_id, change):
    request = {
        "realm_id": realm_id, "encryption_revision": 1, "vlob_id": uuid.uuid4(), "timestamp": certs.now(), "blob": b"",
        "sequester_blob": None,
    }
    reply = await alice_ws.command("vlob_create", **{**request, **change})
    assert reply["status"] == "bad_message"


# query budget ---------------------------------------------------------------------------------


def test_query_budget(sync_realm, django_assert_max_num_queries):
    def create() -> None:
        reply = sync_reply(vlobs.vlob_create,
            session=sync_realm.session, realm_id=sync_realm.realm_id, encryption_revision=1, vlob_id=uuid.uuid4(),
            timestamp=certs.now(), blob=b"<blob>", sequester_blob=None,
        )
        assert reply == OK

    create()  # the author's first write in the realm also creates its realm_user_change row
    # exists; BEGIN, lock realm, archiving, role, insert atom, bump checkpoint, change log, last write, COMMIT
    with django_assert_max_num_queries(10):
        create()
