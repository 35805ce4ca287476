"""Hot-path statements are prepared once per PostgreSQL connection (protocol.db.Prepared): the
placeholders map to positional parameters, a connection prepares a statement only the first time,
and a prepared statement outlives the transaction that prepared it, even a rolled-back one."""
from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from protocol.db import Prepared, fetch_row

ADD = Prepared("test_add", "SELECT CAST(%(a)s AS integer) + CAST(%(b)s AS integer) + %(a)s, '100%%'")


def test_named_placeholders_become_positional_parameters():
    assert ADD.prepare_sql.startswith(f"PREPARE {ADD.name} AS SELECT CAST($1 AS integer) + CAST($2 AS integer) + $1, '100%'")
    assert ADD.execute_sql == f"EXECUTE {ADD.name}(%(a)s, %(b)s)"


def test_two_versions_of_a_statement_get_two_names():
    assert Prepared("same", "SELECT 1").name != Prepared("same", "SELECT 2").name


def test_positional_placeholders_are_refused():
    with pytest.raises(ValueError, match="only named parameters"):
        Prepared("positional", "SELECT %s")


@pytest.mark.django_db(transaction=True)
def test_same_result_as_the_plain_statement():
    assert fetch_row(ADD, {"a": 1, "b": 40}, (None, None)) == (42, "100%")


@pytest.mark.django_db(transaction=True)
def test_prepared_once_per_connection():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs the statement itself")
    statement = Prepared("test_once", "SELECT CAST(%(x)s AS integer) * 2")
    with transaction.atomic():  # one connection for the whole test
        with CaptureQueriesContext(connection) as queries:
            assert fetch_row(statement, {"x": 2}, (None,)) == (4,)
            assert fetch_row(statement, {"x": 3}, (None,)) == (6,)
    sent = [query["sql"] for query in queries.captured_queries]
    assert sent == [statement.prepare_sql, f"EXECUTE {statement.name}(2)", f"EXECUTE {statement.name}(3)"]


@pytest.mark.django_db(transaction=True)
def test_prepared_statement_outlives_a_rollback():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs the statement itself")
    statement = Prepared("test_rollback", "SELECT CAST(%(x)s AS integer) + 1")
    with transaction.atomic():
        assert fetch_row(statement, {"x": 1}, (None,)) == (2,)
        raw = connection.connection
        transaction.set_rollback(True)
    with transaction.atomic():
        assert connection.connection is raw  # the pool handed the same connection back
        with CaptureQueriesContext(connection) as queries:
            assert fetch_row(statement, {"x": 2}, (None,)) == (3,)
    assert [query["sql"] for query in queries.captured_queries] == [f"EXECUTE {statement.name}(2)"]
