"""`realm_update_archiving` (docs/protocol.md#realm-update-archiving): one test per reply status, every check tried and
refused."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from nacl.signing import SigningKey

from protocol.types import RealmArchivingConfiguration
from realms.models import RealmArchiving, RealmUserChange
from tests.conftest import World, add_device, connect_as
from tests.realms.helpers import (
    archiving_certificate,
    delete_realm,
    events_of,
    grant,
    later,
    set_minimum_archiving_period,
    subscribed,
    subscribed_each,
    update_archiving,
)
from tests.testkit import certs

pytestmark = pytest.mark.django_db(transaction=True)

ARCHIVED = RealmArchivingConfiguration.archived()
AVAILABLE = RealmArchivingConfiguration.available()


async def test_ok(world: World, alice_ws, realm_id):
    timestamp = certs.now()
    certificate = archiving_certificate(world.alice, realm_id=realm_id, configuration=ARCHIVED, timestamp=timestamp)
    assert await alice_ws.command("realm_update_archiving", archiving_certificate=certificate) == {"status": "ok"}
    archiving = await RealmArchiving.objects.select_related("certified_by").aget(realm__realm_id=realm_id)
    assert (archiving.configuration, archiving.deletion_date, archiving.certified_on) == ("ARCHIVED", None, timestamp)
    assert bytes(archiving.certificate) == certificate
    assert archiving.certified_by.device_id == world.alice.device_id
    change = await RealmUserChange.objects.aget(realm__realm_id=realm_id, user__user_id="alice")
    assert change.last_archiving_change == timestamp


async def test_ok_deletion_planned(world: World, alice_ws, realm_id):
    await set_minimum_archiving_period(world, 3600)
    timestamp = certs.now()
    deletion_date = timestamp + timedelta(seconds=3600)
    configuration = RealmArchivingConfiguration.deletion_planned(deletion_date)
    reply = await update_archiving(alice_ws, world.alice, realm_id, configuration, timestamp=timestamp)
    assert reply == {"status": "ok"}
    archiving = await RealmArchiving.objects.aget(realm__realm_id=realm_id)
    assert (archiving.configuration, archiving.deletion_date) == ("DELETION_PLANNED", deletion_date)
    # Planned, not deleted yet: the realm still answers.
    assert (await alice_ws.command("realm_status", realm_id=realm_id))["status"] == "ok"


async def test_ok_back_to_available(world: World, alice_ws, realm_id):
    assert await update_archiving(alice_ws, world.alice, realm_id, ARCHIVED) == {"status": "ok"}
    assert await update_archiving(alice_ws, world.alice, realm_id, AVAILABLE) == {"status": "ok"}
    assert await RealmArchiving.objects.acount() == 2


async def test_ok_emits_archiving_updated_to_members_except_the_author_device(world: World, alice_ws, realm_id, bob):
    alice2 = await add_device(world.alice, "dev2")
    outsider_of_realm = await subscribed(await add_device(bob, "dev2"))
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    listeners = await subscribed_each(alice1=world.alice, alice2=alice2, bob=bob)
    await grant(alice_ws, world.alice, realm_id, "bob", None)
    await events_of(listeners["bob"])  # bob's own role removal
    await events_of(outsider_of_realm)
    await set_minimum_archiving_period(world, 0)
    deletion_date = later(3600)
    configuration = RealmArchivingConfiguration.deletion_planned(deletion_date)
    assert await update_archiving(alice_ws, world.alice, realm_id, configuration) == {"status": "ok"}
    expected = {
        "status": "ok",
        "event": "realm.archiving_updated",
        "realm_id": realm_id,
        "configuration": {"type": "DELETION_PLANNED", "deletion_date": deletion_date},
    }
    assert await events_of(listeners["alice2"]) == [expected]
    assert await events_of(listeners["alice1"]) == []
    assert await events_of(listeners["bob"]) == []
    assert await events_of(outsider_of_realm) == []


# invalid_certification: no `reason` key in this command's replies -------------------------------


async def test_invalid_certification_other_signer(world: World, alice_ws, realm_id):
    certificate = archiving_certificate(
        world.alice, realm_id=realm_id, configuration=ARCHIVED, signing_key=SigningKey.generate()
    )
    reply = await alice_ws.command("realm_update_archiving", archiving_certificate=certificate)
    assert reply == {"status": "invalid_certification"}


async def test_invalid_certification_other_author(world: World, alice_ws, realm_id, bob):
    certificate = archiving_certificate(world.alice, realm_id=realm_id, configuration=ARCHIVED, author_id=bob.device_id)
    reply = await alice_ws.command("realm_update_archiving", archiving_certificate=certificate)
    assert reply == {"status": "invalid_certification"}


async def test_invalid_certification_garbage_or_other_type(world: World, alice_ws, realm_id):
    role = certs.realm_role_certificate(
        world.alice.signing_key, author=world.alice.device_id, timestamp=certs.now(), realm_id=realm_id,
        user_id="alice", role="OWNER",
    )
    for certificate in (role, b"\x01" * 80):
        reply = await alice_ws.command("realm_update_archiving", archiving_certificate=certificate)
        assert reply == {"status": "invalid_certification"}
    assert not await RealmArchiving.objects.aexists()


# bad_timestamp: no `reason` key -----------------------------------------------------------------


@pytest.mark.parametrize("shift", [timedelta(seconds=-321), timedelta(seconds=301)])
async def test_bad_timestamp(world: World, alice_ws, realm_id, shift):
    timestamp = certs.now() + shift
    reply = await update_archiving(alice_ws, world.alice, realm_id, ARCHIVED, timestamp=timestamp)
    assert reply.keys() == {
        "status", "ballpark_client_early_offset", "ballpark_client_late_offset", "backend_timestamp", "client_timestamp"
    }
    assert reply["status"] == "bad_timestamp" and reply["client_timestamp"] == timestamp
    assert (reply["ballpark_client_early_offset"], reply["ballpark_client_late_offset"]) == (300.0, 320.0)


async def test_bad_timestamp_checked_before_the_realm(world: World, alice_ws):
    old = certs.now() - timedelta(minutes=10)
    reply = await update_archiving(alice_ws, world.alice, uuid.uuid4(), ARCHIVED, timestamp=old)
    assert reply["status"] == "bad_timestamp"


# not_found / realm_deleted ----------------------------------------------------------------------


async def test_not_found(world: World, alice_ws):
    assert await update_archiving(alice_ws, world.alice, uuid.uuid4(), ARCHIVED) == {"status": "not_found"}


async def test_realm_deleted(world: World, alice_ws, realm_id):
    await delete_realm(world, alice_ws, world.alice, realm_id)
    assert await update_archiving(alice_ws, world.alice, realm_id, AVAILABLE) == {"status": "realm_deleted"}


# not_allowed ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["MANAGER", "CONTRIBUTOR", "READER", None])
async def test_not_allowed(world: World, alice_ws, realm_id, bob, role):
    if role is not None:
        await grant(alice_ws, world.alice, realm_id, "bob", role)
    bob_ws = await connect_as(bob)
    assert await update_archiving(bob_ws, bob, realm_id, ARCHIVED) == {"status": "not_allowed"}


async def test_not_allowed_former_owner(world: World, alice_ws, realm_id, bob):
    await grant(alice_ws, world.alice, realm_id, "bob", "OWNER")
    await grant(alice_ws, world.alice, realm_id, "bob", None)
    bob_ws = await connect_as(bob)
    assert await update_archiving(bob_ws, bob, realm_id, ARCHIVED) == {"status": "not_allowed"}


# archiving_period_too_short ---------------------------------------------------------------------


async def test_archiving_period_too_short(world: World, alice_ws, realm_id):
    await set_minimum_archiving_period(world, 3600)
    timestamp = certs.now()
    # Measured from the certificate timestamp: one microsecond short is refused.
    too_early = RealmArchivingConfiguration.deletion_planned(timestamp + timedelta(seconds=3600, microseconds=-1))
    reply = await update_archiving(alice_ws, world.alice, realm_id, too_early, timestamp=timestamp)
    assert reply == {"status": "archiving_period_too_short"}
    in_the_past = RealmArchivingConfiguration.deletion_planned(timestamp - timedelta(days=1))
    reply = await update_archiving(alice_ws, world.alice, realm_id, in_the_past, timestamp=timestamp)
    assert reply == {"status": "archiving_period_too_short"}
    assert not await RealmArchiving.objects.aexists()


async def test_archiving_period_default_is_thirty_days(world: World, alice_ws, realm_id):
    timestamp = certs.now()
    configuration = RealmArchivingConfiguration.deletion_planned(timestamp + timedelta(days=29))
    reply = await update_archiving(alice_ws, world.alice, realm_id, configuration, timestamp=timestamp)
    assert reply == {"status": "archiving_period_too_short"}
    configuration = RealmArchivingConfiguration.deletion_planned(timestamp + timedelta(days=30))
    reply = await update_archiving(alice_ws, world.alice, realm_id, configuration, timestamp=timestamp)
    assert reply == {"status": "ok"}


async def test_archiving_period_checked_before_causality(world: World, alice_ws, realm_id):
    timestamp = certs.now() - timedelta(seconds=60)  # older than alice's OWNER certificate
    configuration = RealmArchivingConfiguration.deletion_planned(timestamp)
    reply = await update_archiving(alice_ws, world.alice, realm_id, configuration, timestamp=timestamp)
    assert reply == {"status": "archiving_period_too_short"}


# require_greater_timestamp ----------------------------------------------------------------------


async def test_require_greater_timestamp_author_last_role(world: World, alice_ws, realm_id, bob):
    granted_on = later(10)
    await grant(alice_ws, world.alice, realm_id, "bob", "OWNER", timestamp=granted_on)
    bob_ws = await connect_as(bob)
    for timestamp in (later(5), granted_on):
        reply = await update_archiving(bob_ws, bob, realm_id, ARCHIVED, timestamp=timestamp)
        assert reply == {"status": "require_greater_timestamp", "strictly_greater_than": granted_on}


async def test_require_greater_timestamp_realm_last_archiving(world: World, alice_ws, realm_id, bob):
    await grant(alice_ws, world.alice, realm_id, "bob", "OWNER")
    archived_on = later(10)
    assert await update_archiving(alice_ws, world.alice, realm_id, ARCHIVED, timestamp=archived_on) == {"status": "ok"}
    # Another owner too: the realm's archiving history is strictly increasing.
    bob_ws = await connect_as(bob)
    for client, device in ((alice_ws, world.alice), (bob_ws, bob)):
        for timestamp in (later(5), archived_on):
            reply = await update_archiving(client, device, realm_id, AVAILABLE, timestamp=timestamp)
            assert reply == {"status": "require_greater_timestamp", "strictly_greater_than": archived_on}
    assert await RealmArchiving.objects.acount() == 1
