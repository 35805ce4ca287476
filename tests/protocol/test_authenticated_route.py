"""`POST /authenticated/<org>` (docs/protocol.md#session-routes): the device signs each request; every refusal is a
status."""
from __future__ import annotations

import asyncio
import base64

import pytest
from nacl.signing import SigningKey

from organizations.models import Organization, User
from protocol import codec
from protocol.db import run_sync
from tests.conftest import World, add_user, connect_as
from tests.invites.conftest import PUBLIC_KEY_C, PUBLIC_KEY_G, new_invitation
from tests.testkit import http

pytestmark = pytest.mark.django_db(transaction=True)

PING = {"cmd": "ping", "ping": "hello"}


async def test_a_command_is_answered_like_on_the_websocket(world: World):
    over_http = await http.authenticated(world.alice, {"cmd": "organization_config"})
    assert over_http["headers"]["api-version"] == "3.4"
    ws = await connect_as(world.alice)
    assert http.reply(over_http) == await ws.command("organization_config")


async def test_debug_ping(world: World):
    assert http.reply(await http.authenticated(world.alice, PING)) == {"status": "ok", "pong": "hello"}


async def test_api_version_2_is_answered_in_2_10(world: World):
    response = await http.authenticated(world.alice, PING, headers={"Api-Version": "2.8"})
    assert response["status"] == 200
    assert response["headers"]["api-version"] == "2.10"


async def test_missing_api_version_is_3_0(world: World):
    response = await http.authenticated(world.alice, PING, headers={"Api-Version": None})
    assert response["headers"]["api-version"] == "3.4"


@pytest.mark.parametrize("version", ["4.0", "1.3", "abc"])
async def test_unsupported_api_version_is_422(world: World, version: str):
    response = await http.authenticated(world.alice, PING, headers={"Api-Version": version})
    assert response["status"] == 422
    assert response["headers"]["supported-api-versions"] == "2.10;3.4"
    assert response["body"] == b""


async def test_bad_message_is_answered(world: World):
    reply = http.reply(await http.authenticated(world.alice, {"cmd": "ping", "ping": 3}))
    assert reply["status"] == "bad_message"


@pytest.mark.parametrize(
    "body", [b"\xc1", codec.packb([1]), codec.packb({"cmd": "nope"}), codec.packb({"cmd": "invite_info"}),
             codec.packb({"cmd": "organization_bootstrap"})],
    ids=["not-msgpack", "not-map", "unknown-cmd", "invited-cmd", "anonymous-cmd"],
)
async def test_not_a_command_of_the_route_is_415(world: World, body: bytes):
    response = await http.authenticated(world.alice, body)
    assert response["status"] == 415
    assert response["body"] == b""


@pytest.mark.parametrize("content_type", ["text/plain", None])
async def test_bad_content_type_is_415(world: World, content_type):
    response = await http.authenticated(world.alice, PING, headers={"Content-Type": content_type})
    assert response["status"] == 415


async def test_form_content_type_is_accepted(world: World):
    response = await http.authenticated(world.alice, PING, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert http.reply(response)["status"] == "ok"


@pytest.mark.parametrize("organization_id", ["Unknown", "bad%20org"])
async def test_unknown_or_invalid_organization_is_404(world: World, organization_id: str):
    response = await http.authenticated(world.alice, PING, organization_id=organization_id)
    assert response["status"] == 404


async def test_expired_organization_is_460(world: World):
    await Organization.objects.filter(organization_id=world.organization_id).aupdate(is_expired=True)
    response = await http.authenticated(world.alice, PING)
    assert response["status"] == 460
    assert response["body"] == b""


async def test_bad_signature_is_401(world: World):
    other = base64.b64encode(SigningKey.generate().sign(codec.packb(PING)).signature).decode()
    assert (await http.authenticated(world.alice, PING, headers={"Signature": other}))["status"] == 401


async def test_signature_of_another_body_is_401(world: World):
    signature = base64.b64encode(world.alice.signing_key.sign(b"other").signature).decode()
    assert (await http.authenticated(world.alice, PING, headers={"Signature": signature}))["status"] == 401


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": None}, {"Authorization": "Bearer x"}, {"Author": None}, {"Signature": None},
     {"Signature": "not base64!"}, {"Author": "not base64!"},
     {"Author": base64.b64encode(b"not a device id").decode()}],
    ids=["no-authorization", "other-scheme", "no-author", "no-signature", "signature-not-b64", "author-not-b64",
         "author-not-device-id"],
)
async def test_bad_or_missing_headers_are_401(world: World, headers):
    assert (await http.authenticated(world.alice, PING, headers=headers))["status"] == 401


async def test_unknown_device_is_401(world: World):
    author = base64.b64encode(b"alice@unknown").decode()
    assert (await http.authenticated(world.alice, PING, headers={"Author": author}))["status"] == 401


async def test_revoked_user_is_461(world: World):
    bob = await add_user(world, "bob", revoked=True)
    response = await http.authenticated(bob, PING)
    assert response["status"] == 461
    assert response["body"] == b""


async def test_frozen_user_is_462(world: World):
    bob = await add_user(world, "bob")
    await User.objects.filter(user_id="bob").aupdate(frozen=True)
    assert (await http.authenticated(bob, PING))["status"] == 462


