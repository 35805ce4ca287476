"""The SAS conduit (docs/protocol.md#conduit): greeter (alice) and claimer on two real websocket sessions."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from django.utils import timezone

from invites.services import conduit
from invites.models import Invitation
from protocol.db import run_sync
from tests.conftest import World, add_user, connect_as
from tests.invites.conftest import (
    CLAIMER_NONCE,
    GREETER_NONCE,
    HASHED_NONCE,
    PUBLIC_KEY_C,
    PUBLIC_KEY_G,
    connect_claimer,
    new_invitation,
    next_event,
    pending,
    status_changed,
    subscribed,
)
from tests.testkit.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

OK = {"status": "ok"}
INVALID_STATE = {"status": "invalid_state"}
NOT_FOUND = {"status": "not_found"}
ALREADY_DELETED = {"status": "already_deleted"}


class Pair:
    """A greeter connection (alice) and a claimer connection on the same invitation."""

    def __init__(self, world: World, greeter: WsClient, claimer: WsClient, token: uuid.UUID) -> None:
        self.world, self.greeter, self.claimer, self.token = world, greeter, claimer, token

    async def g(self, cmd: str, **fields) -> None:
        await self.greeter.send({"cmd": cmd, "token": self.token, **fields})

    async def c(self, cmd: str, **fields) -> None:
        await self.claimer.send({"cmd": cmd, "greeter_user_id": "alice", **fields})

    async def g_pending(self, cmd: str, **fields) -> None:
        await pending(self.greeter, cmd, token=self.token, **fields)

    async def c_pending(self, cmd: str, **fields) -> None:
        await pending(self.claimer, cmd, greeter_user_id="alice", **fields)

    # Each step, claimer first as the 2.17 client does; returns nothing, checks both replies.

    async def step_1(self) -> None:
        await self.c_pending("invite_1_claimer_wait_peer", claimer_public_key=PUBLIC_KEY_C)
        await self.g("invite_1_greeter_wait_peer", greeter_public_key=PUBLIC_KEY_G)
        assert await self.greeter.receive() == {"status": "ok", "claimer_public_key": PUBLIC_KEY_C}
        assert await self.claimer.receive() == {"status": "ok", "greeter_public_key": PUBLIC_KEY_G}

    async def step_2(self) -> None:
        await self.c_pending("invite_2a_claimer_send_hashed_nonce", claimer_hashed_nonce=HASHED_NONCE)
        await self.g("invite_2a_greeter_get_hashed_nonce")
        assert await self.greeter.receive() == {"status": "ok", "claimer_hashed_nonce": HASHED_NONCE}
        # The claimer's command also waits for the greeter's nonce (second half, state 2_2).
        assert await self.claimer.nothing_received(0.2)
        await self.g("invite_2b_greeter_send_nonce", greeter_nonce=GREETER_NONCE)
        assert await self.claimer.receive() == {"status": "ok", "greeter_nonce": GREETER_NONCE}
        # The greeter's command also waits for the claimer's nonce (state 2_3).
        assert await self.greeter.nothing_received(0.2)
        await self.c("invite_2b_claimer_send_nonce", claimer_nonce=CLAIMER_NONCE)
        assert await self.claimer.receive() == OK
        assert await self.greeter.receive() == {"status": "ok", "claimer_nonce": CLAIMER_NONCE}

    async def step_3(self) -> None:
        await self.g_pending("invite_3a_greeter_wait_peer_trust")
        await self.c("invite_3a_claimer_signify_trust")
        assert await self.claimer.receive() == OK
        assert await self.greeter.receive() == OK
        await self.c_pending("invite_3b_claimer_wait_peer_trust")
        await self.g("invite_3b_greeter_signify_trust")
        assert await self.greeter.receive() == OK
        assert await self.claimer.receive() == OK

    async def communicate(self, claimer_payload: bytes, greeter_payload: bytes, *, claimer_first: bool = True) -> None:
        if claimer_first:
            await self.c_pending("invite_4_claimer_communicate", payload=claimer_payload)
            await self.g("invite_4_greeter_communicate", payload=greeter_payload)
        else:
            await self.g_pending("invite_4_greeter_communicate", payload=greeter_payload)
            await self.c("invite_4_claimer_communicate", payload=claimer_payload)
        assert await self.greeter.receive() == {"status": "ok", "payload": claimer_payload}
        assert await self.claimer.receive() == {"status": "ok", "payload": greeter_payload}

    async def state(self) -> str:
        return (await Invitation.objects.aget(token=self.token)).conduit_state


async def make_pair(
    world: World, invitation_type: str = "DEVICE", claimer_api_version: tuple[int, int] = (3, 4)
) -> Pair:
    greeter = await connect_as(world.alice)
    fields = {"claimer_email": "zack@example.com"} if invitation_type == "USER" else {}
    token = await new_invitation(greeter, invitation_type, **fields)
    claimer = await connect_claimer(world, token, invitation_type, api_version=claimer_api_version)
    return Pair(world, greeter, claimer, token)


@pytest.mark.parametrize("invitation_type", ["USER", "DEVICE"])
async def test_full_exchange(world: World, invitation_type: str):
    pair = await make_pair(world, invitation_type)
    await pair.step_1()
    assert await pair.state() == "2_1_CLAIMER_HASHED_NONCE"
    await pair.step_2()
    assert await pair.state() == "3_1_CLAIMER_TRUST"
    await pair.step_3()
    assert await pair.state() == "4_COMMUNICATE"
    # Two rounds, as the user/device claim: the claim request, then the greeter's confirmation.
    await pair.communicate(b"claim request", b"")
    await pair.communicate(b"", b"confirmation", claimer_first=True)
    assert await pair.state() == "4_COMMUNICATE"
    assert await pair.greeter.command("invite_delete", token=pair.token, reason="FINISHED") == OK
    assert await pair.claimer.receive_close() == 1000


async def test_full_exchange_greeter_first(world: World):
    pair = await make_pair(world)
    await pair.g_pending("invite_1_greeter_wait_peer", greeter_public_key=PUBLIC_KEY_G)
    await pair.c("invite_1_claimer_wait_peer", claimer_public_key=PUBLIC_KEY_C)
    assert await pair.claimer.receive() == {"status": "ok", "greeter_public_key": PUBLIC_KEY_G}
    assert await pair.greeter.receive() == {"status": "ok", "claimer_public_key": PUBLIC_KEY_C}
    await pair.g_pending("invite_2a_greeter_get_hashed_nonce")
    await pair.c("invite_2a_claimer_send_hashed_nonce", claimer_hashed_nonce=HASHED_NONCE)
    assert await pair.greeter.receive() == {"status": "ok", "claimer_hashed_nonce": HASHED_NONCE}
    await pair.g("invite_2b_greeter_send_nonce", greeter_nonce=GREETER_NONCE)
    assert await pair.claimer.receive() == {"status": "ok", "greeter_nonce": GREETER_NONCE}
    await pair.c("invite_2b_claimer_send_nonce", claimer_nonce=CLAIMER_NONCE)
    assert await pair.claimer.receive() == OK
    assert await pair.greeter.receive() == {"status": "ok", "claimer_nonce": CLAIMER_NONCE}
    await pair.c_pending("invite_3a_claimer_signify_trust")
    await pair.g("invite_3a_greeter_wait_peer_trust")
    assert await pair.greeter.receive() == OK
    assert await pair.claimer.receive() == OK
    await pair.g_pending("invite_3b_greeter_signify_trust")
    await pair.c("invite_3b_claimer_wait_peer_trust")
    assert await pair.claimer.receive() == OK
    assert await pair.greeter.receive() == OK
    for _ in range(3):
        await pair.communicate(b"from claimer", b"from greeter", claimer_first=False)


async def test_legacy_claimer_without_greeter_user_id(world: World):
    # API 3.2 (clients 2.11-2.15) predates `greeter_user_id`.
    pair = await make_pair(world, claimer_api_version=(3, 2))
    await pending(pair.claimer, "invite_1_claimer_wait_peer", claimer_public_key=PUBLIC_KEY_C)
    await pair.g("invite_1_greeter_wait_peer", greeter_public_key=PUBLIC_KEY_G)
    assert await pair.claimer.receive() == {"status": "ok", "greeter_public_key": PUBLIC_KEY_G}
    assert await pair.greeter.receive() == {"status": "ok", "claimer_public_key": PUBLIC_KEY_C}


# Reset -------------------------------------------------------------------------------------------------


async def reach(pair: Pair, step: int) -> None:
    if step >= 2:
        await pair.step_1()
    if step >= 3:
        await pair.step_2()
    if step >= 4:
        await pair.step_3()


# (step reached, side left waiting, its command, fields): the other side then starts step 1 again.
WAITING_STEPS = [
    (2, "greeter", "invite_2a_greeter_get_hashed_nonce", {}),
    (2, "claimer", "invite_2a_claimer_send_hashed_nonce", {"claimer_hashed_nonce": HASHED_NONCE}),
    (2, "greeter", "invite_2b_greeter_send_nonce", {"greeter_nonce": GREETER_NONCE}),
    (3, "greeter", "invite_3a_greeter_wait_peer_trust", {}),
    (3, "claimer", "invite_3a_claimer_signify_trust", {}),
    (3, "claimer", "invite_3b_claimer_wait_peer_trust", {}),
    (3, "greeter", "invite_3b_greeter_signify_trust", {}),
    (4, "greeter", "invite_4_greeter_communicate", {"payload": b"x"}),
    (4, "claimer", "invite_4_claimer_communicate", {"payload": b"y"}),
]


@pytest.mark.parametrize("step, waiting_side, cmd, fields", WAITING_STEPS, ids=[w[2] for w in WAITING_STEPS])
async def test_reset_while_the_peer_waits(world: World, step: int, waiting_side: str, cmd: str, fields: dict):
    pair = await make_pair(world)
    await reach(pair, step)
    if cmd == "invite_2b_greeter_send_nonce":
        # Its state (2_2) comes with the second half of the claimer's 2a.
        await pair.c_pending("invite_2a_claimer_send_hashed_nonce", claimer_hashed_nonce=HASHED_NONCE)
        await pair.g("invite_2a_greeter_get_hashed_nonce")
        assert (await pair.greeter.receive())["status"] == "ok"
        await pair.g("invite_2b_greeter_send_nonce", greeter_nonce=GREETER_NONCE)
        assert (await pair.claimer.receive())["status"] == "ok"
        assert await pair.greeter.nothing_received(0.2)  # waiting in 2_3 for the claimer's nonce
    elif cmd == "invite_3b_claimer_wait_peer_trust" or cmd == "invite_3b_greeter_signify_trust":
        await pair.g_pending("invite_3a_greeter_wait_peer_trust")
        await pair.c("invite_3a_claimer_signify_trust")
        assert await pair.claimer.receive() == OK and await pair.greeter.receive() == OK
    if cmd != "invite_2b_greeter_send_nonce":
        if waiting_side == "greeter":
            await pair.g_pending(cmd, **fields)
        else:
            await pair.c_pending(cmd, **fields)

    if waiting_side == "greeter":
        # The claimer starts over: the greeter wakes up with invalid_state and starts over too.
        await pair.c_pending("invite_1_claimer_wait_peer", claimer_public_key=PUBLIC_KEY_C)
        assert await pair.greeter.receive() == INVALID_STATE
        assert await pair.state() == "1_WAIT_PEERS"
        await pair.g("invite_1_greeter_wait_peer", greeter_public_key=PUBLIC_KEY_G)
        assert await pair.greeter.receive() == {"status": "ok", "claimer_public_key": PUBLIC_KEY_C}
        assert await pair.claimer.receive() == {"status": "ok", "greeter_public_key": PUBLIC_KEY_G}
    else:
        await pair.g_pending("invite_1_greeter_wait_peer", greeter_public_key=PUBLIC_KEY_G)
        assert await pair.claimer.receive() == INVALID_STATE
        assert await pair.state() == "1_WAIT_PEERS"
        await pair.c("invite_1_claimer_wait_peer", claimer_public_key=PUBLIC_KEY_C)
        assert await pair.claimer.receive() == {"status": "ok", "greeter_public_key": PUBLIC_KEY_G}
        assert await pair.greeter.receive() == {"status": "ok", "claimer_public_key": PUBLIC_KEY_C}
    # And the exchange goes through after the reset.
    await pair.step_2()
    await pair.step_3()
    await pair.communicate(b"claim", b"confirm")


async def test_reset_with_nobody_waiting(world: World):
    pair = await make_pair(world)
    await reach(pair, 4)
    await pair.step_1()
    assert await pair.state() == "2_1_CLAIMER_HASHED_NONCE"


# Out of order and re-posting ---------------------------------------------------------------------------------


OUT_OF_ORDER_GREETER = [
    ("invite_2a_greeter_get_hashed_nonce", {}),
    ("invite_2b_greeter_send_nonce", {"greeter_nonce": GREETER_NONCE}),
    ("invite_3a_greeter_wait_peer_trust", {}),
    ("invite_3b_greeter_signify_trust", {}),
    ("invite_4_greeter_communicate", {"payload": b"x"}),
]
OUT_OF_ORDER_CLAIMER = [
    ("invite_2a_claimer_send_hashed_nonce", {"claimer_hashed_nonce": HASHED_NONCE}),
    ("invite_2b_claimer_send_nonce", {"claimer_nonce": CLAIMER_NONCE}),
    ("invite_3a_claimer_signify_trust", {}),
    ("invite_3b_claimer_wait_peer_trust", {}),
    ("invite_4_claimer_communicate", {"payload": b"x"}),
]


@pytest.mark.parametrize("cmd, fields", OUT_OF_ORDER_GREETER, ids=[c for c, _ in OUT_OF_ORDER_GREETER])
async def test_invalid_state_greeter_out_of_order(world: World, cmd: str, fields: dict):
    pair = await make_pair(world)
    assert await pair.greeter.command(cmd, token=pair.token, **fields) == INVALID_STATE
    assert await pair.state() == "1_WAIT_PEERS"


@pytest.mark.parametrize("cmd, fields", OUT_OF_ORDER_CLAIMER, ids=[c for c, _ in OUT_OF_ORDER_CLAIMER])
async def test_invalid_state_claimer_out_of_order(world: World, cmd: str, fields: dict):
    pair = await make_pair(world)
    assert await pair.claimer.command(cmd, greeter_user_id="alice", **fields) == INVALID_STATE


async def test_invalid_state_later_step_skipped(world: World):
    pair = await make_pair(world)
    await pair.step_1()
    # State 2_1: step 3 and step 4 are refused, step 2 still works.
    assert await pair.greeter.command("invite_3a_greeter_wait_peer_trust", token=pair.token) == INVALID_STATE
    assert await pair.claimer.command("invite_4_claimer_communicate", greeter_user_id="alice", payload=b"") == INVALID_STATE
    await pair.step_2()


async def test_invalid_state_repost_from_another_connection(world: World):
    pair = await make_pair(world)
    await pair.step_1()
    await pair.c_pending("invite_2a_claimer_send_hashed_nonce", claimer_hashed_nonce=HASHED_NONCE)
    # A retry after a lost connection posts again for a state already posted: refused (step 1 aside).
    retry = await connect_claimer(world, pair.token)
    reply = await retry.command("invite_2a_claimer_send_hashed_nonce", greeter_user_id="alice", claimer_hashed_nonce=HASHED_NONCE)
    assert reply == INVALID_STATE
    other_greeter = await connect_as(world.alice)
    await pair.g("invite_2a_greeter_get_hashed_nonce")
    assert await pair.greeter.receive() == {"status": "ok", "claimer_hashed_nonce": HASHED_NONCE}
    assert await other_greeter.command("invite_2a_greeter_get_hashed_nonce", token=pair.token) == INVALID_STATE


# Cancellation, disconnection, deletion ---------------------------------------------------------------------------


async def test_claimer_wait_peer_is_cancelled_by_a_new_request(world: World):
    pair = await make_pair(world)
    await pair.c_pending("invite_1_claimer_wait_peer", claimer_public_key=PUBLIC_KEY_C)
    # A new request abandons the wait without a reply; only the new request is answered.
    reply = await pair.claimer.command("invite_info")
    assert reply["status"] == "ok" and reply["type"] == "DEVICE"
    assert await pair.claimer.nothing_received(0.3)
    # The posted public key stays in the conduit.
    invitation = await Invitation.objects.aget(token=pair.token)
    assert bytes(invitation.conduit_claimer_payload) == PUBLIC_KEY_C
    # The claimer starts again and the exchange proceeds.
    await pair.step_1()
    await pair.step_2()


async def test_claimer_wait_peer_cancelled_then_greeter_posts(world: World):
    pair = await make_pair(world)
    await pair.c_pending("invite_1_claimer_wait_peer", claimer_public_key=PUBLIC_KEY_C)
    assert (await pair.claimer.command("invite_info"))["status"] == "ok"
    # The greeter sees the abandoned key and waits for the claimer to move the conduit on.
    await pair.g_pending("invite_1_greeter_wait_peer", greeter_public_key=PUBLIC_KEY_G)
    # The claimer starts over (reset): the greeter restarts too.
    await pair.c_pending("invite_1_claimer_wait_peer", claimer_public_key=PUBLIC_KEY_C)
    assert await pair.greeter.receive() == INVALID_STATE
    await pair.g("invite_1_greeter_wait_peer", greeter_public_key=PUBLIC_KEY_G)
    assert await pair.greeter.receive() == {"status": "ok", "claimer_public_key": PUBLIC_KEY_C}
    assert await pair.claimer.receive() == {"status": "ok", "greeter_public_key": PUBLIC_KEY_G}


async def test_other_claimer_steps_are_not_cancellable(world: World):
    pair = await make_pair(world)
    await pair.step_1()
    await pair.c_pending("invite_2a_claimer_send_hashed_nonce", claimer_hashed_nonce=HASHED_NONCE)
    await pair.claimer.send({"cmd": "invite_info"})
    assert await pair.claimer.nothing_received(0.3)  # queued behind the waiting step
    await pair.g("invite_2a_greeter_get_hashed_nonce")
    assert (await pair.greeter.receive())["status"] == "ok"
    await pair.g("invite_2b_greeter_send_nonce", greeter_nonce=GREETER_NONCE)
    assert await pair.claimer.receive() == {"status": "ok", "greeter_nonce": GREETER_NONCE}
    assert (await pair.claimer.receive())["type"] == "DEVICE"


async def test_claimer_disconnects_while_waiting(world: World):
    listener = await subscribed(world.alice)
    pair = await make_pair(world)
    assert await next_event(listener) == status_changed(pair.token, "IDLE")
    assert await next_event(listener) == status_changed(pair.token, "READY")
    await pair.c_pending("invite_1_claimer_wait_peer", claimer_public_key=PUBLIC_KEY_C)
    await pair.claimer.close()
    assert await next_event(listener) == status_changed(pair.token, "IDLE")
    # A new claimer connection starts over.
    pair.claimer = await connect_claimer(world, pair.token)
    assert await next_event(listener) == status_changed(pair.token, "READY")
    await pair.step_1()


async def test_greeter_waiting_gets_no_timeout(world: World, monkeypatch):
    monkeypatch.setattr(conduit, "RECHECK_SECONDS", 0.1)
    pair = await make_pair(world)
    await pair.g_pending("invite_1_greeter_wait_peer", greeter_public_key=PUBLIC_KEY_G)
    # Several re-checks later, still waiting, and the peer still completes the step.
    assert await pair.greeter.nothing_received(0.5)
    await pair.c("invite_1_claimer_wait_peer", claimer_public_key=PUBLIC_KEY_C)
    assert await pair.greeter.receive() == {"status": "ok", "claimer_public_key": PUBLIC_KEY_C}
    assert await pair.claimer.receive() == {"status": "ok", "greeter_public_key": PUBLIC_KEY_G}


@pytest.mark.parametrize("step", [1, 2, 3, 4])
async def test_deletion_while_the_greeter_waits(world: World, step: int):
    pair = await make_pair(world)
    await reach(pair, step)
    cmd, fields = {
        1: ("invite_1_greeter_wait_peer", {"greeter_public_key": PUBLIC_KEY_G}),
        2: ("invite_2a_greeter_get_hashed_nonce", {}),
        3: ("invite_3a_greeter_wait_peer_trust", {}),
        4: ("invite_4_greeter_communicate", {"payload": b"x"}),
    }[step]
    await pair.g_pending(cmd, **fields)
    other = await connect_as(world.alice)
    assert await other.command("invite_delete", token=pair.token, reason="CANCELLED") == OK
    assert await pair.greeter.receive() == ALREADY_DELETED
    assert await pair.claimer.receive_close() == 1000


@pytest.mark.parametrize(
    "cmd, fields, step",
    [
        ("invite_1_claimer_wait_peer", {"claimer_public_key": PUBLIC_KEY_C}, 1),
        ("invite_2a_claimer_send_hashed_nonce", {"claimer_hashed_nonce": HASHED_NONCE}, 2),
        ("invite_3a_claimer_signify_trust", {}, 3),
        ("invite_4_claimer_communicate", {"payload": b"x"}, 4),
    ],
)
async def test_deletion_while_the_claimer_waits(world: World, cmd: str, fields: dict, step: int):
    pair = await make_pair(world)
    await reach(pair, step)
    await pair.c_pending(cmd, **fields)
    assert await pair.greeter.command("invite_delete", token=pair.token, reason="CANCELLED") == OK
    # No reply: the connection is closed.
    assert await pair.claimer.receive_close() == 1000


async def test_claimer_step_finds_the_invitation_deleted(world: World):
    pair = await make_pair(world)
    await pair.step_1()
    # Deleted without the session-closing message (e.g. lost): the step itself closes the connection.
    await Invitation.objects.filter(token=pair.token).aupdate(deleted_on=timezone.now(), deleted_reason="CANCELLED")
    await pair.c("invite_2a_claimer_send_hashed_nonce", claimer_hashed_nonce=HASHED_NONCE)
    assert await pair.claimer.receive_close() == 1000


async def test_already_deleted_greeter(world: World):
    pair = await make_pair(world)
    assert await pair.greeter.command("invite_delete", token=pair.token, reason="CANCELLED") == OK
    for cmd, fields in [("invite_1_greeter_wait_peer", {"greeter_public_key": PUBLIC_KEY_G}), *OUT_OF_ORDER_GREETER]:
        assert await pair.greeter.command(cmd, token=pair.token, **fields) == ALREADY_DELETED


# not_found -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cmd, fields", [("invite_1_greeter_wait_peer", {"greeter_public_key": PUBLIC_KEY_G}), *OUT_OF_ORDER_GREETER]
)
async def test_not_found_greeter(world: World, cmd: str, fields: dict):
    pair = await make_pair(world)
    assert await pair.greeter.command(cmd, token=uuid.uuid4(), **fields) == NOT_FOUND
    # Not the invitation's greeter, even an ADMIN.
    admin = await connect_as(await add_user(world, "adam", profile="ADMIN"))
    assert await admin.command(cmd, token=pair.token, **fields) == NOT_FOUND


@pytest.mark.parametrize(
    "cmd, fields", [("invite_1_claimer_wait_peer", {"claimer_public_key": PUBLIC_KEY_C}), *OUT_OF_ORDER_CLAIMER]
)
async def test_not_found_claimer_wrong_greeter_user_id(world: World, cmd: str, fields: dict):
    await add_user(world, "bob")
    pair = await make_pair(world)
    assert await pair.claimer.command(cmd, greeter_user_id="bob", **fields) == NOT_FOUND
    assert await pair.claimer.command(cmd, greeter_user_id="nobody", **fields) == NOT_FOUND


async def test_bad_message_claimer(world: World):
    pair = await make_pair(world)
    reply = await pair.claimer.command("invite_1_claimer_wait_peer", greeter_user_id="alice", claimer_public_key=b"short")
    assert reply["status"] == "bad_message"
    reply = await pair.claimer.command("invite_1_claimer_wait_peer", greeter_user_id=None, claimer_public_key=PUBLIC_KEY_C)
    assert reply["status"] == "bad_message"


# Waking up through the channel layer ------------------------------------------------------------------------


async def test_woken_by_a_peer_served_elsewhere(world: World):
    """The claimer's post is made outside this connection's process path: only the channel layer wakes the greeter."""
    pair = await make_pair(world)
    invitation = await Invitation.objects.aget(token=pair.token)
    await pair.g_pending("invite_1_greeter_wait_peer", greeter_public_key=PUBLIC_KEY_G)
    ref = conduit.ConduitRef(side=conduit.Side.CLAIMER, organization_pk=invitation.organization_id,
                             invitation_pk=invitation.pk, greeter_user_id="alice")

    def claimer_elsewhere() -> bytes:
        talked = conduit.talk(ref, "1_WAIT_PEERS", PUBLIC_KEY_C)
        assert talked.peer_seen == PUBLIC_KEY_G
        # The greeter (first to talk) moves the conduit on once woken.
        while (outcome := conduit.listen(ref, "1_WAIT_PEERS", PUBLIC_KEY_C, talked.peer_seen)) is None:
            time.sleep(0.05)
        return outcome

    assert await asyncio.wait_for(run_sync(claimer_elsewhere), 5) == PUBLIC_KEY_G
    assert await pair.greeter.receive() == {"status": "ok", "claimer_public_key": PUBLIC_KEY_C}


async def test_lost_wake_up_is_caught_by_the_recheck(world: World, monkeypatch):
    monkeypatch.setattr(conduit, "RECHECK_SECONDS", 0.2)
    pair = await make_pair(world)
    await pair.g_pending("invite_1_greeter_wait_peer", greeter_public_key=PUBLIC_KEY_G)
    # The claimer's payload lands without any notification.
    await Invitation.objects.filter(token=pair.token).aupdate(conduit_claimer_payload=PUBLIC_KEY_C)
    assert await pair.greeter.receive(2) == {"status": "ok", "claimer_public_key": PUBLIC_KEY_C}
    assert await pair.state() == "2_1_CLAIMER_HASHED_NONCE"
