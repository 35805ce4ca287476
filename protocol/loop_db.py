"""The hot path's PostgreSQL access from the event loop itself, without a worker thread.

A command run through `run_sync` costs a hop to a worker thread and back, and both threads then
compete for the GIL: in the bench's profiles of `vlob_read`, the event loop spent more time handing
work to the executor and re-acquiring the GIL than decoding and answering. The common cases of the
vlob commands and the block checks (`*_on_loop` in realms/services/vlobs.py and blocks/services.py)
therefore run their prepared statements on
psycopg's asyncio connections, from a pool of their own that takes its share of
`--db-max-connections` (settings.PARSEC_LOOP_POOL); everything else, and every case they do not
decide, runs in a worker thread as before.

A connection problem before anything was written (a pooled connection that died idle, PostgreSQL
restarting) is `LoopUnavailable`: the caller runs the command the usual way, whose handling of
outages is the server's one. SQLite deployments have no such pool.
"""
from __future__ import annotations

import asyncio
import enum
import logging
import weakref
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, Sequence, TypeVar

from django.conf import settings
from django.db import OperationalError, connections
from django.db.models import Field

from protocol.db import Prepared, convert_row, run_sync

T = TypeVar("T")

logger = logging.getLogger("parsec.db")

# One pool per serving event loop: the server has one; each test its own (`close_pool` at its end).
_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
_SERVING_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


class LoopUnavailable(Exception):
    """The event loop's database access could not decide: run the command in a worker thread."""


async def _configure(conn: Any) -> None:
    # As Django does for its own connections: timestamps are read and compared in its time zone.
    timezone_name = connections["default"].timezone_name
    if timezone_name and conn.info.parameter_status("TimeZone") != timezone_name:
        await conn.execute("SELECT set_config('TimeZone', %s, false)", (timezone_name,))


def serve_from(loop: asyncio.AbstractEventLoop) -> None:
    """Lets the vlob hot path use `loop` for its database access: the server's event loop (the `run`
    command), a test's. Other loops (`async_to_sync`'s, short-lived) run every command in a worker thread."""
    _SERVING_LOOPS.add(loop)


def enabled() -> bool:
    if settings.PARSEC_LOOP_POOL is None:
        return False
    try:
        return asyncio.get_running_loop() in _SERVING_LOOPS
    except RuntimeError:
        return False


def _pool() -> Any:
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        sizes = settings.PARSEC_LOOP_POOL
        assert sizes is not None, "only called when enabled()"
        # Django's own connection parameters (database, credentials, startup options such as the
        # statement timeout, its type adapters), for asyncio connections with client-side binding.
        kwargs = connections["default"].get_connection_params()
        kwargs["cursor_factory"] = psycopg.AsyncClientCursor
        kwargs["autocommit"] = True
        pool = AsyncConnectionPool(kwargs=kwargs, open=False, configure=_configure, name="parsec-loop", **sizes)
        _POOLS[loop] = pool
    return pool


async def close_pool() -> None:
    """Closes this event loop's pool, if it has one (server shutdown, end of a test)."""
    loop = asyncio.get_running_loop()
    _SERVING_LOOPS.discard(loop)
    pool = _POOLS.pop(loop, None)
    if pool is not None:
        await pool.close()


@asynccontextmanager
async def _connection() -> AsyncIterator[Any]:
    import psycopg

    pool = _pool()
    try:
        if pool.closed:
            await pool.open(wait=False)
        conn = await pool.getconn()
    except Exception as exc:  # pool timeout, database unreachable
        raise LoopUnavailable(str(exc)) from exc
    try:
        yield conn
    finally:
        status = conn.pgconn.transaction_status
        if status not in (psycopg.pq.TransactionStatus.IDLE, psycopg.pq.TransactionStatus.UNKNOWN):
            # A refused or failed write, or a cancelled command: its transaction goes, not its connection.
            try:
                await conn.rollback()
            except Exception as exc:  # a broken connection: the pool drops it when it comes back
                logger.info("Rollback of a loop connection failed: %s", exc)
        await pool.putconn(conn)


async def _text(conn: Any, statement: Prepared) -> str:
    if not statement.is_prepared_on(conn):
        await conn.execute(statement.prepare_sql)
        statement.mark_prepared_on(conn)
    return statement.execute_sql


async def fetch_row(
    statement: Prepared, params: Mapping[str, Any], fields: Sequence[Field | None]
) -> tuple[Any, ...] | None:
    """`LoopConnection.read` on a connection of its own."""
    async with _connection() as conn:
        return await LoopConnection(conn).read(statement, params, fields)


