"""`message_get` (docs/protocol.md#message-get): the user's inbox, shared by its devices, from an offset."""
from __future__ import annotations

import pytest

from tests.conftest import World, add_device, add_user, connect_as, create_realm
from tests.realms.helpers import grant

pytestmark = pytest.mark.django_db(transaction=True)


async def test_ok_empty(world: World, alice_ws):
    assert await alice_ws.command("message_get", offset=0) == {"status": "ok", "messages": []}


async def test_ok_in_arrival_order_with_offset(world: World, alice_ws, bob):
    bob2 = await add_device(bob, "dev2")
    carol = await add_user(world, "carol")
    carol_ws = await connect_as(carol)
    senders = [(alice_ws, world.alice), (carol_ws, carol), (alice_ws, world.alice)]
    for position, (client, device) in enumerate(senders):
        realm_id = await create_realm(client, device)
        await grant(client, device, realm_id, "bob", "READER", recipient_message=f"message {position}".encode())
    expected = [
        {"count": 1, "sender": world.alice.device_id, "body": b"message 0"},
        {"count": 2, "sender": carol.device_id, "body": b"message 1"},
        {"count": 3, "sender": world.alice.device_id, "body": b"message 2"},
    ]
    # Every device of bob reads the same inbox.
    for device in (bob, bob2):
        client = await connect_as(device)
        for offset in range(5):
            reply = await client.command("message_get", offset=offset)
            got = [{key: message[key] for key in ("count", "sender", "body")} for message in reply["messages"]]
            assert got == expected[offset:]


async def test_ok_only_own_messages(world: World, alice_ws, realm_id, bob):
    await grant(alice_ws, world.alice, realm_id, "bob", "READER", recipient_message=b"for bob")
    assert await alice_ws.command("message_get", offset=0) == {"status": "ok", "messages": []}


async def test_ok_huge_offset(world: World, alice_ws):
    assert await alice_ws.command("message_get", offset=2**64 - 1) == {"status": "ok", "messages": []}


async def test_bad_message_negative_offset(world: World, alice_ws):
    assert (await alice_ws.command("message_get", offset=-1))["status"] == "bad_message"
