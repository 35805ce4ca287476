"""Per-server fixtures: an organization created through the administration API, bootstrapped by
alice (ADMIN), a second user bob (so that events of alice's writes have somebody to reach), and
helpers to create realms, vlobs and blocks with real signed certificates."""
from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from dataclasses import dataclass, field

from bench.client import Conn, ProtocolError, http_json, http_msgpack
from bench.servers import Server
from tests.testkit import certs
from tests.testkit.certs import TestDevice


@dataclass
class Org:
    server: Server
    organization_id: str
    alice: TestDevice
    bob: TestDevice | None = None
    # realm shared by alice (OWNER) with bob (CONTRIBUTOR), or why it could not be set up
    shared_realm: uuid.UUID | None = None
    sharing_error: str | None = None
    notes: list[str] = field(default_factory=list)
    # The loaded organizations of the size_* phases (bench/sizes.py): "small" and "large", or why not.
    sized: dict = field(default_factory=dict)
    sized_error: str | None = None

    async def connect(self, device: TestDevice | None = None) -> Conn:
        return await Conn.open(self.server.ws_url, device or self.alice)


def create_organization(server: Server) -> Org:
    organization_id = f"Bench{secrets.token_hex(4)}"
    created = http_json(f"{server.base_url}/administration/organizations", {"organization_id": organization_id},
                        server.token)
    material = certs.bootstrap_material(organization_id, "alice", "dev1", "alice@example.com", "Alice")
    reply = http_msgpack(
        f"{server.base_url}/anonymous/{organization_id}",
        {"cmd": "organization_bootstrap", "bootstrap_token": created["bootstrap_token"], **material.request_fields},
    )
    if reply.get("status") != "ok":
        raise ProtocolError(f"organization_bootstrap: {reply!r}")
    return Org(server=server, organization_id=organization_id, alice=material.device)


async def realm_create(conn: Conn) -> uuid.UUID:
    realm_id = uuid.uuid4()
    device = conn.device
    certificate = certs.realm_role_certificate(
        device.signing_key, author=device.device_id, timestamp=certs.now(), realm_id=realm_id,
        user_id=device.user_id, role="OWNER",
    )
    await conn.call_ok("realm_create", role_certificate=certificate)
    return realm_id


async def vlob_create(conn: Conn, realm_id: uuid.UUID, blob: bytes, vlob_id: uuid.UUID | None = None) -> uuid.UUID:
    vlob_id = vlob_id or uuid.uuid4()
    await conn.call_ok("vlob_create", realm_id=realm_id, encryption_revision=1, vlob_id=vlob_id,
                       timestamp=certs.now(), blob=blob, sequester_blob=None)
    return vlob_id


async def block_create(conn: Conn, realm_id: uuid.UUID, block: bytes) -> uuid.UUID:
    block_id = uuid.uuid4()
    await conn.call_ok("block_create", block_id=block_id, realm_id=realm_id, block=block)
    return block_id


async def add_bob_and_share(org: Org) -> None:
    """user_create bob, realm_create, realm_update_roles bob CONTRIBUTOR. Records the failure instead of
    raising: only the event phase needs it."""
    alice = org.alice
    bob = TestDevice.generate(org.organization_id, "bob", "dev1", root_signing_key=alice.root_signing_key)
    conn = await org.connect()
    try:
        await conn.call_ok("user_create", **certs.user_creation_certificates(alice, bob))
        org.bob = bob
        realm_id = await realm_create(conn)
        certificate = certs.realm_role_certificate(
            alice.signing_key, author=alice.device_id, timestamp=certs.now(), realm_id=realm_id,
            user_id="bob", role="CONTRIBUTOR",
        )
        await conn.call_ok("realm_update_roles", role_certificate=certificate, recipient_message=None)
        org.shared_realm = realm_id
    except ProtocolError as exc:
        org.sharing_error = str(exc)
    finally:
        await conn.close()


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


async def gather_limited(coros, limit: int):
    semaphore = asyncio.Semaphore(limit)

    async def run(coro):
        async with semaphore:
            return await coro

    return await asyncio.gather(*(run(coro) for coro in coros))
