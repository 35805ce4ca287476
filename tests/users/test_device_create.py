"""`device_create` (docs/protocol.md#device-create): one test per reply status, then attempts at every rule."""
from __future__ import annotations

from datetime import timedelta

import pytest
from nacl.signing import SigningKey

from organizations.models import Device
from tests.conftest import World, add_user, connect_as
from tests.testkit import certs
from tests.testkit.ws import WsClient
from tests.users.conftest import create_device, create_user

pytestmark = pytest.mark.django_db(transaction=True)

INVALID_CERTIFICATION = {"status": "invalid_certification", "reason": None}
INVALID_DATA = {"status": "invalid_data", "reason": None}


def device_material(author, new_device, *, signing_key=None, author_id="author", timestamp=None, **overrides):
    """`device_certificate` and `redacted_device_certificate`; `full_x` / `redacted_x` override field x."""
    fields = dict(
        author=author.device_id if author_id == "author" else author_id, timestamp=timestamp or certs.now(),
        device_id=new_device.device_id, device_label=new_device.device_label, verify_key=new_device.verify_key,
    )
    full, redacted = dict(fields), {**fields, "device_label": None}
    for key, value in overrides.items():
        target, _, name = key.partition("_")
        {"full": full, "redacted": redacted}[target][name] = value
    signing_key = signing_key or author.signing_key
    return {
        "device_certificate": certs.device_certificate(signing_key, **full),
        "redacted_device_certificate": certs.device_certificate(signing_key, **redacted),
    }


# --- one test per status ----------------------------------------------------------------------------


async def test_ok(world: World, alice_client: WsClient):
    alice2 = world.alice.new_device("dev2", device_label="My laptop")
    timestamp = certs.now()
    material = certs.device_creation_certificates(world.alice, alice2, timestamp)
    assert await alice_client.command("device_create", **material) == {"status": "ok"}
    device = await Device.objects.select_related("user", "device_certifier").aget(device_id="alice@dev2")
    assert device.user.user_id == "alice" and device.device_label == "My laptop"
    assert device.created_on == timestamp and device.device_certifier.device_id == world.alice.device_id
    assert bytes(device.verify_key) == alice2.verify_key
    assert bytes(device.device_certificate) == material["device_certificate"]
    assert bytes(device.redacted_device_certificate) == material["redacted_device_certificate"]
    # The new device connects, and certifies devices in turn.
    client = await connect_as(alice2)
    await create_device(client, alice2, "dev3")


@pytest.mark.parametrize("profile", ["STANDARD", "OUTSIDER"])
async def test_ok_any_profile(world: World, alice_client: WsClient, profile: str):
    bob = await create_user(alice_client, world.alice, world, "bob", profile=profile)
    await create_device(await connect_as(bob), bob, "dev2")
    assert await Device.objects.filter(user__user_id="bob").acount() == 2


async def test_invalid_certification(world: World, alice_client: WsClient):
    material = device_material(world.alice, world.alice.new_device("dev2"), signing_key=SigningKey.generate())
    assert await alice_client.command("device_create", **material) == INVALID_CERTIFICATION


async def test_bad_user_id(world: World, alice_client: WsClient):
    await create_user(alice_client, world.alice, world, "bob")
    bob2 = world.alice.new_device("dev2")
    material = device_material(world.alice, bob2, full_device_id="bob@dev2", redacted_device_id="bob@dev2")
    assert await alice_client.command("device_create", **material) == {"status": "bad_user_id", "reason": None}
    assert not await Device.objects.filter(device_id="bob@dev2").aexists()


async def test_invalid_data(world: World, alice_client: WsClient):
    material = device_material(world.alice, world.alice.new_device("dev2"), redacted_device_label="Device dev2")
    assert await alice_client.command("device_create", **material) == INVALID_DATA


async def test_already_exists(world: World, alice_client: WsClient):
    again = world.alice.new_device("dev1")
    reply = await alice_client.command("device_create", **certs.device_creation_certificates(world.alice, again))
    assert reply == {"status": "already_exists", "reason": None}
    # The original device keeps its key.
    assert bytes((await Device.objects.aget(device_id="alice@dev1")).verify_key) == world.alice.verify_key


# --- the rules, one by one ------------------------------------------------------------------------


