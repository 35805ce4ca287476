"""Fixtures of the realm tests: alice's connection and realm, and bob, a STANDARD user."""
from __future__ import annotations

import uuid

import pytest

from tests.conftest import World, add_user, connect_as, create_realm
from tests.testkit.certs import TestDevice
from tests.testkit.ws import WsClient


@pytest.fixture
async def alice_ws(world: World) -> WsClient:
    return await connect_as(world.alice)


@pytest.fixture
async def realm_id(world: World, alice_ws: WsClient) -> uuid.UUID:
    """A realm alice (ADMIN) created, so she is its OWNER."""
    return await create_realm(alice_ws, world.alice)


@pytest.fixture
async def bob(world: World) -> TestDevice:
    return await add_user(world, "bob")
