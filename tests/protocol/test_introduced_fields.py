"""Every schema field with `introduced_in`, both directions, for peers older and newer than it.

REQUEST_FIELDS and REPLY_FIELDS are every `introduced_in` field of the wire schemas
(`schema/protocol/**/*.json5` of the protocol documentation), one row per API major.
Requests: an older peer omits the key, decoded as nil; as in the reference, whose decoders treat these
keys as optional whoever sends them, a newer peer omitting it is not refused either.
Replies: the reference emits these fields to every peer whatever its version (its reply types
always carry them; older clients ignore unknown keys), so the table checks they reach an API 2.0 peer.
"""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from protocol import codec, types, versions
from protocol.registry import Family, registered_commands
from tests.conftest import World, add_user, anonymous_rpc, create_organization_row
from tests.realms.helpers import role_certificate
from tests.testkit import certs
from tests.testkit.certs import bootstrap_material
from tests.testkit.ws import WsClient
from tests.vlobs.helpers import create_vlob, new_vlob, read_vlob, update_vlob

CLAIMER_COMMANDS = (
    "invite_1_claimer_wait_peer",
    "invite_2a_claimer_send_hashed_nonce",
    "invite_2b_claimer_send_nonce",
    "invite_3a_claimer_signify_trust",
    "invite_3b_claimer_wait_peer_trust",
    "invite_4_claimer_communicate",
)

# (family, command, field, API version it appeared in), per major.
REQUEST_FIELDS = [
    (Family.ANONYMOUS, "organization_bootstrap", "sequester_authority_certificate", "2.8"),
    (Family.ANONYMOUS, "organization_bootstrap", "sequester_authority_certificate", "3.2"),
    (Family.AUTHENTICATED, "vlob_create", "sequester_blob", "2.8"),
    (Family.AUTHENTICATED, "vlob_create", "sequester_blob", "3.2"),
    (Family.AUTHENTICATED, "vlob_update", "sequester_blob", "2.8"),
    (Family.AUTHENTICATED, "vlob_update", "sequester_blob", "3.2"),
    # The schema writes "2.9" for both majors; in major 3 the field came with 3.3: the 2.11-2.15
    # clients (API 3.2) do not send it, 2.16 (API 3.4) does.
    *[(Family.INVITED, command, "greeter_user_id", "2.9") for command in CLAIMER_COMMANDS],
    *[(Family.INVITED, command, "greeter_user_id", "3.3") for command in CLAIMER_COMMANDS],
]

BAD_TIMESTAMP_FIELDS = ("ballpark_client_early_offset", "ballpark_client_late_offset", "backend_timestamp", "client_timestamp")
# (command, status, field, API version it appeared in)
REPLY_FIELDS = [
    ("invite_new", "ok", "email_sent", "2.3"),
    ("organization_config", "ok", "sequester_authority_certificate", "2.8"),
    ("organization_config", "ok", "sequester_services_certificates", "2.8"),
    ("organization_config", "ok", "minimum_archiving_period", "2.10"),
    ("vlob_read", "ok", "author_last_role_granted_on", "2.3"),
    *[
        (command, "bad_timestamp", field, "2.4")
        for command in (
            "organization_bootstrap",
            "realm_create",
            "realm_start_reencryption_maintenance",
            "realm_update_roles",
            "vlob_create",
            "vlob_update",
        )
        for field in BAD_TIMESTAMP_FIELDS
    ],
]


def _minimal_value(field_type: types.FieldType):
    """A valid wire value of the field, to show that a present key still decodes."""
    return "alice" if field_type.name == "UserID" else None


@pytest.mark.parametrize(("family", "command", "field", "since"), REQUEST_FIELDS,
                         ids=lambda value: str(value))
def test_request_field_may_be_absent(family: Family, command: str, field: str, since: str):
    spec = registered_commands(family)[command]
    field_type = spec.request[field]
    introduced = versions.parse(since)
    assert isinstance(field_type, types.Introduced)
    assert field_type.since[introduced[0]] == introduced
    others = {name: spec_type for name, spec_type in spec.request.items() if name != field}
    # Every other field must still be there for the request to decode; build it with the field's own
    # decoder by reusing a present-key request as a template.
    template = {name: _template_value(spec_type) for name, spec_type in others.items()}
    assert types.decode_request(spec.request, template)[field] is None
    present = {**template, field: _minimal_value(field_type)}
    assert types.decode_request(spec.request, present)[field] == present[field]


def _template_value(field_type: types.FieldType):
    samples = {
        "String": "token",
        "VerifyKey": b"k" * 32,
        "PublicKey": b"k" * 32,
        "HashDigest": b"h" * 32,
        "Bytes": b"data",
        "RealmID": uuid.uuid4(),
        "VlobID": uuid.uuid4(),
        "Index": 1,
        "Version": 1,
        "DateTime": certs.now(),
    }
    inner = field_type.inner if isinstance(field_type, types.Introduced) else field_type
    return samples[inner.name]


