"""Shamir recovery (docs/protocol.md#shamir-recovery) and SHAMIR_RECOVERY invitations (docs/protocol.md#invitations)."""
from __future__ import annotations

import uuid

import pytest
from nacl.signing import SigningKey

from invites.models import Invitation, ShamirRecoveryConduit, ShamirRecoverySetup
from organizations.models import User
from tests.conftest import World, add_device, add_user, connect_as
from tests.invites.conftest import (
    PUBLIC_KEY_C,
    PUBLIC_KEY_G,
    connect_claimer,
    next_event,
    no_more_events,
    pending,
    status_changed,
    subscribed,
)
from tests.testkit import certs
from tests.testkit.certs import TestDevice

pytestmark = pytest.mark.django_db(transaction=True)

INVALID_DATA = {"status": "invalid_data"}


def make_setup(author: TestDevice, shares: dict[str, int], *, threshold: int = 2, signing_key: SigningKey | None = None,
               author_id: str | None = None, share_recipients: list[str] | None = None, reveal_token=None) -> dict:
    key = signing_key or author.signing_key
    timestamp = certs.now()
    brief = certs.shamir_recovery_brief_certificate(
        key, author=author_id or author.device_id, timestamp=timestamp, threshold=threshold, per_recipient_shares=shares
    )
    share_certificates = [
        certs.shamir_recovery_share_certificate(
            key, author=author_id or author.device_id, timestamp=timestamp, recipient=recipient,
            ciphered_share=f"share for {recipient}".encode(),
        )
        for recipient in (share_recipients if share_recipients is not None else list(shares))
    ]
    return {
        "ciphered_data": b"ciphered data",
        "reveal_token": reveal_token or uuid.uuid4(),
        "brief": brief,
        "shares": share_certificates,
    }


@pytest.fixture
async def people(world: World) -> dict[str, TestDevice]:
    return {
        "alice": world.alice,
        "bob": await add_user(world, "bob"),
        "carol": await add_user(world, "carol"),
        "dave": await add_user(world, "dave"),
    }


async def setup_for_bob(people, **kwargs) -> dict:
    setup = make_setup(people["bob"], {"alice": 1, "carol": 2}, **kwargs)
    client = await connect_as(people["bob"])
    assert await client.command("shamir_recovery_setup", setup=setup) == {"status": "ok"}
    return setup


async def invite_bob(people, greeter: str = "alice", **fields) -> uuid.UUID:
    client = await connect_as(people[greeter])
    reply = await client.command("invite_new", type="SHAMIR_RECOVERY", claimer_user_id="bob", send_email=False, **fields)
    assert reply["status"] == "ok", reply
    return reply["token"]


# shamir_recovery_setup / self_info / others_list ----------------------------------------------------------


async def test_setup_ok(world: World, people):
    setup = await setup_for_bob(people)
    bob = await connect_as(people["bob"])
    assert await bob.command("shamir_recovery_self_info") == {"status": "ok", "self_info": setup["brief"]}
    assert await bob.command("shamir_recovery_others_list") == {
        "status": "ok", "brief_certificates": [], "share_certificates": [],
    }
    stored = await ShamirRecoverySetup.objects.aget(user__user_id="bob")
    assert (stored.threshold, stored.shares, stored.is_active) == (2, 3, True)
    alice = await connect_as(people["alice"])
    assert await alice.command("shamir_recovery_others_list") == {
        "status": "ok", "brief_certificates": [setup["brief"]], "share_certificates": [setup["shares"][0]],
    }
    carol = await connect_as(people["carol"])
    assert (await carol.command("shamir_recovery_others_list"))["share_certificates"] == [setup["shares"][1]]
    dave = await connect_as(people["dave"])
    assert (await dave.command("shamir_recovery_others_list"))["brief_certificates"] == []


async def test_self_info_without_setup(world: World):
    client = await connect_as(world.alice)
    assert await client.command("shamir_recovery_self_info") == {"status": "ok", "self_info": None}
    assert await client.command("shamir_recovery_others_list") == {
        "status": "ok", "brief_certificates": [], "share_certificates": [],
    }


async def test_setup_replaces_the_previous_one(world: World, people):
    await setup_for_bob(people)
    second = make_setup(people["bob"], {"dave": 1}, threshold=1)
    bob = await connect_as(people["bob"])
    assert await bob.command("shamir_recovery_setup", setup=second) == {"status": "ok"}
    assert await bob.command("shamir_recovery_self_info") == {"status": "ok", "self_info": second["brief"]}
    alice = await connect_as(people["alice"])
    assert (await alice.command("shamir_recovery_others_list"))["brief_certificates"] == []
    assert await ShamirRecoverySetup.objects.filter(user__user_id="bob").acount() == 2


async def test_setup_nil_removes_it(world: World, people):
    await setup_for_bob(people)
    bob = await connect_as(people["bob"])
    assert await bob.command("shamir_recovery_setup", setup=None) == {"status": "ok"}
    assert await bob.command("shamir_recovery_self_info") == {"status": "ok", "self_info": None}
    # Nothing to remove: still ok.
    assert await bob.command("shamir_recovery_setup", setup=None) == {"status": "ok"}


