"""`user_create` (docs/protocol.md#user-create): one test per reply status, then attempts at every rule."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from nacl.signing import SigningKey

from organizations.models import Device, Organization, User
from tests.conftest import World, add_user, connect_as
from tests.testkit import certs
from tests.testkit.ws import WsClient
from tests.users.conftest import create_user, new_user_device, revoke_user

pytestmark = pytest.mark.django_db(transaction=True)

NOT_ALLOWED = {"status": "not_allowed", "reason": None}
INVALID_CERTIFICATION = {"status": "invalid_certification", "reason": None}
INVALID_DATA = {"status": "invalid_data", "reason": None}
ALREADY_EXISTS = {"status": "already_exists", "reason": None}
LIMIT_REACHED = {"status": "active_users_limit_reached", "reason": None}


def user_material(author, new_device, *, timestamp=None, signing_key=None, author_id="author", **overrides):
    """The four certificates of `user_create`, each field overridable: `user_x`, `device_x`,
    `redacted_user_x`, `redacted_device_x` (x a certificate field)."""
    timestamp = timestamp or certs.now()
    signing_key = signing_key or author.signing_key
    author_id = author.device_id if author_id == "author" else author_id
    user = dict(author=author_id, timestamp=timestamp, user_id=new_device.user_id, human_handle=new_device.human_handle,
                public_key=new_device.public_key, profile=new_device.profile)
    device = dict(author=author_id, timestamp=timestamp, device_id=new_device.device_id,
                  device_label=new_device.device_label, verify_key=new_device.verify_key)
    parts = {
        "user": user, "redacted_user": {**user, "human_handle": None},
        "device": device, "redacted_device": {**device, "device_label": None},
    }
    for key, value in overrides.items():
        for name in sorted(parts, key=len, reverse=True):
            if key.startswith(name + "_"):
                parts[name][key[len(name) + 1:]] = value
                break
        else:
            raise KeyError(key)
    return {
        "user_certificate": certs.user_certificate(signing_key, **parts["user"]),
        "device_certificate": certs.device_certificate(signing_key, **parts["device"]),
        "redacted_user_certificate": certs.user_certificate(signing_key, **parts["redacted_user"]),
        "redacted_device_certificate": certs.device_certificate(signing_key, **parts["redacted_device"]),
    }


async def set_active_users_limit(world: World, limit: int | None) -> None:
    await Organization.objects.filter(organization_id=world.organization_id).aupdate(active_users_limit=limit)


# --- one test per status ----------------------------------------------------------------------------


async def test_ok(world: World, alice_client: WsClient):
    bob = new_user_device(world, "bob", profile="ADMIN", email="bob@example.com", label="Bob")
    timestamp = certs.now()
    material = certs.user_creation_certificates(world.alice, bob, timestamp)
    assert await alice_client.command("user_create", **material) == {"status": "ok"}

    user = await User.objects.select_related("user_certifier").aget(user_id="bob")
    assert (user.profile, user.human_email, user.human_label) == ("ADMIN", "bob@example.com", "Bob")
    assert user.created_on == timestamp and user.revoked_on is None and not user.frozen
    assert user.user_certifier.device_id == world.alice.device_id
    assert bytes(user.user_certificate) == material["user_certificate"]
    assert bytes(user.redacted_user_certificate) == material["redacted_user_certificate"]
    device = await Device.objects.select_related("device_certifier").aget(user=user)
    assert (device.device_id, device.device_label, device.created_on) == ("bob@dev1", bob.device_label, timestamp)
    assert bytes(device.verify_key) == bob.verify_key
    assert device.device_certifier.device_id == world.alice.device_id
    assert bytes(device.device_certificate) == material["device_certificate"]
    assert bytes(device.redacted_device_certificate) == material["redacted_device_certificate"]
    # The new user can connect, and as an ADMIN create users in turn.
    bob_client = await connect_as(bob)
    await create_user(bob_client, bob, world, "carol")


async def test_ok_outsider_even_when_the_organization_disallows_outsiders(world: World, alice_client: WsClient):
    # `user_profile_outsider_allowed` is a client-side rule (docs/protocol.md#organization-config).
    organization = Organization.objects.filter(organization_id=world.organization_id)
    await organization.aupdate(user_profile_outsider_allowed=False)
    await create_user(alice_client, world.alice, world, "olga", profile="OUTSIDER")
    assert (await User.objects.aget(user_id="olga")).profile == "OUTSIDER"


async def test_ok_non_human_user(world: World, alice_client: WsClient):
    await create_user(alice_client, world.alice, world, "robot", human=False)
    user = await User.objects.aget(user_id="robot")
    assert (user.human_email, user.human_label) == (None, None)


@pytest.mark.parametrize("profile", ["STANDARD", "OUTSIDER"])
async def test_not_allowed(world: World, profile: str):
    author = await add_user(world, "bob", profile=profile)
    client = await connect_as(author)
    material = certs.user_creation_certificates(author, new_user_device(world, "carol"))
    assert await client.command("user_create", **material) == NOT_ALLOWED
    assert not await User.objects.filter(user_id="carol").aexists()


async def test_invalid_certification(world: World, alice_client: WsClient):
    material = user_material(world.alice, new_user_device(world, "bob"), signing_key=SigningKey.generate())
    assert await alice_client.command("user_create", **material) == INVALID_CERTIFICATION


async def test_invalid_data(world: World, alice_client: WsClient):
    material = user_material(world.alice, new_user_device(world, "bob"),
                             device_device_id="carol@dev1", redacted_device_device_id="carol@dev1")
    assert await alice_client.command("user_create", **material) == INVALID_DATA


async def test_already_exists(world: World, alice_client: WsClient):
    await create_user(alice_client, world.alice, world, "bob")
    again = new_user_device(world, "bob", email="other@example.com")
    material = certs.user_creation_certificates(world.alice, again)
    assert await alice_client.command("user_create", **material) == ALREADY_EXISTS


async def test_active_users_limit_reached(world: World, alice_client: WsClient):
    await set_active_users_limit(world, 2)
    await create_user(alice_client, world.alice, world, "bob")
    material = certs.user_creation_certificates(world.alice, new_user_device(world, "carol"))
    assert await alice_client.command("user_create", **material) == LIMIT_REACHED
    assert await User.objects.acount() == 2


# --- the rules, one by one ------------------------------------------------------------------------


async def test_not_allowed_comes_before_certificate_checks(world: World):
    bob = await add_user(world, "bob")
    client = await connect_as(bob)
    garbage = {name: b"garbage" for name in
               ("user_certificate", "device_certificate", "redacted_user_certificate", "redacted_device_certificate")}
    assert await client.command("user_create", **garbage) == NOT_ALLOWED


@pytest.mark.parametrize("certificate", [
    "user_certificate", "device_certificate", "redacted_user_certificate", "redacted_device_certificate",
])
@pytest.mark.parametrize("forgery", [
    "garbage", "truncated", "other_signer", "root_signer", "other_author", "no_author", "wrong_type", "bit_flip",
])
async def test_invalid_certification_for_each_certificate(world: World, alice_client: WsClient, certificate, forgery):
    bob = await add_user(world, "bob", profile="ADMIN")
    new_device = new_user_device(world, "carol")
    good = certs.user_creation_certificates(world.alice, new_device)
    bad = {
        "garbage": lambda: b"\x00" * 100,
        "truncated": lambda: good[certificate][:40],
        # Properly signed and authored by bob, another ADMIN, but alice is the one connected.
        "other_signer": lambda: certs.user_creation_certificates(bob, new_device)[certificate],
        "root_signer": lambda: user_material(
            world.alice, new_device, signing_key=world.alice.root_signing_key)[certificate],
        "other_author": lambda: user_material(world.alice, new_device, author_id=bob.device_id)[certificate],
        "no_author": lambda: user_material(world.alice, new_device, author_id=None)[certificate],
        "wrong_type": lambda: good[
            "device_certificate" if certificate.endswith("user_certificate") else "user_certificate"],
        "bit_flip": lambda: good[certificate][:-1] + bytes([good[certificate][-1] ^ 1]),
    }[forgery]()
    assert await alice_client.command("user_create", **{**good, certificate: bad}) == INVALID_CERTIFICATION
    assert not await User.objects.filter(user_id="carol").aexists()


async def test_invalid_certification_signed_by_another_device_of_the_author_user(world: World, alice_client: WsClient):
    # Certificates must come from the connected device itself, not merely from its user.
    alice2 = world.alice.new_device("dev2")
    material = certs.user_creation_certificates(alice2, new_user_device(world, "bob"))
    assert await alice_client.command("user_create", **material) == INVALID_CERTIFICATION


async def test_invalid_data_timestamps_differ(world: World, alice_client: WsClient):
    now = certs.now()
    material = user_material(world.alice, new_user_device(world, "bob"), timestamp=now,
                             device_timestamp=now + timedelta(microseconds=1),
                             redacted_device_timestamp=now + timedelta(microseconds=1))
    assert await alice_client.command("user_create", **material) == INVALID_DATA


@pytest.mark.parametrize("offset", [timedelta(seconds=-330), timedelta(seconds=310), timedelta(days=-365)])
async def test_out_of_ballpark_is_invalid_certification(world: World, alice_client: WsClient, offset):
    material = certs.user_creation_certificates(world.alice, new_user_device(world, "bob"), certs.now() + offset)
    assert await alice_client.command("user_create", **material) == INVALID_CERTIFICATION


async def test_in_ballpark_edges(world: World, alice_client: WsClient):
    for user_id, offset in [("past", timedelta(seconds=-300)), ("future", timedelta(seconds=280))]:
        material = certs.user_creation_certificates(world.alice, new_user_device(world, user_id), certs.now() + offset)
        assert await alice_client.command("user_create", **material) == {"status": "ok"}, user_id
    assert (await User.objects.aget(user_id="past")).created_on < certs.now() - timedelta(seconds=290)


async def test_timestamp_mismatch_is_checked_before_the_ballpark(world: World, alice_client: WsClient):
    old = certs.now() - timedelta(hours=1)
    material = user_material(world.alice, new_user_device(world, "bob"), timestamp=old,
                             device_timestamp=old + timedelta(seconds=1),
                             redacted_device_timestamp=old + timedelta(seconds=1))
    assert await alice_client.command("user_create", **material) == INVALID_DATA


async def test_ballpark_is_checked_before_the_user_id_match(world: World, alice_client: WsClient):
    material = user_material(world.alice, new_user_device(world, "bob"), timestamp=certs.now() - timedelta(hours=1),
                             device_device_id="carol@dev1", redacted_device_device_id="carol@dev1")
    assert await alice_client.command("user_create", **material) == INVALID_CERTIFICATION


async def test_invalid_data_device_of_another_user(world: World, alice_client: WsClient):
    # Even an existing user: devices are added with device_create, by their own user.
    material = user_material(world.alice, new_user_device(world, "bob"),
                             device_device_id="alice@dev2", redacted_device_device_id="alice@dev2")
    assert await alice_client.command("user_create", **material) == INVALID_DATA
    assert await Device.objects.acount() == 1


@pytest.mark.parametrize("override", [
    {"redacted_user_human_handle": ("bob@example.com", "Bob")},
    {"redacted_user_human_handle": ("evil@example.com", "Evil")},
    {"redacted_user_user_id": "mallory"},
    {"redacted_user_profile": "ADMIN"},
    {"redacted_user_public_key": b"\x01" * 32},
    {"redacted_user_timestamp": certs.now() - timedelta(seconds=1)},
    {"redacted_device_device_label": "Device dev1"},
    {"redacted_device_device_id": "bob@dev2"},
    {"redacted_device_verify_key": bytes(SigningKey.generate().verify_key)},
    {"redacted_device_timestamp": certs.now() - timedelta(seconds=1)},
])
async def test_invalid_data_redacted_certificates_must_be_twins(world: World, alice_client: WsClient, override):
    material = user_material(world.alice, new_user_device(world, "bob"), **override)
    assert await alice_client.command("user_create", **material) == INVALID_DATA
    assert not await User.objects.filter(user_id="bob").aexists()


async def test_invalid_data_redacted_certificates_swapped(world: World, alice_client: WsClient):
    # A full certificate where the redacted one is expected would leak the human handle to outsiders.
    material = certs.user_creation_certificates(world.alice, new_user_device(world, "bob"))
    material["redacted_user_certificate"] = material["user_certificate"]
    assert await alice_client.command("user_create", **material) == INVALID_DATA
    material = certs.user_creation_certificates(world.alice, new_user_device(world, "bob"))
    material["redacted_device_certificate"] = material["device_certificate"]
    assert await alice_client.command("user_create", **material) == INVALID_DATA


async def test_already_exists_user_id_of_a_revoked_user(world: World, alice_client: WsClient):
    await create_user(alice_client, world.alice, world, "bob")
    await revoke_user(alice_client, world.alice, "bob")
    again = new_user_device(world, "bob", email="bob2@example.com")
    material = certs.user_creation_certificates(world.alice, again)
    assert await alice_client.command("user_create", **material) == ALREADY_EXISTS


async def test_already_exists_email_of_an_active_user(world: World, alice_client: WsClient):
    await create_user(alice_client, world.alice, world, "bob", email="bob@example.com")
    twin = new_user_device(world, "bob2", email="bob@example.com", label="Another Bob")
    material = certs.user_creation_certificates(world.alice, twin)
    assert await alice_client.command("user_create", **material) == ALREADY_EXISTS
    # Alice's own e-mail too.
    alice_twin = new_user_device(world, "alice2", email="alice@example.com")
    reply = await alice_client.command("user_create", **certs.user_creation_certificates(world.alice, alice_twin))
    assert reply == ALREADY_EXISTS


async def test_email_of_a_revoked_user_is_free(world: World, alice_client: WsClient):
    await create_user(alice_client, world.alice, world, "bob", email="bob@example.com")
    await revoke_user(alice_client, world.alice, "bob")
    await create_user(alice_client, world.alice, world, "bob2", email="bob@example.com")
    assert await User.objects.filter(human_email="bob@example.com").acount() == 2


async def test_email_of_a_user_revoked_in_the_future_is_still_taken(world: World, alice_client: WsClient):
    # Revocation takes effect at the certificate's timestamp, which may be a little ahead of the server.
    await create_user(alice_client, world.alice, world, "bob", email="bob@example.com")
    await revoke_user(alice_client, world.alice, "bob", timestamp=certs.now() + timedelta(seconds=200))
    twin = new_user_device(world, "bob2", email="bob@example.com")
    material = certs.user_creation_certificates(world.alice, twin)
    assert await alice_client.command("user_create", **material) == ALREADY_EXISTS


async def test_non_human_users_never_clash_on_email(world: World, alice_client: WsClient):
    await create_user(alice_client, world.alice, world, "robot1", human=False)
    await create_user(alice_client, world.alice, world, "robot2", human=False)


async def test_active_users_limit_counts_only_non_revoked_users(world: World, alice_client: WsClient):
    await set_active_users_limit(world, 2)
    await create_user(alice_client, world.alice, world, "bob")
    await revoke_user(alice_client, world.alice, "bob")
    await create_user(alice_client, world.alice, world, "carol")
    material = certs.user_creation_certificates(world.alice, new_user_device(world, "dave"))
    assert await alice_client.command("user_create", **material) == LIMIT_REACHED


async def test_active_users_limit_counts_a_user_revoked_in_the_future(world: World, alice_client: WsClient):
    # Same "active at t" as the e-mail rule: a revocation dated a little ahead takes effect then, not before.
    await set_active_users_limit(world, 2)
    await create_user(alice_client, world.alice, world, "bob")
    await revoke_user(alice_client, world.alice, "bob", timestamp=certs.now() + timedelta(seconds=200))
    material = certs.user_creation_certificates(world.alice, new_user_device(world, "carol"))
    assert await alice_client.command("user_create", **material) == LIMIT_REACHED
    await User.objects.filter(user_id="bob").aupdate(revoked_on=certs.now() - timedelta(microseconds=1))
    assert await alice_client.command("user_create", **material) == {"status": "ok"}


async def test_active_users_limit_zero(world: World, alice_client: WsClient):
    await set_active_users_limit(world, 0)
    material = certs.user_creation_certificates(world.alice, new_user_device(world, "bob"))
    assert await alice_client.command("user_create", **material) == LIMIT_REACHED


async def test_active_users_limit_is_checked_before_uniqueness(world: World, alice_client: WsClient):
    await set_active_users_limit(world, 1)
    duplicate = new_user_device(world, "alice", email="alice@example.com")
    reply = await alice_client.command("user_create", **certs.user_creation_certificates(world.alice, duplicate))
    assert reply == LIMIT_REACHED


async def test_concurrent_creations_with_the_same_email(world: World, concurrent_writers):
    clients = [await connect_as(world.alice) for _ in range(4)]
    materials = [
        certs.user_creation_certificates(world.alice, new_user_device(world, f"bob{index}", email="bob@example.com"))
        for index in range(len(clients))
    ]
    results = await asyncio.gather(*(
        client.command("user_create", **material) for client, material in zip(clients, materials)
    ))
    assert sorted(reply["status"] for reply in results) == ["already_exists"] * 3 + ["ok"]
    assert await User.objects.filter(human_email="bob@example.com").acount() == 1


async def test_concurrent_creations_respect_the_active_users_limit(world: World, concurrent_writers):
    await set_active_users_limit(world, 3)
    clients = [await connect_as(world.alice) for _ in range(5)]
    materials = [
        certs.user_creation_certificates(world.alice, new_user_device(world, f"user{index}"))
        for index in range(len(clients))
    ]
    results = await asyncio.gather(*(
        client.command("user_create", **material) for client, material in zip(clients, materials)
    ))
    assert sorted(reply["status"] for reply in results) == ["active_users_limit_reached"] * 3 + ["ok"] * 2
    assert await User.objects.acount() == 3


async def test_bad_message_missing_certificate(world: World, alice_client: WsClient):
    material = certs.user_creation_certificates(world.alice, new_user_device(world, "bob"))
    del material["redacted_user_certificate"]
    assert (await alice_client.command("user_create", **material))["status"] == "bad_message"


async def test_invalid_certification_nul_in_the_human_label(world: World, alice_client: WsClient):
    # PostgreSQL's text cannot hold NUL: refused when the certificate is read, not by the database.
    material = user_material(world.alice, new_user_device(world, "bob", label="Bob\x00Marley"))
    assert await alice_client.command("user_create", **material) == INVALID_CERTIFICATION
    assert not await User.objects.filter(user_id="bob").aexists()
