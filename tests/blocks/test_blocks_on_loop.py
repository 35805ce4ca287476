"""The POSTGRESQL blockstore on the event loop's own PostgreSQL pool (protocol/loop_db.py): block_create's
check, data and metadata row and block_read's check and data run there, on one connection, with the
outcomes of the worker-thread path; any connection problem before a write sends the command to the
worker threads. (The outcomes themselves are tests/blocks/test_block_*.py; these tests choose the
POSTGRESQL store, which those leave MOCKED.)"""
from __future__ import annotations

import asyncio
import logging
import os
import uuid

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections

from blocks import orchestration, sql
from blocks.models import Block, BlockData
from blocks.stores.database import DatabaseBlockStore
from protocol import loop_db
from tests.conftest import World, connect_as, create_realm

pytestmark = pytest.mark.django_db(transaction=True)

OK = {"status": "ok"}
_FALLBACK = "running in a worker thread"
BLOCK_SIZE = 512 * 1024


@pytest.fixture(autouse=True)
def postgresql_blockstore(parsec_settings):
    if connection.vendor != "postgresql":
        pytest.skip("the event loop's pool is PostgreSQL's (SQLite runs every block command in worker threads)")
    parsec_settings(blockstore=("POSTGRESQL",))


@pytest.fixture
def no_worker_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if a block command hands anything to a worker thread."""

    async def forbidden(*args, **kwargs):
        raise AssertionError("a worker thread was used")

    monkeypatch.setattr(orchestration, "run_sync", forbidden)


def _pool_requests() -> int:
    pool = loop_db._POOLS.get(asyncio.get_running_loop())
    return 0 if pool is None else pool.get_stats().get("requests_num", 0)


async def _stored(world: World, block_id: uuid.UUID) -> bytes | None:
    row = await BlockData.objects.filter(organization_id=world.organization_id, block_id=block_id).values_list(
        "data", flat=True
    ).afirst()
    return None if row is None else bytes(row)


async def _terminate_loop_connections() -> None:
    """PostgreSQL ends every session of the loop's pool (as a restart would): their next use fails at once."""
    pool = loop_db._pool()
    backend_pids = [conn.info.backend_pid for conn in list(pool._pool)]  # the idle ones: all of them here
    assert backend_pids

    def terminate() -> None:
        with connections["default"].cursor() as cursor:
            for backend_pid in backend_pids:
                cursor.execute("SELECT pg_terminate_backend(%s)", [backend_pid])
        connections["default"].close()

    await sync_to_async(terminate, thread_sensitive=False)()
    await asyncio.sleep(0.2)


async def _alice(world: World):
    client = await connect_as(world.alice)
    return client, await create_realm(client, world.alice)


async def test_create_and_read_on_the_loop(world: World, no_worker_threads):
    client, realm_id = await _alice(world)
    block_id, data = uuid.uuid4(), os.urandom(BLOCK_SIZE)
    before = _pool_requests()
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data) == OK
    assert _pool_requests() == before + 1  # check and write on one connection
    block = await Block.objects.aget(block_id=block_id)
    assert block.size == BLOCK_SIZE
    assert await _stored(world, block_id) == data
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": data}
    assert _pool_requests() == before + 2


async def test_round_trips_per_command(world: World, no_worker_threads, loop_round_trips):
    # block_create: the check, then the data and its row in one statement; block_read: one read.
    client, realm_id = await _alice(world)
    block_id = uuid.uuid4()
    loop_round_trips()
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"x" * 1024) == OK
    assert loop_round_trips() == 2
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": b"x" * 1024}
    assert loop_round_trips() == 1


async def test_written_on_the_loop_read_in_a_worker_thread(world: World, monkeypatch: pytest.MonkeyPatch):
    client, realm_id = await _alice(world)
    block_id, data = uuid.uuid4(), os.urandom(BLOCK_SIZE)
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data) == OK
    monkeypatch.setattr(orchestration, "_data_on_loop", lambda: False)
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": data}

    def read_in_a_thread() -> bytes:
        try:
            return DatabaseBlockStore().read(world.organization_id, block_id)
        finally:
            connections["default"].close()  # not left checked out in an executor thread past the test database

    read = await sync_to_async(read_in_a_thread, thread_sensitive=False)()
    assert read == data


async def test_written_in_a_worker_thread_read_on_the_loop(world: World, monkeypatch: pytest.MonkeyPatch):
    client, realm_id = await _alice(world)
    block_id, data = uuid.uuid4(), os.urandom(BLOCK_SIZE)
    data_on_loop = orchestration._data_on_loop
    monkeypatch.setattr(orchestration, "_data_on_loop", lambda: False)
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data) == OK
    monkeypatch.setattr(orchestration, "_data_on_loop", data_on_loop)
    before = _pool_requests()
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": data}
    assert _pool_requests() == before + 1


