"""`user_get` (docs/protocol.md#user-get): one test per reply status, the trustchain closure and redaction."""
from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from organizations.outcomes import to_reply
from organizations.services import users
from organizations.models import Device, User
from protocol.certificates import DeviceCertificate, InvalidCertification, RevokedUserCertificate, UserCertificate
from protocol.session import AuthenticatedSession
from tests.conftest import World, add_user, connect_as
from tests.testkit.ws import WsClient
from tests.users.conftest import create_device, create_user, revoke_user

pytestmark = pytest.mark.django_db(transaction=True)


async def stored(user_id: str, *, redacted: bool = False) -> dict:
    """What the server stores for a user: its certificates, by kind, as sets."""
    user = await User.objects.aget(user_id=user_id)
    devices = [device async for device in Device.objects.filter(user=user)]
    return {
        "user": bytes(user.redacted_user_certificate if redacted else user.user_certificate),
        "revoked": None if user.revoked_user_certificate is None else bytes(user.revoked_user_certificate),
        "devices": {
            device.device_id: bytes(device.redacted_device_certificate if redacted else device.device_certificate)
            for device in devices
        },
    }


def author_of(certificate: bytes) -> str | None:
    for certificate_class in (UserCertificate, DeviceCertificate, RevokedUserCertificate):
        try:
            return certificate_class.unsecure_load(certificate).author
        except InvalidCertification:
            continue
    raise AssertionError("not a user, device or revoked user certificate")


def as_sets(reply: dict) -> dict:
    trustchain = reply["trustchain"]
    for kind in ("devices", "users", "revoked_users"):
        assert len(trustchain[kind]) == len(set(trustchain[kind])), f"duplicates in trustchain {kind}"
    return {kind: set(trustchain[kind]) for kind in ("devices", "users", "revoked_users")}


# --- one test per status ----------------------------------------------------------------------------


async def test_ok(world: World, alice_client: WsClient):
    await create_user(alice_client, world.alice, world, "bob")
    reply = await alice_client.command("user_get", user_id="bob")
    bob, alice = await stored("bob"), await stored("alice")
    assert reply == {
        "status": "ok",
        "user_certificate": bob["user"],
        "revoked_user_certificate": None,
        "device_certificates": [bob["devices"]["bob@dev1"]],
        "trustchain": {"devices": [alice["devices"]["alice@dev1"]], "users": [alice["user"]], "revoked_users": []},
    }


async def test_not_found(world: World, alice_client: WsClient):
    assert await alice_client.command("user_get", user_id="nobody") == {"status": "not_found"}


# --- contents -------------------------------------------------------------------------------------


async def test_ok_root_certified_user_has_an_empty_trustchain(world: World, alice_client: WsClient):
    reply = await alice_client.command("user_get", user_id="alice")
    alice = await stored("alice")
    assert reply["user_certificate"] == alice["user"]
    assert reply["device_certificates"] == [alice["devices"]["alice@dev1"]]
    assert reply["trustchain"] == {"devices": [], "users": [], "revoked_users": []}
    assert UserCertificate.verify_and_load(reply["user_certificate"], world.root_verify_key).author is None


async def test_ok_all_devices_and_revocation(world: World, alice_client: WsClient):
    bob = await create_user(alice_client, world.alice, world, "bob")
    bob_client = await connect_as(bob)
    await create_device(bob_client, bob, "dev2")
    await revoke_user(alice_client, world.alice, "bob")
    reply = await alice_client.command("user_get", user_id="bob")
    bob_stored = await stored("bob")
    assert reply["revoked_user_certificate"] == bob_stored["revoked"]
    assert sorted(reply["device_certificates"]) == sorted(bob_stored["devices"].values())
    # bob@dev2 was certified by bob@dev1: the user's own device shows up as a certifier.
    assert as_sets(reply) == {
        "devices": {bob_stored["devices"]["bob@dev1"], (await stored("alice"))["devices"]["alice@dev1"]},
        "users": {bob_stored["user"], (await stored("alice"))["user"]},
        "revoked_users": {bob_stored["revoked"]},
    }


