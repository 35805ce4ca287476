"""`invite_new` (docs/protocol.md#invite-new): one test per reply status and per `email_sent` rule."""
from __future__ import annotations

import uuid

import pytest

from invites.models import Invitation
from tests.conftest import World, add_user, connect_as
from tests.invites.conftest import new_invitation, no_more_events, next_event, status_changed, subscribed

pytestmark = pytest.mark.django_db(transaction=True)


async def test_ok_user(world: World):
    client = await connect_as(world.alice)
    reply = await client.command("invite_new", type="USER", claimer_email="zack@example.com", send_email=False)
    assert reply == {"status": "ok", "token": reply["token"], "email_sent": "SUCCESS"}
    assert isinstance(reply["token"], uuid.UUID)
    invitation = await Invitation.objects.select_related("greeter").aget(token=reply["token"])
    assert (invitation.type, invitation.claimer_email, invitation.greeter.user_id) == ("USER", "zack@example.com", "alice")
    assert invitation.deleted_on is None and invitation.conduit_state == "1_WAIT_PEERS"


async def test_ok_user_emits_idle_to_the_greeter(world: World):
    listener = await subscribed(world.alice)
    client = await connect_as(world.alice)
    token = await new_invitation(client, "USER", claimer_email="zack@example.com")
    assert await next_event(listener) == status_changed(token, "IDLE")


async def test_ok_user_same_email_same_greeter_reuses_the_token(world: World):
    client = await connect_as(world.alice)
    first = await new_invitation(client, "USER", claimer_email="zack@example.com")
    listener = await subscribed(world.alice)
    assert await new_invitation(client, "USER", claimer_email="zack@example.com") == first
    assert await Invitation.objects.acount() == 1
    # Nothing new, nothing announced.
    assert await no_more_events(listener)


async def test_ok_user_same_email_other_greeter_is_another_invitation(world: World):
    admin2 = await add_user(world, "adam", profile="ADMIN")
    first = await new_invitation(await connect_as(world.alice), "USER", claimer_email="zack@example.com")
    second = await new_invitation(await connect_as(admin2), "USER", claimer_email="zack@example.com")
    assert first != second


async def test_ok_user_after_deletion_is_a_new_invitation(world: World):
    client = await connect_as(world.alice)
    first = await new_invitation(client, "USER", claimer_email="zack@example.com")
    assert await client.command("invite_delete", token=first, reason="CANCELLED") == {"status": "ok"}
    assert await new_invitation(client, "USER", claimer_email="zack@example.com") != first


async def test_ok_user_email_of_a_revoked_user(world: World):
    await add_user(world, "rick", revoked=True)
    client = await connect_as(world.alice)
    await new_invitation(client, "USER", claimer_email="rick@example.com")


async def test_not_allowed(world: World):
    bob = await add_user(world, "bob")
    client = await connect_as(bob)
    reply = await client.command("invite_new", type="USER", claimer_email="zack@example.com", send_email=False)
    assert reply == {"status": "not_allowed"}
    assert await Invitation.objects.acount() == 0


async def test_already_member(world: World):
    await add_user(world, "bob")
    client = await connect_as(world.alice)
    reply = await client.command("invite_new", type="USER", claimer_email="bob@example.com", send_email=False)
    assert reply == {"status": "already_member"}
    assert await Invitation.objects.acount() == 0


async def test_ok_device(world: World):
    listener = await subscribed(world.alice)
    client = await connect_as(world.alice)
    token = await new_invitation(client, "DEVICE")
    invitation = await Invitation.objects.aget(token=token)
    assert (invitation.type, invitation.claimer_email) == ("DEVICE", None)
    assert await next_event(listener) == status_changed(token, "IDLE")


async def test_ok_device_reuses_the_pending_invitation(world: World):
    client = await connect_as(world.alice)
    assert await new_invitation(client, "DEVICE") == await new_invitation(client, "DEVICE")
    assert await Invitation.objects.acount() == 1


async def test_ok_device_any_profile(world: World):
    outsider = await add_user(world, "olga", profile="OUTSIDER")
    await new_invitation(await connect_as(outsider), "DEVICE")


