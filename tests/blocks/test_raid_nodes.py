"""RAID over real object stores, through the protocol: a node's server stopped, then replaced by an empty one.

RAID5 over three independent moto S3 servers; RAID1 over S3 + Swift.
"""
from __future__ import annotations

import io
import os
import time
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.core.management.base import CommandError

from blocks.stores.factory import blockstore_from_config
from blocks.models import Block
from blocks.stores.raid import Raid5BlockStore, split_raid5, xor_parts
from tests.conftest import World, connect_as, create_realm
from tests.objectstores import MotoServer, SwiftCluster

pytestmark = pytest.mark.django_db(transaction=True)

SIZES = [1, 2, 3, 1000, 100_000, 512 * 1024]


async def blockstore_check(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        await sync_to_async(call_command)("blockstore_check", "--no-progress", *args, stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


def raid5_over(servers: list[MotoServer]) -> tuple[tuple[str, ...], str]:
    bucket = f"parsec-{uuid.uuid4().hex[:12]}"
    for server in servers:
        server.new_bucket(bucket)
    return tuple(f"RAID5:{index}:{server.blockstore(bucket)}" for index, server in enumerate(servers)), bucket


def s3_object(server: MotoServer, bucket: str, organization_id: str, block_id: uuid.UUID) -> bytes | None:
    try:
        return server.client().get_object(Bucket=bucket, Key=f"{organization_id}/{block_id}")["Body"].read()
    except server.client().exceptions.NoSuchKey:
        return None


async def test_raid5_over_three_s3_servers_survives_one(world: World, parsec_settings, s3_servers) -> None:
    specs, bucket = raid5_over(s3_servers)
    parsec_settings(blockstore=specs)
    client = await connect_as(world.alice)
    realm_id = await create_realm(client, world.alice)
    org = world.organization_id
    written = {}
    for size in SIZES:
        block_id, data = uuid.uuid4(), os.urandom(size)
        reply = await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data)
        assert reply == {"status": "ok"}
        written[block_id] = data
        chunks = split_raid5(data, 2)
        assert [s3_object(server, bucket, org, block_id) for server in s3_servers] == [*chunks, xor_parts(chunks)]

    s3_servers[1].stop()
    started = time.monotonic()
    for block_id, data in written.items():
        assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": data}
    # Only the first read waits for node 1 to fail; the next ones fetch the parity at once.
    assert time.monotonic() - started < 15

    # Writes need every node: refused with `timeout`, and nothing recorded (the client will retry).
    retried_id = uuid.uuid4()
    for _ in range(2):
        reply = await client.command("block_create", block_id=retried_id, realm_id=realm_id, block=b"new data")
        assert reply == {"status": "timeout"}
    assert not await Block.objects.filter(block_id=retried_id).aexists()

    # Node 1 comes back empty (a replaced store): reads still work, the check finds every part missing.
    s3_servers[1].start()
    s3_servers[1].wait_ready()
    s3_servers[1].new_bucket(bucket)
    for block_id, data in written.items():
        assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": data}
    code, out = await blockstore_check()
    assert code == 1, out
    assert f"node 1: {len(SIZES)} missing" in out and "node 0: ok" in out and "node 2: ok" in out

    code, out = await blockstore_check("--repair")
    assert code == 0, out
    assert f"{len(SIZES)} damaged ({len(SIZES)} repaired, 0 not)" in out
    for block_id, data in written.items():
        assert s3_object(s3_servers[1], bucket, org, block_id) == split_raid5(data, 2)[1]
    assert (await blockstore_check())[0] == 0

    # The rebuilt parts are right: with node 0 gone, blocks come from node 1's parts and the parity.
    s3_servers[0].stop()
    for block_id, data in written.items():
        assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": data}
    # The retried block_create goes through once every node is back.
    s3_servers[0].start()
    s3_servers[0].wait_ready()
    s3_servers[0].new_bucket(bucket)
    reply = await client.command("block_create", block_id=retried_id, realm_id=realm_id, block=b"new data")
    assert reply == {"status": "ok"}
    assert await client.command("block_read", block_id=retried_id) == {"status": "ok", "block": b"new data"}


async def test_raid5_parity_node_down_costs_nothing_on_reads(world: World, parsec_settings, s3_servers) -> None:
    specs, _ = raid5_over(s3_servers)
    parsec_settings(blockstore=specs)
    store = blockstore_from_config(specs)
    assert isinstance(store, Raid5BlockStore)
    ids = [uuid.uuid4() for _ in range(5)]
    for block_id in ids:
        store.create(world.organization_id, block_id, block_id.bytes * 10)
    s3_servers[2].stop()
    for block_id in ids:
        assert store.read(world.organization_id, block_id) == block_id.bytes * 10
    assert not store._is_suspect(2)  # never asked: the data chunks answered


async def test_raid5_two_nodes_down_fails_reads(world: World, parsec_settings, s3_servers) -> None:
    specs, _ = raid5_over(s3_servers)
    parsec_settings(blockstore=specs)
    client = await connect_as(world.alice)
    realm_id = await create_realm(client, world.alice)
    block_id = uuid.uuid4()
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"data") == {"status": "ok"}
    s3_servers[0].stop()
    s3_servers[2].stop()
    assert await client.command("block_read", block_id=block_id) == {"status": "timeout"}


async def test_raid1_over_s3_and_swift(world: World, parsec_settings, s3_servers, swift_cluster: SwiftCluster,
                                       swift_store: str) -> None:
    server = s3_servers[0]
    bucket = server.new_bucket()
    specs = (f"RAID1:0:{server.blockstore(bucket)}", f"RAID1:1:{swift_store}")
    parsec_settings(blockstore=specs)
    client = await connect_as(world.alice)
    realm_id = await create_realm(client, world.alice)
    written = {}
    for size in (1, 1000, 300_000):
        block_id, data = uuid.uuid4(), os.urandom(size)
        reply = await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data)
        assert reply == {"status": "ok"}
        written[block_id] = data
    container = swift_store.split(":")[-3]
    for block_id, data in written.items():
        name = f"{world.organization_id}/{block_id}"
        assert swift_cluster.connection().get_object(container, name)[1] == data
        assert s3_object(server, bucket, world.organization_id, block_id) == data

    server.stop()
    for block_id, data in written.items():
        assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": data}
    reply = await client.command("block_create", block_id=uuid.uuid4(), realm_id=realm_id, block=b"x")
    assert reply == {"status": "timeout"}

    server.start()
    server.wait_ready()
    server.new_bucket(bucket)
    code, out = await blockstore_check("--repair")
    assert code == 0, out
    assert f"node 0: {len(written)} missing, {len(written)} repaired" in out
    for block_id, data in written.items():
        assert s3_object(server, bucket, world.organization_id, block_id) == data