async def test_trustchain_is_the_closure_of_certifiers(world: World, alice_client: WsClient):
    # alice@dev1 -> bob (ADMIN) -> carol (ADMIN) -> carol@dev2 -> dave; bob is later revoked by
    # zack@dev1, an ADMIN created by alice@dev2; eve and alice@dev3 certify nothing on dave's chain.
    alice2 = await create_device(alice_client, world.alice, "dev2")
    await create_device(alice_client, world.alice, "dev3")
    await create_user(alice_client, world.alice, world, "eve")
    bob = await create_user(alice_client, world.alice, world, "bob", profile="ADMIN")
    carol = await create_user(await connect_as(bob), bob, world, "carol", profile="ADMIN")
    carol2 = await create_device(await connect_as(carol), carol, "dev2")
    await create_user(await connect_as(carol2), carol2, world, "dave")
    zack = await create_user(await connect_as(alice2), alice2, world, "zack", profile="ADMIN")
    await revoke_user(await connect_as(zack), zack, "bob")

    reply = await alice_client.command("user_get", user_id="dave")
    s = {user_id: await stored(user_id) for user_id in ("alice", "bob", "carol", "zack")}
    assert as_sets(reply) == {
        "devices": {
            s["carol"]["devices"]["carol@dev2"], s["carol"]["devices"]["carol@dev1"], s["bob"]["devices"]["bob@dev1"],
            s["alice"]["devices"]["alice@dev1"], s["zack"]["devices"]["zack@dev1"], s["alice"]["devices"]["alice@dev2"],
        },
        "users": {s["carol"]["user"], s["bob"]["user"], s["alice"]["user"], s["zack"]["user"]},
        "revoked_users": {s["bob"]["revoked"]},
    }
    # Every certificate's author is a trustchain device, or the root key.
    trustchain = reply["trustchain"]
    trusted_devices = {DeviceCertificate.unsecure_load(certificate).device_id for certificate in trustchain["devices"]}
    for certificate in [*trustchain["devices"], *trustchain["users"], *trustchain["revoked_users"],
                        reply["user_certificate"], *reply["device_certificates"]]:
        assert author_of(certificate) in trusted_devices | {None}


async def test_trustchain_of_a_revoked_user_includes_the_revoker(world: World, alice_client: WsClient):
    bob = await create_user(alice_client, world.alice, world, "bob", profile="ADMIN")
    await create_user(alice_client, world.alice, world, "carol")
    await revoke_user(await connect_as(bob), bob, "carol")
    reply = await alice_client.command("user_get", user_id="carol")
    assert RevokedUserCertificate.unsecure_load(reply["revoked_user_certificate"]).author == "bob@dev1"
    bob_stored, alice = await stored("bob"), await stored("alice")
    assert as_sets(reply) == {
        "devices": {bob_stored["devices"]["bob@dev1"], alice["devices"]["alice@dev1"]},
        "users": {bob_stored["user"], alice["user"]},
        "revoked_users": set(),
    }


async def test_any_profile_may_query_any_user(world: World, alice_client: WsClient):
    standard = await add_user(world, "bob")
    reply = await (await connect_as(standard)).command("user_get", user_id="alice")
    assert reply["user_certificate"] == (await stored("alice"))["user"]


