"""The small fixed world of the tests, built through the real protocol."""
from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass

import pytest
from django.test import AsyncClient
from django.utils import timezone

from protocol import codec
from tests.testkit.certs import TestDevice, bootstrap_material
from tests.testkit.ws import WsClient


@pytest.fixture(scope="session", autouse=True)
def close_database_pools(django_db_setup, django_db_blocker):
    """Worker threads borrow pooled connections; give them back before the test database is dropped."""
    yield
    from django.db import connections

    from asgiref.sync import SyncToAsync

    with django_db_blocker.unblock():
        # Async tests' ORM calls run on asgiref's single "sync" thread, which keeps its connection.
        SyncToAsync.single_thread_executor.submit(connections.close_all).result()
        for connection in connections.all():
            if hasattr(connection, "close_pool"):
                connection.close_pool()


@dataclass
class World:
    organization_id: str
    alice: TestDevice  # ADMIN, bootstrapped the organization

    @property
    def root_verify_key(self) -> bytes:
        assert self.alice.root_verify_key is not None
        return self.alice.root_verify_key


async def anonymous_rpc(organization_id: str, request: dict, **headers: str):
    client = AsyncClient()
    return await client.post(
        f"/anonymous/{organization_id}", data=codec.packb(request), content_type="application/msgpack", **headers
    )


async def create_organization_row(organization_id: str, bootstrap_token: str) -> None:
    from organizations.models import Organization

    await Organization.objects.acreate(
        organization_id=organization_id, bootstrap_token=bootstrap_token, created_on=timezone.now()
    )


async def bootstrap_organization(organization_id: str = "CoolOrg") -> World:
    token = secrets.token_hex(32)
    await create_organization_row(organization_id, token)
    material = bootstrap_material(organization_id, "alice", "dev1", "alice@example.com", "Alice")
    response = await anonymous_rpc(
        organization_id, {"cmd": "organization_bootstrap", "bootstrap_token": token, **material.request_fields}
    )
    assert response.status_code == 200
    assert codec.unpackb(response.content) == {"status": "ok"}
    return World(organization_id=organization_id, alice=material.device)


@pytest.fixture
async def world(transactional_db) -> World:
    return await bootstrap_organization()


async def connect_as(device: TestDevice) -> WsClient:
    client = await WsClient.connect()
    result = await client.authenticate(
        organization_id=device.organization_id,
        device_id=device.device_id,
        signing_key=device.signing_key,
        root_verify_key=device.root_verify_key,
    )
    assert result == {"handshake": "result", "result": "ok"}, result
    return client


@pytest.fixture
def parsec_settings(settings):
    """Change server options for one test: `parsec_settings(debug=False)`."""

    def change(**fields):
        settings.PARSEC = dataclasses.replace(settings.PARSEC, **fields)
        return settings.PARSEC

    return change
