"""Helpers of the user family tests: the world grows through the real protocol (user_create, user_revoke...)."""
from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from tests.conftest import World, connect_as
from tests.testkit import certs
from tests.testkit.certs import TestDevice
from tests.testkit.ws import WsClient


def new_user_device(
    world: World,
    user_id: str,
    *,
    profile: str = "STANDARD",
    email: str | None = None,
    label: str | None = None,
    human: bool = True,
) -> TestDevice:
    """A device of a user that does not exist yet (keys only)."""
    device = TestDevice.generate(
        world.organization_id, user_id, "dev1", profile=profile, email=email, label=label,
        root_signing_key=world.alice.root_signing_key,
    )
    return device if human else dataclasses.replace(device, human_handle=None)


async def create_user(
    client: WsClient,
    author: TestDevice,
    world: World,
    user_id: str,
    *,
    profile: str = "STANDARD",
    email: str | None = None,
    label: str | None = None,
    human: bool = True,
) -> TestDevice:
    """`user_create` by `author` (an ADMIN connected through `client`); returns the new user's device."""
    device = new_user_device(world, user_id, profile=profile, email=email, label=label, human=human)
    reply = await client.command("user_create", **certs.user_creation_certificates(author, device))
    assert reply == {"status": "ok"}, reply
    return device


async def revoke_user(client: WsClient, author: TestDevice, user_id: str, *, timestamp: datetime | None = None) -> None:
    certificate = certs.revoked_user_certificate(
        author.signing_key, author=author.device_id, timestamp=timestamp or certs.now(), user_id=user_id
    )
    reply = await client.command("user_revoke", revoked_user_certificate=certificate)
    assert reply == {"status": "ok"}, reply


async def create_device(client: WsClient, owner: TestDevice, device_name: str) -> TestDevice:
    """`device_create` by `owner` (connected through `client`); returns the new device."""
    device = owner.new_device(device_name)
    reply = await client.command("device_create", **certs.device_creation_certificates(owner, device))
    assert reply == {"status": "ok"}, reply
    return device


@pytest.fixture
async def alice_client(world: World) -> WsClient:
    client = await connect_as(world.alice)
    yield client
    await client.close()
