"""`realm_update_roles` (docs/protocol.md#realm-update-roles): one test per reply status, every check tried and
refused."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from nacl.signing import SigningKey

from protocol.types import RealmArchivingConfiguration
from realms.models import Message, RealmUserChange, RealmUserRole
from tests.conftest import World, add_device, add_user, connect_as, create_realm
from tests.realms.helpers import (
    NO_EVENTS,
    delete_realm,
    events_of,
    grant,
    later,
    record_vlob_write,
    revoke,
    role_certificate,
    subscribed,
    update_archiving,
    update_roles,
)
from tests.testkit import certs

pytestmark = pytest.mark.django_db(transaction=True)


async def roles_of(realm_id, user_id):
    return [
        role
        async for role in RealmUserRole.objects.filter(realm__realm_id=realm_id, user__user_id=user_id)
        .order_by("certified_on")
        .values_list("role", flat=True)
    ]


# ok -------------------------------------------------------------------------------------------


async def test_ok(world: World, alice_ws, realm_id, bob):
    timestamp = certs.now()
    certificate = role_certificate(
        world.alice, realm_id=realm_id, user_id="bob", role="CONTRIBUTOR", timestamp=timestamp
    )
    reply = await alice_ws.command("realm_update_roles", role_certificate=certificate, recipient_message=None)
    assert reply == {"status": "ok"}
    roles = RealmUserRole.objects.select_related("certified_by")
    role = await roles.aget(realm__realm_id=realm_id, user__user_id="bob")
    assert (role.role, bytes(role.certificate), role.certified_on) == ("CONTRIBUTOR", certificate, timestamp)
    assert role.certified_by.device_id == world.alice.device_id
    # The author's last role change, for the causality checks of later changes.
    change = await RealmUserChange.objects.aget(realm__realm_id=realm_id, user__user_id="alice")
    assert change.last_role_change == timestamp
    assert not await Message.objects.aexists()


async def test_ok_every_role_then_removal(world: World, alice_ws, realm_id, bob):
    for role in ("READER", "CONTRIBUTOR", "MANAGER", "OWNER", None):
        await grant(alice_ws, world.alice, realm_id, "bob", role)
    assert await roles_of(realm_id, "bob") == ["READER", "CONTRIBUTOR", "MANAGER", "OWNER", None]


async def test_ok_last_role_change_keeps_the_maximum(world: World, alice_ws, realm_id, bob):
    carol = await add_user(world, "carol")
    future = later(5)
    await grant(alice_ws, world.alice, realm_id, "bob", "READER", timestamp=future)
    await grant(alice_ws, world.alice, realm_id, carol.user_id, "READER")
    change = await RealmUserChange.objects.aget(realm__realm_id=realm_id, user__user_id="alice")
    assert change.last_role_change == future


async def test_ok_emits_roles_updated_to_every_device_of_the_target(world: World, alice_ws, realm_id, bob):
    bob2 = await add_device(bob, "dev2")
    devices = [("alice", world.alice), ("bob", bob), ("bob2", bob2)]
    listeners = {name: await subscribed(device) for name, device in devices}
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    expected = {"status": "ok", "event": "realm.roles_updated", "realm_id": realm_id, "role": "READER"}
    assert await events_of(listeners["bob"]) == [expected]
    assert await events_of(listeners["bob2"]) == [expected]
    assert await events_of(listeners["alice"]) == []


async def test_ok_target_connections_follow_the_realm(world: World, alice_ws, realm_id, bob):
    bob_listener = await subscribed(bob)
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    archived = RealmArchivingConfiguration.archived()
    assert await update_archiving(alice_ws, world.alice, realm_id, archived) == {"status": "ok"}
    events = await events_of(bob_listener)
    assert [event["event"] for event in events] == ["realm.roles_updated", "realm.archiving_updated"]

    await grant(alice_ws, world.alice, realm_id, "bob", None)
    available = RealmArchivingConfiguration.available()
    assert await update_archiving(alice_ws, world.alice, realm_id, available) == {"status": "ok"}
    assert await events_of(bob_listener) == [
        {"status": "ok", "event": "realm.roles_updated", "realm_id": realm_id, "role": None}
    ]


async def test_ok_with_recipient_message(world: World, alice_ws, realm_id, bob):
    bob_listener = await subscribed(bob)
    timestamp = certs.now()
    await grant(alice_ws, world.alice, realm_id, "bob", "MANAGER", timestamp=timestamp, recipient_message=b"welcome")
    events = await events_of(bob_listener)
    assert events[1] == {"status": "ok", "event": "message.received", "index": 1}
    bob_ws = await connect_as(bob)
    assert await bob_ws.command("message_get", offset=0) == {
        "status": "ok",
        "messages": [{"count": 1, "sender": world.alice.device_id, "timestamp": timestamp, "body": b"welcome"}],
    }


async def test_ok_manager_manages_contributors_and_readers(world: World, alice_ws, realm_id, bob):
    carol = await add_user(world, "carol")
    await grant(alice_ws, world.alice, realm_id, "bob", "MANAGER")
    bob_ws = await connect_as(bob)
    for role in ("READER", "CONTRIBUTOR", None):
        await grant(bob_ws, bob, realm_id, carol.user_id, role)


async def test_ok_outsider_can_be_contributor(world: World, alice_ws, realm_id):
    olga = await add_user(world, "olga", profile="OUTSIDER")
    await grant(alice_ws, world.alice, realm_id, olga.user_id, "CONTRIBUTOR")


# not_allowed ----------------------------------------------------------------------------------


async def test_not_allowed_outsider_author(world: World, bob):
    olga = await add_user(world, "olga", profile="OUTSIDER")
    olga_ws = await connect_as(olga)
    realm_id = await create_realm(olga_ws, olga)
    reply = await update_roles(olga_ws, olga, realm_id, "bob", "READER")
    assert reply == {"status": "not_allowed", "reason": None}
    # Checked first: even a garbage certificate gets `not_allowed`.
    reply = await olga_ws.command("realm_update_roles", role_certificate=b"garbage", recipient_message=None)
    assert reply == {"status": "not_allowed", "reason": None}


async def test_not_allowed_author_without_role(world: World, realm_id, bob):
    carol = await add_user(world, "carol")
    bob_ws = await connect_as(bob)
    reply = await update_roles(bob_ws, bob, realm_id, carol.user_id, "READER")
    assert reply == {"status": "not_allowed", "reason": None}


async def test_not_allowed_author_role_removed(world: World, alice_ws, realm_id, bob):
    carol = await add_user(world, "carol")
    await grant(alice_ws, world.alice, realm_id, "bob", "MANAGER")
    await grant(alice_ws, world.alice, realm_id, "bob", None)
    bob_ws = await connect_as(bob)
    assert (await update_roles(bob_ws, bob, realm_id, carol.user_id, "READER"))["status"] == "not_allowed"


@pytest.mark.parametrize("author_role", ["CONTRIBUTOR", "READER"])
async def test_not_allowed_contributor_or_reader_cannot_grant(world: World, alice_ws, realm_id, bob, author_role):
    carol = await add_user(world, "carol")
    await grant(alice_ws, world.alice, realm_id, "bob", author_role)
    bob_ws = await connect_as(bob)
    for role in ("READER", "CONTRIBUTOR", None):
        assert (await update_roles(bob_ws, bob, realm_id, carol.user_id, role))["status"] == "not_allowed"


@pytest.mark.parametrize(
    "target_role, new_role",
    [
        (None, "MANAGER"),  # granting MANAGER needs OWNER
        (None, "OWNER"),
        ("MANAGER", "READER"),  # changing a current MANAGER needs OWNER
        ("MANAGER", None),
        ("OWNER", "CONTRIBUTOR"),
        ("READER", "MANAGER"),
    ],
)
async def test_not_allowed_manager_limits(world: World, alice_ws, realm_id, bob, target_role, new_role):
    carol = await add_user(world, "carol")
    await grant(alice_ws, world.alice, realm_id, "bob", "MANAGER")
    if target_role is not None:
        await grant(alice_ws, world.alice, realm_id, carol.user_id, target_role)
    bob_ws = await connect_as(bob)
    reply = await update_roles(bob_ws, bob, realm_id, carol.user_id, new_role)
    assert reply == {"status": "not_allowed", "reason": None}
    assert await roles_of(realm_id, carol.user_id) == ([target_role] if target_role else [])


# invalid_certification ------------------------------------------------------------------------


async def test_invalid_certification_other_signer(world: World, alice_ws, realm_id, bob):
    certificate = role_certificate(
        world.alice, realm_id=realm_id, user_id="bob", role="READER", signing_key=SigningKey.generate()
    )
    reply = await alice_ws.command("realm_update_roles", role_certificate=certificate, recipient_message=None)
    assert reply["status"] == "invalid_certification" and "reason" in reply


async def test_invalid_certification_other_author(world: World, alice_ws, realm_id, bob):
    # Signed by alice's key but claiming another device as author.
    alice2 = await add_device(world.alice, "dev2")
    for author_id in (alice2.device_id, bob.device_id):
        certificate = role_certificate(
            world.alice, realm_id=realm_id, user_id="bob", role="READER", author_id=author_id
        )
        reply = await alice_ws.command("realm_update_roles", role_certificate=certificate, recipient_message=None)
        assert reply["status"] == "invalid_certification"


async def test_invalid_certification_nil_author(world: World, alice_ws, realm_id, bob):
    certificate = certs.sign_certificate(
        world.alice.signing_key,
        certs.realm_role_certificate_map(
            author=None, timestamp=certs.now(), realm_id=realm_id, user_id="bob", role="READER"
        ),
    )
    reply = await alice_ws.command("realm_update_roles", role_certificate=certificate, recipient_message=None)
    assert reply["status"] == "invalid_certification"


async def test_invalid_certification_not_a_role_certificate(world: World, alice_ws, realm_id, bob):
    archiving = certs.realm_archiving_certificate(
        world.alice.signing_key, author=world.alice.device_id, timestamp=certs.now(), realm_id=realm_id,
        configuration=RealmArchivingConfiguration.archived(),
    )
    for certificate in (archiving, b"\x00" * 100, b""):
        reply = await alice_ws.command("realm_update_roles", role_certificate=certificate, recipient_message=None)
        assert reply["status"] == "invalid_certification"
    assert await roles_of(realm_id, "bob") == []


# bad_timestamp --------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [timedelta(seconds=-321), timedelta(seconds=301)])
async def test_bad_timestamp(world: World, alice_ws, realm_id, bob, shift):
    timestamp = certs.now() + shift
    reply = await update_roles(alice_ws, world.alice, realm_id, "bob", "READER", timestamp=timestamp)
    assert reply.keys() == {
        "status", "reason", "ballpark_client_early_offset", "ballpark_client_late_offset", "backend_timestamp",
        "client_timestamp",
    }
    assert reply["status"] == "bad_timestamp" and reply["reason"] is None
    assert (reply["ballpark_client_early_offset"], reply["ballpark_client_late_offset"]) == (300.0, 320.0)
    assert reply["client_timestamp"] == timestamp


async def test_bad_timestamp_checked_before_the_target(world: World, alice_ws, realm_id):
    old = certs.now() - timedelta(minutes=10)
    reply = await update_roles(alice_ws, world.alice, realm_id, world.alice.user_id, "READER", timestamp=old)
    assert reply["status"] == "bad_timestamp"


# invalid_data ---------------------------------------------------------------------------------


async def test_invalid_data_own_role(world: World, alice_ws, realm_id):
    for role in ("READER", "OWNER", None):
        reply = await update_roles(alice_ws, world.alice, realm_id, world.alice.user_id, role)
        assert reply["status"] == "invalid_data" and "reason" in reply
    # Checked before the realm: even on an unknown realm.
    reply = await update_roles(alice_ws, world.alice, uuid.uuid4(), world.alice.user_id, "READER")
    assert reply["status"] == "invalid_data"


# not_found ------------------------------------------------------------------------------------


async def test_not_found_user(world: World, alice_ws, realm_id):
    reply = await update_roles(alice_ws, world.alice, realm_id, "nobody", "READER")
    assert reply == {"status": "not_found", "reason": None}


async def test_not_found_realm(world: World, alice_ws, bob):
    reply = await update_roles(alice_ws, world.alice, uuid.uuid4(), "bob", "READER")
    assert reply == {"status": "not_found", "reason": None}


async def test_not_found_realm_of_another_organization(world: World, alice_ws, bob):
    from tests.conftest import bootstrap_organization

    other = await bootstrap_organization("OtherOrg")
    other_ws = await connect_as(other.alice)
    other_realm = await create_realm(other_ws, other.alice)
    reply = await update_roles(alice_ws, world.alice, other_realm, "bob", "READER")
    assert reply == {"status": "not_found", "reason": None}


# user_revoked ---------------------------------------------------------------------------------


async def test_user_revoked(world: World, alice_ws, realm_id):
    await add_user(world, "mallory", revoked=True)
    assert await update_roles(alice_ws, world.alice, realm_id, "mallory", "READER") == {"status": "user_revoked"}


async def test_user_revoked_while_member(world: World, alice_ws, realm_id, bob):
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    await revoke("bob", world)
    # Even removing the access of a revoked user is refused, as by the reference.
    assert await update_roles(alice_ws, world.alice, realm_id, "bob", None) == {"status": "user_revoked"}


async def test_user_revoked_checked_before_profile(world: World, alice_ws, realm_id):
    await add_user(world, "olga", profile="OUTSIDER", revoked=True)
    assert await update_roles(alice_ws, world.alice, realm_id, "olga", "OWNER") == {"status": "user_revoked"}


# incompatible_profile -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["OWNER", "MANAGER"])
async def test_incompatible_profile(world: World, alice_ws, realm_id, role):
    await add_user(world, "olga", profile="OUTSIDER")
    reply = await update_roles(alice_ws, world.alice, realm_id, "olga", role)
    assert reply == {"status": "incompatible_profile", "reason": None}
    # Checked before the realm.
    reply = await update_roles(alice_ws, world.alice, uuid.uuid4(), "olga", role)
    assert reply["status"] == "incompatible_profile"


# realm_deleted --------------------------------------------------------------------------------


async def test_realm_deleted(world: World, alice_ws, realm_id, bob):
    await delete_realm(world, alice_ws, world.alice, realm_id)
    assert await update_roles(alice_ws, world.alice, realm_id, "bob", "READER") == {"status": "realm_deleted"}


# in_maintenance -------------------------------------------------------------------------------


async def start_maintenance(alice_ws, realm_id, participants):
    reply = await alice_ws.command(
        "realm_start_reencryption_maintenance", realm_id=realm_id, encryption_revision=2, timestamp=certs.now(),
        per_participant_message={user_id: b"key" for user_id in participants},
    )
    assert reply == {"status": "ok"}


async def test_in_maintenance(world: World, alice_ws, realm_id, bob):
    await start_maintenance(alice_ws, realm_id, ["alice"])
    assert await update_roles(alice_ws, world.alice, realm_id, "bob", "READER") == {"status": "in_maintenance"}


async def test_in_maintenance_checked_before_rights(world: World, alice_ws, realm_id, bob):
    carol = await add_user(world, "carol")
    await start_maintenance(alice_ws, realm_id, ["alice"])
    bob_ws = await connect_as(bob)
    assert await update_roles(bob_ws, bob, realm_id, carol.user_id, "READER") == {"status": "in_maintenance"}


# already_granted ------------------------------------------------------------------------------


async def test_already_granted(world: World, alice_ws, realm_id, bob):
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    assert await update_roles(alice_ws, world.alice, realm_id, "bob", "READER") == {"status": "already_granted"}


async def test_already_granted_removing_a_non_member(world: World, alice_ws, realm_id, bob):
    assert await update_roles(alice_ws, world.alice, realm_id, "bob", None) == {"status": "already_granted"}
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    await grant(alice_ws, world.alice, realm_id, "bob", None)
    assert await update_roles(alice_ws, world.alice, realm_id, "bob", None) == {"status": "already_granted"}


async def test_already_granted_checked_after_rights(world: World, alice_ws, realm_id, bob):
    carol = await add_user(world, "carol")
    await grant(alice_ws, world.alice, realm_id, "bob", "CONTRIBUTOR")
    await grant(alice_ws, world.alice, realm_id, carol.user_id, "READER")
    bob_ws = await connect_as(bob)
    assert (await update_roles(bob_ws, bob, realm_id, carol.user_id, "READER"))["status"] == "not_allowed"


async def test_already_granted_checked_before_causality(world: World, alice_ws, realm_id, bob):
    future = later(5)
    await grant(alice_ws, world.alice, realm_id, "bob", "READER", timestamp=future)
    assert await update_roles(alice_ws, world.alice, realm_id, "bob", "READER") == {"status": "already_granted"}


# require_greater_timestamp --------------------------------------------------------------------


async def test_require_greater_timestamp_target_archiving_as_owner(world: World, alice_ws, realm_id, bob):
    await grant(alice_ws, world.alice, realm_id, "bob", "OWNER")
    bob_ws = await connect_as(bob)
    archived_on = later(10)
    reply = await update_archiving(bob_ws, bob, realm_id, RealmArchivingConfiguration.archived(), timestamp=archived_on)
    assert reply == {"status": "ok"}
    reply = await update_roles(alice_ws, world.alice, realm_id, "bob", "MANAGER", timestamp=later(5))
    assert reply == {"status": "require_greater_timestamp", "strictly_greater_than": archived_on}
    reply = await update_roles(alice_ws, world.alice, realm_id, "bob", "MANAGER", timestamp=archived_on)
    assert reply == {"status": "require_greater_timestamp", "strictly_greater_than": archived_on}
    await grant(alice_ws, world.alice, realm_id, "bob", "MANAGER", timestamp=archived_on + timedelta(microseconds=1))


async def test_require_greater_timestamp_target_last_role(world: World, alice_ws, realm_id, bob):
    granted_on = later(10)
    await grant(alice_ws, world.alice, realm_id, "bob", "READER", timestamp=granted_on)
    for timestamp in (later(5), granted_on):
        reply = await update_roles(alice_ws, world.alice, realm_id, "bob", "OWNER", timestamp=timestamp)
        assert reply == {"status": "require_greater_timestamp", "strictly_greater_than": granted_on}
    assert await roles_of(realm_id, "bob") == ["READER"]


@pytest.mark.parametrize("new_role", ["READER", None])
async def test_require_greater_timestamp_target_last_vlob_write(world: World, alice_ws, realm_id, bob, new_role):
    await grant(alice_ws, world.alice, realm_id, "bob", "CONTRIBUTOR")
    written_on = later(10)
    await record_vlob_write(realm_id, "bob", written_on)
    reply = await update_roles(alice_ws, world.alice, realm_id, "bob", new_role, timestamp=later(5))
    assert reply == {"status": "require_greater_timestamp", "strictly_greater_than": written_on}


async def test_last_vlob_write_does_not_hold_back_writer_roles(world: World, alice_ws, realm_id, bob):
    await grant(alice_ws, world.alice, realm_id, "bob", "CONTRIBUTOR")
    await record_vlob_write(realm_id, "bob", later(10))
    await grant(alice_ws, world.alice, realm_id, "bob", "MANAGER", timestamp=later(5))


@pytest.mark.parametrize("new_role", ["CONTRIBUTOR", "READER", None])
async def test_require_greater_timestamp_target_last_role_change(world: World, alice_ws, realm_id, bob, new_role):
    carol = await add_user(world, "carol")
    await grant(alice_ws, world.alice, realm_id, "bob", "MANAGER")
    bob_ws = await connect_as(bob)
    changed_on = later(10)
    await grant(bob_ws, bob, realm_id, carol.user_id, "READER", timestamp=changed_on)
    reply = await update_roles(alice_ws, world.alice, realm_id, "bob", new_role, timestamp=later(5))
    assert reply == {"status": "require_greater_timestamp", "strictly_greater_than": changed_on}


async def test_last_role_change_does_not_hold_back_promotion(world: World, alice_ws, realm_id, bob):
    carol = await add_user(world, "carol")
    await grant(alice_ws, world.alice, realm_id, "bob", "MANAGER")
    bob_ws = await connect_as(bob)
    await grant(bob_ws, bob, realm_id, carol.user_id, "READER", timestamp=later(10))
    await grant(alice_ws, world.alice, realm_id, "bob", "OWNER", timestamp=later(5))


async def test_no_role_event_nor_message_when_refused(world: World, alice_ws, realm_id, bob):
    bob_listener = await subscribed(bob)
    await grant(alice_ws, world.alice, realm_id, "bob", "READER", timestamp=later(10))
    await events_of(bob_listener)
    reply = await update_roles(
        alice_ws, world.alice, realm_id, "bob", "OWNER", timestamp=later(5), recipient_message=b"x"
    )
    assert reply["status"] == "require_greater_timestamp"
    assert await events_of(bob_listener) == []
    assert await bob_listener.command("events_listen", wait=False) == NO_EVENTS
    assert not await Message.objects.aexists()


# concurrency ----------------------------------------------------------------------------------


async def test_concurrent_grants_of_one_realm_are_serialised(
    world: World, alice_ws, realm_id, bob, concurrent_writers
):
    alice_other = await connect_as(world.alice)
    for client, timestamp in ((alice_ws, later(1)), (alice_other, later(2))):
        certificate = role_certificate(
            world.alice, realm_id=realm_id, user_id="bob", role="READER", timestamp=timestamp
        )
        await client.send({"cmd": "realm_update_roles", "role_certificate": certificate, "recipient_message": None})
    replies = [await alice_ws.receive(), await alice_other.receive()]
    assert sorted(reply["status"] for reply in replies) == ["already_granted", "ok"]
    assert await roles_of(realm_id, "bob") == ["READER"]


async def test_concurrent_messages_to_one_recipient_get_dense_indexes(
    world: World, alice_ws, realm_id, bob, concurrent_writers
):
    carol = await add_user(world, "carol")
    carol_ws = await connect_as(carol)
    carol_realm = await create_realm(carol_ws, carol)
    for client, author, realm in ((alice_ws, world.alice, realm_id), (carol_ws, carol, carol_realm)):
        certificate = role_certificate(author, realm_id=realm, user_id="bob", role="READER")
        await client.send({"cmd": "realm_update_roles", "role_certificate": certificate, "recipient_message": b"hi"})
    assert [await alice_ws.receive(), await carol_ws.receive()] == [{"status": "ok"}, {"status": "ok"}]
    inbox = Message.objects.filter(recipient__user_id="bob")
    indexes = [index async for index in inbox.values_list("index", flat=True)]
    assert sorted(indexes) == [1, 2]
