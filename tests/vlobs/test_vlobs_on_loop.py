"""The vlob hot path on the event loop's own PostgreSQL pool (protocol/loop_db.py): the common cases
are decided there, every other case and every connection problem goes to the worker-thread service,
and no transaction or connection is left behind. (The outcomes themselves are the same modules'
tests: tests/vlobs/test_vlob_*.py run through the handlers, hence through this path on PostgreSQL.)"""
from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.db.models import F
from django.utils import timezone

from protocol import loop_db
from realms.models import Realm, RealmVlobUpdate, VlobAtom
from tests.conftest import World, connect_as
from tests.vlobs.helpers import OK, create_vlob, new_vlob, read_vlob, update_vlob

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the event loop's pool is PostgreSQL's (SQLite runs every command in a worker thread)")


def _pool_requests() -> int:
    pool = loop_db._POOLS.get(asyncio.get_running_loop())
    return 0 if pool is None else pool.get_stats().get("requests_num", 0)


async def test_pool_takes_its_share_of_the_connections():
    assert settings.PARSEC_LOOP_POOL["max_size"] == max(1, settings.PARSEC.db_max_connections // 3)
    sync_pool = settings.DATABASES["default"]["OPTIONS"]["pool"]
    assert sync_pool["max_size"] + settings.PARSEC_LOOP_POOL["max_size"] == settings.PARSEC.db_max_connections


async def test_common_cases_run_on_the_loop(world: World, alice_ws, realm_id):
    before = _pool_requests()
    vlob_id = await new_vlob(alice_ws, realm_id)
    assert await update_vlob(alice_ws, vlob_id, 2) == OK
    assert (await read_vlob(alice_ws, vlob_id))["version"] == 2
    assert _pool_requests() - before == 3
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 2
    assert await RealmVlobUpdate.objects.acount() == 2


async def test_refusals_leave_no_transaction_open(world: World, alice_ws, realm_id, vlob_id):
    assert await create_vlob(alice_ws, realm_id, vlob_id=vlob_id) == {"status": "already_exists", "reason": None}
    assert await update_vlob(alice_ws, vlob_id, 5) == {"status": "bad_version"}
    pool = loop_db._pool()
    async with pool.connection() as conn:
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    # The realm row lock was released with the refused writes: the next write goes through.
    assert await update_vlob(alice_ws, vlob_id, 2) == OK


async def test_unique_constraint_refusal_on_the_loop(world: World, alice_ws, realm_id, vlob_id, monkeypatch):
    # A racing writer's stale view: the commit statement is refused by the constraint, rolled back.
    from protocol.db import Prepared
    from realms import sql

    assert await update_vlob(alice_ws, vlob_id, 2) == OK
    stale = sql.VLOB_UPDATE_STATE.sql.replace('SELECT v."version" FROM', 'SELECT v."version" - 1 FROM')
    monkeypatch.setattr(sql, "VLOB_UPDATE_STATE", Prepared("stale_on_loop", stale))
    before = _pool_requests()
    assert await update_vlob(alice_ws, vlob_id, 2, blob=b"<dup>") == {"status": "bad_version"}
    assert _pool_requests() == before + 1  # decided on the loop
    assert [v async for v in VlobAtom.objects.filter(vlob_id=vlob_id).order_by("version").values_list("version", flat=True)] == [1, 2]
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 2


async def test_dead_pooled_connection_falls_back_to_a_worker_thread(world: World, alice_ws, realm_id, vlob_id):
    assert (await read_vlob(alice_ws, vlob_id))["status"] == "ok"  # the pool holds a connection now
    pool = loop_db._pool()
    async with pool.connection() as conn:
        backend_pid = conn.info.backend_pid
    # PostgreSQL ends that session (as a restart would): the loop's next use of it fails at once.
    from django.db import connections
    from asgiref.sync import sync_to_async

    def terminate() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [backend_pid])
        connections["default"].close()

    await sync_to_async(terminate, thread_sensitive=False)()
    await asyncio.sleep(0.2)
    assert (await read_vlob(alice_ws, vlob_id))["status"] == "ok"
    assert await update_vlob(alice_ws, vlob_id, 2) == OK
    assert await update_vlob(alice_ws, vlob_id, 3) == OK


async def _until_no_store_runs(conn) -> None:
    """Waits for any other session's store message (`BEGIN; lock; store; COMMIT`) to end: a lock taken
    again right after a rollback is no barrier, PostgreSQL may grant it ahead of the waiting store."""
    for _ in range(200):
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()"
            " AND query LIKE %s",
            ("%EXECUTE parsec_store_%",),
        )
        if (await cursor.fetchone())[0] == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the abandoned write is still running after 10 s")


