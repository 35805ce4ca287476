"""Every outcome of the websocket handshake (docs/protocol.md#handshake), in the reference's check order."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from nacl.signing import SigningKey

from invites.models import Invitation
from organizations.models import Organization, User
from protocol import codec, versions
from tests.conftest import World, connect_as
from tests.testkit.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


async def answer_and_result(client: WsClient, answer: dict) -> dict:
    await client.send(answer)
    return await client.receive()


async def expect_failure(client: WsClient, result: str, help: str | None = None) -> dict:
    reply = await client.receive()
    assert reply["handshake"] == "result"
    assert reply["result"] == result
    if help is not None:
        assert reply["help"] == help
    assert await client.receive_close() == 1000
    return reply


async def test_challenge_is_first_binary_message():
    client = await WsClient.connect()
    challenge = client.challenge
    assert challenge["handshake"] == "challenge"
    assert len(challenge["challenge"]) == 48
    assert challenge["supported_api_versions"] == [[1, 3], [2, 10], [3, 4]]
    assert challenge["ballpark_client_early_offset"] == 300.0
    assert challenge["ballpark_client_late_offset"] == 320.0
    assert abs((timezone.now() - challenge["backend_timestamp"]).total_seconds()) < 5
    other = await WsClient.connect()
    assert other.challenge["challenge"] != challenge["challenge"]
    await client.close()
    await other.close()


async def test_ok(world: World):
    client = await connect_as(world.alice)
    assert await client.command("ping", ping="hello") == {"status": "ok", "pong": "hello"}
    await client.close()


async def test_ok_exact_bytes(world: World):
    client = await WsClient.connect()
    await client.send(world.alice.authenticated_answer(client.challenge["challenge"]))
    message = await client.communicator.receive_output(5)
    assert message["bytes"] == bytes.fromhex("82a968616e647368616b65a6726573756c74a6726573756c74a26f6b")
    await client.close()


async def test_text_answer_is_bad_protocol(world: World):
    client = await WsClient.connect()
    await client.send_raw(text_data="hello")
    await expect_failure(client, "bad_protocol", "Expected bytes message in websocket")


@pytest.mark.parametrize(
    "frame",
    [b"\xc1", codec.packb([1, 2]), codec.packb({"handshake": "challenge"}), codec.packb({"handshake": "answer"})],
    ids=["not-msgpack", "not-a-map", "wrong-handshake", "no-version"],
)
async def test_malformed_answer_is_bad_protocol(world: World, frame: bytes):
    client = await WsClient.connect()
    await client.send_raw(bytes_data=frame)
    await expect_failure(client, "bad_protocol")


async def test_unsupported_major_version(world: World):
    client = await WsClient.connect()
    answer = world.alice.authenticated_answer(client.challenge["challenge"], api_version=(4, 0))
    await client.send(answer)
    await expect_failure(
        client,
        "bad_protocol",
        "No overlap between client API versions {4.0} and backend API versions {1.3, 2.10, 3.4}",
    )


@pytest.mark.parametrize(
    "field,value",
    [("organization_id", "bad org!"), ("device_id", "no-at-sign"), ("rvk", b"short"), ("type", "OTHER")],
)
async def test_bad_answer_fields_are_bad_protocol(world: World, field: str, value):
    client = await WsClient.connect()
    answer = world.alice.authenticated_answer(client.challenge["challenge"])
    answer[field] = value
    await client.send(answer)
    await expect_failure(client, "bad_protocol")


async def test_unknown_organization_is_bad_identity(world: World):
    client = await WsClient.connect()
    answer = world.alice.authenticated_answer(client.challenge["challenge"])
    answer["organization_id"] = "OtherOrg"
    await client.send(answer)
    await expect_failure(client, "bad_identity", "Invalid handshake information")


async def test_unknown_device_is_bad_identity(world: World):
    client = await WsClient.connect()
    answer = world.alice.authenticated_answer(client.challenge["challenge"])
    answer["device_id"] = "alice@unknown"
    await client.send(answer)
    await expect_failure(client, "bad_identity", "Invalid handshake information")


async def test_rvk_mismatch(world: World):
    client = await WsClient.connect()
    answer = world.alice.authenticated_answer(client.challenge["challenge"])
    answer["rvk"] = bytes(SigningKey.generate().verify_key)
    await client.send(answer)
    await expect_failure(client, "rvk_mismatch", "Root verify key for organization differs between client and server")


async def test_organization_expired(world: World):
    await Organization.objects.filter(organization_id=world.organization_id).aupdate(is_expired=True)
    client = await WsClient.connect()
    await client.send(world.alice.authenticated_answer(client.challenge["challenge"]))
    await expect_failure(client, "organization_expired", "The organization has expired")


async def test_expired_handshake_closes_other_sessions(world: World):
    live = await connect_as(world.alice)
    await Organization.objects.filter(organization_id=world.organization_id).aupdate(is_expired=True)
    client = await WsClient.connect()
    await client.send(world.alice.authenticated_answer(client.challenge["challenge"]))
    await expect_failure(client, "organization_expired")
    assert await live.receive_close() == 1000


async def test_revoked_device(world: World):
    await User.objects.filter(user_id="alice").aupdate(
        revoked_on=timezone.now() - timedelta(seconds=1), revoked_user_certificate=b"x"
    )
    client = await WsClient.connect()
    await client.send(world.alice.authenticated_answer(client.challenge["challenge"]))
    await expect_failure(client, "revoked_device", "Device has been revoked")


async def test_revocation_in_the_future_still_allows(world: World):
    await User.objects.filter(user_id="alice").aupdate(
        revoked_on=timezone.now() + timedelta(seconds=60), revoked_user_certificate=b"x"
    )
    client = await connect_as(world.alice)
    await client.close()


async def test_frozen_user(world: World):
    await User.objects.filter(user_id="alice").aupdate(frozen=True)
    client = await WsClient.connect()
    await client.send(world.alice.authenticated_answer(client.challenge["challenge"]))
    await expect_failure(client, "frozen_user", "User has been frozen by the server administrator")


async def test_signature_by_another_key(world: World):
    client = await WsClient.connect()
    answer = world.alice.authenticated_answer(client.challenge["challenge"])
    impostor = SigningKey.generate()
    answer["answer"] = bytes(impostor.sign(codec.packb({"answer": client.challenge["challenge"], "type": "signed_answer"})))
    await client.send(answer)
    await expect_failure(client, "bad_protocol", "Invalid answer signature")


async def test_signature_of_another_challenge(world: World):
    client = await WsClient.connect()
    answer = world.alice.authenticated_answer(b"\x00" * 48)
    await client.send(answer)
    await expect_failure(client, "bad_protocol", "Invalid returned challenge")


async def test_signed_answer_with_wrong_type(world: World):
    client = await WsClient.connect()
    answer = world.alice.authenticated_answer(client.challenge["challenge"])
    answer["answer"] = world.alice.sign(codec.packb({"answer": client.challenge["challenge"], "type": "other"}))
    await client.send(answer)
    await expect_failure(client, "bad_protocol")


async def test_legacy_2_4_client_signs_raw_challenge(world: World):
    client = await WsClient.connect()
    answer = world.alice.authenticated_answer(client.challenge["challenge"], api_version=(2, 4))
    answer["answer"] = world.alice.sign(client.challenge["challenge"])
    await client.send(answer)
    assert (await client.receive())["result"] == "ok"
    await client.close()


async def test_check_order_identity_before_rvk(world: World):
    client = await WsClient.connect()
    answer = world.alice.authenticated_answer(client.challenge["challenge"])
    answer["device_id"] = "alice@unknown"
    answer["rvk"] = bytes(SigningKey.generate().verify_key)
    await client.send(answer)
    await expect_failure(client, "bad_identity")


# Invited handshakes -------------------------------------------------------------------------


async def make_invitation(world: World, *, deleted: bool = False) -> Invitation:
    organization = await Organization.objects.aget(organization_id=world.organization_id)
    greeter = await User.objects.aget(organization=organization, user_id="alice")
    return await Invitation.objects.acreate(
        organization=organization,
        token=uuid.uuid4(),
        type="DEVICE",
        greeter=greeter,
        created_on=timezone.now(),
        deleted_on=timezone.now() if deleted else None,
        deleted_reason="CANCELLED" if deleted else None,
    )


async def test_invited_ok(world: World):
    invitation = await make_invitation(world)
    client = await WsClient.connect()
    result = await client.invited(organization_id=world.organization_id, invitation_type="DEVICE", token=invitation.token)
    assert result == {"handshake": "result", "result": "ok"}
    assert await client.command("ping", ping="x") == {"status": "ok", "pong": "x"}
    await client.close()


async def test_invited_unknown_organization(world: World):
    client = await WsClient.connect()
    await client.send(
        {"handshake": "answer", "type": "INVITED", "client_api_version": [3, 4], "organization_id": "Nope",
         "invitation_type": "DEVICE", "token": uuid.uuid4()}
    )
    await expect_failure(client, "bad_identity", "Invalid handshake information")


async def test_invited_expired_organization(world: World):
    invitation = await make_invitation(world)
    await Organization.objects.filter(organization_id=world.organization_id).aupdate(is_expired=True)
    client = await WsClient.connect()
    await client.send(
        {"handshake": "answer", "type": "INVITED", "client_api_version": [3, 4],
         "organization_id": world.organization_id, "invitation_type": "DEVICE", "token": invitation.token}
    )
    await expect_failure(client, "organization_expired", "The organization has expired")


async def test_invited_unknown_token(world: World):
    client = await WsClient.connect()
    await client.send(
        {"handshake": "answer", "type": "INVITED", "client_api_version": [3, 4],
         "organization_id": world.organization_id, "invitation_type": "DEVICE", "token": uuid.uuid4()}
    )
    await expect_failure(client, "bad_identity", "Invalid handshake: Invitation not found")


async def test_invited_deleted_invitation(world: World):
    invitation = await make_invitation(world, deleted=True)
    client = await WsClient.connect()
    await client.send(
        {"handshake": "answer", "type": "INVITED", "client_api_version": [3, 4],
         "organization_id": world.organization_id, "invitation_type": "DEVICE", "token": invitation.token}
    )
    await expect_failure(client, "bad_identity", "Invalid handshake: Invitation already deleted")


async def test_invited_type_mismatch(world: World):
    invitation = await make_invitation(world)
    client = await WsClient.connect()
    await client.send(
        {"handshake": "answer", "type": "INVITED", "client_api_version": [3, 4],
         "organization_id": world.organization_id, "invitation_type": "USER", "token": invitation.token}
    )
    await expect_failure(client, "bad_identity", "Invalid handshake information")


async def test_invited_bad_invitation_type_value(world: World):
    client = await WsClient.connect()
    await client.send(
        {"handshake": "answer", "type": "INVITED", "client_api_version": [3, 4],
         "organization_id": world.organization_id, "invitation_type": "FRIEND", "token": uuid.uuid4()}
    )
    await expect_failure(client, "bad_protocol")


@pytest.mark.parametrize(
    ("clients", "api_version"), [(clients, version) for clients, version in versions.CLIENT_API_VERSIONS]
)
async def test_every_2x_client_api_version_accepted(world: World, clients: str, api_version: tuple[int, int]):
    """Each official 2.x release's API version, with its answer form: the raw challenge signed below
    2.5, the `signed_answer` map from 2.5 on; the other form is refused."""
    raw_signature = api_version[0] == 2 and api_version < (2, 5)
    client = await WsClient.connect()
    answer = world.alice.authenticated_answer(client.challenge["challenge"], api_version=api_version)
    assert answer["answer"] == (world.alice.sign(client.challenge["challenge"]) if raw_signature
                                else world.alice.signed_answer(client.challenge["challenge"]))
    assert (await answer_and_result(client, answer))["result"] == "ok", clients
    assert await client.command("ping", ping="x") == {"status": "ok", "pong": "x"}
    await client.close()

    client = await WsClient.connect()
    other_form = world.alice.signed_answer if raw_signature else world.alice.sign
    answer["answer"] = other_form(client.challenge["challenge"])
    await client.send(answer)
    await expect_failure(client, "bad_protocol", "Invalid returned challenge" if raw_signature else None)
