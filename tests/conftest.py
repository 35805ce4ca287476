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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-examples", type=int, default=10,
        help="requests the protocol fuzzer (tests/fuzz) draws per command; 10 keeps CI to seconds",
    )


@pytest.fixture(scope="session", autouse=True)
def asgi_application_loaded() -> None:
    """The ASGI module runs `django.setup()`, whose logging configuration replaces the root handlers: loaded
    here, before any test runs, it cannot remove the handler `caplog` installs for the test that first
    opens a connection (a test asserting on log records would then see none when run first)."""
    import parsec_site.asgi  # noqa: F401


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


@pytest.fixture(autouse=True)
async def loop_database_pool():
    """The test's event loop serves as the server's does: the vlob hot path decides its common cases
    there, on a PostgreSQL pool of that loop (protocol/loop_db.py), which goes with the test."""
    import asyncio

    from protocol import loop_db

    loop_db.serve_from(asyncio.get_running_loop())
    yield
    await loop_db.close_pool()


@pytest.fixture
def loop_round_trips(monkeypatch):
    """The event loop pool's budget: call it for the messages its connections sent to PostgreSQL since
    the last call (the one-off PREPARE of a statement on a connection and a new connection's setup
    left out: what every command costs once the connections are warm)."""
    import psycopg

    sent: list[str] = []
    real_execute = psycopg.AsyncCursor.execute

    async def counted(self, query, *args, **kwargs):
        if not str(query).startswith(("PREPARE ", "SELECT set_config(")):
            sent.append(str(query))
        return await real_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", counted)

    def since_last_call() -> int:
        count = len(sent)
        sent.clear()
        return count

    return since_last_call


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
def concurrent_writers() -> None:
    """Skip where the test database cannot hold concurrent write transactions at all."""
    from django.db import connection

    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        # Shared-cache in-memory SQLite (Django's test database) answers a second writer
        # "database table is locked" at once instead of queueing it like a SQLite file does.
        pytest.skip("concurrent writers need PostgreSQL or a SQLite file")


@pytest.fixture
def parsec_settings(settings):
    """Change server options for one test: `parsec_settings(debug=False)`."""

    def change(**fields):
        settings.PARSEC = dataclasses.replace(settings.PARSEC, **fields)
        return settings.PARSEC

    return change


async def add_user(world: World, user_id: str, *, profile: str = "STANDARD", device_name: str = "dev1",
                   revoked: bool = False) -> TestDevice:
    """A new user certified by alice, inserted as `user_create` would store it."""
    from asgiref.sync import sync_to_async

    from organizations.models import Device, Organization, User
    from tests.testkit import certs

    device = TestDevice.generate(world.organization_id, user_id, device_name, profile=profile,
                                 root_signing_key=world.alice.root_signing_key)
    timestamp = certs.now()
    material = certs.user_creation_certificates(world.alice, device, timestamp)

    def insert() -> None:
        organization = Organization.objects.get(organization_id=world.organization_id)
        certifier = Device.objects.get(organization=organization, device_id=world.alice.device_id)
        user = User.objects.create(
            organization=organization, user_id=user_id, human_email=device.human_handle[0],
            human_label=device.human_handle[1], profile=profile, user_certificate=material["user_certificate"],
            redacted_user_certificate=material["redacted_user_certificate"], user_certifier=certifier,
            created_on=timestamp,
            revoked_on=timestamp if revoked else None,
            revoked_user_certificate=certs.revoked_user_certificate(
                world.alice.signing_key, author=world.alice.device_id, timestamp=timestamp, user_id=user_id
            ) if revoked else None,
            revoked_user_certifier=certifier if revoked else None,
        )
        Device.objects.create(
            organization=organization, user=user, device_id=device.device_id, device_label=device.device_label,
            verify_key=device.verify_key, device_certificate=material["device_certificate"],
            redacted_device_certificate=material["redacted_device_certificate"], device_certifier=certifier,
            created_on=timestamp,
        )

    await sync_to_async(insert)()
    return device


async def add_device(owner: TestDevice, device_name: str) -> TestDevice:
    """Another device of `owner`'s user, certified by `owner`, inserted as `device_create` would store it."""
    from asgiref.sync import sync_to_async

    from organizations.models import Device, User
    from tests.testkit import certs

    device = owner.new_device(device_name)
    timestamp = certs.now()
    material = certs.device_creation_certificates(owner, device, timestamp)

    def insert() -> None:
        user = User.objects.select_related("organization").get(
            organization__organization_id=owner.organization_id, user_id=owner.user_id
        )
        certifier = Device.objects.get(organization=user.organization, device_id=owner.device_id)
        Device.objects.create(
            organization=user.organization, user=user, device_id=device.device_id, device_label=device.device_label,
            verify_key=device.verify_key, device_certificate=material["device_certificate"],
            redacted_device_certificate=material["redacted_device_certificate"], device_certifier=certifier,
            created_on=timestamp,
        )

    await sync_to_async(insert)()
    return device


async def create_realm(client: WsClient, device: TestDevice, realm_id=None):
    """`realm_create` through the protocol; returns the new realm id."""
    import uuid as _uuid

    from tests.testkit import certs

    realm_id = realm_id or _uuid.uuid4()
    certificate = certs.realm_role_certificate(
        device.signing_key, author=device.device_id, timestamp=certs.now(), realm_id=realm_id,
        user_id=device.user_id, role="OWNER",
    )
    assert await client.command("realm_create", role_certificate=certificate) == {"status": "ok"}
    return realm_id