@pytest.mark.parametrize("certificate", ["device_certificate", "redacted_device_certificate"])
@pytest.mark.parametrize("forgery", [
    "garbage", "truncated", "other_signer", "root_signer", "other_author", "no_author", "wrong_type", "bit_flip",
])
async def test_invalid_certification_for_each_certificate(world: World, alice_client: WsClient, certificate, forgery):
    alice2 = world.alice.new_device("dev2")
    await create_device(alice_client, world.alice, "dev3")
    alice3 = world.alice.new_device("dev3")
    good = certs.device_creation_certificates(world.alice, alice2)
    bad = {
        "garbage": lambda: b"\x00" * 100,
        "truncated": lambda: good[certificate][:64],
        # Another device of the same user: the connected device must sign by itself.
        "other_signer": lambda: certs.device_creation_certificates(alice3, alice2)[certificate],
        "root_signer": lambda: device_material(
            world.alice, alice2, signing_key=world.alice.root_signing_key)[certificate],
        "other_author": lambda: device_material(world.alice, alice2, author_id="alice@dev3")[certificate],
        "no_author": lambda: device_material(world.alice, alice2, author_id=None)[certificate],
        "wrong_type": lambda: certs.revoked_user_certificate(
            world.alice.signing_key, author=world.alice.device_id, timestamp=certs.now(), user_id="alice"),
        "bit_flip": lambda: good[certificate][:-1] + bytes([good[certificate][-1] ^ 1]),
    }[forgery]()
    assert await alice_client.command("device_create", **{**good, certificate: bad}) == INVALID_CERTIFICATION
    assert not await Device.objects.filter(device_id="alice@dev2").aexists()


@pytest.mark.parametrize("offset", [timedelta(seconds=-330), timedelta(seconds=310), timedelta(days=-1)])
async def test_out_of_ballpark_is_invalid_certification(world: World, alice_client: WsClient, offset):
    material = certs.device_creation_certificates(world.alice, world.alice.new_device("dev2"), certs.now() + offset)
    assert await alice_client.command("device_create", **material) == INVALID_CERTIFICATION


async def test_ballpark_is_checked_before_the_user(world: World, alice_client: WsClient):
    await create_user(alice_client, world.alice, world, "bob")
    material = device_material(world.alice, world.alice.new_device("dev2"), timestamp=certs.now() - timedelta(hours=1),
                               full_device_id="bob@dev2", redacted_device_id="bob@dev2")
    assert await alice_client.command("device_create", **material) == INVALID_CERTIFICATION


async def test_bad_user_id_even_for_an_admin(world: World, alice_client: WsClient):
    # An ADMIN may create users, not devices of other users: that would let it impersonate them.
    bob = await create_user(alice_client, world.alice, world, "bob")
    impostor = bob.new_device("evil")
    material = device_material(world.alice, impostor)
    assert await alice_client.command("device_create", **material) == {"status": "bad_user_id", "reason": None}


async def test_bad_user_id_unknown_user(world: World, alice_client: WsClient):
    material = device_material(world.alice, world.alice.new_device("dev2"),
                               full_device_id="ghost@dev1", redacted_device_id="ghost@dev1")
    assert await alice_client.command("device_create", **material) == {"status": "bad_user_id", "reason": None}


@pytest.mark.parametrize("override", [
    {"redacted_device_label": "Device dev2"},
    {"redacted_device_label": "Something else"},
    {"redacted_device_id": "alice@dev9"},
    {"redacted_verify_key": bytes(SigningKey.generate().verify_key)},
    {"redacted_timestamp": certs.now() - timedelta(seconds=1)},
])
async def test_invalid_data_redacted_certificate_must_be_a_twin(world: World, alice_client: WsClient, override):
    material = device_material(world.alice, world.alice.new_device("dev2"), **override)
    assert await alice_client.command("device_create", **material) == INVALID_DATA
    assert await Device.objects.acount() == 1


async def test_invalid_data_full_certificate_as_redacted(world: World, alice_client: WsClient):
    material = certs.device_creation_certificates(world.alice, world.alice.new_device("dev2"))
    material["redacted_device_certificate"] = material["device_certificate"]
    assert await alice_client.command("device_create", **material) == INVALID_DATA


async def test_already_exists_other_device(world: World, alice_client: WsClient):
    await create_device(alice_client, world.alice, "dev2")
    again = world.alice.new_device("dev2")
    reply = await alice_client.command("device_create", **certs.device_creation_certificates(world.alice, again))
    assert reply == {"status": "already_exists", "reason": None}


async def test_standard_user_can_only_add_its_own_devices(world: World):
    bob = await add_user(world, "bob")
    client = await connect_as(bob)
    for_alice = device_material(bob, world.alice.new_device("dev2"))
    assert await client.command("device_create", **for_alice) == {"status": "bad_user_id", "reason": None}


async def test_invalid_certification_nul_in_the_device_label(world: World, alice_client: WsClient):
    # PostgreSQL's text cannot hold NUL: refused when the certificate is read, not by the database.
    material = device_material(world.alice, world.alice.new_device("dev2", device_label="Dev\x00ice"))
    assert await alice_client.command("device_create", **material) == INVALID_CERTIFICATION
    assert await Device.objects.filter(device_id="alice@dev2").acount() == 0
