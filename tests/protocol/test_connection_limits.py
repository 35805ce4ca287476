"""Connection caps (per process, per organization), the per-connection command rate and the bound on
requests queued without waiting for their replies (protocol/limits.py).

The close codes and reasons over a real socket are checked in tests/ops/test_idle_connections.py.
"""
from __future__ import annotations

import gc

import asyncio
import time

import pytest

from organizations.models import Organization
from protocol import codec, limits
from tests.conftest import World, add_user, bootstrap_organization, connect_as
from tests.ops.conftest import metric
from tests.testkit.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


async def close_message(client: WsClient) -> dict:
    message = await client.communicator.receive_output(10)
    assert message["type"] == "websocket.close", message
    return message


async def test_connection_past_the_process_cap_is_closed_with_a_reason(world: World, parsec_settings):
    # Relative to what earlier tests of this process left open; their abandoned connections are released
    # when collected, which must not happen between the count and the refused connection.
    gc.collect()
    parsec_settings(max_connections=limits.open_connections() + 2)
    first = await connect_as(world.alice)
    second = await WsClient.connect()
    before = metric("parsec_connections_closed_by_limit_total", reason="server_full")
    communicator_refused = await _refused_connection()
    assert communicator_refused == {
        "type": "websocket.close", "code": limits.CLOSE_TRY_AGAIN_LATER, "reason": limits.SERVER_FULL,
    }
    assert metric("parsec_connections_closed_by_limit_total", reason="server_full") == before + 1
    await second.close()
    # The slot is back: one more connection is served.
    third = await connect_as(world.alice)
    assert await third.command("ping", ping="x") == {"status": "ok", "pong": "x"}
    assert await first.command("ping", ping="y") == {"status": "ok", "pong": "y"}


async def _refused_connection() -> dict:
    from channels.testing import WebsocketCommunicator

    from parsec_site.asgi import application

    communicator = WebsocketCommunicator(application, "/ws")
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return await communicator.receive_output(10)


async def test_session_past_the_organization_cap_is_closed_with_a_reason(world: World, parsec_settings):
    organization = await Organization.objects.aget(organization_id=world.organization_id)
    parsec_settings(max_connections_per_organization=limits.organization_sessions(organization.pk) + 2)
    bob = await add_user(world, "bob")
    sessions = [await connect_as(world.alice), await connect_as(bob)]
    refused = await WsClient.connect()
    await refused.send_raw(bytes_data=_authenticated_answer(refused, world.alice))
    # No handshake result: the client sees the server as unavailable and comes back later.
    assert await close_message(refused) == {
        "type": "websocket.close", "code": limits.CLOSE_TRY_AGAIN_LATER, "reason": limits.ORGANIZATION_FULL,
    }
    # Another organization is not affected.
    other = await bootstrap_organization("OtherOrg")
    other_client = await connect_as(other.alice)
    assert await other_client.command("ping", ping="o") == {"status": "ok", "pong": "o"}
    # A session of the full organization that ends gives its place back.
    await sessions[1].close()
    again = await connect_as(bob)
    assert await again.command("ping", ping="b") == {"status": "ok", "pong": "b"}


def _authenticated_answer(client: WsClient, device) -> bytes:
    signed = device.signing_key.sign(codec.packb({"answer": client.challenge["challenge"], "type": "signed_answer"}))
    return codec.packb({
        "handshake": "answer", "type": "AUTHENTICATED", "client_api_version": [3, 4],
        "organization_id": device.organization_id, "device_id": device.device_id,
        "rvk": device.root_verify_key, "answer": bytes(signed),
    })


async def test_commands_over_the_rate_wait_for_their_turn(world: World, parsec_settings):
    parsec_settings(max_commands_per_second=10)
    client = await connect_as(world.alice)
    started = time.monotonic()
    # A burst of 10 goes at once, the next 10 at 10 a second: about 1 s for 20.
    for n in range(20):
        assert await client.command("ping", ping=str(n)) == {"status": "ok", "pong": str(n)}
    assert time.monotonic() - started >= 0.8
    # Slowed, never refused nor closed.
    assert await client.command("ping", ping="after") == {"status": "ok", "pong": "after"}


def test_rate_bucket_refills_at_the_rate():
    rate = limits.CommandRate(per_second=5)
    assert [rate.delay() for _ in range(5)] == [0.0] * 5
    assert rate.delay() == pytest.approx(0.2, abs=0.02)
    assert rate.delay() == pytest.approx(0.4, abs=0.02)


async def test_requests_queued_past_the_bound_close_the_connection(world: World, parsec_settings):
    parsec_settings(max_commands_per_second=1)  # the first commands wait: requests pile up meanwhile
    client = await connect_as(world.alice)
    for n in range(limits.MAX_QUEUED_REQUESTS + 3):
        await client.send({"cmd": "ping", "ping": str(n)})
    while (message := await client.communicator.receive_output(10))["type"] == "websocket.send":
        pass
    assert message == {
        "type": "websocket.close", "code": limits.CLOSE_POLICY_VIOLATION, "reason": limits.TOO_MANY_QUEUED,
    }


async def test_silent_connection_is_closed_after_the_handshake_timeout(world: World, parsec_settings):
    parsec_settings(handshake_timeout=0.3)
    client = await WsClient.connect()
    assert await client.receive_close(timeout=5) == 1000
    # A connection that completes its handshake in time is not affected afterwards.
    served = await connect_as(world.alice)
    await asyncio.sleep(0.5)
    assert await served.command("ping", ping="x") == {"status": "ok", "pong": "x"}
