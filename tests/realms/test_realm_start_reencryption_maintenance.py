"""`realm_start_reencryption_maintenance` (docs/protocol.md#realm-start-reencryption-maintenance): one test per reply
status."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from realms.models import Message, Realm
from tests.conftest import World, add_device, add_user, connect_as
from tests.realms.helpers import delete_realm, events_of, grant, revoke, subscribed_each
from tests.testkit import certs

pytestmark = pytest.mark.django_db(transaction=True)


async def start(client, realm_id, participants, *, encryption_revision=2, timestamp=None):
    return await client.command(
        "realm_start_reencryption_maintenance",
        realm_id=realm_id,
        encryption_revision=encryption_revision,
        timestamp=timestamp or certs.now(),
        per_participant_message={user_id: f"key for {user_id}".encode() for user_id in participants},
    )


async def test_ok(world: World, alice_ws, realm_id, bob):
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    timestamp = certs.now()
    assert await start(alice_ws, realm_id, ["bob", "alice"], timestamp=timestamp) == {"status": "ok"}
    realm = await Realm.objects.select_related("maintenance_started_by").aget(realm_id=realm_id)
    assert (realm.maintenance_type, realm.maintenance_started_on, realm.encryption_revision) == (
        "REENCRYPTION", timestamp, 2,
    )
    assert realm.maintenance_started_by.device_id == world.alice.device_id
    messages = [
        (recipient, index, sender, stamp, bytes(body))
        async for recipient, index, sender, stamp, body in Message.objects.order_by("pk").values_list(
            "recipient__user_id", "index", "sender__device_id", "timestamp", "body"
        )
    ]
    assert messages == [
        ("bob", 1, world.alice.device_id, timestamp, b"key for bob"),
        ("alice", 1, world.alice.device_id, timestamp, b"key for alice"),
    ]


async def test_ok_events(world: World, alice_ws, realm_id, bob):
    alice2 = await add_device(world.alice, "dev2")
    await grant(alice_ws, world.alice, realm_id, "bob", "READER", recipient_message=b"hello")
    listeners = await subscribed_each(alice1=world.alice, alice2=alice2, bob=bob)
    assert await start(alice_ws, realm_id, ["alice", "bob"]) == {"status": "ok"}
    started = {"status": "ok", "event": "realm.maintenance_started", "realm_id": realm_id, "encryption_revision": 2}
    # The maintenance event first, then the messages; bob's inbox already held one message.
    assert await events_of(listeners["bob"]) == [started, {"status": "ok", "event": "message.received", "index": 2}]
    assert await events_of(listeners["alice2"]) == [started, {"status": "ok", "event": "message.received", "index": 1}]
    assert await events_of(listeners["alice1"]) == [{"status": "ok", "event": "message.received", "index": 1}]


async def test_ok_revoked_members_are_not_participants(world: World, alice_ws, realm_id, bob):
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    await revoke("bob", world)
    assert await start(alice_ws, realm_id, ["alice", "bob"]) == {"status": "participant_mismatch", "reason": None}
    assert await start(alice_ws, realm_id, ["alice"]) == {"status": "ok"}


async def test_ok_after_a_finished_maintenance(world: World, alice_ws, realm_id):
    assert await start(alice_ws, realm_id, ["alice"]) == {"status": "ok"}
    reply = await alice_ws.command("realm_finish_reencryption_maintenance", realm_id=realm_id, encryption_revision=2)
    assert reply == {"status": "ok"}
    assert await start(alice_ws, realm_id, ["alice"], encryption_revision=3) == {"status": "ok"}


@pytest.mark.parametrize("shift", [timedelta(seconds=-321), timedelta(seconds=301)])
async def test_bad_timestamp(world: World, alice_ws, realm_id, shift):
    timestamp = certs.now() + shift
    reply = await start(alice_ws, realm_id, ["alice"], timestamp=timestamp)
    assert reply["status"] == "bad_timestamp" and reply["reason"] is None
    assert reply["client_timestamp"] == timestamp
    assert (reply["ballpark_client_early_offset"], reply["ballpark_client_late_offset"]) == (300.0, 320.0)
    # Checked before anything else, even the realm.
    assert (await start(alice_ws, uuid.uuid4(), [], timestamp=timestamp))["status"] == "bad_timestamp"


async def test_not_found(world: World, alice_ws):
    assert await start(alice_ws, uuid.uuid4(), ["alice"]) == {"status": "not_found", "reason": None}


async def test_realm_deleted(world: World, alice_ws, realm_id):
    await delete_realm(world, alice_ws, world.alice, realm_id)
    assert await start(alice_ws, realm_id, ["alice"]) == {"status": "realm_deleted"}


@pytest.mark.parametrize("role", ["MANAGER", "CONTRIBUTOR", "READER", None])
async def test_not_allowed(world: World, alice_ws, realm_id, bob, role):
    if role is not None:
        await grant(alice_ws, world.alice, realm_id, "bob", role)
    bob_ws = await connect_as(bob)
    assert await start(bob_ws, realm_id, ["alice", "bob"]) == {"status": "not_allowed"}
    assert (await Realm.objects.aget(realm_id=realm_id)).maintenance_type is None


async def test_in_maintenance(world: World, alice_ws, realm_id):
    assert await start(alice_ws, realm_id, ["alice"]) == {"status": "ok"}
    assert await start(alice_ws, realm_id, ["alice"], encryption_revision=3) == {"status": "in_maintenance"}
    # Checked before the revision.
    assert await start(alice_ws, realm_id, ["alice"], encryption_revision=2) == {"status": "in_maintenance"}


@pytest.mark.parametrize("revision", [0, 1, 3])
async def test_bad_encryption_revision(world: World, alice_ws, realm_id, revision):
    for participants in (["alice"], []):  # checked before the participants
        reply = await start(alice_ws, realm_id, participants, encryption_revision=revision)
        assert reply == {"status": "bad_encryption_revision"}


@pytest.mark.parametrize(
    "participants",
    [
        [],
        ["alice"],  # bob missing
        ["bob"],  # the author is a participant too
        ["alice", "bob", "carol"],  # carol is not a member
        ["alice", "bob", "nobody"],
        ["alice", "bob", "dave"],  # dave's access was removed
    ],
)
async def test_participant_mismatch(world: World, alice_ws, realm_id, bob, participants):
    await add_user(world, "carol")
    await add_user(world, "dave")
    await grant(alice_ws, world.alice, realm_id, "bob", "CONTRIBUTOR")
    await grant(alice_ws, world.alice, realm_id, "dave", "READER")
    await grant(alice_ws, world.alice, realm_id, "dave", None)
    assert await start(alice_ws, realm_id, participants) == {"status": "participant_mismatch", "reason": None}
    realm = await Realm.objects.aget(realm_id=realm_id)
    assert (realm.maintenance_type, realm.encryption_revision) == (None, 1)
    assert not await Message.objects.aexists()
