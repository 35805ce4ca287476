"""`user_revoke` (docs/protocol.md#user-revoke): one test per reply status, then attempts at every rule."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from nacl.signing import SigningKey

from organizations.models import User
from tests.conftest import World, add_user, connect_as
from tests.testkit import certs
from tests.testkit.ws import WsClient
from tests.users.conftest import create_device, create_user, revoke_user

pytestmark = pytest.mark.django_db(transaction=True)

NOT_ALLOWED = {"status": "not_allowed", "reason": None}
INVALID_CERTIFICATION = {"status": "invalid_certification", "reason": None}


def revocation(author, user_id: str, *, signing_key=None, author_id="author", timestamp=None) -> bytes:
    return certs.revoked_user_certificate(
        signing_key or author.signing_key,
        author=author.device_id if author_id == "author" else author_id,
        timestamp=timestamp or certs.now(),
        user_id=user_id,
    )


async def handshake_result(device) -> str:
    client = await WsClient.connect()
    result = await client.authenticate(
        organization_id=device.organization_id, device_id=device.device_id, signing_key=device.signing_key,
        root_verify_key=device.root_verify_key,
    )
    await client.close()
    return result["result"]


# --- one test per status ----------------------------------------------------------------------------


async def test_ok(world: World, alice_client: WsClient):
    await create_user(alice_client, world.alice, world, "bob")
    timestamp = certs.now()
    certificate = revocation(world.alice, "bob", timestamp=timestamp)
    assert await alice_client.command("user_revoke", revoked_user_certificate=certificate) == {"status": "ok"}
    bob = await User.objects.select_related("revoked_user_certifier").aget(user_id="bob")
    assert bob.revoked_on == timestamp
    assert bytes(bob.revoked_user_certificate) == certificate
    assert bob.revoked_user_certifier.device_id == world.alice.device_id


@pytest.mark.parametrize("profile", ["STANDARD", "OUTSIDER"])
async def test_not_allowed(world: World, profile: str):
    await add_user(world, "carol")
    author = await add_user(world, "bob", profile=profile)
    client = await connect_as(author)
    assert await client.command("user_revoke", revoked_user_certificate=revocation(author, "carol")) == NOT_ALLOWED
    assert (await User.objects.aget(user_id="carol")).revoked_on is None


async def test_not_allowed_self_revocation(world: World, alice_client: WsClient):
    reply = await alice_client.command("user_revoke", revoked_user_certificate=revocation(world.alice, "alice"))
    assert reply == NOT_ALLOWED
    assert (await User.objects.aget(user_id="alice")).revoked_on is None


async def test_invalid_certification(world: World, alice_client: WsClient):
    await create_user(alice_client, world.alice, world, "bob")
    certificate = revocation(world.alice, "bob", signing_key=SigningKey.generate())
    assert await alice_client.command("user_revoke", revoked_user_certificate=certificate) == INVALID_CERTIFICATION


async def test_not_found(world: World, alice_client: WsClient):
    reply = await alice_client.command("user_revoke", revoked_user_certificate=revocation(world.alice, "nobody"))
    assert reply == {"status": "not_found"}


async def test_already_revoked(world: World, alice_client: WsClient):
    await create_user(alice_client, world.alice, world, "bob")
    await revoke_user(alice_client, world.alice, "bob")
    first = (await User.objects.aget(user_id="bob")).revoked_on
    reply = await alice_client.command("user_revoke", revoked_user_certificate=revocation(world.alice, "bob"))
    assert reply == {"status": "already_revoked", "reason": None}
    assert (await User.objects.aget(user_id="bob")).revoked_on == first


# --- the rules, one by one ------------------------------------------------------------------------


async def test_revocation_closes_every_live_session_of_the_user(world: World, alice_client: WsClient):
    bob = await create_user(alice_client, world.alice, world, "bob")
    bob_client = await connect_as(bob)
    bob2 = await create_device(bob_client, bob, "dev2")
    bob_sessions = [bob_client, await connect_as(bob), await connect_as(bob2)]
    assert await bob_sessions[2].command("events_subscribe") == {"status": "ok"}
    carol = await create_user(alice_client, world.alice, world, "carol")
    carol_client = await connect_as(carol)

    await revoke_user(alice_client, world.alice, "bob")
    for client in bob_sessions:
        assert await client.receive_close() == 1000
    # Other users' sessions, the author's included, carry on.
    assert await carol_client.nothing_received()
    assert (await carol_client.command("user_get", user_id="bob"))["status"] == "ok"
    assert (await alice_client.command("user_get", user_id="bob"))["status"] == "ok"
    # And the revoked user cannot come back, from any device.
    assert await handshake_result(bob) == "revoked_device"
    assert await handshake_result(bob2) == "revoked_device"


async def test_revocation_closes_sessions_waiting_for_events(world: World, alice_client: WsClient):
    bob = await create_user(alice_client, world.alice, world, "bob")
    bob_client = await connect_as(bob)
    assert await bob_client.command("events_subscribe") == {"status": "ok"}
    await bob_client.send({"cmd": "events_listen", "wait": True})
    await asyncio.sleep(0.1)
    await revoke_user(alice_client, world.alice, "bob")
    assert await bob_client.receive_close() == 1000


async def test_revocation_date_is_the_certificate_timestamp(world: World, alice_client: WsClient):
    # A revocation dated a little in the future takes effect then, not before.
    bob = await create_user(alice_client, world.alice, world, "bob")
    future = certs.now() + timedelta(seconds=200)
    await revoke_user(alice_client, world.alice, "bob", timestamp=future)
    assert (await User.objects.aget(user_id="bob")).revoked_on == future
    assert await handshake_result(bob) == "ok"
    await User.objects.filter(user_id="bob").aupdate(revoked_on=certs.now() - timedelta(microseconds=1))
    assert await handshake_result(bob) == "revoked_device"


async def test_revoked_admin_can_no_longer_act(world: World, alice_client: WsClient):
    bob = await create_user(alice_client, world.alice, world, "bob", profile="ADMIN")
    await revoke_user(alice_client, world.alice, "bob")
    assert await handshake_result(bob) == "revoked_device"


async def test_admin_can_revoke_another_admin_who_created_it(world: World, alice_client: WsClient):
    bob = await create_user(alice_client, world.alice, world, "bob", profile="ADMIN")
    bob_client = await connect_as(bob)
    await revoke_user(bob_client, bob, "alice")
    assert await alice_client.receive_close() == 1000


async def test_not_allowed_comes_before_certificate_checks(world: World):
    bob = await add_user(world, "bob")
    client = await connect_as(bob)
    assert await client.command("user_revoke", revoked_user_certificate=b"garbage") == NOT_ALLOWED


@pytest.mark.parametrize("forgery", [
    "garbage", "truncated", "other_signer", "root_signer", "other_author", "wrong_type", "bit_flip",
    "author_device_of_same_user",
])
async def test_invalid_certification_forgeries(world: World, alice_client: WsClient, forgery: str):
    bob = await create_user(alice_client, world.alice, world, "bob", profile="ADMIN")
    await create_user(alice_client, world.alice, world, "carol")
    good = revocation(world.alice, "carol")
    alice2 = world.alice.new_device("dev2")
    certificate = {
        "garbage": lambda: b"\x00" * 80,
        "truncated": lambda: good[:63],
        # Properly signed and authored by bob, another ADMIN, but alice is the one connected.
        "other_signer": lambda: revocation(bob, "carol"),
        "root_signer": lambda: revocation(world.alice, "carol", signing_key=world.alice.root_signing_key),
        "other_author": lambda: revocation(world.alice, "carol", author_id=bob.device_id),
        "wrong_type": lambda: certs.device_creation_certificates(world.alice, alice2)["device_certificate"],
        "bit_flip": lambda: good[:-1] + bytes([good[-1] ^ 1]),
        "author_device_of_same_user": lambda: revocation(alice2, "carol"),
    }[forgery]()
    assert await alice_client.command("user_revoke", revoked_user_certificate=certificate) == INVALID_CERTIFICATION
    assert (await User.objects.aget(user_id="carol")).revoked_on is None


@pytest.mark.parametrize("offset", [timedelta(seconds=-330), timedelta(seconds=310), timedelta(days=365)])
async def test_out_of_ballpark_is_invalid_certification(world: World, alice_client: WsClient, offset):
    await create_user(alice_client, world.alice, world, "bob")
    certificate = revocation(world.alice, "bob", timestamp=certs.now() + offset)
    assert await alice_client.command("user_revoke", revoked_user_certificate=certificate) == INVALID_CERTIFICATION
    assert (await User.objects.aget(user_id="bob")).revoked_on is None


async def test_self_revocation_certificate_checks_come_first(world: World, alice_client: WsClient):
    old = revocation(world.alice, "alice", timestamp=certs.now() - timedelta(hours=1))
    assert await alice_client.command("user_revoke", revoked_user_certificate=old) == INVALID_CERTIFICATION


async def test_not_found_in_another_organization(world: World, alice_client: WsClient):
    from tests.conftest import bootstrap_organization

    other = await bootstrap_organization("OtherOrg")
    other_client = await connect_as(other.alice)
    await create_user(other_client, other.alice, other, "zoe")
    reply = await alice_client.command("user_revoke", revoked_user_certificate=revocation(world.alice, "zoe"))
    assert reply == {"status": "not_found"}
    assert (await User.objects.aget(user_id="zoe")).revoked_on is None


async def test_bad_message_wrong_type(world: World, alice_client: WsClient):
    assert (await alice_client.command("user_revoke", revoked_user_certificate="text"))["status"] == "bad_message"