class LoopConnection:
    """A connection of the loop pool, held for the statements of one command."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def read(
        self, statement: Prepared, params: Mapping[str, Any], fields: Sequence[Field | None], *, binary: bool = False
    ) -> tuple[Any, ...] | None:
        """The first row of a read, converted as protocol.db.fetch_row converts it; any failure is
        `LoopUnavailable` (a read can always run again). `binary`: the results in PostgreSQL's binary
        format, a bytea column as its bytes rather than as hex text twice its size."""
        import psycopg

        try:
            text: str = await _text(self.conn, statement)
            values: Mapping[str, Any] | None = params
            if binary:
                # Bound client-side all the same (`EXECUTE name(...)` takes no bound values), then sent
                # by a cursor that can read binary results, which the pool's client-side cursors cannot.
                text, values = psycopg.AsyncClientCursor(self.conn).mogrify(text, params), None
            async with (psycopg.AsyncCursor(self.conn) if binary else self.conn.cursor()) as cursor:
                await cursor.execute(text, values, binary=binary)
                row = await cursor.fetchone()
        except psycopg.Error as exc:
            raise LoopUnavailable(str(exc)) from exc
        return None if row is None else convert_row(row, fields)


class Stale(enum.Enum):
    """Why a write decided on the loop stored nothing."""

    STATE_CHANGED = "the state changed between the read and the lock"  # the worker thread decides again
    DUPLICATE = "a unique constraint refused the write"  # a racing writer stored it first


class Write(LoopConnection):
    """One write decided on a loop connection: the state read (no transaction, no lock; skipped when
    the session remembers the state, realms/services/vlobs.py), then, once Python has decided,
    `BEGIN; <lock>; <store>; COMMIT` sent at once. The
    store writes only if the state it was decided on is unchanged under the lock (realms/sql.py,
    STATE_STAMP), so the lock is held while PostgreSQL runs one statement and commits, never across
    a round trip through a busy event loop."""

    async def lock_then_store(
        self, lock: Prepared, store: Prepared, params: Mapping[str, Any]
    ) -> tuple[Any, ...] | Stale:
        """The lock, then the guarded store (its first row) and the commit, in one round trip."""
        import psycopg

        try:
            text = f"BEGIN; {await _text(self.conn, lock)}; {await _text(self.conn, store)}; COMMIT"
        except psycopg.Error as exc:
            raise LoopUnavailable(str(exc)) from exc  # a PREPARE failed: nothing was written
        try:
            cursor = await self.conn.execute(text, params)
            cursor.nextset()  # past BEGIN's result
            cursor.nextset()  # past the lock's
            row = await cursor.fetchone()
        except psycopg.errors.UniqueViolation:
            return Stale.DUPLICATE  # the whole transaction is rolled back (`_connection`)
        except psycopg.Error as exc:
            # The commit may or may not have happened: not retried, reported as the server's other
            # database failures are (protocol.registry).
            raise OperationalError(str(exc)) from exc
        return Stale.STATE_CHANGED if row is None else row


@asynccontextmanager
async def write() -> AsyncIterator[Write]:
    async with _connection() as conn:
        yield Write(conn)


async def run_on_loop_or_sync(
    on_loop: Callable[..., Awaitable[T | None]], in_thread: Callable[..., T], /, **kwargs: Any
) -> T:
    """`on_loop(**kwargs)` when this server has a loop pool and it decides the command; otherwise
    `in_thread(**kwargs)` in a worker thread (`run_sync`), which decides every case."""
    if enabled():
        try:
            outcome = await on_loop(**kwargs)
        except LoopUnavailable as exc:
            logger.info("Event loop database access unavailable, running in a worker thread: %s", exc)
            outcome = None
        if outcome is not None:
            return outcome
    return await run_sync(in_thread, **kwargs)


# --- Large values on the loop (blocks) ------------------------------------------------------------
# The loop pool binds values client-side, which suits the short values of the vlob commands but
# would send a 512 KiB block as 1 MiB of hex text for PostgreSQL to decode, and read it back the
# same way. A block's data is therefore written with its values bound server-side (bytes as a binary
# parameter) and read in PostgreSQL's binary format, as blocks/stores/database.py does in worker
# threads. The read is a `Prepared` statement like the others (its values are short); the write is
# planned on each call: an `EXECUTE` cannot take bound values, and psycopg's own prepared statements
# (off in Django's connections) would be dropped with every other prepared statement of the
# connection (`DEALLOCATE ALL`) at its next rollback.


class BytesConnection(LoopConnection):
    """One loop connection for a command that moves a block: its check and its data statement run on
    the same connection, so a connection that died idle fails the check, before anything was
    written, and the command can still run in a worker thread."""

    async def execute_binary(self, sql: str, params: Mapping[str, Any]) -> bool:
        """Runs one write statement (autocommit: all of it or nothing), its values bound server-side.

        False: a unique constraint refused it. Any other failure is an `OperationalError`: sent,
        the write may or may not have been committed, so it is not run again here."""
        import psycopg

        try:
            async with psycopg.AsyncCursor(self.conn) as cursor:
                await cursor.execute(sql, params)
        except psycopg.errors.UniqueViolation:
            return False
        except psycopg.Error as exc:
            raise OperationalError(str(exc)) from exc
        return True


@asynccontextmanager
async def bytes_connection() -> AsyncIterator[BytesConnection]:
    """A loop connection for a block command; `LoopUnavailable` when none can be had."""
    async with _connection() as conn:
        yield BytesConnection(conn)
