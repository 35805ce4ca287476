"""`/metrics`: Prometheus text behind `--metrics-token`; counters follow the traffic."""
from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test import AsyncClient, Client
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import World, connect_as, create_realm
from tests.ops.conftest import metric
from tests.testkit.ws import WsClient

TOKEN = "metrics-token-of-the-tests"


@pytest.fixture
def metrics_enabled(parsec_settings):
    parsec_settings(metrics_token=TOKEN)


def scrape() -> dict[str, float]:
    return parse(Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))


async def ascrape() -> dict[str, float]:
    return parse(await AsyncClient().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}))


def parse(response) -> dict[str, float]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_disabled_without_a_token(parsec_settings):
    parsec_settings(metrics_token=None)
    assert Client().get("/metrics").status_code == 404


def test_refused_without_its_token(metrics_enabled):
    response = Client().get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401


def test_prometheus_text_with_the_token(metrics_enabled):
    samples = scrape()
    assert any(name.startswith("parsec_http_requests_total") for name in samples)
    assert "process_cpu_seconds_total{}" in samples or "python_info" in "".join(samples)


def test_http_requests_counted_by_route(metrics_enabled):
    before = metric("parsec_http_requests_total", method="GET", route="health/live", status="200")
    Client().get("/health/live")
    Client().get("/health/live")
    assert metric("parsec_http_requests_total", method="GET", route="health/live", status="200") == before + 2
    assert metric("parsec_http_request_duration_seconds_count", route="health/live") >= 2


@pytest.mark.django_db(transaction=True)
async def test_commands_sessions_and_events_move_with_traffic(world: World, metrics_enabled):
    from tests.conftest import add_device

    ok_before = metric("parsec_commands_total", family="authenticated", command="ping", status="ok")
    events_before = metric("parsec_events_sent_total")
    sessions_before = metric("parsec_websocket_sessions", kind="authenticated")

    other = await connect_as(await add_device(world.alice, "dev2"))
    assert await other.command("events_subscribe") == {"status": "ok"}
    client = await connect_as(world.alice)
    assert metric("parsec_websocket_sessions", kind="authenticated") == sessions_before + 2
    assert await client.command("ping", ping="p") == {"status": "ok", "pong": "p"}
    assert (await other.command("events_listen", wait=True))["event"] == "pinged"

    assert metric("parsec_commands_total", family="authenticated", command="ping", status="ok") == ok_before + 1
    assert metric("parsec_command_duration_seconds_count", family="authenticated", command="ping") >= 1
    assert metric("parsec_events_sent_total") == events_before + 1
    await client.communicator.disconnect()
    await other.communicator.disconnect()
    assert metric("parsec_websocket_sessions", kind="authenticated") == sessions_before


@pytest.mark.django_db(transaction=True)
async def test_handshake_failures_counted(world: World):
    before = metric("parsec_handshake_failures_total", result="bad_identity")
    client = await WsClient.connect()
    await client.authenticate(organization_id=world.organization_id, device_id="nobody@dev1",
                              signing_key=world.alice.signing_key, root_verify_key=world.root_verify_key)
    assert metric("parsec_handshake_failures_total", result="bad_identity") == before + 1


@pytest.mark.django_db(transaction=True)
async def test_blockstore_operations_and_errors(world: World, monkeypatch):
    from blocks.stores import factory
    from blocks.stores.base import BlockStoreError

    client = await connect_as(world.alice)
    realm_id = await create_realm(client, world.alice)
    writes = metric("parsec_blockstore_operations_total", operation="write", outcome="ok")
    reads = metric("parsec_blockstore_operations_total", operation="read", outcome="ok")
    errors = metric("parsec_blockstore_operations_total", operation="write", outcome="error")

    block_id = uuid.uuid4()
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"data") == {"status": "ok"}
    assert (await client.command("block_read", block_id=block_id))["status"] == "ok"

    class Down:
        def create(self, organization_id, block_id, data):
            raise BlockStoreError("down")

    monkeypatch.setattr(factory, "get_blockstore", lambda: Down())
    reply = await client.command("block_create", block_id=uuid.uuid4(), realm_id=realm_id, block=b"data")
    assert reply == {"status": "timeout"}
    assert metric("parsec_blockstore_operations_total", operation="write", outcome="ok") == writes + 1
    assert metric("parsec_blockstore_operations_total", operation="read", outcome="ok") == reads + 1
    assert metric("parsec_blockstore_operations_total", operation="write", outcome="error") == errors + 1


@pytest.mark.django_db(transaction=True)
async def test_database_pool_usage(metrics_enabled):
    # Some work opens the pool (PostgreSQL only: SQLite has none).
    assert (await AsyncClient().get("/health/ready")).status_code == 200
    samples = await ascrape()
    if connection.vendor == "postgresql":
        assert samples["parsec_db_pool_connections{state=max}"] >= 1
        assert samples["parsec_db_pool_connections{state=size}"] >= 1
        assert "parsec_db_pool_requests_waiting{}" in samples
    else:
        assert "parsec_db_pool_connections{state=max}" not in samples
