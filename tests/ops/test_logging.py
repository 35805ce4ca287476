"""Structured logs (docs/configuration.md#options): formats, the per-command and per-request lines, redaction."""
from __future__ import annotations

import json
import logging
import re

import pytest
import structlog
from django.test import AsyncClient, Client

from parsec_site.logging import REDACTOR, Redactor, configured_secrets, logging_config
from tests.conftest import World, connect_as
from tests.ops.conftest import CapturedLogs, capture_logs
from tests.testkit.ws import WsClient

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def secret():
    value = "s3cr3t-value-of-the-test"
    REDACTOR.register(value)
    yield value
    REDACTOR.clear()


def test_json_lines_carry_event_level_timestamp_and_context(logs: CapturedLogs):
    structlog.contextvars.bind_contextvars(conn_id="c0ffee")
    try:
        structlog.get_logger("parsec.protocol").info("Request", cmd="ping", status="ok")
        logging.getLogger("parsec.other").warning("from the %s library", "standard")
    finally:
        structlog.contextvars.clear_contextvars()
    first, second = logs.lines()
    assert first["event"] == "Request" and first["level"] == "info" and first["logger"] == "parsec.protocol"
    assert first["cmd"] == "ping" and first["status"] == "ok" and first["conn_id"] == "c0ffee"
    assert ISO_UTC.match(first["timestamp"]), first["timestamp"]
    assert second["event"] == "from the standard library" and second["level"] == "warning"
    assert second["conn_id"] == "c0ffee"


def test_console_lines_are_timestamp_level_event_then_key_values():
    with capture_logs("CONSOLE") as captured:
        structlog.get_logger("parsec.protocol").info("Request", cmd="ping", status="ok")
        logging.getLogger("parsec.x").info("first\nsecond")
    request_line, forged = captured.text.splitlines()
    assert re.match(r"^\S+Z \[info\] Request .*cmd=ping status=ok", request_line), request_line
    # A newline in a message cannot start a line of its own.
    assert "first second" in forged


def test_sensitive_keys_and_bytes_never_written(logs: CapturedLogs, secret: str):
    structlog.get_logger("t").info(
        "stored", token="abcdef0123456789", bootstrap_token="ffff0000", block=b"\x00" * 10, signing_key="k",
        blob=b"blob", user_password="pw", size=10, note=f"contains {secret} inside",
    )
    [line] = logs.lines()
    for key in ("token", "bootstrap_token", "block", "signing_key", "blob", "user_password"):
        assert line[key] == "[redacted]", key
    assert line["size"] == 10
    assert line["note"] == "contains [redacted] inside"
    assert secret not in logs.text and "abcdef0123456789" not in logs.text


def test_exception_tracebacks_are_redacted(logs: CapturedLogs, secret: str):
    try:
        raise RuntimeError(f"cannot connect with {secret}")
    except RuntimeError:
        logging.getLogger("parsec.x").exception("crash")
    [line] = logs.lines()
    assert "RuntimeError: cannot connect with [redacted]" in line["exception"]
    assert secret not in logs.text


def test_binary_values_show_only_their_size():
    assert Redactor().scrub_value(b"\x01\x02\x03") == "<3 bytes>"


def test_configured_secrets_of_the_server_options(settings):
    import dataclasses

    from blocks.stores.config import parse_blockstore

    config = dataclasses.replace(
        settings.PARSEC, administration_token="admin-token-123",
        db_url="postgresql://parsec:db-password@db/parsec", redis_url="redis://:redis-password@r:6379/0",
        sentry_dsn="https://public-key@sentry.example.com/1",
        blockstore_config=parse_blockstore(("RAID1:0:s3::eu:bucket:s3-key-id:s3-secret-key", "RAID1:1:MOCKED")),
    )
    found = set(configured_secrets(config))
    assert {"admin-token-123", "db-password", "redis-password", "public-key", "s3-key-id", "s3-secret-key"} <= found


