"""The schema-driven fuzzer: every command of the three families, drawn from the wire schemas.

Properties, for every request (well-typed, or with a field of the wrong type, a field missing,
extra keys, a huge string/bytes/list, deep nesting) and every non-request frame:
* a well-formed msgpack request gets exactly one `{status: str, ...}` reply (or, for a command
  that waits for a peer or an event, nothing yet; or a clean close where the spec says so);
* nothing is logged at ERROR (a crash logs its traceback there, and that is what Sentry gets);
* the server works afterwards (a fresh session answers `ping`).

`--fuzz-examples N` draws N requests per command (10 by default: seconds in CI). A long run:
`pytest tests/fuzz --fuzz-examples 2000`.
"""
from __future__ import annotations

import logging
import uuid

import pytest
from django.test import AsyncClient
from django.utils import timezone

from protocol import codec
from tests.conftest import World, connect_as
from tests.fuzz import strategies
from tests.fuzz.harness import ErrorLog, WsSession, fuzz, is_status_reply
from tests.testkit.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def examples(request) -> int:
    return request.config.getoption("--fuzz-examples")


@pytest.fixture
def error_log():
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


async def invitation_token(world: World) -> uuid.UUID:
    from invites.models import Invitation
    from organizations.models import User

    alice = await User.objects.select_related("organization").aget(user_id="alice")
    invitation = await Invitation.objects.acreate(
        organization=alice.organization, token=uuid.uuid4(), type="DEVICE", greeter=alice, created_on=timezone.now()
    )
    return invitation.token


async def invited_client(world: World, token: uuid.UUID) -> WsClient:
    client = await WsClient.connect()
    result = await client.invited(organization_id=world.organization_id, invitation_type="DEVICE", token=token)
    assert result == {"handshake": "result", "result": "ok"}, result
    return client


async def still_serving(world: World) -> None:
    fresh = await connect_as(world.alice)
    assert await fresh.command("ping", ping="still here") == {"status": "ok", "pong": "still here"}
    await fresh.close()


async def fuzz_ws(world: World, session: WsSession, strategy, examples: int, error_log: ErrorLog) -> None:
    await session.open()

    async def check(drawn) -> None:
        frame = drawn if isinstance(drawn, bytes) else codec.packb(drawn)
        cmd = drawn.get("cmd") if isinstance(drawn, dict) else None
        await session.exchange(frame, cmd)
        assert not error_log.records, error_log.describe()

    try:
        await fuzz(strategy, check, examples)
    finally:
        await session.close()
    await still_serving(world)


@pytest.mark.parametrize("cmd", strategies.commands("authenticated"))
async def test_authenticated_command(world: World, cmd: str, examples: int, error_log: ErrorLog):
    session = WsSession(lambda: connect_as(world.alice))
    await fuzz_ws(world, session, strategies.request("authenticated", cmd), examples, error_log)


@pytest.mark.parametrize("cmd", strategies.commands("invited"))
async def test_invited_command(world: World, cmd: str, examples: int, error_log: ErrorLog):
    token = await invitation_token(world)
    session = WsSession(lambda: invited_client(world, token))
    await fuzz_ws(world, session, strategies.request("invited", cmd), examples, error_log)


async def test_frames_that_are_not_requests(world: World, examples: int, error_log: ErrorLog):
    session = WsSession(lambda: connect_as(world.alice))
    await fuzz_ws(world, session, strategies.frames, examples * 5, error_log)


@pytest.mark.parametrize("cmd", strategies.commands("anonymous"))
async def test_anonymous_command_over_http(world: World, cmd: str, examples: int, error_log: ErrorLog):
    client = AsyncClient()

    async def check(drawn) -> None:
        response = await client.post(
            f"/anonymous/{world.organization_id}", data=codec.packb(drawn), content_type="application/msgpack"
        )
        # Command results are 200 with a status map; routing and decoding refusals are 4xx. Never 5xx.
        assert response.status_code == 200 or 400 <= response.status_code < 500, response.status_code
        if response.status_code == 200:
            assert is_status_reply(codec.unpackb(response.content))
        assert not error_log.records, error_log.describe()

    await fuzz(strategies.request("anonymous", cmd), check, examples)
    await still_serving(world)


async def test_http_bodies_that_are_not_requests(world: World, examples: int, error_log: ErrorLog):
    client = AsyncClient()

    async def check(frame: bytes) -> None:
        response = await client.post(f"/anonymous/{world.organization_id}", data=frame, content_type="application/msgpack")
        assert response.status_code == 200 or 400 <= response.status_code < 500, response.status_code
        if response.status_code == 200:
            assert is_status_reply(codec.unpackb(response.content))
        assert not error_log.records, error_log.describe()

    await fuzz(strategies.frames, check, examples * 5)
    await still_serving(world)


async def test_handshake_answers_that_are_not_answers(world: World, examples: int, error_log: ErrorLog):
    async def check(frame: bytes) -> None:
        client = await WsClient.connect()
        await client.send_raw(bytes_data=frame)
        result = await client.receive()
        # Refused with the protocol's result, then a clean close (docs/protocol.md#handshake-checks).
        assert result["handshake"] == "result" and result["result"] == "bad_protocol", result
        assert isinstance(result["help"], str) and len(result["help"]) < 1000
        assert await client.receive_close() == 1000
        assert not error_log.records, error_log.describe()

    await fuzz(strategies.frames, check, examples * 3)
    await still_serving(world)
