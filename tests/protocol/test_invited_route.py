"""`POST /invited/<org>` (docs/protocol.md#session-routes): the `Invitation-Token` header instead of a handshake, and
the
invitation steps waiting for their peer within one HTTP request, as over the websocket."""
from __future__ import annotations

import asyncio

import pytest
from django.utils import timezone

from invites.models import Invitation
from organizations.models import Organization
from protocol import codec
from tests.conftest import World, connect_as
from tests.invites.conftest import PUBLIC_KEY_C, PUBLIC_KEY_G, new_invitation
from tests.testkit import http

pytestmark = pytest.mark.django_db(transaction=True)

INFO = {"cmd": "invite_info"}


@pytest.fixture
async def token(world: World):
    greeter = await connect_as(world.alice)
    return await new_invitation(greeter, "DEVICE")


async def test_invite_info_is_answered_like_on_the_websocket(world: World, token):
    response = await http.invited(world.organization_id, token, INFO)
    assert response["headers"]["api-version"] == "3.4"
    assert http.reply(response) == {
        "status": "ok", "type": "DEVICE", "greeter_user_id": "alice",
        "greeter_human_handle": ["alice@example.com", "Alice"],
    }


async def test_uppercase_token_is_accepted(world: World, token):
    assert http.reply(await http.invited(world.organization_id, token.hex.upper(), INFO))["status"] == "ok"


@pytest.mark.parametrize("raw", [None, "", "zz" * 16, "ab" * 15, "12345678-1234-1234-1234-123456789012"],
                         ids=["missing", "empty", "not-hex", "short", "dashed"])
async def test_malformed_token_is_415(world: World, token, raw):
    response = await http.invited(world.organization_id, token, INFO, headers={"Invitation-Token": raw})
    assert response["status"] == 415
    assert response["body"] == b""


async def test_unknown_token_is_404(world: World, token):
    assert (await http.invited(world.organization_id, "ab" * 16, INFO))["status"] == 404


async def test_deleted_invitation_is_410(world: World, token):
    await Invitation.objects.filter(token=token).aupdate(deleted_on=timezone.now(), deleted_reason="CANCELLED")
    response = await http.invited(world.organization_id, token, INFO)
    assert response["status"] == 410
    assert response["body"] == b""


async def test_token_of_another_organization_is_404(world: World, token):
    from tests.conftest import bootstrap_organization

    other = await bootstrap_organization("OtherOrg")
    assert (await http.invited(other.organization_id, token, INFO))["status"] == 404


async def test_unknown_organization_is_404(world: World, token):
    assert (await http.invited("Unknown", token, INFO))["status"] == 404


async def test_expired_organization_is_460(world: World, token):
    await Organization.objects.filter(organization_id=world.organization_id).aupdate(is_expired=True)
    assert (await http.invited(world.organization_id, token, INFO))["status"] == 460


@pytest.mark.parametrize("version", ["4.0", "x"])
async def test_unsupported_api_version_is_422(world: World, token, version):
    response = await http.invited(world.organization_id, token, INFO, headers={"Api-Version": version})
    assert response["status"] == 422
    assert response["headers"]["supported-api-versions"] == "2.10;3.4"


async def test_bad_content_type_is_415(world: World, token):
    response = await http.invited(world.organization_id, token, INFO, headers={"Content-Type": "application/json"})
    assert response["status"] == 415


@pytest.mark.parametrize(
    "body", [b"\xc1", codec.packb("x"), codec.packb({"cmd": "organization_config"}), codec.packb({})],
    ids=["not-msgpack", "not-map", "authenticated-cmd", "no-cmd"],
)
async def test_not_a_command_of_the_route_is_415(world: World, token, body):
    assert (await http.invited(world.organization_id, token, body))["status"] == 415


async def test_bad_message_is_answered(world: World, token):
    reply = http.reply(await http.invited(world.organization_id, token, {"cmd": "invite_1_claimer_wait_peer"}))
    assert reply["status"] == "bad_message"


async def test_claimer_step_waits_for_the_greeter(world: World, token):
    claimer = asyncio.create_task(http.invited(
        world.organization_id, token,
        {"cmd": "invite_1_claimer_wait_peer", "claimer_public_key": PUBLIC_KEY_C, "greeter_user_id": "alice"},
    ))
    await asyncio.sleep(0.3)
    assert not claimer.done(), "the claimer's step answered before the greeter's"
    greeter = await http.authenticated(
        world.alice, {"cmd": "invite_1_greeter_wait_peer", "token": token, "greeter_public_key": PUBLIC_KEY_G}
    )
    assert http.reply(greeter) == {"status": "ok", "claimer_public_key": PUBLIC_KEY_C}
    assert http.reply(await claimer) == {"status": "ok", "greeter_public_key": PUBLIC_KEY_G}


async def test_deletion_while_the_claimer_waits_is_410(world: World, token):
    claimer = asyncio.create_task(http.invited(
        world.organization_id, token,
        {"cmd": "invite_1_claimer_wait_peer", "claimer_public_key": PUBLIC_KEY_C, "greeter_user_id": "alice"},
    ))
    await asyncio.sleep(0.3)
    greeter = await connect_as(world.alice)
    assert await greeter.command("invite_delete", token=token, reason="CANCELLED") == {"status": "ok"}
    response = await claimer
    assert response["status"] == 410
    assert response["body"] == b""