@pytest.mark.parametrize("new_setup", [None, "other"])
async def test_setup_change_deletes_the_pending_invitation(world: World, people, new_setup):
    await setup_for_bob(people)
    token = await invite_bob(people)
    listener = await subscribed(people["carol"])
    claimer = await connect_claimer(world, token, "SHAMIR_RECOVERY")
    assert await next_event(listener) == status_changed(token, "READY")
    bob = await connect_as(people["bob"])
    setup = None if new_setup is None else make_setup(people["bob"], {"dave": 1}, threshold=1)
    assert await bob.command("shamir_recovery_setup", setup=setup) == {"status": "ok"}
    invitation = await Invitation.objects.aget(token=token)
    assert invitation.deleted_reason == "CANCELLED"
    assert await next_event(listener) == status_changed(token, "DELETED")
    assert await claimer.receive_close() == 1000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"signing_key": SigningKey.generate()},
        {"author_id": "bob@other"},
        {"share_recipients": ["alice"]},
        {"share_recipients": ["alice", "carol", "carol"]},
        {"share_recipients": ["alice", "carol", "dave"]},
        {"shares": {"alice": 1, "bob": 1}},
        {"shares": {"alice": 1, "nobody": 1}},
    ],
    ids=["bad-signature", "other-author", "missing-share", "duplicate-share", "share-not-in-brief",
         "author-is-recipient", "unknown-recipient"],
)
async def test_setup_invalid_data(world: World, people, kwargs):
    shares = kwargs.pop("shares", {"alice": 1, "carol": 2})
    setup = make_setup(people["bob"], shares, **kwargs)
    bob = await connect_as(people["bob"])
    assert await bob.command("shamir_recovery_setup", setup=setup) == INVALID_DATA
    assert not await ShamirRecoverySetup.objects.aexists()


async def test_setup_invalid_data_not_certificates(world: World, people):
    bob = await connect_as(people["bob"])
    setup = make_setup(people["bob"], {"alice": 1})
    assert await bob.command("shamir_recovery_setup", setup={**setup, "brief": b"garbage"}) == INVALID_DATA
    # A share certificate where the brief should be.
    assert await bob.command("shamir_recovery_setup", setup={**setup, "brief": setup["shares"][0]}) == INVALID_DATA


async def test_setup_invalid_data_reveal_token_reused(world: World, people):
    setup = await setup_for_bob(people)
    carol = await connect_as(people["carol"])
    other = make_setup(people["carol"], {"alice": 1}, threshold=1, reveal_token=setup["reveal_token"])
    assert await carol.command("shamir_recovery_setup", setup=other) == INVALID_DATA


async def test_setup_bad_message(world: World):
    client = await connect_as(world.alice)
    assert (await client.command("shamir_recovery_setup", setup={"brief": b""}))["status"] == "bad_message"


# SHAMIR_RECOVERY invitations -------------------------------------------------------------------------------


async def test_invite_new_ok(world: World, people):
    await setup_for_bob(people)
    listeners = {name: await subscribed(people[name]) for name in ("alice", "carol", "dave")}
    token = await invite_bob(people)
    for name in ("alice", "carol"):
        assert await next_event(listeners[name]) == status_changed(token, "IDLE")
    assert await no_more_events(listeners["dave"])
    invitation = await Invitation.objects.aget(token=token)
    assert invitation.type == "SHAMIR_RECOVERY"
    greeters = {c.greeter_id async for c in ShamirRecoveryConduit.objects.filter(invitation=invitation)}
    assert greeters == {u.pk async for u in User.objects.filter(user_id__in=["alice", "carol"])}


async def test_invite_new_reuses_the_pending_invitation(world: World, people):
    await setup_for_bob(people)
    token = await invite_bob(people, "alice")
    assert await invite_bob(people, "carol") == token
    # Once it exists, the reference hands it back even to a non-recipient.
    assert await invite_bob(people, "dave") == token


async def test_invite_new_not_allowed(world: World, people):
    await setup_for_bob(people)
    client = await connect_as(people["dave"])
    reply = await client.command("invite_new", type="SHAMIR_RECOVERY", claimer_user_id="bob", send_email=False)
    assert reply == {"status": "not_allowed"}


async def test_invite_new_shamir_recovery_not_setup_after_removal(world: World, people):
    await setup_for_bob(people)
    bob = await connect_as(people["bob"])
    assert await bob.command("shamir_recovery_setup", setup=None) == {"status": "ok"}
    alice = await connect_as(people["alice"])
    reply = await alice.command("invite_new", type="SHAMIR_RECOVERY", claimer_user_id="bob", send_email=False)
    assert reply == {"status": "shamir_recovery_not_setup"}