async def test_get_is_405(world: World):
    response = await http.http("GET", f"/authenticated/{world.organization_id}")
    assert response["status"] == 405


async def test_body_over_1_mib_is_413(world: World):
    body = codec.packb({"cmd": "ping", "ping": "x" * (1024 * 1024)})
    assert (await http.authenticated(world.alice, body))["status"] == 413


# Commands that wait, as the reference answers them over HTTP: the request is the whole session.

async def test_events_subscribe_then_listen_without_wait(world: World):
    assert http.reply(await http.authenticated(world.alice, {"cmd": "events_subscribe"})) == {"status": "ok"}
    # The subscription lived as long as its request: nothing is queued for the next one.
    reply = http.reply(await http.authenticated(world.alice, {"cmd": "events_listen", "wait": False}))
    assert reply == {"status": "no_events"}


async def test_events_listen_with_wait_waits_until_the_client_leaves(world: World):
    with pytest.raises((asyncio.TimeoutError, TimeoutError)):
        await http.authenticated(world.alice, {"cmd": "events_listen", "wait": True}, timeout=0.5)


async def test_greeter_step_waits_for_the_claimer(world: World):
    ws = await connect_as(world.alice)
    token = await new_invitation(ws, "DEVICE")
    greeter = asyncio.create_task(http.authenticated(
        world.alice, {"cmd": "invite_1_greeter_wait_peer", "token": token, "greeter_public_key": PUBLIC_KEY_G}
    ))
    await asyncio.sleep(0.3)
    assert not greeter.done()
    claimer = await http.invited(
        world.organization_id, token,
        {"cmd": "invite_1_claimer_wait_peer", "claimer_public_key": PUBLIC_KEY_C, "greeter_user_id": "alice"},
    )
    assert http.reply(claimer) == {"status": "ok", "greeter_public_key": PUBLIC_KEY_G}
    assert http.reply(await greeter) == {"status": "ok", "claimer_public_key": PUBLIC_KEY_C}


async def test_freeze_while_waiting_ends_the_request_with_462(world: World):
    from organizations.services.organizations import user_freeze

    ws = await connect_as(world.alice)
    token = await new_invitation(ws, "DEVICE")
    greeter = asyncio.create_task(http.authenticated(
        world.alice, {"cmd": "invite_1_greeter_wait_peer", "token": token, "greeter_public_key": PUBLIC_KEY_G}
    ))
    await asyncio.sleep(0.3)
    await run_sync(user_freeze, organization_id=world.organization_id, frozen=True, user_id="alice")
    response = await greeter
    assert response["status"] == 462
    assert response["body"] == b""


async def test_unfreeze_does_not_end_a_waiting_request(world: World):
    from organizations.services.organizations import user_freeze

    ws = await connect_as(world.alice)
    token = await new_invitation(ws, "DEVICE")
    greeter = asyncio.create_task(http.authenticated(
        world.alice, {"cmd": "invite_1_greeter_wait_peer", "token": token, "greeter_public_key": PUBLIC_KEY_G}
    ))
    await asyncio.sleep(0.3)
    await run_sync(user_freeze, organization_id=world.organization_id, frozen=False, user_id="alice")
    await asyncio.sleep(0.3)
    assert not greeter.done()
    greeter.cancel()


async def test_plain_http_behind_an_https_proxy_is_redirected(world: World, parsec_settings):
    parsec_settings(forward_proto_enforce_https=("X-Forwarded-Proto", "https"))
    response = await http.authenticated(world.alice, PING, headers={"X-Forwarded-Proto": "http"})
    assert response["status"] == 301
    assert response["headers"]["location"].startswith("https://")
    served = await http.authenticated(world.alice, PING, headers={"X-Forwarded-Proto": "https"})
    assert http.reply(served)["status"] == "ok"


async def test_not_served_on_the_console_port(world: World, parsec_settings):
    parsec_settings(admin_port=6778)
    body = codec.packb(PING)
    headers = {"Content-Type": "application/msgpack", **http.signed_headers(world.alice, body)}
    path = f"/authenticated/{world.organization_id}"
    assert (await http.http("POST", path, body, headers, server_port=6778))["status"] == 404
    assert (await http.http("POST", path, body, headers, server_port=6777))["status"] == 200


@pytest.fixture
def ping_raises(monkeypatch):
    """`ping` replaced, for one test, by a handler raising the given exception."""
    import dataclasses

    from protocol import registry

    def install(exc: Exception) -> None:
        async def handler(session, req):
            raise exc

        spec = registry._REGISTRY[registry.Family.AUTHENTICATED]["ping"]
        monkeypatch.setitem(registry._REGISTRY[registry.Family.AUTHENTICATED], "ping",
                            dataclasses.replace(spec, handler=handler))

    return install


async def test_crashing_command_is_500(world: World, ping_raises):
    ping_raises(RuntimeError("boom"))
    response = await http.authenticated(world.alice, PING)
    assert response["status"] == 500
    assert response["body"] == b""


async def test_database_out_of_reach_is_503(world: World, ping_raises):
    from protocol.registry import DatabaseUnavailable

    ping_raises(DatabaseUnavailable("connection refused"))
    response = await http.authenticated(world.alice, PING)
    assert response["status"] == 503
    assert response["headers"]["retry-after"] == "5"
