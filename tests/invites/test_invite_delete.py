"""`invite_delete` (docs/protocol.md#invite-delete): one test per reply status, and its effects."""
from __future__ import annotations

import uuid

import pytest

from invites.models import Invitation
from tests.conftest import World, add_user, connect_as
from tests.invites.conftest import connect_claimer, new_invitation, next_event, status_changed, subscribed

pytestmark = pytest.mark.django_db(transaction=True)


async def test_ok(world: World):
    client = await connect_as(world.alice)
    token = await new_invitation(client, "USER", claimer_email="zack@example.com")
    listener = await subscribed(world.alice)
    assert await client.command("invite_delete", token=token, reason="FINISHED") == {"status": "ok"}
    invitation = await Invitation.objects.aget(token=token)
    assert invitation.deleted_reason == "FINISHED" and invitation.deleted_on is not None
    assert await next_event(listener) == status_changed(token, "DELETED")
    assert await client.command("invite_list") == {"status": "ok", "invitations": []}


async def test_ok_closes_the_claimer_connections(world: World):
    client = await connect_as(world.alice)
    token = await new_invitation(client, "DEVICE")
    claimers = [await connect_claimer(world, token), await connect_claimer(world, token)]
    assert await client.command("invite_delete", token=token, reason="CANCELLED") == {"status": "ok"}
    for claimer in claimers:
        assert await claimer.receive_close() == 1000
    # And the token no longer opens a session.
    other = await connect_claimer_raw(world, token)
    assert other["help"] == "Invalid handshake: Invitation already deleted"


async def connect_claimer_raw(world: World, token: uuid.UUID) -> dict:
    from tests.testkit.ws import WsClient

    client = await WsClient.connect()
    return await client.invited(organization_id=world.organization_id, invitation_type="DEVICE", token=token)


async def test_not_found_unknown_token(world: World):
    client = await connect_as(world.alice)
    assert await client.command("invite_delete", token=uuid.uuid4(), reason="CANCELLED") == {"status": "not_found"}


async def test_not_found_not_the_greeter(world: World):
    other_admin = await add_user(world, "adam", profile="ADMIN")
    token = await new_invitation(await connect_as(world.alice), "USER", claimer_email="zack@example.com")
    client = await connect_as(other_admin)
    assert await client.command("invite_delete", token=token, reason="CANCELLED") == {"status": "not_found"}
    assert (await Invitation.objects.aget(token=token)).deleted_on is None


async def test_not_found_other_organization(world: World):
    from tests.conftest import bootstrap_organization

    other = await bootstrap_organization("OtherOrg")
    token = await new_invitation(await connect_as(other.alice), "DEVICE")
    client = await connect_as(world.alice)
    assert await client.command("invite_delete", token=token, reason="CANCELLED") == {"status": "not_found"}


async def test_already_deleted(world: World):
    client = await connect_as(world.alice)
    token = await new_invitation(client, "DEVICE")
    assert await client.command("invite_delete", token=token, reason="ROTTEN") == {"status": "ok"}
    assert await client.command("invite_delete", token=token, reason="CANCELLED") == {"status": "already_deleted"}
    assert (await Invitation.objects.aget(token=token)).deleted_reason == "ROTTEN"


async def test_bad_message_unknown_reason(world: World):
    client = await connect_as(world.alice)
    token = await new_invitation(client, "DEVICE")
    reply = await client.command("invite_delete", token=token, reason="BORED")
    assert reply["status"] == "bad_message"
