"""`/anonymous/<org>`: the HTTP status codes of docs/protocol.md#http-rpc (empty bodies) and the happy paths."""
from __future__ import annotations

import pytest
from django.test import AsyncClient

from organizations.models import Organization
from protocol import codec
from protocol.registry import Family, command
from tests.conftest import World, anonymous_rpc

pytestmark = pytest.mark.django_db(transaction=True)


async def test_get_probe_on_existing_organization(world: World):
    response = await AsyncClient().get(f"/anonymous/{world.organization_id}", CONTENT_TYPE="application/msgpack")
    assert response.status_code == 200
    assert response.content == b"\x80"
    assert response["Api-Version"] == "3.4"


@pytest.mark.parametrize("organization_id", ["Unknown", "bad%20org", "x" * 33])
async def test_unknown_or_invalid_organization_is_404(world: World, organization_id: str):
    response = await anonymous_rpc(organization_id, {"cmd": "organization_bootstrap"})
    assert response.status_code == 404
    assert response.content == b""


async def test_bad_content_type_is_415(world: World):
    response = await AsyncClient().post(
        f"/anonymous/{world.organization_id}", data=codec.packb({"cmd": "organization_bootstrap"}), content_type="text/plain"
    )
    assert response.status_code == 415
    assert response.content == b""


async def test_form_content_type_is_accepted_as_msgpack(world: World):
    response = await AsyncClient().post(
        f"/anonymous/{world.organization_id}",
        data=codec.packb({"cmd": "organization_bootstrap"}),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert codec.unpackb(response.content)["status"] == "bad_message"


@pytest.mark.parametrize(
    "body", [b"\xc1", codec.packb([1]), codec.packb({"cmd": "nope"}), codec.packb({"cmd": "ping", "ping": "x"})],
    ids=["not-msgpack", "not-map", "unknown-cmd", "ping-is-not-anonymous"],
)
async def test_bad_body_is_415(world: World, body: bytes):
    response = await AsyncClient().post(f"/anonymous/{world.organization_id}", data=body, content_type="application/msgpack")
    assert response.status_code == 415


@pytest.mark.parametrize("version", ["4.0", "1.3", "abc", "3"])
async def test_unsupported_api_version_is_422(world: World, version: str):
    response = await anonymous_rpc(world.organization_id, {"cmd": "organization_bootstrap"}, headers={"Api-Version": version})
    assert response.status_code == 422
    assert response["Supported-Api-Versions"] == "2.10;3.4"


async def test_v2_client_gets_v2_header(world: World):
    response = await anonymous_rpc(world.organization_id, {"cmd": "organization_bootstrap"}, headers={"Api-Version": "2.7"})
    assert response.status_code == 200
    assert response["Api-Version"] == "2.10"


async def test_expired_organization_is_460(world: World):
    await Organization.objects.filter(organization_id=world.organization_id).aupdate(is_expired=True)
    response = await anonymous_rpc(world.organization_id, {"cmd": "organization_bootstrap"})
    assert response.status_code == 460


async def test_body_over_one_mebibyte_is_413(world: World):
    response = await AsyncClient().post(
        f"/anonymous/{world.organization_id}", data=b"\x00" * (1024 * 1024 + 1), content_type="application/msgpack"
    )
    assert response.status_code == 413


async def test_schema_error_is_a_bad_message_reply(world: World):
    response = await anonymous_rpc(world.organization_id, {"cmd": "organization_bootstrap", "bootstrap_token": 1})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/msgpack"
    reply = codec.unpackb(response.content)
    assert reply["status"] == "bad_message"


@command("test_anonymous_crash", family=Family.ANONYMOUS)
async def anonymous_crash(session, req):
    raise RuntimeError("a bug in an anonymous handler")


@command("test_anonymous_not_a_reply", family=Family.ANONYMOUS)
async def anonymous_not_a_reply(session, req):
    return "ok"


@pytest.mark.parametrize("cmd", ["test_anonymous_crash", "test_anonymous_not_a_reply"])
async def test_crashing_command_is_500_with_one_error_line(world: World, cmd: str, caplog):
    with caplog.at_level("ERROR"):
        response = await anonymous_rpc(world.organization_id, {"cmd": cmd})
    assert response.status_code == 500 and response.content == b""
    assert response["Api-Version"] == "3.4"
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is not None
    # The route serves the next request.
    response = await anonymous_rpc(world.organization_id, {"cmd": "organization_bootstrap"})
    assert response.status_code == 200 and codec.unpackb(response.content)["status"] == "bad_message"