async def test_outsider_gets_redacted_certificates_everywhere(world: World, alice_client: WsClient):
    bob = await create_user(alice_client, world.alice, world, "bob", profile="ADMIN")
    carol = await create_user(await connect_as(bob), bob, world, "carol")
    await create_device(await connect_as(carol), carol, "dev2")
    await revoke_user(alice_client, world.alice, "bob")
    olga = await create_user(alice_client, world.alice, world, "olga", profile="OUTSIDER")

    reply = await (await connect_as(olga)).command("user_get", user_id="carol")
    carol_r, bob_r, alice_r = [await stored(user_id, redacted=True) for user_id in ("carol", "bob", "alice")]
    assert reply["user_certificate"] == carol_r["user"]
    assert sorted(reply["device_certificates"]) == sorted(carol_r["devices"].values())
    assert as_sets(reply) == {
        "devices": {carol_r["devices"]["carol@dev1"], bob_r["devices"]["bob@dev1"], alice_r["devices"]["alice@dev1"]},
        # carol@dev1 certified carol@dev2: carol's own user certificate is part of the chain.
        "users": {carol_r["user"], bob_r["user"], alice_r["user"]},
        # Revocation certificates carry no personal data and have no redacted twin.
        "revoked_users": {bob_r["revoked"]},
    }
    for certificate in [reply["user_certificate"], *reply["trustchain"]["users"]]:
        assert UserCertificate.unsecure_load(certificate).human_handle is None
    for certificate in [*reply["device_certificates"], *reply["trustchain"]["devices"]]:
        assert DeviceCertificate.unsecure_load(certificate).device_label is None
    # Outsiders see themselves redacted too.
    own = await (await connect_as(olga)).command("user_get", user_id="olga")
    assert UserCertificate.unsecure_load(own["user_certificate"]).human_handle is None


async def test_non_outsiders_get_full_certificates(world: World, alice_client: WsClient):
    standard = await create_user(alice_client, world.alice, world, "bob")
    reply = await (await connect_as(standard)).command("user_get", user_id="bob")
    assert UserCertificate.unsecure_load(reply["user_certificate"]).human_handle is not None
    assert DeviceCertificate.unsecure_load(reply["trustchain"]["devices"][0]).device_label is not None


async def test_not_found_in_another_organization(world: World, alice_client: WsClient):
    from tests.conftest import bootstrap_organization

    other = await bootstrap_organization("OtherOrg")
    await create_user(await connect_as(other.alice), other.alice, other, "zoe")
    assert await alice_client.command("user_get", user_id="zoe") == {"status": "not_found"}


async def test_bad_message_invalid_user_id(world: World, alice_client: WsClient):
    assert (await alice_client.command("user_get", user_id="not a valid id!"))["status"] == "bad_message"


async def test_query_count_does_not_grow_with_the_chain(world: World, alice_client: WsClient):
    # A chain of ADMINs, each created by the previous one, each with a few devices.
    author, client = world.alice, alice_client
    for index in range(8):
        author = await create_user(client, author, world, f"admin{index}", profile="ADMIN")
        client = await connect_as(author)
        for device_index in range(2):
            author = await create_device(client, author, f"d{device_index}")
            client = await connect_as(author)

    def count_queries(user_id: str) -> tuple[dict, int]:
        alice = Device.objects.select_related("user", "organization").get(device_id="alice@dev1")
        session = AuthenticatedSession(
            organization_pk=alice.organization_id, organization_id=alice.organization.organization_id,
            user_pk=alice.user_id, user_id="alice", device_pk=alice.pk, device_id="alice@dev1", profile="ADMIN",
            api_version=(3, 4), verify_key=bytes(alice.verify_key),
        )
        with CaptureQueriesContext(connection) as context:
            reply = to_reply(users.user_get(session=session, user_id=user_id))
        return reply, len(context.captured_queries)

    deep, deep_queries = await sync_to_async(count_queries)("admin7")
    _shallow, shallow_queries = await sync_to_async(count_queries)("admin0")
    assert len(deep["trustchain"]["devices"]) == 1 + 7 * 3 + 2
    # admin0..admin7 (admin7's own devices certify each other) and alice.
    assert len(deep["trustchain"]["users"]) == 9
    # The user, its devices, the closure (one recursive statement), the closure's device and user certificates.
    assert deep_queries == shallow_queries <= 5
