"""`invite.status_changed` (docs/protocol.md#invitation-model, docs/protocol.md#event-catalogue): IDLE on creation,
READY/IDLE with the claimer, DELETED."""
from __future__ import annotations

import pytest

from invites.models import ClaimerSession
from tests.conftest import World, add_device, add_user, connect_as
from tests.invites.conftest import connect_claimer, new_invitation, next_event, no_more_events, status_changed, subscribed

pytestmark = pytest.mark.django_db(transaction=True)


async def test_lifecycle(world: World):
    alice2 = await add_device(world.alice, "dev2")
    listener = await subscribed(alice2)  # every device of the greeter user hears it
    bob_listener = await subscribed(await add_user(world, "bob"))
    client = await connect_as(world.alice)
    token = await new_invitation(client, "DEVICE")
    assert await next_event(listener) == status_changed(token, "IDLE")

    claimer = await connect_claimer(world, token)
    assert await next_event(listener) == status_changed(token, "READY")
    await claimer.close()
    assert await next_event(listener) == status_changed(token, "IDLE")

    claimer = await connect_claimer(world, token)
    assert await next_event(listener) == status_changed(token, "READY")
    assert await client.command("invite_delete", token=token, reason="CANCELLED") == {"status": "ok"}
    # The deletion closes the claimer's connection: DELETED then IDLE, as from the reference.
    assert await next_event(listener) == status_changed(token, "DELETED")
    assert await claimer.receive_close() == 1000
    await claimer.close()  # the websocket server reports the closed socket (as daphne does)
    assert await next_event(listener) == status_changed(token, "IDLE")
    assert await no_more_events(listener)
    assert await no_more_events(bob_listener)
    assert not await ClaimerSession.objects.aexists()


async def test_idle_only_when_the_last_claimer_session_closes(world: World):
    client = await connect_as(world.alice)
    token = await new_invitation(client, "DEVICE")
    listener = await subscribed(world.alice)
    first, second = await connect_claimer(world, token), await connect_claimer(world, token)
    assert await next_event(listener) == status_changed(token, "READY")
    assert await next_event(listener) == status_changed(token, "READY")
    await first.close()
    assert await no_more_events(listener)
    await second.close()
    assert await next_event(listener) == status_changed(token, "IDLE")