async def test_already_exists_by_the_check(world: World, no_worker_threads):
    client, realm_id = await _alice(world)
    block_id = uuid.uuid4()
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"first") == OK
    reply = await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"second")
    assert reply == {"status": "already_exists"}
    assert await _stored(world, block_id) == b"first"


async def test_already_exists_by_the_unique_constraint(world: World, no_worker_threads, monkeypatch):
    # A concurrent creator of the same id passed the check too: the constraint on the block row refuses
    # the statement, and its data row goes with it; the winner's data stays.
    client, realm_id = await _alice(world)
    block_id = uuid.uuid4()
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"winner") == OK
    stale = sql.BLOCK_CREATE_STATE.sql.replace("EXISTS(", "NOT EXISTS(")
    from protocol.db import Prepared

    monkeypatch.setattr(sql, "BLOCK_CREATE_STATE", Prepared("block_create_state_stale", stale))
    reply = await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"loser")
    assert reply == {"status": "already_exists"}
    assert await Block.objects.filter(block_id=block_id).acount() == 1
    assert await _stored(world, block_id) == b"winner"
    async with loop_db._pool().connection() as conn:
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE


async def test_concurrent_creators_of_one_block(world: World):
    client, realm_id = await _alice(world)
    other = await connect_as(world.alice)
    block_id = uuid.uuid4()
    first, second = os.urandom(BLOCK_SIZE), os.urandom(BLOCK_SIZE)
    replies = await asyncio.gather(
        client.command("block_create", block_id=block_id, realm_id=realm_id, block=first),
        other.command("block_create", block_id=block_id, realm_id=realm_id, block=second),
    )
    assert sorted(reply["status"] for reply in replies) == ["already_exists", "ok"]
    winner = first if replies[0] == OK else second
    assert await Block.objects.filter(block_id=block_id).acount() == 1
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": winner}


async def test_failed_write_stores_nothing_then_retry(world: World, no_worker_threads, monkeypatch):
    # The statement fails after the check passed (here a size the schema refuses): neither the data
    # nor the row is written, the reply is `timeout`, and the client's retry goes through.
    client, realm_id = await _alice(world)
    block_id, data = uuid.uuid4(), os.urandom(BLOCK_SIZE)
    statement = sql.BLOCK_CREATE_WITH_DATA
    monkeypatch.setattr(sql, "BLOCK_CREATE_WITH_DATA", statement.replace("%(size)s", "-1"))
    reply = await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data)
    assert reply == {"status": "timeout"}
    assert not await Block.objects.filter(block_id=block_id).aexists()
    assert await _stored(world, block_id) is None
    monkeypatch.setattr(sql, "BLOCK_CREATE_WITH_DATA", statement)
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data) == OK
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": data}


async def test_retry_after_a_failed_record(world: World, no_worker_threads):
    # The worker-thread path stored the data but failed to record it: the retry, on the loop, finds
    # the data already there and records the block.
    client, realm_id = await _alice(world)
    block_id, data = uuid.uuid4(), os.urandom(BLOCK_SIZE)
    await BlockData.objects.acreate(organization_id=world.organization_id, block_id=block_id, data=data)
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data) == OK
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": data}


async def test_create_falls_back_to_a_worker_thread(world: World, caplog: pytest.LogCaptureFixture):
    client, realm_id = await _alice(world)
    assert await client.command("block_create", block_id=uuid.uuid4(), realm_id=realm_id, block=b"x") == OK
    await _terminate_loop_connections()
    block_id, data = uuid.uuid4(), os.urandom(BLOCK_SIZE)
    with caplog.at_level(logging.INFO, logger=orchestration.logger.name):
        assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data) == OK
    assert _FALLBACK in caplog.text
    assert await _stored(world, block_id) == data
    assert await Block.objects.filter(block_id=block_id).aexists()


async def test_read_falls_back_to_a_worker_thread(world: World, caplog: pytest.LogCaptureFixture):
    client, realm_id = await _alice(world)
    block_id, data = uuid.uuid4(), os.urandom(BLOCK_SIZE)
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data) == OK
    await _terminate_loop_connections()
    with caplog.at_level(logging.INFO, logger=orchestration.logger.name):
        assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": data}
    assert _FALLBACK in caplog.text


async def test_read_data_missing(world: World, no_worker_threads):
    client, realm_id = await _alice(world)
    block_id = uuid.uuid4()
    assert await client.command("block_create", block_id=block_id, realm_id=realm_id, block=b"x") == OK
    await BlockData.objects.filter(block_id=block_id).adelete()
    assert await client.command("block_read", block_id=block_id) == {"status": "timeout"}


async def test_not_found_on_the_loop(world: World, no_worker_threads):
    client, _ = await _alice(world)
    assert await client.command("block_create", block_id=uuid.uuid4(), realm_id=uuid.uuid4(), block=b"x") == {
        "status": "not_found"
    }
    assert await client.command("block_read", block_id=uuid.uuid4()) == {"status": "not_found"}
    async with loop_db._pool().connection() as conn:
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
