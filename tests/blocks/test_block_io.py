"""Block data through the protocol: every configured store, large blocks, and I/O off the event loop."""
from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

from blocks.stores.mocked import MockedBlockStore
from blocks.models import BlockData
from tests.conftest import World, connect_as, create_realm

pytestmark = pytest.mark.django_db(transaction=True)

KIB = 1024
MIB = 1024 * KIB


@pytest.mark.parametrize("size", [512 * KIB, 1 * MIB], ids=["512KiB", "1MiB"])
@pytest.mark.parametrize("config", ["MOCKED", "POSTGRESQL", "LOCAL"])
async def test_round_trip(world: World, parsec_settings, tmp_path: Path, config: str, size: int):
    parsec_settings(blockstore=(f"LOCAL:{tmp_path}" if config == "LOCAL" else config,))
    client = await connect_as(world.alice)
    realm_id = await create_realm(client, world.alice)
    block_id = uuid.uuid4()
    data = os.urandom(size)
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data) == {"status": "ok"}
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": data}
    if config == "POSTGRESQL":
        assert await BlockData.objects.filter(organization_id=world.organization_id, block_id=block_id).aexists()
    if config == "LOCAL":
        assert (tmp_path / world.organization_id / str(block_id)).read_bytes() == data


async def test_block_io_runs_in_worker_threads(world: World, use_blockstore):
    class RecordingStore(MockedBlockStore):
        def __init__(self) -> None:
            super().__init__()
            self.threads: list[int] = []

        def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
            self.threads.append(threading.get_ident())
            super().create(organization_id, block_id, data)

        def read(self, organization_id: str, block_id: uuid.UUID) -> bytes:
            self.threads.append(threading.get_ident())
            return super().read(organization_id, block_id)

    store = use_blockstore(RecordingStore())
    client = await connect_as(world.alice)
    realm_id = await create_realm(client, world.alice)
    block_id = uuid.uuid4()
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"x") == {"status": "ok"}
    assert (await client.command("block_read", block_id=block_id))["status"] == "ok"
    # The test's event loop runs the ASGI application in this very thread.
    event_loop_thread = threading.get_ident()
    assert len(store.threads) == 2
    assert event_loop_thread not in store.threads