async def test_ok_device_invitations_are_per_greeter(world: World):
    bob = await add_user(world, "bob")
    assert await new_invitation(await connect_as(world.alice), "DEVICE") != await new_invitation(await connect_as(bob), "DEVICE")


async def test_shamir_recovery_not_setup_quirk_device_email_without_human_handle(world: World):
    from organizations.models import User

    bob = await add_user(world, "bob")
    await User.objects.filter(user_id="bob").aupdate(human_email=None, human_label=None)
    client = await connect_as(bob)
    reply = await client.command("invite_new", type="DEVICE", send_email=True)
    assert reply == {"status": "shamir_recovery_not_setup"}
    # Without the e-mail, a legacy user may invite its device.
    await new_invitation(client, "DEVICE", send_email=False)


async def test_shamir_recovery_not_setup(world: World):
    await add_user(world, "bob")
    client = await connect_as(world.alice)
    reply = await client.command("invite_new", type="SHAMIR_RECOVERY", claimer_user_id="bob", send_email=False)
    assert reply == {"status": "shamir_recovery_not_setup"}
    reply = await client.command("invite_new", type="SHAMIR_RECOVERY", claimer_user_id="nobody", send_email=False)
    assert reply == {"status": "shamir_recovery_not_setup"}


@pytest.mark.parametrize(
    "request_fields",
    [
        {"type": "FRIEND", "send_email": False},
        {"type": "USER", "send_email": False},
        {"type": "USER", "claimer_email": "zack@example.com"},
        {"type": "DEVICE", "send_email": "yes"},
        {"type": "SHAMIR_RECOVERY", "claimer_user_id": "not valid!", "send_email": False},
        {"send_email": False},
    ],
    ids=["unknown-type", "user-without-email", "no-send-email", "send-email-not-bool", "bad-user-id", "no-type"],
)
async def test_bad_message(world: World, request_fields):
    client = await connect_as(world.alice)
    reply = await client.command("invite_new", **request_fields)
    assert reply["status"] == "bad_message"


@pytest.mark.parametrize(
    "claimer_email",
    ["zack\x00@example.com", "z" * 244 + "@example.com"],  # NUL: PostgreSQL text cannot hold it; 256 characters
    ids=["nul", "256-characters"],
)
async def test_bad_message_claimer_email_the_database_cannot_store(world: World, claimer_email: str):
    client = await connect_as(world.alice)
    reply = await client.command("invite_new", type="USER", claimer_email=claimer_email, send_email=False)
    assert reply["status"] == "bad_message"
    assert not await Invitation.objects.filter(type="USER").aexists()
    # The session goes on.
    assert (await client.command("invite_new", type="DEVICE", send_email=False))["status"] == "ok"


async def test_ok_claimer_email_as_long_as_the_reference_stores(world: World):
    client = await connect_as(world.alice)
    claimer_email = "z" * 243 + "@example.com"  # 255 characters: the reference's VARCHAR(255)
    reply = await client.command("invite_new", type="USER", claimer_email=claimer_email, send_email=True)
    # Stored, but longer than an SMTP path (and a human handle's e-mail) may be: nothing is sent.
    assert reply["status"] == "ok" and reply["email_sent"] == "BAD_RECIPIENT"
    assert await Invitation.objects.filter(claimer_email=claimer_email).aexists()


# email_sent -------------------------------------------------------------------------------------------


async def test_email_sent_not_available_without_backend_address(world: World, parsec_settings):
    parsec_settings(backend_addr=None)
    client = await connect_as(world.alice)
    reply = await client.command("invite_new", type="USER", claimer_email="zack@example.com", send_email=True)
    assert reply["status"] == "ok" and reply["email_sent"] == "NOT_AVAILABLE"
    # The invitation exists all the same.
    assert await Invitation.objects.filter(token=reply["token"]).aexists()


async def test_email_sent_success_when_not_requested(world: World, parsec_settings):
    parsec_settings(backend_addr=None)
    client = await connect_as(world.alice)
    reply = await client.command("invite_new", type="DEVICE", send_email=False)
    assert reply["email_sent"] == "SUCCESS"


async def test_email_sent_success_mocked(world: World):
    client = await connect_as(world.alice)
    reply = await client.command("invite_new", type="DEVICE", send_email=True)
    assert reply["email_sent"] == "SUCCESS"
