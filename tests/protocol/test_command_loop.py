"""The command loop after the handshake (docs/protocol.md#command-loop): generic errors, order, cancellation."""
from __future__ import annotations

import asyncio

import pytest

from protocol import codec
from protocol.registry import Family, command
from tests.conftest import World, connect_as
from tests.testkit.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

INVALID_MSG_FORMAT = {"status": "invalid_msg_format", "reason": "Invalid message format"}
UNKNOWN_COMMAND = {"status": "unknown_command", "reason": "Unknown command"}


# Commands that exist only for these tests, to exercise the loop's mechanics.
@command("test_wait_forever", family=Family.AUTHENTICATED, cancellable=True)
async def wait_forever(session, req):
    await asyncio.Event().wait()


@command("test_slow", family=Family.AUTHENTICATED)
async def slow(session, req):
    await asyncio.sleep(0.3)
    return {"status": "ok", "slow": True}


@command("test_crash", family=Family.AUTHENTICATED)
async def crash(session, req):
    raise RuntimeError("a bug in a handler")


@command("test_returns_a_list", family=Family.AUTHENTICATED)
async def returns_a_list(session, req):
    return ["ok"]


@command("test_returns_no_status", family=Family.AUTHENTICATED)
async def returns_no_status(session, req):
    return {"result": "ok"}


@command("test_returns_unpackable", family=Family.AUTHENTICATED)
async def returns_unpackable(session, req):
    return {"status": "ok", "value": object()}


async def still_serving(client: WsClient) -> None:
    assert await client.command("ping", ping="alive") == {"status": "ok", "pong": "alive"}


async def test_text_frame(world: World):
    client = await connect_as(world.alice)
    await client.send_raw(text_data="{}")
    assert await client.receive() == INVALID_MSG_FORMAT
    await still_serving(client)


@pytest.mark.parametrize("frame", [b"\xc1\xc1", b"", codec.packb([1]), codec.packb("cmd")], ids=["garbage", "empty", "array", "str"])
async def test_not_a_msgpack_map(world: World, frame: bytes):
    client = await connect_as(world.alice)
    await client.send_raw(bytes_data=frame)
    assert await client.receive() == INVALID_MSG_FORMAT
    await still_serving(client)


async def test_bin_over_one_mebibyte(world: World):
    client = await connect_as(world.alice)
    assert await client.command("ping", ping="x", padding=b"\x00" * 1_048_577) == INVALID_MSG_FORMAT
    # Exactly 1 MiB is accepted (and the unknown key ignored).
    assert await client.command("ping", ping="x", padding=b"\x00" * 1_048_576) == {"status": "ok", "pong": "x"}


async def test_exact_generic_reply_bytes(world: World):
    client = await connect_as(world.alice)
    await client.send({"cmd": "nope"})
    message = await client.communicator.receive_output(5)
    assert message["bytes"].hex() == (
        "82a6737461747573af756e6b6e6f776e5f636f6d6d616e64a6726561736f6eaf556e6b6e6f776e20636f6d6d616e64"
    )
    await client.send_raw(text_data="x")
    message = await client.communicator.receive_output(5)
    assert message["bytes"].hex() == (
        "82a6737461747573b2696e76616c69645f6d73675f666f726d6174a6726561736f6eb6496e76616c6964206d65737361676520666f726d6174"
    )


@pytest.mark.parametrize(
    "request_map",
    [{"ping": "x"}, {"cmd": 1}, {"cmd": b"ping"}, {"cmd": "nope"}, {"cmd": "organization_bootstrap"}],
    ids=["missing", "int", "bytes", "unknown", "anonymous-family"],
)
async def test_unknown_command(world: World, request_map: dict):
    client = await connect_as(world.alice)
    await client.send(request_map)
    assert await client.receive() == UNKNOWN_COMMAND
    await still_serving(client)


async def test_bad_message(world: World):
    client = await connect_as(world.alice)
    reply = await client.command("ping", ping=42)
    assert reply["status"] == "bad_message"
    assert isinstance(reply["reason"], str)
    reply = await client.command("ping")
    assert reply["status"] == "bad_message"
    await still_serving(client)


async def test_ping_is_unknown_without_debug(world: World, parsec_settings):
    parsec_settings(debug=False)
    client = await connect_as(world.alice)
    assert await client.command("ping", ping="x") == UNKNOWN_COMMAND


async def test_new_request_cancels_cancellable_command_without_reply(world: World):
    client = await connect_as(world.alice)
    await client.send({"cmd": "test_wait_forever"})
    assert await client.nothing_received(0.2)
    assert await client.command("ping", ping="after") == {"status": "ok", "pong": "after"}
    assert await client.nothing_received(0.2)


async def test_non_cancellable_commands_reply_in_order(world: World):
    client = await connect_as(world.alice)
    await client.send({"cmd": "test_slow"})
    await client.send({"cmd": "ping", "ping": "second"})
    assert await client.receive() == {"status": "ok", "slow": True}
    assert await client.receive() == {"status": "ok", "pong": "second"}


async def test_crashing_handler_answers_internal_error_and_the_session_goes_on(world: World, caplog):
    bystander = await connect_as(world.alice)
    client = await connect_as(world.alice)
    with caplog.at_level("ERROR", logger="parsec.protocol"):
        assert await client.command("test_crash") == {"status": "internal_error", "reason": "Internal server error"}
    # One ERROR line, with the traceback (what Sentry's logging integration turns into an event).
    crashes = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(crashes) == 1 and crashes[0].exc_info is not None
    await still_serving(client)
    await still_serving(bystander)


async def test_reply_that_is_not_a_status_map_is_an_internal_error(world: World):
    client = await connect_as(world.alice)
    for name in ("test_returns_a_list", "test_returns_no_status", "test_returns_unpackable"):
        assert await client.command(name) == {"status": "internal_error", "reason": "Internal server error"}, name
    await still_serving(client)


async def test_client_gone_before_the_reply_is_not_a_crash(world: World, caplog, monkeypatch):
    from autobahn.exception import Disconnected
    from channels.generic.websocket import AsyncWebsocketConsumer

    client = await connect_as(world.alice)
    base_send = AsyncWebsocketConsumer.send

    async def closed_protocol(self, text_data=None, bytes_data=None, close=False):
        # What daphne's autobahn protocol raises when the socket closed while the command ran.
        raise Disconnected("Attempt to send on a closed protocol")

    with caplog.at_level("DEBUG"):
        monkeypatch.setattr(AsyncWebsocketConsumer, "send", closed_protocol)
        await client.send({"cmd": "ping", "ping": "lost"})
        assert await client.nothing_received(0.3)
        monkeypatch.setattr(AsyncWebsocketConsumer, "send", base_send)
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]
    await still_serving(client)


async def test_frame_over_sixteen_mebibytes_closes(world: World):
    client = await connect_as(world.alice)
    await client.send_raw(bytes_data=b"\x00" * (16 * 1024 * 1024 + 1))
    assert await client.receive_close() == 1000


async def test_invited_session_cannot_run_authenticated_commands(world: World):
    import uuid

    from django.utils import timezone

    from invites.models import Invitation
    from organizations.models import User

    alice = await User.objects.select_related("organization").aget(user_id="alice")
    invitation = await Invitation.objects.acreate(
        organization=alice.organization, token=uuid.uuid4(), type="DEVICE", greeter=alice, created_on=timezone.now()
    )
    client = await WsClient.connect()
    await client.invited(organization_id=world.organization_id, invitation_type="DEVICE", token=invitation.token)
    assert await client.command("test_slow") == UNKNOWN_COMMAND
