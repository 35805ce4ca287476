"""`GET /authenticated/<org>/events` (docs/protocol.md#sse): the SSE stream, its ids, keepalives and resumption."""
from __future__ import annotations

import asyncio

import pytest

from organizations.models import Organization
from protocol import sse
from tests.conftest import World, add_device, add_user, connect_as
from tests.testkit import certs
from tests.testkit.http import SseClient

pytestmark = pytest.mark.django_db(transaction=True)


def pinged(ping: str) -> dict:
    return {"status": "ok", "event": "pinged", "ping": ping}


async def ping_from(device, *pings: str) -> None:
    client = await connect_as(device)
    for ping in pings:
        assert (await client.command("ping", ping=ping))["status"] == "ok"


async def test_stream_starts_with_a_keepalive(world: World):
    stream = await SseClient.open(world.alice)
    assert stream.status == 200
    assert stream.headers["content-type"] == "text/event-stream"
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["api-version"] == "3.4"
    assert await stream.message() == {"comment": "keepalive"}
    await stream.close()


async def test_events_have_increasing_ids(world: World):
    stream = await SseClient.open(world.alice)
    await ping_from(await add_device(world.alice, "dev2"), "one", "two")
    first_id, first = await stream.event()
    second_id, second = await stream.event()
    assert (first, second) == (pinged("one"), pinged("two"))
    token, _, number = first_id.partition("-")
    assert second_id == f"{token}-{int(number) + 1}"
    await stream.close()


async def test_events_of_the_device_itself_are_not_sent(world: World):
    stream = await SseClient.open(world.alice)
    await ping_from(world.alice, "mine")
    await ping_from(await add_device(world.alice, "dev2"), "theirs")
    assert (await stream.event())[1] == pinged("theirs")
    await stream.close()


async def test_keepalive_when_nothing_happens(world: World, parsec_settings):
    parsec_settings(sse_keepalive=1)
    stream = await SseClient.open(world.alice)
    assert await stream.message() == {"comment": "keepalive"}  # the first one, right away
    assert await stream.message(timeout=3) == {"comment": "keepalive"}
    assert await stream.message(timeout=3) == {"comment": "keepalive"}
    await stream.close()


async def test_no_keepalive_when_disabled(world: World, parsec_settings):
    parsec_settings(sse_keepalive=0)
    stream = await SseClient.open(world.alice)
    assert await stream.message() == {"comment": "keepalive"}
    with pytest.raises((asyncio.TimeoutError, TimeoutError)):
        await stream.message(timeout=1.5)
    await stream.close()


async def test_reconnection_with_last_event_id_gets_what_was_missed(world: World):
    other = await add_device(world.alice, "dev2")
    stream = await SseClient.open(world.alice)
    await ping_from(other, "seen")
    seen_id, _ = await stream.event()
    await stream.close()
    await ping_from(other, "missed-1", "missed-2")
    again = await SseClient.open(world.alice, headers={"Last-Event-ID": seen_id})
    assert await again.message() == {"comment": "keepalive"}
    token, _, number = seen_id.partition("-")
    assert await again.event() == (f"{token}-{int(number) + 1}", pinged("missed-1"))
    assert await again.event() == (f"{token}-{int(number) + 2}", pinged("missed-2"))
    await ping_from(other, "live")
    assert (await again.event())[1] == pinged("live")
    await again.close()


async def test_events_written_but_not_received_are_sent_again(world: World):
    other = await add_device(world.alice, "dev2")
    stream = await SseClient.open(world.alice)
    await ping_from(other, "a", "b", "c")
    first_id, _ = await stream.event()
    await stream.event()
    await stream.event()
    await stream.close()
    # The client only got the first one before its connection broke.
    again = await SseClient.open(world.alice, headers={"Last-Event-ID": first_id})
    assert [(await again.event())[1] for _ in range(2)] == [pinged("b"), pinged("c")]
    await again.close()


async def test_a_new_connection_takes_the_stream_over(world: World):
    other = await add_device(world.alice, "dev2")
    stream = await SseClient.open(world.alice)
    await ping_from(other, "seen")
    seen_id, _ = await stream.event()
    # The first connection is half-open (the client does not know yet): the resumption wins.
    again = await SseClient.open(world.alice, headers={"Last-Event-ID": seen_id})
    await again.message()
    while (message := await stream.message()) is not None:
        assert message == {"comment": "keepalive"}
    await ping_from(other, "next")
    assert (await again.event())[1] == pinged("next")
    await again.close()


@pytest.mark.parametrize("last_event_id", ["unknown-1", "garbage", "-"])
async def test_unknown_last_event_id_says_events_were_missed(world: World, last_event_id):
    stream = await SseClient.open(world.alice, headers={"Last-Event-ID": last_event_id})
    assert await stream.message() == {"comment": "keepalive"}
    assert await stream.message() == {"event": "missed_events", "data": ""}
    await ping_from(await add_device(world.alice, "dev2"), "fresh")
    assert (await stream.event())[1] == pinged("fresh")
    await stream.close()


async def test_another_devices_stream_is_not_resumed(world: World):
    alice2 = await add_device(world.alice, "dev2")
    stream = await SseClient.open(world.alice)
    await ping_from(alice2, "for alice@dev1")
    seen_id, _ = await stream.event()
    other = await SseClient.open(alice2, headers={"Last-Event-ID": seen_id})
    assert await other.message() == {"comment": "keepalive"}
    assert await other.message() == {"event": "missed_events", "data": ""}
    await other.close()
    await stream.close()


async def test_too_many_missed_events_cannot_be_resumed(world: World):
    other = await add_device(world.alice, "dev2")
    stream = await SseClient.open(world.alice)
    await ping_from(other, "seen")
    seen_id, _ = await stream.event()
    await stream.close()
    await ping_from(other, *(f"p{i}" for i in range(sse.HISTORY + 1)))
    again = await SseClient.open(world.alice, headers={"Last-Event-ID": seen_id})
    await again.message()
    assert await again.message() == {"event": "missed_events", "data": ""}
    await again.close()


async def test_stream_is_closed_when_the_user_is_revoked(world: World):
    bob = await add_user(world, "bob")
    stream = await SseClient.open(bob)
    await stream.message()
    admin = await connect_as(world.alice)
    certificate = certs.revoked_user_certificate(
        world.alice.signing_key, author=world.alice.device_id, timestamp=certs.now(), user_id="bob"
    )
    assert await admin.command("user_revoke", revoked_user_certificate=certificate) == {"status": "ok"}
    while (message := await stream.message()) is not None:
        assert message == {"comment": "keepalive"}
    again = await SseClient.open(bob)
    assert again.status == 461


async def test_revoked_user_is_461(world: World):
    bob = await add_user(world, "bob", revoked=True)
    assert (await SseClient.open(bob)).status == 461


async def test_without_accept_event_stream_is_406(world: World):
    assert (await SseClient.open(world.alice, headers={"Accept": "application/msgpack"})).status == 406


async def test_bad_signature_is_401(world: World):
    bob = await add_user(world, "bob")
    assert (await SseClient.open(world.alice, headers={"Signature": certs_signature(bob)})).status == 401


def certs_signature(device) -> str:
    import base64

    return base64.b64encode(device.signing_key.sign(b"").signature).decode()


async def test_expired_organization_is_460(world: World):
    await Organization.objects.filter(organization_id=world.organization_id).aupdate(is_expired=True)
    assert (await SseClient.open(world.alice)).status == 460


async def test_unsupported_api_version_is_422(world: World):
    assert (await SseClient.open(world.alice, headers={"Api-Version": "5.0"})).status == 422