async def test_abandoned_write_is_all_or_nothing(world: World, alice_ws, realm_id):
    # A write abandoned while it waits for the realm lock (its client left). Its lock, store and
    # commit went to PostgreSQL as one message, so it lands whole or not at all, as a write whose
    # reply was lost would; either way it leaves no lock and no transaction behind.
    vlob_id = uuid.uuid4()
    pool = loop_db._pool()
    await pool.open()
    lock = f'SELECT 1 FROM "{Realm._meta.db_table}" WHERE "realm_id" = %s FOR NO KEY UPDATE'
    async with pool.connection() as holder:
        await holder.execute("BEGIN")
        await holder.execute(lock, (realm_id,))
        leaving = await connect_as(world.alice)
        write = asyncio.create_task(create_vlob(leaving, realm_id, vlob_id=vlob_id))
        await asyncio.sleep(0.5)
        assert not write.done()  # waiting for the lock
        write.cancel()
        await leaving.close()
        await asyncio.sleep(0.5)
        await holder.execute("ROLLBACK")
        await _until_no_store_runs(holder)
    written = await VlobAtom.objects.filter(vlob_id=vlob_id).aexists()
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == int(written)
    assert await RealmVlobUpdate.objects.acount() == int(written)
    # Nothing left locked: the next writes go through.
    assert await create_vlob(alice_ws, realm_id) == OK
    assert await create_vlob(alice_ws, realm_id, vlob_id=vlob_id) == (
        {"status": "already_exists", "reason": None} if written else OK
    )
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 2


async def test_sequester_writes_run_in_a_worker_thread(world: World, alice_ws, realm_id):
    before = _pool_requests()
    reply = await create_vlob(alice_ws, realm_id, sequester_blob={uuid.uuid4(): b"<blob>"})
    assert reply["status"] == "not_a_sequestered_organization"
    assert _pool_requests() == before


async def test_round_trips_per_command(world: World, alice_ws, realm_id, vlob_id, loop_round_trips):
    # One message to PostgreSQL per read, and per write decided on the session's remembered state
    # (`BEGIN; lock; store; COMMIT`); a write whose state is read first costs one more.
    loop_round_trips()
    assert await update_vlob(alice_ws, vlob_id, 2) == OK
    assert loop_round_trips() == 1
    await new_vlob(alice_ws, realm_id)
    assert loop_round_trips() == 1
    assert (await read_vlob(alice_ws, vlob_id))["version"] == 2
    assert loop_round_trips() == 1
    fresh = await connect_as(world.alice)
    loop_round_trips()
    assert await update_vlob(fresh, vlob_id, 3) == OK
    assert loop_round_trips() == 2
    await new_vlob(fresh, realm_id)
    assert loop_round_trips() == 2


def _change_before_the_store(monkeypatch, change) -> list:
    """Runs `change` (async) between a write's state read and its `BEGIN; lock; store; COMMIT`;
    returns the list of what each store attempt on the loop came back with."""
    attempts: list = []
    real = loop_db.Write.lock_then_store

    async def changed_then_store(self, lock, store, params):
        await change()
        result = await real(self, lock, store, params)
        attempts.append(result)
        return result

    monkeypatch.setattr(loop_db.Write, "lock_then_store", changed_then_store)
    return attempts


async def test_state_changed_before_the_lock_is_decided_again(world: World, alice_ws, realm_id, vlob_id, monkeypatch):
    # The realm went into maintenance between the read and the lock: the loop stores nothing and
    # the worker-thread service, reading under the lock, refuses.
    async def start_maintenance():
        await Realm.objects.filter(realm_id=realm_id).aupdate(
            maintenance_type="REENCRYPTION", maintenance_started_on=timezone.now()
        )

    attempts = _change_before_the_store(monkeypatch, start_maintenance)
    assert await update_vlob(alice_ws, vlob_id, 2) == {"status": "in_maintenance"}
    assert attempts == [loop_db.Stale.STATE_CHANGED]
    assert [v async for v in VlobAtom.objects.filter(vlob_id=vlob_id).values_list("version", flat=True)] == [1]
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 1


async def test_an_unchanged_state_stores_at_the_first_attempt(world: World, realm_id, vlob_id, monkeypatch):
    # The state reads take the stamp over the columns they read, the store over the tables under the
    # lock (realms/sql.py): one state, one stamp, so a fresh read's write is stored by the loop itself.
    async def nothing() -> None:
        pass

    attempts = _change_before_the_store(monkeypatch, nothing)
    fresh = await connect_as(world.alice)  # remembers no state: both writes read theirs
    assert await update_vlob(fresh, vlob_id, 2) == OK
    await new_vlob(fresh, realm_id)
    assert attempts == [(2,), (3,)]  # the realm's new checkpoints, no Stale


