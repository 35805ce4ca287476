"""Database statements are bounded: `--db-statement-timeout` on every pooled connection, and a
command abandoned by its client cancels the statement it is running (issue 11: a few long
`human_find` queries held the whole pool for minutes after their clients had left)."""
from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest
from django.conf import settings
from django.db import connection

from protocol.db import run_sync
from protocol.registry import Family, command
from tests.conftest import World, connect_as

pytestmark = pytest.mark.django_db(transaction=True)

# Set by the test command when its statement has ended, one way or another.
statement_ended = threading.Event()
statement_outcome: list[str] = []

LONG_STATEMENT = {
    "postgresql": "SELECT pg_sleep(30)",
    # ~30 s of counting on SQLite: the same "long statement", without a sleep function.
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000000) SELECT count(*) FROM c",
}


def _run_long_statement() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute(LONG_STATEMENT[connection.vendor])
        statement_outcome.append("finished")
    except Exception as exc:
        statement_outcome.append(type(exc).__name__)
        raise
    finally:
        statement_ended.set()


@command("test_long_statement", family=Family.AUTHENTICATED)
async def long_statement(session, req):
    await run_sync(_run_long_statement)
    return {"status": "ok"}


def _show_statement_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


@pytest.fixture
def postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("statement_timeout is a PostgreSQL setting (SQLite has no server to run away)")


async def test_pooled_connections_carry_the_statement_timeout(world: World, postgresql_only):
    assert settings.PARSEC.db_statement_timeout == 30
    assert await run_sync(_show_statement_timeout) == "30s"


def test_a_statement_past_the_timeout_is_cancelled(postgresql_only):
    import psycopg

    from parsec_site.settings import _database_settings

    database = _database_settings(dataclasses.replace(settings.PARSEC, db_statement_timeout=0.2))
    with psycopg.connect(
        dbname=database["NAME"], user=database["USER"], password=database.get("PASSWORD") or None,
        host=database["HOST"], port=database["PORT"], options=database["OPTIONS"]["options"],
    ) as raw:
        with pytest.raises(psycopg.errors.QueryCanceled):
            raw.execute("SELECT pg_sleep(3)")


def test_no_statement_timeout_when_zero():
    from parsec_site.settings import _database_settings

    if settings.PARSEC.db_kind != "POSTGRESQL":
        pytest.skip("only PostgreSQL databases have pool options")
    database = _database_settings(dataclasses.replace(settings.PARSEC, db_statement_timeout=0))
    assert "statement_timeout" not in database["OPTIONS"].get("options", "")


async def test_client_leaving_cancels_its_running_statement(world: World):
    statement_ended.clear()
    statement_outcome.clear()
    client = await connect_as(world.alice)
    await client.send({"cmd": "test_long_statement"})
    await asyncio.sleep(0.5)  # the statement is running
    assert not statement_ended.is_set()
    await client.close()
    # Cancelled within seconds, not after its 30 s.
    assert await asyncio.to_thread(statement_ended.wait, 10)
    assert statement_outcome != ["finished"]
    # The pool is whole: a fresh session runs commands.
    fresh = await connect_as(world.alice)
    assert await fresh.command("ping", ping="after") == {"status": "ok", "pong": "after"}
