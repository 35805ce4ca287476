"""Which database failures count as "the database is out of reach" (protocol/db.py), and what the
command registry makes of them. Pure unit tests: the real outage is tests/ops/test_postgres_restart.py."""
from __future__ import annotations

import sqlite3

import psycopg
import psycopg.errors
import pytest
from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from psycopg_pool import PoolTimeout

from protocol.db import database_unavailable
from protocol.registry import DatabaseUnavailable, _outage_aware


def wrapped(django_error: type[Exception], cause: Exception) -> Exception:
    """As Django raises them: its own class, the driver's exception as the cause."""
    error = django_error(str(cause))
    error.__cause__ = cause
    return error


@pytest.mark.parametrize("cause", [
    psycopg.OperationalError("connection refused"),  # no SQLSTATE: the server is not there
    PoolTimeout("couldn't get a connection after 30.00 sec"),
    psycopg.errors.AdminShutdown(),  # 57P01: pg_ctl stop -m fast
    psycopg.errors.CannotConnectNow(),  # 57P03: starting up
    psycopg.errors.ConnectionFailure(),  # class 08
], ids=lambda cause: type(cause).__name__)
def test_out_of_reach(cause):
    assert database_unavailable(wrapped(OperationalError, cause))


def test_connection_closed_under_us():
    assert database_unavailable(wrapped(InterfaceError, psycopg.InterfaceError("the connection is closed")))


@pytest.mark.parametrize("error", [
    wrapped(OperationalError, psycopg.errors.QueryCanceled()),  # a statement timeout: the request's doing
    wrapped(OperationalError, psycopg.errors.DeadlockDetected()),
    wrapped(IntegrityError, psycopg.errors.UniqueViolation()),
    wrapped(DataError, psycopg.errors.StringDataRightTruncation()),
    wrapped(OperationalError, sqlite3.OperationalError("database is locked")),  # busy, not absent
    RuntimeError("a bug"),
], ids=lambda error: type(error.__cause__ or error).__name__)
def test_not_an_outage(error):
    assert not database_unavailable(error)


async def fails_with(error: Exception):
    async def handler(session, req):
        raise error
    return handler


async def test_commands_with_a_timeout_status_answer_it():
    handler = _outage_aware("vlob_create", await fails_with(wrapped(OperationalError, PoolTimeout("t"))))
    assert await handler(None, {}) == {"status": "timeout"}


async def test_other_commands_raise_for_the_consumer_to_close():
    handler = _outage_aware("realm_status", await fails_with(wrapped(OperationalError, PoolTimeout("t"))))
    with pytest.raises(DatabaseUnavailable):
        await handler(None, {})


async def test_other_errors_go_through_unchanged():
    error = RuntimeError("a bug")
    handler = _outage_aware("vlob_create", await fails_with(error))
    with pytest.raises(RuntimeError) as raised:
        await handler(None, {})
    assert raised.value is error