async def test_harmless_change_before_the_lock_still_writes(world: World, alice_ws, realm_id, monkeypatch):
    # Any change of the stamped state sends the write to the worker thread, which decides it whole.
    async def touch_realm():
        await Realm.objects.filter(realm_id=realm_id).aupdate(created_on=F("created_on") - timedelta(seconds=1))

    attempts = _change_before_the_store(monkeypatch, touch_realm)
    vlob_id = await new_vlob(alice_ws, realm_id)
    assert attempts == [loop_db.Stale.STATE_CHANGED]
    assert (await read_vlob(alice_ws, vlob_id))["version"] == 1
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 1
    assert await RealmVlobUpdate.objects.acount() == 1


async def test_concurrent_writers_of_one_realm_keep_checkpoints_dense(world: World, realm_id):
    # The loop's store moves the checkpoint in SQL under the lock: 20 concurrent writers from
    # separate sessions, each checkpoint used once, the change log gap-free.
    sessions = [await connect_as(world.alice) for _ in range(4)]
    replies = await asyncio.gather(*(create_vlob(sessions[i % 4], realm_id) for i in range(20)))
    assert replies == [OK] * 20
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 20
    indexes = [i async for i in RealmVlobUpdate.objects.order_by("index").values_list("index", flat=True)]
    assert indexes == list(range(1, 21))


# --- one round trip per write: the session's remembered states ---------------------------------


def _count_state_reads(monkeypatch) -> list:
    reads: list = []
    real = loop_db.Write.read

    async def counted(self, statement, params, fields):
        reads.append(statement)
        return await real(self, statement, params, fields)

    monkeypatch.setattr(loop_db.Write, "read", counted)
    return reads


async def test_a_session_s_next_writes_skip_the_state_read(world: World, alice_ws, realm_id, monkeypatch):
    reads = _count_state_reads(monkeypatch)
    vlob_id = await new_vlob(alice_ws, realm_id)  # reads the realm's state, remembers it
    assert len(reads) == 1
    other_id = await new_vlob(alice_ws, realm_id)  # the realm's state from the first creation
    assert await update_vlob(alice_ws, vlob_id, 2) == OK  # the vlob's state from its creation
    assert await update_vlob(alice_ws, vlob_id, 3) == OK
    assert await update_vlob(alice_ws, other_id, 2) == OK
    assert len(reads) == 1
    assert (await read_vlob(alice_ws, vlob_id))["version"] == 3
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 5
    indexes = [i async for i in RealmVlobUpdate.objects.order_by("index").values_list("index", flat=True)]
    assert indexes == [1, 2, 3, 4, 5]


async def test_a_role_revoked_since_the_remembered_state_is_refused(world: World, alice_ws, realm_id):
    from tests.realms.helpers import grant
    from tests.vlobs.helpers import member

    bob = await member(world, alice_ws, realm_id, "bob", "CONTRIBUTOR")
    bob_ws = await connect_as(bob)
    vlob_id = await new_vlob(bob_ws, realm_id)  # bob's session remembers a state that grants him writes
    await grant(alice_ws, world.alice, realm_id, "bob", None)
    assert await update_vlob(bob_ws, vlob_id, 2) == {"status": "not_allowed"}
    assert await create_vlob(bob_ws, realm_id) == {"status": "not_allowed"}
    assert [v async for v in VlobAtom.objects.filter(vlob_id=vlob_id).values_list("version", flat=True)] == [1]


async def test_a_remembered_version_never_refuses(world: World, alice_ws, realm_id, vlob_id):
    # alice's session remembers version 1; another session writes version 2: alice's version 3 is
    # right, though her remembered state would refuse it, and her version 2 is refused.
    other_ws = await connect_as(world.alice)
    assert await update_vlob(other_ws, vlob_id, 2) == OK
    assert await update_vlob(alice_ws, vlob_id, 2, blob=b"<late>") == {"status": "bad_version"}
    assert await update_vlob(alice_ws, vlob_id, 3) == OK
    versions = [v async for v in VlobAtom.objects.filter(vlob_id=vlob_id).order_by("version").values_list("version", flat=True)]
    assert versions == [1, 2, 3]


async def test_a_remembered_realm_still_sees_an_id_taken_elsewhere(world: World, alice_ws, realm_id):
    from tests.conftest import create_realm

    await new_vlob(alice_ws, realm_id)  # the realm's state is remembered
    other_realm_id = await create_realm(alice_ws, world.alice)
    taken = await new_vlob(alice_ws, other_realm_id)
    assert await create_vlob(alice_ws, realm_id, vlob_id=taken) == {"status": "already_exists", "reason": None}
    assert (await Realm.objects.aget(realm_id=realm_id)).checkpoint == 1


async def test_remembered_states_are_bounded(world: World):
    from realms.services import vlobs
    from tests.vlobs.helpers import session_of

    session = await sync_to_async(session_of)(world.alice)
    for _ in range(vlobs._WRITE_STATES_KEPT + 10):
        vlobs._remember(session, ("vlob", uuid.uuid4()), None)
    assert len(session.memo[vlobs._WRITE_STATES]) == vlobs._WRITE_STATES_KEPT
