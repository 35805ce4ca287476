"""`invite_info` (docs/protocol.md#invite-info), claimer side."""
from __future__ import annotations

import pytest

from organizations.models import User
from tests.conftest import World, add_user, connect_as
from tests.invites.conftest import connect_claimer, new_invitation

pytestmark = pytest.mark.django_db(transaction=True)


async def test_ok_user(world: World):
    token = await new_invitation(await connect_as(world.alice), "USER", claimer_email="zack@example.com")
    claimer = await connect_claimer(world, token, "USER")
    assert await claimer.command("invite_info") == {
        "status": "ok",
        "type": "USER",
        "claimer_email": "zack@example.com",
        "greeter_user_id": "alice",
        "greeter_human_handle": ["alice@example.com", "Alice"],
    }


async def test_ok_device(world: World):
    token = await new_invitation(await connect_as(world.alice), "DEVICE")
    claimer = await connect_claimer(world, token, "DEVICE")
    assert await claimer.command("invite_info") == {
        "status": "ok",
        "type": "DEVICE",
        "greeter_user_id": "alice",
        "greeter_human_handle": ["alice@example.com", "Alice"],
    }


async def test_ok_device_legacy_greeter_without_human_handle(world: World):
    bob = await add_user(world, "bob")
    await User.objects.filter(user_id="bob").aupdate(human_email=None, human_label=None)
    token = await new_invitation(await connect_as(bob), "DEVICE")
    claimer = await connect_claimer(world, token, "DEVICE")
    assert await claimer.command("invite_info") == {
        "status": "ok", "type": "DEVICE", "greeter_user_id": "bob", "greeter_human_handle": None,
    }


async def test_deleted_since_the_handshake_closes_the_connection(world: World):
    from invites.models import Invitation
    from django.utils import timezone

    token = await new_invitation(await connect_as(world.alice), "DEVICE")
    claimer = await connect_claimer(world, token, "DEVICE")
    # Deleted behind the server's back (no session closing message): the command itself closes.
    await Invitation.objects.filter(token=token).aupdate(deleted_on=timezone.now(), deleted_reason="CANCELLED")
    await claimer.send({"cmd": "invite_info"})
    assert await claimer.receive_close() == 1000


async def test_unknown_command_for_claimers(world: World):
    token = await new_invitation(await connect_as(world.alice), "DEVICE")
    claimer = await connect_claimer(world, token, "DEVICE")
    assert await claimer.command("invite_list") == {"status": "unknown_command", "reason": "Unknown command"}