def test_logging_config_writes_to_a_file(tmp_path):
    config = logging_config(level="WARNING", log_format="JSON", log_file=str(tmp_path / "server.log"))
    assert config["handlers"]["parsec"]["class"] == "logging.handlers.WatchedFileHandler"
    assert config["root"]["level"] == "WARNING"
    with pytest.raises(ValueError):
        logging_config(level="LOUD", log_format="JSON", log_file=None)


# --- The server's lines ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_one_line_per_command_with_organization_device_status_duration(world: World, logs: CapturedLogs):
    client = await connect_as(world.alice)
    assert await client.command("ping", ping="hello")
    await client.communicator.disconnect()
    [established] = logs.events("Connection established (client/server API version: 3.4/3.4)")
    [request] = logs.events("Request")
    for line in (established, request):
        assert line["organization_id"] == world.organization_id
        assert line["device_id"] == world.alice.device_id
        assert line["conn_id"] == established["conn_id"]
    assert request["cmd"] == "ping" and request["status"] == "ok"
    assert isinstance(request["duration_ms"], float)
    assert "hello" not in logs.text  # the request's content is not logged


@pytest.mark.django_db(transaction=True)
async def test_handshake_failure_logged_with_its_reason(world: World, logs: CapturedLogs):
    client = await WsClient.connect()
    result = await client.authenticate(
        organization_id=world.organization_id, device_id="nobody@dev1", signing_key=world.alice.signing_key,
        root_verify_key=world.root_verify_key,
    )
    assert result["result"] == "bad_identity"
    [line] = logs.events("Connection dropped: bad handshake")
    assert line["result"] == "bad_identity" and line["reason"]
    assert line["organization_id"] == world.organization_id and line["device_id"] == "nobody@dev1"


@pytest.mark.django_db(transaction=True)
async def test_bad_message_logged_with_its_reason(world: World, logs: CapturedLogs):
    client = await connect_as(world.alice)
    reply = await client.command("vlob_read", encryption_revision=1)
    assert reply == {"status": "bad_message", "reason": "missing field `vlob_id`"}
    await client.communicator.disconnect()
    [line] = logs.events("Request refused: bad message")
    assert line["cmd"] == "vlob_read" and line["reason"] == "missing field `vlob_id`"
    assert line["device_id"] == world.alice.device_id


@pytest.mark.django_db(transaction=True)
async def test_bad_message_of_the_anonymous_route_logged(world: World, logs: CapturedLogs):
    from tests.conftest import anonymous_rpc

    response = await anonymous_rpc(world.organization_id, {"cmd": "organization_bootstrap"})
    assert response.status_code == 200
    [line] = logs.events("Request refused: bad message")
    assert line["cmd"] == "organization_bootstrap" and line["reason"] == "missing field `bootstrap_token`"


@pytest.mark.django_db(transaction=True)
async def test_one_line_per_http_request_without_query_string(world: World, logs: CapturedLogs):
    response = await AsyncClient().post(
        f"/anonymous/{world.organization_id}?token=not-for-the-logs", data=b"\x80", content_type="application/msgpack",
    )
    [line] = logs.events("HTTP request")
    assert line["method"] == "POST" and line["path"] == f"/anonymous/{world.organization_id}"
    assert line["status"] == response.status_code and line["organization_id"] == world.organization_id
    assert line["size"] == len(response.content) and line["duration_ms"] >= 0
    assert line["author"] == "-" and line["http_version"]
    assert "not-for-the-logs" not in logs.text


def test_http_request_line_of_a_404(logs: CapturedLogs):
    assert Client().get("/no/such/page").status_code == 404
    [line] = logs.events("HTTP request")
    assert line["status"] == 404 and "organization_id" not in line


def test_json_lines_each_parse(logs: CapturedLogs):
    Client().get("/")
    structlog.get_logger("x").info("with \"quotes\" and\nnewline", value={"nested": [1, 2]})
    assert all(json.loads(raw) for raw in logs.text.splitlines())
