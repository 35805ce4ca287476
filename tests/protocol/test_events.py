"""`events_subscribe` / `events_listen` (docs/protocol.md#events) with the debug `pinged` event."""
from __future__ import annotations

import asyncio

import pytest

from protocol import events
from tests.conftest import World, add_device, add_user, connect_as

pytestmark = pytest.mark.django_db(transaction=True)


async def subscribed(device) -> object:
    client = await connect_as(device)
    assert await client.command("events_subscribe") == {"status": "ok"}
    return client


async def test_subscribe_is_idempotent(world: World):
    client = await connect_as(world.alice)
    assert await client.command("events_subscribe") == {"status": "ok"}
    assert await client.command("events_subscribe") == {"status": "ok"}


async def test_no_events(world: World):
    client = await subscribed(world.alice)
    assert await client.command("events_listen", wait=False) == {"status": "no_events"}


async def test_listen_without_subscription(world: World):
    client = await connect_as(world.alice)
    assert await client.command("events_listen", wait=False) == {"status": "no_events"}


async def test_pinged_reaches_other_devices_not_the_author(world: World):
    alice2 = await add_device(world.alice, "dev2")
    bob = await add_user(world, "bob")
    listener_alice2 = await subscribed(alice2)
    listener_bob = await subscribed(bob)
    author_listener = await subscribed(world.alice)
    author = await connect_as(world.alice)
    assert await author.command("ping", ping="hi") == {"status": "ok", "pong": "hi"}
    await asyncio.sleep(0.1)
    expected = {"status": "ok", "event": "pinged", "ping": "hi"}
    assert await listener_alice2.command("events_listen", wait=False) == expected
    assert await listener_bob.command("events_listen", wait=False) == expected
    # Any connection of the author device is skipped.
    assert await author_listener.command("events_listen", wait=False) == {"status": "no_events"}


async def test_events_before_subscription_are_not_queued(world: World):
    alice2 = await add_device(world.alice, "dev2")
    listener = await connect_as(alice2)
    author = await connect_as(world.alice)
    await author.command("ping", ping="early")
    await asyncio.sleep(0.1)
    assert await listener.command("events_subscribe") == {"status": "ok"}
    assert await listener.command("events_listen", wait=False) == {"status": "no_events"}


async def test_wait_returns_when_an_event_arrives(world: World):
    alice2 = await add_device(world.alice, "dev2")
    listener = await subscribed(alice2)
    await listener.send({"cmd": "events_listen", "wait": True})
    assert await listener.nothing_received(0.2)
    author = await connect_as(world.alice)
    await author.command("ping", ping="wake")
    assert await listener.receive() == {"status": "ok", "event": "pinged", "ping": "wake"}


async def test_events_arrive_in_order(world: World):
    alice2 = await add_device(world.alice, "dev2")
    listener = await subscribed(alice2)
    author = await connect_as(world.alice)
    for n in range(5):
        await author.command("ping", ping=str(n))
    await asyncio.sleep(0.1)
    got = [(await listener.command("events_listen", wait=True))["ping"] for _ in range(5)]
    assert got == ["0", "1", "2", "3", "4"]


async def test_waiting_listen_is_cancelled_by_a_new_request(world: World):
    alice2 = await add_device(world.alice, "dev2")
    listener = await subscribed(alice2)
    await listener.send({"cmd": "events_listen", "wait": True})
    assert await listener.nothing_received(0.2)
    assert await listener.command("ping", ping="x") == {"status": "ok", "pong": "x"}
    # The abandoned listen never answers, and the event stays queued for the next listen.
    author = await connect_as(world.alice)
    await author.command("ping", ping="kept")
    await asyncio.sleep(0.1)
    assert await listener.command("events_listen", wait=False) == {"status": "ok", "event": "pinged", "ping": "kept"}


async def test_queue_overflow_closes_the_connection(world: World):
    alice2 = await add_device(world.alice, "dev2")
    listener = await subscribed(alice2)
    author = await connect_as(world.alice)
    for n in range(events.MAX_PENDING_EVENTS + 1):
        await author.command("ping", ping=str(n))
    assert await listener.receive_close() == 1000
