"""`invite_list` (docs/protocol.md#invite-list)."""
from __future__ import annotations

import pytest

from invites.models import Invitation
from tests.conftest import World, add_user, connect_as
from tests.invites.conftest import connect_claimer, new_invitation

pytestmark = pytest.mark.django_db(transaction=True)


async def test_ok_empty(world: World):
    client = await connect_as(world.alice)
    assert await client.command("invite_list") == {"status": "ok", "invitations": []}


async def test_ok(world: World):
    client = await connect_as(world.alice)
    user_token = await new_invitation(client, "USER", claimer_email="zack@example.com")
    device_token = await new_invitation(client, "DEVICE")
    deleted_token = await new_invitation(client, "USER", claimer_email="yann@example.com")
    await client.command("invite_delete", token=deleted_token, reason="CANCELLED")
    # Someone else's invitations are not listed.
    bob = await add_user(world, "bob")
    await new_invitation(await connect_as(bob), "DEVICE")

    created = {i.token: i.created_on async for i in Invitation.objects.all()}
    assert await client.command("invite_list") == {
        "status": "ok",
        "invitations": [
            {"type": "USER", "token": user_token, "created_on": created[user_token], "claimer_email": "zack@example.com",
             "status": "IDLE"},
            {"type": "DEVICE", "token": device_token, "created_on": created[device_token], "status": "IDLE"},
        ],
    }


async def test_ok_ready_while_a_claimer_is_connected(world: World):
    client = await connect_as(world.alice)
    token = await new_invitation(client, "DEVICE")
    claimer = await connect_claimer(world, token)
    second = await connect_claimer(world, token)
    [item] = (await client.command("invite_list"))["invitations"]
    assert item["status"] == "READY"
    await claimer.close()
    [item] = (await client.command("invite_list"))["invitations"]
    assert item["status"] == "READY"  # the second session is still open
    await second.close()
    [item] = (await client.command("invite_list"))["invitations"]
    assert item["status"] == "IDLE"