def test_every_introduced_request_field_is_in_the_table():
    """The table above and the registry agree: no `Introduced` field is left untested."""
    declared = set()
    # The API v1 `anonymous` side shares the anonymous route's `organization_bootstrap` declaration.
    legacy = registered_commands(Family.APIV1_ANONYMOUS)["organization_bootstrap"]
    assert legacy.request is registered_commands(Family.ANONYMOUS)["organization_bootstrap"].request
    for family in set(Family) - {Family.APIV1_ANONYMOUS, Family.APIV1_ADMINISTRATION}:
        for name, spec in registered_commands(family).items():
            if isinstance(spec.request, dict):
                for field, field_type in spec.request.items():
                    if isinstance(field_type, types.Introduced):
                        declared |= {(family, name, field, versions.format_version(v)) for v in field_type.since.values()}
    assert declared == set(REQUEST_FIELDS)


# Replies -------------------------------------------------------------------------------------------

OLDEST = (2, 0)


async def _connect_old(device) -> WsClient:
    client = await WsClient.connect()
    answer = device.authenticated_answer(client.challenge["challenge"], api_version=OLDEST)
    await client.send(answer)
    assert await client.receive() == {"handshake": "result", "result": "ok"}
    return client


def _stale():
    return certs.now() - timedelta(hours=1)


async def _realm(client: WsClient, world: World) -> uuid.UUID:
    realm_id = uuid.uuid4()
    certificate = role_certificate(world.alice, realm_id=realm_id, user_id=world.alice.user_id, role="OWNER")
    assert await client.command("realm_create", role_certificate=certificate) == {"status": "ok"}
    return realm_id


async def _reply_of(command: str, world: World) -> dict:
    if command == "organization_bootstrap":
        await create_organization_row("OldOrg", "tok")
        material = bootstrap_material("OldOrg", "zed", "dev1", "zed@example.com", "Zed", timestamp=_stale())
        request = {"cmd": command, "bootstrap_token": "tok", **material.request_fields}
        del request["sequester_authority_certificate"]  # a 2.0 client does not know it
        response = await anonymous_rpc("OldOrg", request, HTTP_API_VERSION="2.0")
        assert response.status_code == 200
        return codec.unpackb(response.content)
    client = await _connect_old(world.alice)
    if command == "organization_config":
        return await client.command(command)
    if command == "invite_new":
        return await client.command(command, type="USER", claimer_email="zack@example.com", send_email=False)
    if command == "realm_create":
        certificate = role_certificate(
            world.alice, realm_id=uuid.uuid4(), user_id=world.alice.user_id, role="OWNER", timestamp=_stale()
        )
        return await client.command(command, role_certificate=certificate)
    realm_id = await _realm(client, world)
    if command == "realm_update_roles":
        await add_user(world, "bob")
        certificate = role_certificate(world.alice, realm_id=realm_id, user_id="bob", role="READER", timestamp=_stale())
        return await client.command(command, role_certificate=certificate, recipient_message=None)
    if command == "realm_start_reencryption_maintenance":
        return await client.command(
            command, realm_id=realm_id, encryption_revision=2, timestamp=_stale(),
            per_participant_message={world.alice.user_id: b"<key>"},
        )
    if command == "vlob_create":
        return await create_vlob(client, realm_id, timestamp=_stale())
    vlob_id = await new_vlob(client, realm_id)
    if command == "vlob_update":
        return await update_vlob(client, vlob_id, 2, timestamp=_stale())
    assert command == "vlob_read"
    return await read_vlob(client, vlob_id)


@pytest.mark.parametrize(("command", "status", "field", "since"), REPLY_FIELDS, ids=lambda value: str(value))
async def test_reply_field_reaches_older_peers(world: World, command: str, status: str, field: str, since: str):
    assert OLDEST < versions.parse(since)
    reply = await _reply_of(command, world)
    assert reply["status"] == status, reply
    assert field in reply


# Whole requests of older clients --------------------------------------------------------------------------


@pytest.mark.parametrize("api_version", [(2, 0), (2, 2), (3, 1)])
async def test_older_client_writes_without_sequester_blob(world: World, api_version):
    """2.0-2.10 clients (API 2.0-2.7, 3.0-3.1) create and update vlobs with no `sequester_blob` key."""
    client = await WsClient.connect()
    await client.send(world.alice.authenticated_answer(client.challenge["challenge"], api_version=api_version))
    assert await client.receive() == {"handshake": "result", "result": "ok"}
    realm_id = await _realm(client, world)
    vlob_id = uuid.uuid4()
    request = {"realm_id": realm_id, "encryption_revision": 1, "vlob_id": vlob_id, "timestamp": certs.now(),
               "blob": b"v1"}
    assert await client.command("vlob_create", **request) == {"status": "ok"}
    assert await client.command("vlob_update", encryption_revision=1, vlob_id=vlob_id, timestamp=certs.now(),
                                version=2, blob=b"v2") == {"status": "ok"}
    assert (await read_vlob(client, vlob_id))["blob"] == b"v2"


async def test_older_client_bootstraps_without_sequester_authority_certificate(transactional_db):
    await create_organization_row("OldOrg", "tok")
    material = bootstrap_material("OldOrg", "zed", "dev1", "zed@example.com", "Zed")
    request = {"cmd": "organization_bootstrap", "bootstrap_token": "tok", **material.request_fields}
    del request["sequester_authority_certificate"]
    response = await anonymous_rpc("OldOrg", request, HTTP_API_VERSION="3.1")  # 2.10's anonymous route
    assert codec.unpackb(response.content) == {"status": "ok"}
