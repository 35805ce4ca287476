"""Block test helpers: realm states set through the ORM, and a seam to swap the blockstore."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Callable

import pytest
from asgiref.sync import sync_to_async

from blocks.stores import factory
from blocks.stores.base import BlockStore
from tests.conftest import World
from tests.objectstores import launch_swift_early, stop_early_swift
from tests.objectstores import moto_servers, s3_servers, swift_cluster, swift_store  # noqa: F401 (fixtures)
from tests.testkit import certs
from tests.testkit.certs import TestDevice


def pytest_collection_finish(session: pytest.Session) -> None:
    launch_swift_early(session)  # Swift boots while the first tests run, if a selected test needs it


def pytest_sessionfinish(session: pytest.Session) -> None:
    stop_early_swift()


@pytest.fixture(autouse=True)
def mocked_blockstore(parsec_settings) -> None:
    """Whatever the default configuration, these tests keep blocks in memory unless they choose a store."""
    parsec_settings(blockstore=("MOCKED",))


@pytest.fixture
def use_blockstore(monkeypatch: pytest.MonkeyPatch) -> Callable[[BlockStore], BlockStore]:
    """Serve this test's commands from `store` instead of the configured blockstore."""

    def use(store: BlockStore) -> BlockStore:
        monkeypatch.setattr(factory, "get_blockstore", lambda: store)
        return store

    return use


async def grant_role(world: World, realm_id: uuid.UUID, device: TestDevice, role: str | None) -> None:
    """Store a role certificate signed by alice (the realm's owner), as realm_update_roles would."""
    from organizations.models import Device, User
    from realms.models import Realm, RealmUserRole

    timestamp = certs.now()
    certificate = certs.realm_role_certificate(
        world.alice.signing_key, author=world.alice.device_id, timestamp=timestamp, realm_id=realm_id,
        user_id=device.user_id, role=role,
    )

    def insert() -> None:
        realm = Realm.objects.get(organization__organization_id=world.organization_id, realm_id=realm_id)
        RealmUserRole.objects.create(
            realm=realm,
            user=User.objects.get(organization=realm.organization, user_id=device.user_id),
            role=role,
            certificate=certificate,
            certified_by=Device.objects.get(organization=realm.organization, device_id=world.alice.device_id),
            certified_on=timestamp,
        )

    await sync_to_async(insert)()


async def set_archiving(world: World, realm_id: uuid.UUID, configuration: str,
                        deletion_date: datetime | None = None) -> None:
    from organizations.models import Device
    from protocol.types import RealmArchivingConfiguration
    from realms.models import Realm, RealmArchiving

    timestamp = certs.now()
    certificate = certs.realm_archiving_certificate(
        world.alice.signing_key, author=world.alice.device_id, timestamp=timestamp, realm_id=realm_id,
        configuration=RealmArchivingConfiguration(configuration, deletion_date),
    )

    def insert() -> None:
        realm = Realm.objects.get(organization__organization_id=world.organization_id, realm_id=realm_id)
        RealmArchiving.objects.create(
            realm=realm, configuration=configuration, deletion_date=deletion_date, certificate=certificate,
            certified_by=Device.objects.get(organization=realm.organization, device_id=world.alice.device_id),
            certified_on=timestamp,
        )

    await sync_to_async(insert)()


async def set_maintenance(world: World, realm_id: uuid.UUID, maintenance_type: str) -> None:
    from realms.models import Realm

    await Realm.objects.filter(organization__organization_id=world.organization_id, realm_id=realm_id).aupdate(
        maintenance_type=maintenance_type, maintenance_started_on=certs.now(), encryption_revision=2
    )
