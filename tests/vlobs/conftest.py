"""Fixtures of the vlob tests: alice (ADMIN) connected, owning a realm with one vlob; bob, a STANDARD user."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from asgiref.sync import async_to_sync

from protocol.session import AuthenticatedSession
from realms.services import realms
from tests.conftest import World, add_user, bootstrap_organization, connect_as, create_realm
from tests.testkit import certs
from tests.testkit.certs import TestDevice
from tests.testkit.ws import WsClient
from tests.vlobs.helpers import new_vlob, session_of, sync_reply


@pytest.fixture
async def alice_ws(world: World) -> WsClient:
    return await connect_as(world.alice)


@pytest.fixture
async def realm_id(world: World, alice_ws: WsClient) -> uuid.UUID:
    """A realm alice created, so she is its OWNER; encryption revision 1."""
    return await create_realm(alice_ws, world.alice)


@pytest.fixture
async def vlob_id(alice_ws: WsClient, realm_id: uuid.UUID) -> uuid.UUID:
    """Version 1 of a vlob alice wrote in `realm_id`."""
    return await new_vlob(alice_ws, realm_id)


@pytest.fixture
async def bob(world: World) -> TestDevice:
    return await add_user(world, "bob")


@dataclass
class SyncRealm:
    """For tests calling the services directly (query budgets): alice's session and her realm."""

    session: AuthenticatedSession
    realm_id: uuid.UUID


@pytest.fixture
def sync_realm(transactional_db) -> SyncRealm:
    world = async_to_sync(bootstrap_organization)()
    session = session_of(world.alice)
    realm_id = uuid.uuid4()
    certificate = certs.realm_role_certificate(
        world.alice.signing_key, author=world.alice.device_id, timestamp=certs.now(), realm_id=realm_id,
        user_id="alice", role="OWNER",
    )
    assert sync_reply(realms.realm_create, session=session, role_certificate=certificate) == {"status": "ok"}
    return SyncRealm(session=session, realm_id=realm_id)
