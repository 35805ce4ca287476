"""Running synchronous ORM work from the event loop without serialising every connection, and
hand-written SQL for the few hot-path reads where the ORM's query building dominates the cost."""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import re
import threading
import weakref
from functools import cache
from typing import Any, Callable, Mapping, Sequence, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, connections
from django.db.models import Field

from protocol.groups import caller_loop

T = TypeVar("T")
logger = logging.getLogger("parsec.db")


class _StatementTracker:
    """Django execute wrapper: did any statement of this call reach the database and come back?"""

    def __init__(self) -> None:
        self.answered = False

    def __call__(self, execute: Callable, sql: str, params: Any, many: bool, context: dict) -> Any:
        result = execute(sql, params, many, context)
        self.answered = True
        return result


def _dead_before_any_statement(exc: Exception, tracker: _StatementTracker) -> bool:
    from psycopg_pool import PoolTimeout

    if isinstance(exc.__cause__, PoolTimeout):
        return False  # no connection at all: the pool already waited its timeout for the database
    raw = connection.connection
    return (
        isinstance(exc, (OperationalError, InterfaceError))
        and not tracker.answered
        and (raw is None or getattr(raw, "broken", False) or getattr(raw, "closed", False))
    )


def call_surviving_dead_connections(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, run again when its pooled connection turns out dead before its first statement.

    Pooled connections are handed out without a health query (CONN_HEALTH_CHECKS is off in
    settings: it cost one round trip per command). A connection that died while idle in the pool
    (database restarted) fails on the call's very first statement, before anything ran: the call
    then runs again on another one, as many times as the pool may hold dead ones.
    """
    for attempt in itertools.count():
        tracker = _StatementTracker()
        try:
            with connection.execute_wrapper(tracker):
                return fn(*args, **kwargs)
        except Exception as exc:
            # At most the whole pool can be dead at once; then a fresh connection answers.
            if attempt > settings.PARSEC.db_max_connections or not _dead_before_any_statement(exc, tracker):
                raise
            logger.warning("Database connection found dead, retrying on another one: %s", exc)
            connections.close_all()  # the pool discards the broken connection and replaces it
    raise AssertionError("unreachable")


# Connection-level failures (SQLSTATE class 08, the server shutting down or starting) and failures with
# no SQLSTATE at all (connection refused or cut, pool checkout timed out): the database is out of reach,
# not the request at fault. Statement errors (constraints, timeouts, deadlocks) are not among them.
_UNAVAILABLE_SQLSTATES = ("57P01", "57P02", "57P03")


def database_unavailable(exc: BaseException) -> bool:
    """Did this call fail because PostgreSQL cannot be reached right now?"""
    import psycopg

    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    cause = exc.__cause__
    if isinstance(cause, psycopg.InterfaceError):
        return True  # the connection was closed under us
    if not isinstance(cause, psycopg.OperationalError):
        return False  # e.g. SQLite's "database is locked": a busy database, not an absent one
    sqlstate = cause.sqlstate
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES


class StatementCancelled(OperationalError):
    """The call was abandoned (its command cancelled) before this statement could start."""


class _AbandonableCall:
    """The database connection a worker thread is using for one `run_sync` call, so that an
    abandoned call (client gone, command cancelled) stops its running statement instead of
    holding a pooled connection until the statement ends.

    The lock makes the cancel hit only this call's work: the thread cannot start a statement or
    give its connection back to the pool while a cancel is being sent on it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.raw: Any = None  # the driver's connection while a statement of this call may run
        self.abandoned = False

    def __call__(self, execute: Callable, sql: str, params: Any, many: bool, context: dict) -> Any:
        with self.lock:
            if self.abandoned:
                raise StatementCancelled("the command was abandoned")
            self.raw = context["connection"].connection
        return execute(sql, params, many, context)

    def released(self) -> None:
        with self.lock:
            self.raw = None

    def abandon(self) -> None:
        with self.lock:
            self.abandoned = True
            raw = self.raw
            if raw is None:
                return
            try:
                # psycopg: a cancel request to the server; sqlite3: interrupt(), both thread-safe.
                cancel = getattr(raw, "cancel_safe", None) or getattr(raw, "interrupt", None)
                if cancel is not None:
                    cancel()
            except Exception as exc:  # the statement ends by itself anyway, within the statement timeout
                logger.warning("Could not cancel the statement of an abandoned command: %s", exc)


def _call_and_release(fn: Callable[..., T], args: tuple, kwargs: dict, call: _AbandonableCall) -> T:
    try:
        with connection.execute_wrapper(call):
            return call_surviving_dead_connections(fn, *args, **kwargs)
    finally:
        call.released()
        # Give the connection back to the pool so worker threads never hoard it.
        connections.close_all()


async def run_sync(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    # Messages committed by `fn` go to this loop without the worker thread waiting on them.
    caller_loop.set(asyncio.get_running_loop())
    call = _AbandonableCall()
    try:
        # thread_sensitive=False: each call gets a worker thread, so database work of different
        # sessions runs in parallel instead of queueing on Django's single "sync" thread.
        return await sync_to_async(_call_and_release, thread_sensitive=False)(fn, args, kwargs, call)
    except asyncio.CancelledError:
        # The worker thread keeps running: stop its statement. Sending the cancel may take a round
        # trip to the server, so not on the event loop.
        threading.Thread(target=call.abandon, name="parsec-cancel-statement", daemon=True).start()
        raise


# --- hand-written SQL -------------------------------------------------------------------------
# Building a queryset costs far more CPU than running it (~1 ms against ~0.1 ms for a one-row
# read, bench/ profiles): the per-command reads of the hot path are written in SQL once, with
# `%s` placeholders (both backends), and their values go through Django's own field conversions
# so that UUIDs, datetimes and bytes come out exactly as the ORM would give them.


def db_param(field: Field, value: Any) -> Any:
    """A Python value as the database stores it in `field` (e.g. a UUID as hex text on SQLite)."""
    return field.get_db_prep_value(value, connection, prepared=False)


@cache
def _converters(field: Field, vendor: str) -> tuple[Callable, ...]:
    col = field.cached_col
    return tuple(connection.ops.get_db_converters(col)) + tuple(col.get_db_converters(connection))


_NAMED_PARAMETER = re.compile(r"%\((\w+)\)s")
# Per driver connection, the names of the statements already prepared on it. Prepared statements
# belong to the server session: they outlive transactions and rollbacks, and go with the connection.
_PREPARED_ON: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


class Prepared:
    """A hot-path statement (named `%(param)s` placeholders) that PostgreSQL parses and plans once
    per connection instead of on every call.

    Planning dominates the cost of the short statements of the hot path (a vlob write's state read:
    planned in ~0.27 ms, run in ~0.08 ms). Pooled connections live long, so each is sent
    `PREPARE name AS <statement with $n>` the first time it needs the statement, then only
    `EXECUTE name(<values>)`, whose values the driver binds client-side as for any statement.
    SQLite gets the statement itself.
    """

    def __init__(self, name: str, sql: str) -> None:
        if "%s" in _NAMED_PARAMETER.sub("", sql):
            raise ValueError(f"{name}: only named parameters can be prepared")
        self.sql = sql
        # The hash keeps two versions of a statement apart (a test settings change, a reload).
        self.name = f"parsec_{name}_{hashlib.sha1(sql.encode()).hexdigest()[:8]}"
        order: list[str] = []
        for parameter in _NAMED_PARAMETER.findall(sql):
            if parameter not in order:
                order.append(parameter)

        def positional(match: re.Match) -> str:
            return f"${order.index(match.group(1)) + 1}"

        # Sent without parameters, so a literal `%%` of the statement is a plain `%` here.
        self.prepare_sql = f"PREPARE {self.name} AS " + _NAMED_PARAMETER.sub(positional, sql).replace("%%", "%")
        arguments = ", ".join(f"%({parameter})s" for parameter in order)
        self.execute_sql = f"EXECUTE {self.name}({arguments})" if order else f"EXECUTE {self.name}"

    def __str__(self) -> str:
        return self.sql

    def text(self, cursor: Any) -> str:
        """The SQL to run on `cursor` (a Django cursor of the default connection), preparing it first if needed."""
        if connection.vendor != "postgresql":
            return self.sql
        raw = connection.connection
        if not self.is_prepared_on(raw):
            # A round trip of its own, once per connection: only a PREPARE that ran is recorded.
            cursor.execute(self.prepare_sql)
            self.mark_prepared_on(raw)
        return self.execute_sql

    def is_prepared_on(self, driver_connection: Any) -> bool:
        """Whether this psycopg connection (either pool's, sync or asyncio) already holds the statement."""
        return self.name in _PREPARED_ON.get(driver_connection, ())

    def mark_prepared_on(self, driver_connection: Any) -> None:
        _PREPARED_ON.setdefault(driver_connection, set()).add(self.name)


def statement_text(cursor: Any, statement: str | Prepared) -> str:
    return statement.text(cursor) if isinstance(statement, Prepared) else statement


def fetch_row(
    sql: str | Prepared, params: Mapping[str, Any] | Sequence[Any], fields: Sequence[Field | None]
) -> tuple[Any, ...] | None:
    """The first row of `sql`, each column converted like the ORM converts `fields[i]` (None: as is)."""
    with connection.cursor() as cursor:
        cursor.execute(statement_text(cursor, sql), params)
        row = cursor.fetchone()
    if row is None:
        return None
    return convert_row(row, fields)


def convert_row(row: Sequence[Any], fields: Sequence[Field | None]) -> tuple[Any, ...]:
    values = []
    for value, field in zip(row, fields):
        if field is not None and value is not None:
            col = field.cached_col
            for converter in _converters(field, connection.vendor):
                value = converter(value, col, connection)
        values.append(value)
    return tuple(values)


def lift_statement_timeout(*, using: str = "default", **kwargs: Any) -> None:
    """`pre_migrate` receiver: `--db-statement-timeout` is for the server's commands; a migration
    (an index built on a large table) may rightly run longer. `post_migrate` restores it, since
    the connection goes back to the pool."""
    _set_statement_timeout(using, "SET statement_timeout = 0")


def restore_statement_timeout(*, using: str = "default", **kwargs: Any) -> None:
    # RESET returns to the connection's startup value: the one of --db-statement-timeout.
    _set_statement_timeout(using, "RESET statement_timeout")


def _set_statement_timeout(using: str, sql: str) -> None:
    target = connections[using]
    if target.vendor == "postgresql":
        with target.cursor() as cursor:
            cursor.execute(sql)
