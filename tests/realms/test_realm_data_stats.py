"""`realm_data_stats`: the realm part of the organization stats (docs/protocol.md#organization-stats, administration
stats `at`)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async

from organizations.models import Organization
from realms.models import Realm
from realms.selectors import realm_data_stats
from tests.conftest import World, bootstrap_organization, connect_as, create_realm
from tests.realms.helpers import store_block, store_vlob_atom
from tests.testkit import certs

pytestmark = pytest.mark.django_db(transaction=True)


async def stats(organization_id: str, at=None) -> dict:
    organization = await Organization.objects.aget(organization_id=organization_id)
    return await sync_to_async(realm_data_stats)(organization.pk, at)


async def test_empty(world: World):
    assert await stats(world.organization_id) == {"data_size": 0, "metadata_size": 0, "realms": 0}


async def test_counts_realms_and_vlob_versions(world: World, alice_ws, realm_id):
    await create_realm(alice_ws, world.alice)
    vlob_id = await store_vlob_atom(realm_id, world.alice, blob=b"x" * 10)
    await store_vlob_atom(realm_id, world.alice, vlob_id=vlob_id, version=2, blob=b"x" * 7)
    # Another organization's data stays out.
    other = await bootstrap_organization("OtherOrg")
    other_realm = await create_realm(await connect_as(other.alice), other.alice)
    await store_vlob_atom(other_realm, other.alice, blob=b"y" * 100)
    await store_block(realm_id, world.alice, size=40)
    await store_block(other_realm, other.alice, size=4000)
    assert await stats(world.organization_id) == {"data_size": 40, "metadata_size": 17, "realms": 2}


async def test_at(world: World, alice_ws, realm_id):
    realm = await Realm.objects.aget(realm_id=realm_id)
    before_realm = realm.created_on - timedelta(microseconds=1)
    written_on = certs.now() + timedelta(seconds=10)
    await store_vlob_atom(realm_id, world.alice, blob=b"x" * 10, created_on=written_on)
    await store_block(realm_id, world.alice, size=5, created_on=written_on)
    assert await stats(world.organization_id, at=before_realm) == {"data_size": 0, "metadata_size": 0, "realms": 0}
    assert await stats(world.organization_id, at=realm.created_on) == {"data_size": 0, "metadata_size": 0, "realms": 1}
    assert await stats(world.organization_id, at=written_on) == {"data_size": 5, "metadata_size": 10, "realms": 1}
    assert await stats(world.organization_id) == {"data_size": 5, "metadata_size": 10, "realms": 1}
