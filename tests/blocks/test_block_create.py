"""`block_create` (docs/protocol.md#block-create): one test per reply status, then the check order."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from blocks.stores.base import BlockNotFound, BlockStoreError
from blocks.stores.mocked import MockedBlockStore
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


async def alice_realm(world: World):
    client = await connect_as(world.alice)
    return client, await create_realm(client, world.alice)


async def test_ok(world: World):
    client, realm_id = await alice_realm(world)
    block_id = uuid.uuid4()
    before = timezone.now()
    reply = await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"encrypted data")
    assert reply == {"status": "ok"}
    block = await Block.objects.select_related("realm", "author").aget(block_id=block_id)
    assert block.realm.realm_id == realm_id and block.author.device_id == world.alice.device_id
    assert block.size == len(b"encrypted data")
    assert before <= block.created_on <= timezone.now()
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": b"encrypted data"}


@pytest.mark.parametrize("role", ["MANAGER", "CONTRIBUTOR"])
async def test_ok_other_writers(world: World, role: str):
    bob = await add_user(world, "bob")
    _, realm_id = await alice_realm(world)
    await grant_role(world, realm_id, bob, role)
    bob_client = await connect_as(bob)
    assert await bob_client.command("block_create", block_id=uuid.uuid4(), realm_id=realm_id, block=b"x") == {
        "status": "ok"
    }


async def test_not_found(world: World):
    client, _ = await alice_realm(world)
    reply = await client.command("block_create", block_id=uuid.uuid4(), realm_id=uuid.uuid4(), block=b"x")
    assert reply == {"status": "not_found"}


async def test_not_found_realm_of_another_organization(world: World):
    other = await bootstrap_organization("OtherOrg")
    other_client = await connect_as(other.alice)
    other_realm_id = await create_realm(other_client, other.alice)
    client, _ = await alice_realm(world)
    reply = await client.command("block_create", block_id=uuid.uuid4(), realm_id=other_realm_id, block=b"x")
    assert reply == {"status": "not_found"}


async def test_realm_deleted(world: World):
    client, realm_id = await alice_realm(world)
    await set_archiving(world, realm_id, "DELETION_PLANNED", deletion_date=certs.now() - timedelta(seconds=1))
    reply = await client.command("block_create", block_id=uuid.uuid4(), realm_id=realm_id, block=b"x")
    assert reply == {"status": "realm_deleted"}


@pytest.mark.parametrize("configuration", ["ARCHIVED", "DELETION_PLANNED"])
async def test_realm_archived(world: World, configuration: str):
    client, realm_id = await alice_realm(world)
    deletion_date = certs.now() + timedelta(days=30) if configuration == "DELETION_PLANNED" else None
    await set_archiving(world, realm_id, configuration, deletion_date=deletion_date)
    reply = await client.command("block_create", block_id=uuid.uuid4(), realm_id=realm_id, block=b"x")
    assert reply == {"status": "realm_archived"}


@pytest.mark.parametrize("role", ["READER", None, "no certificate"])
async def test_not_allowed(world: World, role: str | None):
    bob = await add_user(world, "bob")
    _, realm_id = await alice_realm(world)
    if role == "no certificate":
        pass
    elif role is None:
        # Access given then removed: the latest certificate decides.
        await grant_role(world, realm_id, bob, "CONTRIBUTOR")
        await grant_role(world, realm_id, bob, None)
    else:
        await grant_role(world, realm_id, bob, role)
    bob_client = await connect_as(bob)
    reply = await bob_client.command("block_create", block_id=uuid.uuid4(), realm_id=realm_id, block=b"x")
    assert reply == {"status": "not_allowed"}


@pytest.mark.parametrize("maintenance_type", ["REENCRYPTION", "GARBAGE_COLLECTION"])
async def test_in_maintenance(world: World, maintenance_type: str):
    client, realm_id = await alice_realm(world)
    await set_maintenance(world, realm_id, maintenance_type)
    reply = await client.command("block_create", block_id=uuid.uuid4(), realm_id=realm_id, block=b"x")
    assert reply == {"status": "in_maintenance"}


async def test_already_exists(world: World):
    client, realm_id = await alice_realm(world)
    other_realm_id = await create_realm(client, world.alice)
    block_id = uuid.uuid4()
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"first") == {
        "status": "ok"
    }
    # Block ids are unique in the organization, whatever the realm.
    for target in (realm_id, other_realm_id):
        reply = await client.command("block_create", block_id=block_id, realm_id=target, block=b"second")
        assert reply == {"status": "already_exists"}
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": b"first"}


async def test_already_exists_when_a_concurrent_create_wins(world: World, use_blockstore):
    """Both requests pass the checks; the unique constraint on the metadata lets one in."""
    client, realm_id = await alice_realm(world)

    class ConcurrentCreatorStore(MockedBlockStore):
        def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
            super().create(organization_id, block_id, data)
            from organizations.models import Device
            from realms.models import Realm

            realm = Realm.objects.get(realm_id=realm_id)
            Block.objects.create(
                organization_id=realm.organization_id, block_id=block_id, realm=realm, size=len(data),
                author=Device.objects.get(device_id=world.alice.device_id), created_on=timezone.now(),
            )

    use_blockstore(ConcurrentCreatorStore())
    block_id = uuid.uuid4()
    reply = await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"x")
    assert reply == {"status": "already_exists"}
    assert await Block.objects.filter(block_id=block_id).acount() == 1


async def test_block_ids_are_per_organization(world: World):
    other = await bootstrap_organization("OtherOrg")
    block_id = uuid.uuid4()
    for device in (world.alice, other.alice):
        client = await connect_as(device)
        realm_id = await create_realm(client, device)
        data = device.user_id.encode()
        reply = await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data)
        assert reply == {"status": "ok"}
    assert await Block.objects.filter(block_id=block_id).acount() == 2


async def test_timeout_records_no_metadata(world: World, use_blockstore):
    client, realm_id = await alice_realm(world)
    use_blockstore(UnreachableStore())
    block_id = uuid.uuid4()
    reply = await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"x")
    assert reply == {"status": "timeout"}
    assert not await Block.objects.filter(block_id=block_id).aexists()


async def test_retry_after_timeout(world: World, use_blockstore):
    """The client retries a failed create with the same id and data: the data may already be there."""
    client, realm_id = await alice_realm(world)

    class FailsAfterWritingOnce(MockedBlockStore):
        failed = False

        def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
            super().create(organization_id, block_id, data)
            if not self.failed:
                self.failed = True
                raise BlockStoreError("lost the acknowledgement")

    use_blockstore(FailsAfterWritingOnce())
    block_id = uuid.uuid4()
    request = {"block_id": block_id, "realm_id": realm_id, "block": b"x"}
    assert await client.command("block_create", **request) == {"status": "timeout"}
    assert await client.command("block_create", **request) == {"status": "ok"}
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": b"x"}


async def test_refused_before_writing_data(world: World, use_blockstore):
    client, realm_id = await alice_realm(world)
    store = use_blockstore(MockedBlockStore())
    await set_maintenance(world, realm_id, "REENCRYPTION")
    block_id = uuid.uuid4()
    reply = await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"x")
    assert reply == {"status": "in_maintenance"}
    with pytest.raises(BlockNotFound):
        store.read(world.organization_id, block_id)


async def test_bad_message(world: World):
    client, realm_id = await alice_realm(world)
    reply = await client.command("block_create", block_id=uuid.uuid4(), realm_id=realm_id, block="not bytes")
    assert reply["status"] == "bad_message"


# --- Check order (§7.1): the first failing check decides --------------------------------------------


async def test_deleted_before_archived_and_role(world: World):
    bob = await add_user(world, "bob")
    _, realm_id = await alice_realm(world)
    await set_archiving(world, realm_id, "DELETION_PLANNED", deletion_date=certs.now() - timedelta(seconds=1))
    bob_client = await connect_as(bob)
    reply = await bob_client.command("block_create", block_id=uuid.uuid4(), realm_id=realm_id, block=b"x")
    assert reply == {"status": "realm_deleted"}


async def test_archived_before_role(world: World):
    bob = await add_user(world, "bob")
    _, realm_id = await alice_realm(world)
    await grant_role(world, realm_id, bob, "READER")
    await set_archiving(world, realm_id, "ARCHIVED")
    bob_client = await connect_as(bob)
    reply = await bob_client.command("block_create", block_id=uuid.uuid4(), realm_id=realm_id, block=b"x")
    assert reply == {"status": "realm_archived"}


async def test_role_before_maintenance(world: World):
    bob = await add_user(world, "bob")
    _, realm_id = await alice_realm(world)
    await grant_role(world, realm_id, bob, "READER")
    await set_maintenance(world, realm_id, "REENCRYPTION")
    bob_client = await connect_as(bob)
    reply = await bob_client.command("block_create", block_id=uuid.uuid4(), realm_id=realm_id, block=b"x")
    assert reply == {"status": "not_allowed"}


async def test_maintenance_before_already_exists(world: World):
    client, realm_id = await alice_realm(world)
    block_id = uuid.uuid4()
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"x") == {"status": "ok"}
    await set_maintenance(world, realm_id, "REENCRYPTION")
    reply = await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"x")
    assert reply == {"status": "in_maintenance"}
