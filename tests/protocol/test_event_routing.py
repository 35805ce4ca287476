"""Realm events reach the subscribed sessions of the realm's members through the realm's own group.

Each test checks both what the listener gets and that the channel layer routes the event only to the
realm's members (the group membership), not to every session of the organization.
"""
from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer

from organizations.models import Organization
from protocol.groups import realm_group
from tests.conftest import World, add_user, connect_as, create_realm
from tests.realms.helpers import events_of, grant, subscribed
from tests.vlobs.helpers import new_vlob

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def bob(world: World):
    return await add_user(world, "bob")


async def members(world: World, realm_id) -> int:
    organization = await Organization.objects.aget(organization_id=world.organization_id)
    return len(get_channel_layer().groups.get(realm_group(organization.pk, realm_id.hex), {}))


def vlob_events(events: list[dict]) -> list:
    return [event["realm_id"] for event in events if event["event"] == "realm.vlobs_updated"]


async def test_events_of_held_realms_only(world: World, bob):
    alice_ws = await connect_as(world.alice)
    private = await create_realm(alice_ws, world.alice)
    shared = await create_realm(alice_ws, world.alice)
    await grant(alice_ws, world.alice, shared, "bob", "CONTRIBUTOR")
    bob_listener = await subscribed(bob)
    assert (await members(world, private), await members(world, shared)) == (0, 1)

    await new_vlob(alice_ws, private)
    await new_vlob(alice_ws, shared)
    assert vlob_events(await events_of(bob_listener)) == [shared]


async def test_events_after_being_shared_mid_session(world: World, bob):
    alice_ws = await connect_as(world.alice)
    realm_id = await create_realm(alice_ws, world.alice)
    bob_listener = await subscribed(bob)
    await new_vlob(alice_ws, realm_id)
    assert await events_of(bob_listener) == []
    assert await members(world, realm_id) == 0

    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    await new_vlob(alice_ws, realm_id)
    events = await events_of(bob_listener)
    assert [event["event"] for event in events] == ["realm.roles_updated", "realm.vlobs_updated"]
    assert await members(world, realm_id) == 1


async def test_no_events_after_being_unshared(world: World, bob):
    alice_ws = await connect_as(world.alice)
    realm_id = await create_realm(alice_ws, world.alice)
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    bob_listener = await subscribed(bob)
    await grant(alice_ws, world.alice, realm_id, "bob", None)
    await new_vlob(alice_ws, realm_id)
    events = await events_of(bob_listener)
    assert [(event["event"], event.get("role")) for event in events] == [("realm.roles_updated", None)]
    assert await members(world, realm_id) == 0


async def test_closed_session_leaves_its_realm_groups(world: World, bob):
    alice_ws = await connect_as(world.alice)
    realm_id = await create_realm(alice_ws, world.alice)
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    bob_listener = await subscribed(bob)
    assert await members(world, realm_id) == 1
    await bob_listener.communicator.disconnect()
    assert await members(world, realm_id) == 0


async def test_writer_reply_does_not_wait_for_the_fan_out(world: World, bob, monkeypatch):
    """The fan-out runs beside the writer's command: a group send that never ends delays no reply."""
    layer = get_channel_layer()
    original = layer.group_send
    stuck = asyncio.Event()

    async def group_send(group, message):
        if group.startswith("parsec.realm."):
            await stuck.wait()  # e.g. a Redis server that stopped answering
        await original(group, message)

    monkeypatch.setattr(layer, "group_send", group_send)
    alice_ws = await connect_as(world.alice)
    realm_id = await create_realm(alice_ws, world.alice)
    await grant(alice_ws, world.alice, realm_id, "bob", "CONTRIBUTOR")
    bob_listener = await subscribed(bob)
    for _ in range(3):
        await asyncio.wait_for(new_vlob(alice_ws, realm_id), 5)
    assert vlob_events(await events_of(bob_listener)) == []
    stuck.set()  # the sends resume: the events arrive, after the replies
    assert vlob_events(await events_of(bob_listener)) == [realm_id] * 3


async def test_subscription_joins_the_realms_of_the_latest_roles(world: World, bob):
    """A subscription's realm groups are those where bob's latest role certificate grants a role, read in one
    query however many realms he holds; its session leaves them all when it ends."""
    from asgiref.sync import sync_to_async
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from organizations.models import User
    from realms.selectors import user_current_realm_hex_ids

    alice_ws = await connect_as(world.alice)
    held, removed, regranted, changed = [await create_realm(alice_ws, world.alice) for _ in range(4)]
    await grant(alice_ws, world.alice, held, "bob", "READER")
    await grant(alice_ws, world.alice, removed, "bob", "CONTRIBUTOR")
    await grant(alice_ws, world.alice, removed, "bob", None)
    await grant(alice_ws, world.alice, regranted, "bob", "READER")
    await grant(alice_ws, world.alice, regranted, "bob", None)
    await grant(alice_ws, world.alice, regranted, "bob", "MANAGER")
    await grant(alice_ws, world.alice, changed, "bob", "READER")
    await grant(alice_ws, world.alice, changed, "bob", "CONTRIBUTOR")
    listener = await subscribed(bob)
    assert [await members(world, realm) for realm in (held, removed, regranted, changed)] == [1, 0, 1, 1]

    def read(user_pk: int) -> tuple[set, int]:
        with CaptureQueriesContext(connection) as captured:
            realms = user_current_realm_hex_ids(user_pk)
        return realms, len(captured.captured_queries)

    bob_pk = (await User.objects.aget(user_id="bob")).pk
    assert await sync_to_async(read)(bob_pk) == ({held.hex, regranted.hex, changed.hex}, 1)
    many = [await create_realm(alice_ws, world.alice) for _ in range(12)]
    for realm in many:
        await grant(alice_ws, world.alice, realm, "bob", "READER")
    assert await sync_to_async(read)(bob_pk) == ({realm.hex for realm in (held, regranted, changed, *many)}, 1)

    await listener.communicator.disconnect()
    assert [await members(world, realm) for realm in (held, regranted, changed)] == [0, 0, 0]
    organization = await Organization.objects.aget(organization_id=world.organization_id)
    assert not [group for group in get_channel_layer().groups if group.startswith(f"parsec.realm.{organization.pk}.")]