async def test_invite_list(world: World, people):
    await setup_for_bob(people)
    token = await invite_bob(people)
    created_on = (await Invitation.objects.aget(token=token)).created_on
    expected = {"type": "SHAMIR_RECOVERY", "token": token, "created_on": created_on, "claimer_user_id": "bob", "status": "IDLE"}
    for name in ("alice", "carol"):
        client = await connect_as(people[name])
        assert await client.command("invite_list") == {"status": "ok", "invitations": [expected]}
    for name in ("bob", "dave"):
        client = await connect_as(people[name])
        assert await client.command("invite_list") == {"status": "ok", "invitations": []}


async def test_invite_info(world: World, people):
    await setup_for_bob(people)
    claimer = await connect_claimer(world, await invite_bob(people), "SHAMIR_RECOVERY")
    assert await claimer.command("invite_info") == {
        "status": "ok",
        "type": "SHAMIR_RECOVERY",
        "threshold": 2,
        "recipients": [
            {"user_id": "alice", "human_handle": ["alice@example.com", "Alice"], "shares": 1},
            {"user_id": "carol", "human_handle": ["carol@example.com", "Carol"], "shares": 2},
        ],
    }


async def test_one_conduit_per_recipient(world: World, people):
    await setup_for_bob(people)
    token = await invite_bob(people)
    claimer = await connect_claimer(world, token, "SHAMIR_RECOVERY")
    alice = await connect_as(people["alice"])
    carol = await connect_as(people["carol"])
    await pending(claimer, "invite_1_claimer_wait_peer", greeter_user_id="alice", claimer_public_key=PUBLIC_KEY_C)
    # Carol's conduit is another rendezvous: she waits for a claimer talking to her.
    await pending(carol, "invite_1_greeter_wait_peer", token=token, greeter_public_key=b"K" * 32)
    await alice.send({"cmd": "invite_1_greeter_wait_peer", "token": token, "greeter_public_key": PUBLIC_KEY_G})
    assert await alice.receive() == {"status": "ok", "claimer_public_key": PUBLIC_KEY_C}
    assert await claimer.receive() == {"status": "ok", "greeter_public_key": PUBLIC_KEY_G}
    assert await carol.nothing_received(0.2)
    await claimer.send({"cmd": "invite_1_claimer_wait_peer", "greeter_user_id": "carol", "claimer_public_key": PUBLIC_KEY_C})
    assert await carol.receive() == {"status": "ok", "claimer_public_key": PUBLIC_KEY_C}
    assert await claimer.receive() == {"status": "ok", "greeter_public_key": b"K" * 32}
    states = {c.greeter.user_id: c.conduit_state async for c in ShamirRecoveryConduit.objects.select_related("greeter")}
    assert states == {"alice": "2_1_CLAIMER_HASHED_NONCE", "carol": "2_1_CLAIMER_HASHED_NONCE"}
    assert (await Invitation.objects.aget(token=token)).conduit_state == "1_WAIT_PEERS"  # unused for SHAMIR_RECOVERY


async def test_conduit_not_found(world: World, people):
    await setup_for_bob(people)
    token = await invite_bob(people)
    claimer = await connect_claimer(world, token, "SHAMIR_RECOVERY")
    for greeter_user_id in ("dave", "bob"):
        reply = await claimer.command("invite_1_claimer_wait_peer", greeter_user_id=greeter_user_id, claimer_public_key=PUBLIC_KEY_C)
        assert reply == {"status": "not_found"}
    # Required for SHAMIR_RECOVERY.
    reply = await claimer.command("invite_3a_claimer_signify_trust")
    assert reply == {"status": "not_found"}
    dave = await connect_as(people["dave"])
    assert await dave.command("invite_1_greeter_wait_peer", token=token, greeter_public_key=PUBLIC_KEY_G) == {"status": "not_found"}


async def test_reveal(world: World, people):
    setup = await setup_for_bob(people)
    claimer = await connect_claimer(world, await invite_bob(people), "SHAMIR_RECOVERY")
    assert await claimer.command("invite_shamir_recovery_reveal", reveal_token=setup["reveal_token"]) == {
        "status": "ok", "ciphered_data": b"ciphered data",
    }
    assert await claimer.command("invite_shamir_recovery_reveal", reveal_token=uuid.uuid4()) == {"status": "not_found"}


@pytest.mark.parametrize("deleter", ["bob-new-device", "carol", "alice"])
async def test_invite_delete_by_claimer_or_recipient(world: World, people, deleter):
    await setup_for_bob(people)
    token = await invite_bob(people)
    device = await add_device(people["bob"], "recovered") if deleter == "bob-new-device" else people[deleter]
    client = await connect_as(device)
    assert await client.command("invite_delete", token=token, reason="FINISHED") == {"status": "ok"}


async def test_invite_delete_not_found_for_others(world: World, people):
    await setup_for_bob(people)
    token = await invite_bob(people)
    dave = await connect_as(people["dave"])
    assert await dave.command("invite_delete", token=token, reason="CANCELLED") == {"status": "not_found"}
