"""The fuzzer's failure classes, pinned as regression tests on `/ws` and on the HTTP route: deep
nesting, huge fields, wrong types per field, extra and missing keys, bodies that are not maps.
The commands and fields come from the wire schemas, like the fuzzer's."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from hypothesis import Phase, find, settings

from protocol import codec
from protocol.registry import Family, registered_commands
from tests.conftest import World, anonymous_rpc, connect_as
from tests.fuzz.strategies import deep_frame, well_typed_request, wire_requests
from tests.testkit.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

INVALID_MSG_FORMAT = {"status": "invalid_msg_format", "reason": "Invalid message format"}
UNKNOWN_COMMAND = {"status": "unknown_command", "reason": "Unknown command"}
PING_WITH_DEEP_VALUE = b"\x82\xa3cmd\xa4ping\xa4ping"  # {"cmd": "ping", "ping": <what follows>}
MSGPACK_DEPTH_LIMIT = 1024  # msgpack-python's, the reference's decoder too


def authenticated_fields() -> list[tuple[str, str, str]]:
    return [
        (cmd, field["name"], field["type"])
        for cmd, schema in sorted(wire_requests()["authenticated"].items())
        if cmd in registered_commands(Family.AUTHENTICATED)
        for field in schema["fields"]
    ]


async def raw_exchange(client: WsClient, frame: bytes) -> dict:
    await client.send_raw(bytes_data=frame)
    return await client.receive()


async def still_serving(client: WsClient) -> None:
    assert await client.command("ping", ping="alive") == {"status": "ok", "pong": "alive"}


# --- deep nesting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("leaf", [b"\xc0", b"\xff", b"\xd6\xff\x00\x00\x00\x00"], ids=["nil", "minus-one", "ext-minus-1"])
@pytest.mark.parametrize("depth", [500, 1000, MSGPACK_DEPTH_LIMIT - 1, MSGPACK_DEPTH_LIMIT + 1, 100_000])
async def test_deep_nesting_on_ws(world: World, depth: int, leaf: bytes):
    client = await connect_as(world.alice)
    as_field = await raw_exchange(client, PING_WITH_DEEP_VALUE + deep_frame(depth, leaf))
    as_body = await raw_exchange(client, deep_frame(depth, leaf))
    if depth + 1 > MSGPACK_DEPTH_LIMIT or leaf.startswith(b"\xd6"):
        # Past the decoder's depth, or holding msgpack's own timestamp type: not protocol msgpack.
        assert as_field == INVALID_MSG_FORMAT
    else:
        assert as_field["status"] == "bad_message" and len(as_field["reason"]) < 200
    if depth > MSGPACK_DEPTH_LIMIT or leaf.startswith(b"\xd6"):
        assert as_body == INVALID_MSG_FORMAT
    else:
        assert as_body == UNKNOWN_COMMAND  # a map without `cmd`
    await still_serving(client)


@pytest.mark.parametrize("depth", [1000, MSGPACK_DEPTH_LIMIT + 1, 100_000])
async def test_deep_nesting_on_http(world: World, client_http, depth: int):
    for body in (deep_frame(depth, b"\xff"), b"\x82\xa3cmd\xb6organization_bootstrap\xa1x" + deep_frame(depth, b"\xff")):
        response = await client_http(body)
        # Not decodable, or a map without a known `cmd`: 415, or a command whose fields are wrong: bad_message.
        assert response.status_code in (200, 415)
        if response.status_code == 200:
            assert codec.unpackb(response.content)["status"] == "bad_message"


@pytest.fixture
def client_http(world: World):
    from django.test import AsyncClient

    client = AsyncClient()

    async def post(body: bytes):
        return await client.post(f"/anonymous/{world.organization_id}", data=body, content_type="application/msgpack")

    return post


# --- wrong types, huge values, missing and extra keys, per field of every command -------------------


def a_valid_request(cmd: str) -> dict:
    """A well-typed request of `cmd` (the first hypothesis draws, always the same one)."""
    return find(
        well_typed_request("authenticated", cmd), lambda request: True,
        settings=settings(phases=[Phase.generate], derandomize=True, database=None),
    )


async def test_wrong_type_in_every_field_is_bad_message(world: World):
    client = await connect_as(world.alice)
    for cmd, field, field_type in authenticated_fields():
        # 1.5: no request field of any command is a Float.
        request = {**a_valid_request(cmd), field: 1.5}
        reply = await raw_exchange(client, codec.packb(request))
        assert reply["status"] == "bad_message", (cmd, field, field_type, reply)
        assert f"`{field}`" in reply["reason"], (cmd, field, reply)
    await still_serving(client)


async def test_huge_value_in_every_field_is_answered_briefly(world: World):
    client = await connect_as(world.alice)
    huge_text = "é" * 500_000
    for cmd, field, field_type in authenticated_fields():
        if "String" in field_type:
            continue  # free text: a long one is a valid value (the reference takes it too)
        request = {"cmd": cmd, field: huge_text}
        reply = await raw_exchange(client, codec.packb(request))
        assert reply["status"] == "bad_message", (cmd, field, reply)
        # The reason names the problem, it does not echo half a megabyte back.
        assert len(reply["reason"]) < 500, (cmd, field)
    await still_serving(client)


async def test_millions_of_tiny_items(world: World):
    # ~15 MiB of one-byte items: decoded off the event loop (protocol/consumer.py), answered all the same.
    client = await connect_as(world.alice)
    items = 3_000_000
    reply = await raw_exchange(client, codec.packb({"cmd": "ping", "ping": [None] * items, "-1": -1}))
    assert reply["status"] == "bad_message"
    per_participant_message = {f"u{index}": b"" for index in range(items // 4)}
    reply = await raw_exchange(client, codec.packb({
        "cmd": "realm_start_reencryption_maintenance", "realm_id": uuid.uuid4(), "encryption_revision": 2,
        "timestamp": datetime.now(timezone.utc), "per_participant_message": per_participant_message,
    }))
    assert reply["status"] == "not_found"  # every field decoded; the realm does not exist
    await still_serving(client)


async def test_bin_over_one_mebibyte_in_every_field(world: World):
    client = await connect_as(world.alice)
    for cmd, field, _ in authenticated_fields()[::3]:
        reply = await raw_exchange(client, codec.packb({"cmd": cmd, field: b"\x00" * (codec.MAX_BIN_LEN + 1)}))
        assert reply == INVALID_MSG_FORMAT, (cmd, field)
    await still_serving(client)


async def test_missing_fields_are_bad_message(world: World):
    client = await connect_as(world.alice)
    for cmd, schema in sorted(wire_requests()["authenticated"].items()):
        required = [
            field for field in schema["fields"]
            if "introduced_in" not in field and not field["type"].startswith("NonRequiredOption")
        ]
        if cmd not in registered_commands(Family.AUTHENTICATED) or not (required or "unit" in schema):
            continue
        assert (await raw_exchange(client, codec.packb({"cmd": cmd})))["status"] == "bad_message", cmd
    await still_serving(client)


async def test_extra_keys_are_ignored(world: World):
    client = await connect_as(world.alice)
    extras = {"extra": [1, {"a": b"b"}], "": None, "cmd2": "ping", "nested": deep_frame(0), "pong": 1.5}
    assert await client.command("ping", ping="x", **extras) == {"status": "ok", "pong": "x"}
    reply = await client.command(
        "human_find", query="alice", omit_revoked=False, omit_non_human=False, page=1, per_page=10, **extras
    )
    assert reply["status"] == "ok" and reply["total"] == 1


# --- bodies that are not request maps -------------------------------------------------------------------


NOT_MAPS = [codec.packb([{"cmd": "ping"}]), codec.packb("ping"), codec.packb(1), codec.packb(None),
            codec.packb(b"ping"), b"", b"\xc1", b"\x81\xa3cmd"]


@pytest.mark.parametrize("body", NOT_MAPS, ids=["list", "str", "int", "nil", "bin", "empty", "reserved-byte", "truncated"])
async def test_non_map_bodies(world: World, client_http, body: bytes):
    client = await connect_as(world.alice)
    assert await raw_exchange(client, body) == INVALID_MSG_FORMAT
    await still_serving(client)
    assert (await client_http(body)).status_code == 415


async def test_http_field_errors_are_bad_message(world: World):
    response = await anonymous_rpc(world.organization_id, {"cmd": "organization_bootstrap", "bootstrap_token": 1.5})
    assert response.status_code == 200
    reply = codec.unpackb(response.content)
    assert reply["status"] == "bad_message" and len(reply["reason"]) < 500
