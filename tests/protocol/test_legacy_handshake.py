"""API v1 websocket handshakes, served for what the 2.0-2.5 clients still use: the `administration`
side (2.0's `create_organization`) and the `anonymous` side (2.0-2.5's `bootstrap_organization`)."""
from __future__ import annotations

import secrets

import pytest
from django.utils import timezone

from organizations.models import Organization
from tests.conftest import World, create_organization_row
from tests.testkit.certs import bootstrap_material
from tests.testkit.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "legacy-admin-token"
OK = {"handshake": "result", "result": "ok"}


@pytest.fixture(autouse=True)
def admin_token(parsec_settings):
    parsec_settings(administration_token=TOKEN)


async def administration(token: str = TOKEN) -> tuple[WsClient, dict]:
    client = await WsClient.connect()
    await client.send({"handshake": "answer", "type": "administration", "client_api_version": [1, 2], "token": token})
    return client, await client.receive()


async def anonymous(organization_id: str, rvk: bytes | None = None) -> tuple[WsClient, dict]:
    client = await WsClient.connect()
    answer = {"handshake": "answer", "type": "anonymous", "client_api_version": [1, 2], "organization_id": organization_id}
    if rvk is not None:
        answer["rvk"] = rvk
    await client.send(answer)
    return client, await client.receive()


# administration side ----------------------------------------------------------------------------------------


async def test_organization_create_ok():
    client, result = await administration()
    assert result == OK
    reply = await client.command("organization_create", organization_id="TestOrganization", expiration_date=None)
    assert reply["status"] == "ok" and len(reply["bootstrap_token"]) == 64
    organization = await Organization.objects.aget(organization_id="TestOrganization")
    assert organization.bootstrap_token == reply["bootstrap_token"] and not organization.is_bootstrapped


async def test_organization_create_again_before_bootstrap_gives_a_new_token():
    client, _ = await administration()
    first = await client.command("organization_create", organization_id="Org", expiration_date=None)
    second = await client.command("organization_create", organization_id="Org", expiration_date=None)
    assert second["status"] == "ok" and second["bootstrap_token"] != first["bootstrap_token"]


async def test_organization_create_already_exists(world: World):
    client, _ = await administration()
    reply = await client.command("organization_create", organization_id=world.organization_id, expiration_date=None)
    assert reply == {"status": "already_exists"}


async def test_organization_create_with_expiration_date_refused():
    client, _ = await administration()
    reply = await client.command("organization_create", organization_id="Org", expiration_date=timezone.now())
    assert reply["status"] == "bad_message" and "expiration_date" in reply["reason"]
    assert not await Organization.objects.filter(organization_id="Org").aexists()


async def test_organization_create_bad_message():
    client, _ = await administration()
    reply = await client.command("organization_create", organization_id="not valid!", expiration_date=None)
    assert reply["status"] == "bad_message"


async def test_administration_only_creates():
    client, _ = await administration()
    assert await client.command("organization_bootstrap", bootstrap_token="x") == {
        "status": "unknown_command", "reason": "Unknown command",
    }


@pytest.mark.parametrize("token", ["wrong", ""])
async def test_bad_administration_token(token: str):
    client, result = await administration(token)
    assert result == {"handshake": "result", "result": "bad_admin_token", "help": "Invalid administration token"}
    assert await client.receive_close() == 1000


async def test_no_administration_token_configured(parsec_settings):
    parsec_settings(administration_token="")
    _, result = await administration("")
    assert result["result"] == "bad_admin_token"


# anonymous side ---------------------------------------------------------------------------------------------


async def test_bootstrap_through_legacy_anonymous():
    token = secrets.token_hex(32)
    await create_organization_row("OldOrg", token)
    material = bootstrap_material("OldOrg", "alice", "dev1", "alice@example.com", "Alice")
    request = {"bootstrap_token": token, **material.request_fields}
    del request["sequester_authority_certificate"]  # API v1 has none
    client, result = await anonymous("OldOrg")
    assert result == OK
    assert await client.command("organization_bootstrap", **request) == {"status": "ok"}
    assert (await Organization.objects.aget(organization_id="OldOrg")).is_bootstrapped
    assert await client.command("organization_bootstrap", **request) == {"status": "already_bootstrapped"}


async def test_legacy_anonymous_unknown_organization():
    client, result = await anonymous("Nope")
    assert result == {"handshake": "result", "result": "bad_identity", "help": "Invalid handshake information"}
    assert await client.receive_close() == 1000


async def test_legacy_anonymous_expired_organization(world: World):
    await Organization.objects.filter(organization_id=world.organization_id).aupdate(is_expired=True)
    _, result = await anonymous(world.organization_id)
    assert result["result"] == "organization_expired"


async def test_legacy_anonymous_rvk_mismatch(world: World):
    _, result = await anonymous(world.organization_id, rvk=b"x" * 32)
    assert result["result"] == "rvk_mismatch"


async def test_legacy_anonymous_only_bootstraps(world: World):
    client, result = await anonymous(world.organization_id, rvk=world.root_verify_key)
    assert result == OK
    assert (await client.command("organization_create", organization_id="X", expiration_date=None))["status"] == (
        "unknown_command"
    )


async def test_legacy_authenticated_refused(world: World):
    client = await WsClient.connect()
    await client.send({"handshake": "answer", "type": "authenticated", "client_api_version": [1, 2],
                       "organization_id": world.organization_id, "device_id": "alice@dev1",
                       "rvk": world.root_verify_key, "answer": b""})
    result = await client.receive()
    assert result["result"] == "bad_protocol"
