"""`block_read` (docs/protocol.md#block-read): one test per reply status, then the check order."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from blocks.stores.base import BlockStoreError
from blocks.models import Block
from tests.blocks.conftest import grant_role, set_archiving, set_maintenance
from tests.conftest import World, add_user, bootstrap_organization, connect_as, create_realm
from tests.testkit import certs

pytestmark = pytest.mark.django_db(transaction=True)


class UnreachableStore:
    def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
        raise BlockStoreError("unreachable")

    def read(self, organization_id: str, block_id: uuid.UUID) -> bytes:
        raise BlockStoreError("unreachable")


async def alice_block(world: World, data: bytes = b"encrypted data"):
    """alice's client, her realm and a block in it."""
    client = await connect_as(world.alice)
    realm_id = await create_realm(client, world.alice)
    block_id = uuid.uuid4()
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data) == {"status": "ok"}
    return client, realm_id, block_id


async def test_ok(world: World):
    client, _, block_id = await alice_block(world)
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": b"encrypted data"}


async def test_ok_reader(world: World):
    bob = await add_user(world, "bob")
    _, realm_id, block_id = await alice_block(world)
    await grant_role(world, realm_id, bob, "READER")
    bob_client = await connect_as(bob)
    assert await bob_client.command("block_read", block_id=block_id) == {"status": "ok", "block": b"encrypted data"}


async def test_ok_archived_realm(world: World):
    client, realm_id, block_id = await alice_block(world)
    await set_archiving(world, realm_id, "ARCHIVED")
    assert (await client.command("block_read", block_id=block_id))["status"] == "ok"


async def test_ok_during_reencryption(world: World):
    client, realm_id, block_id = await alice_block(world)
    await set_maintenance(world, realm_id, "REENCRYPTION")
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": b"encrypted data"}


async def test_not_found(world: World):
    client, _, _ = await alice_block(world)
    assert await client.command("block_read", block_id=uuid.uuid4()) == {"status": "not_found"}


async def test_not_found_block_of_another_organization(world: World):
    _, _, block_id = await alice_block(world)
    other = await bootstrap_organization("OtherOrg")
    other_client = await connect_as(other.alice)
    assert await other_client.command("block_read", block_id=block_id) == {"status": "not_found"}


async def test_realm_deleted(world: World):
    client, realm_id, block_id = await alice_block(world)
    await set_archiving(world, realm_id, "DELETION_PLANNED", deletion_date=certs.now() - timedelta(seconds=1))
    assert await client.command("block_read", block_id=block_id) == {"status": "realm_deleted"}


@pytest.mark.parametrize("removed", [False, True])
async def test_not_allowed(world: World, removed: bool):
    bob = await add_user(world, "bob")
    _, realm_id, block_id = await alice_block(world)
    if removed:
        await grant_role(world, realm_id, bob, "READER")
        await grant_role(world, realm_id, bob, None)
    bob_client = await connect_as(bob)
    assert await bob_client.command("block_read", block_id=block_id) == {"status": "not_allowed"}


async def test_in_maintenance(world: World):
    # GARBAGE_COLLECTION is never set by the reference, but it is the "other maintenance" of §7.2.
    client, realm_id, block_id = await alice_block(world)
    await set_maintenance(world, realm_id, "GARBAGE_COLLECTION")
    assert await client.command("block_read", block_id=block_id) == {"status": "in_maintenance"}


async def test_timeout(world: World, use_blockstore):
    client, _, block_id = await alice_block(world)
    use_blockstore(UnreachableStore())
    assert await client.command("block_read", block_id=block_id) == {"status": "timeout"}


async def test_timeout_data_missing(world: World):
    """Metadata without data (e.g. a lost store) is a store failure, not an unknown block."""
    client, realm_id, _ = await alice_block(world)
    from organizations.models import Device
    from realms.models import Realm

    block_id = uuid.uuid4()
    await Block.objects.acreate(
        organization_id=(await Realm.objects.aget(realm_id=realm_id)).organization_id, block_id=block_id,
        realm=await Realm.objects.aget(realm_id=realm_id), size=4,
        author=await Device.objects.aget(device_id=world.alice.device_id), created_on=timezone.now(),
    )
    assert await client.command("block_read", block_id=block_id) == {"status": "timeout"}


# --- Check order (§7.2): the first failing check decides --------------------------------------------


async def test_deleted_before_role(world: World):
    bob = await add_user(world, "bob")
    _, realm_id, block_id = await alice_block(world)
    await set_archiving(world, realm_id, "DELETION_PLANNED", deletion_date=certs.now() - timedelta(seconds=1))
    bob_client = await connect_as(bob)
    assert await bob_client.command("block_read", block_id=block_id) == {"status": "realm_deleted"}


async def test_role_before_maintenance(world: World):
    bob = await add_user(world, "bob")
    _, realm_id, block_id = await alice_block(world)
    await set_maintenance(world, realm_id, "GARBAGE_COLLECTION")
    bob_client = await connect_as(bob)
    assert await bob_client.command("block_read", block_id=block_id) == {"status": "not_allowed"}


async def test_maintenance_before_store(world: World, use_blockstore):
    client, realm_id, block_id = await alice_block(world)
    await set_maintenance(world, realm_id, "GARBAGE_COLLECTION")
    use_blockstore(UnreachableStore())
    assert await client.command("block_read", block_id=block_id) == {"status": "in_maintenance"}
