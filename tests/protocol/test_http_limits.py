"""The connection caps and the command rate on the HTTP routes (`/authenticated/<org>`, `/invited/<org>` and the
SSE stream): a request or a stream is a connection of `--max-connections` and
`--max-connections-per-organization` while it runs, refused with 503 + Retry-After past them (the HTTP form of
the websocket's 1013), and `--max-commands-per-second` is the rate of one device or invitation across its
requests (protocol/limits.py).
"""
from __future__ import annotations

import gc
import time

import pytest

from organizations.models import Organization
from protocol import limits
from tests.conftest import World, add_user, bootstrap_organization
from tests.ops.conftest import metric
from tests.testkit import http

pytestmark = pytest.mark.django_db(transaction=True)

PING = {"cmd": "ping", "ping": "hello"}
PONG = {"status": "ok", "pong": "hello"}


def assert_busy(response: dict) -> None:
    assert (response["status"], response["headers"].get("retry-after")) == (503, "5"), response


async def test_request_past_the_process_cap_is_503_until_a_stream_ends(world: World, parsec_settings):
    gc.collect()  # connections abandoned by earlier tests give their slots back now, not mid-test
    stream = await http.SseClient.open(world.alice)
    assert stream.status == 200
    # The open stream holds a slot: the cap is exactly what is open now, so the next request is one too many.
    parsec_settings(max_connections=limits.open_connections())
    before = metric("parsec_connections_closed_by_limit_total", reason="server_full")
    assert_busy(await http.authenticated(world.alice, PING))
    assert metric("parsec_connections_closed_by_limit_total", reason="server_full") == before + 1
    await stream.close()
    assert http.reply(await http.authenticated(world.alice, PING)) == PONG


async def test_each_request_gives_its_slot_back(world: World, parsec_settings):
    gc.collect()
    open_before = limits.open_connections()
    parsec_settings(max_connections=open_before + 1)  # room for one request at a time
    for _ in range(3):  # served one after the other: each released its slot for the next
        assert http.reply(await http.authenticated(world.alice, PING, until_done=True)) == PONG
    assert limits.open_connections() == open_before


async def test_stream_past_the_organization_cap_is_503_and_other_organizations_are_served(
    world: World, parsec_settings
):
    organization = await Organization.objects.aget(organization_id=world.organization_id)
    bob = await add_user(world, "bob")
    first = await http.SseClient.open(world.alice)
    parsec_settings(max_connections_per_organization=limits.organization_sessions(organization.pk))
    before = metric("parsec_connections_closed_by_limit_total", reason="organization_full")
    assert_busy(await http.authenticated(bob, PING))
    refused = await http.SseClient.open(bob)
    assert refused.status == 503
    assert metric("parsec_connections_closed_by_limit_total", reason="organization_full") == before + 2
    other = await bootstrap_organization("OtherHttpOrg")
    assert http.reply(await http.authenticated(other.alice, PING)) == PONG
    await first.close()
    assert http.reply(await http.authenticated(bob, PING)) == PONG


async def test_requests_of_one_device_are_slowed_to_the_rate_not_refused(world: World, parsec_settings):
    parsec_settings(max_commands_per_second=2.0)
    started = time.monotonic()
    # A burst of 2 passes at once; the next 2 wait for their tokens (0.5 s each): answered, none refused.
    for _ in range(4):
        assert http.reply(await http.authenticated(world.alice, PING)) == PONG
    assert time.monotonic() - started >= 0.9


def test_rate_buckets_are_per_client_and_bounded(monkeypatch):
    monkeypatch.setattr(limits, "MAX_HTTP_RATE_BUCKETS", 3)
    monkeypatch.setattr(limits, "_http_rates", {})
    for _ in range(5):
        limits.http_command_delay(("device", 42), 5.0)
    assert limits.http_command_delay(("device", 42), 5.0) > 0  # over its rate: waits
    assert limits.http_command_delay(("invitation", 42), 5.0) == 0.0  # another client: its own bucket
    for pk in range(10):
        assert limits.http_command_delay(("device", pk), 5.0) == 0.0
    assert len(limits._http_rates) <= 3  # idle (full) buckets are forgotten first, then the oldest
