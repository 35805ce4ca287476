"""A RAID node's S3 server killed under load, through the protocol, on real moto S3 servers.

Clients keep creating and reading blocks while one node's `moto_server` process is killed (SIGKILL),
then started again (empty: moto keeps everything in memory, as a replaced store would be). What RAID
promises (docs/configuration.md#blockstore):

* reads of every acknowledged block keep answering it, while the node is down and after it came back
  empty (RAID1: another copy; RAID5: the parity rebuilds the missing chunk);
* writes need every node: while one is down they answer `timeout` (the client retries) and record no
  metadata, never half-acknowledged; once the node is back they succeed again;
* `blockstore_check --repair` then makes the returned node whole: the check passes, and the blocks read
  back with another node down, from the rebuilt parts.
"""
from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid

import pytest

from blocks.models import Block
from tests.blocks.test_raid_nodes import blockstore_check
from tests.conftest import World, connect_as, create_realm
from tests.objectstores import MotoServer
from tests.testkit.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 4
BLOCK_SIZE = 20_000
BACK_BOUND = 30.0  # from the node's restart to the first acknowledged write


def raid_over(mode: str, servers: list[MotoServer]) -> tuple[str, ...]:
    bucket = f"parsec-{uuid.uuid4().hex[:12]}"
    for server in servers:
        server.new_bucket(bucket)
    return tuple(f"{mode}:{index}:{server.blockstore(bucket)}" for index, server in enumerate(servers)), bucket


class Load:
    """CLIENTS connections, each alternating a block_create and a block_read of an acknowledged block."""

    def __init__(self, clients: list[WsClient], realm_id: uuid.UUID) -> None:
        self.clients = clients
        self.realm_id = realm_id
        self.acknowledged: dict[uuid.UUID, bytes] = {}
        self.refused: set[uuid.UUID] = set()
        self.statuses: dict[str, dict[str, int]] = {"block_create": {}, "block_read": {}}
        self.bad_reads: list[tuple[uuid.UUID, dict]] = []
        self.last_ok_write = 0.0
        self.stop = asyncio.Event()

    def count(self, cmd: str, status: str) -> None:
        self.statuses[cmd][status] = self.statuses[cmd].get(status, 0) + 1

    async def run_one(self, client: WsClient) -> None:
        while not self.stop.is_set():
            block_id, data = uuid.uuid4(), os.urandom(BLOCK_SIZE)
            reply = await client.command("block_create", block_id=block_id, realm_id=self.realm_id, block=data)
            self.count("block_create", reply["status"])
            if reply == {"status": "ok"}:
                self.acknowledged[block_id] = data
                self.last_ok_write = time.monotonic()
            else:
                self.refused.add(block_id)
            if self.acknowledged:
                read_id = random.choice(list(self.acknowledged))
                reply = await client.command("block_read", block_id=read_id)
                self.count("block_read", reply["status"])
                if reply != {"status": "ok", "block": self.acknowledged[read_id]}:
                    self.bad_reads.append((read_id, {k: v for k, v in reply.items() if k != "block"}))

    async def run_for(self, seconds: float) -> None:
        self.stop.clear()
        tasks = [asyncio.create_task(self.run_one(client)) for client in self.clients]
        await asyncio.sleep(seconds)
        self.stop.set()
        await asyncio.gather(*tasks)


@pytest.mark.parametrize("mode, nodes", [("RAID1", 2), ("RAID5", 3)])
async def test_node_killed_under_load(world: World, parsec_settings, s3_servers, mode: str, nodes: int) -> None:
    servers = s3_servers[:nodes]
    specs, bucket = raid_over(mode, servers)
    parsec_settings(blockstore=specs)
    owner = await connect_as(world.alice)
    realm_id = await create_realm(owner, world.alice)
    load = Load([await connect_as(world.alice) for _ in range(CLIENTS)], realm_id)

    await load.run_for(1.0)
    before = len(load.acknowledged)
    assert before > 0 and load.statuses["block_create"] == {"ok": before}

    victim = servers[1]
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    await load.run_for(2.0)
    # Reads of acknowledged blocks never failed; writes were refused, as retriable, once the node died.
    assert load.bad_reads == []
    assert set(load.statuses["block_create"]) <= {"ok", "timeout"}
    assert load.statuses["block_create"].get("timeout", 0) > 0
    assert set(load.statuses["block_read"]) == {"ok"}
    # Nothing half-acknowledged: a refused block has no metadata.
    assert not await Block.objects.filter(block_id__in=load.refused).aexists()

    # The node comes back, empty (a replaced store): writes go through again, reads still work.
    victim.process = None
    victim.start()
    victim.wait_ready()
    victim.new_bucket(bucket)
    back = time.monotonic()
    deadline = back + BACK_BOUND
    while load.last_ok_write <= back:
        assert time.monotonic() < deadline, "no block_create acknowledged since the node came back"
        await load.run_for(0.5)
    await load.run_for(1.0)
    assert load.bad_reads == []

    # The blocks acknowledged before or during the outage lack their part on the returned node.
    code, out = await blockstore_check()
    assert code == 1 and "node 1:" in out and "missing" in out, out
    code, out = await blockstore_check("--repair")
    assert code == 0, out
    assert (await blockstore_check())[0] == 0

    # Whole again: with node 0 gone, every acknowledged block reads from the rebuilt parts.
    servers[0].process.send_signal(signal.SIGKILL)
    servers[0].process.wait()
    servers[0].process = None
    for block_id, data in load.acknowledged.items():
        assert await owner.command("block_read", block_id=block_id) == {"status": "ok", "block": data}
