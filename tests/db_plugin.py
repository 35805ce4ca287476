"""pytest plugin choosing the tests' database before Django reads its settings.

`--db=postgresql` (default) starts a throwaway cluster; `--db=sqlite` uses a SQLite file.
"""
from __future__ import annotations

import os
import tempfile

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", default="postgresql", choices=["postgresql", "sqlite"], help="metadata database of the tests")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]):
    # Runs around pytest-django's own hook, which imports the settings.
    kind = early_config.known_args_namespace.db
    if kind == "postgresql":
        from tests.pgcluster import start_cluster

        cluster = start_cluster()
        os.environ["PARSEC_DB"] = cluster.url
        os.environ["PARSEC_TEST_PG_PORT"] = str(cluster.port)
        os.environ["PARSEC_TEST_PG_SOCKET_DIR"] = str(cluster.data_dir.parent)
    else:
        os.environ["PARSEC_DB"] = f"sqlite:///{tempfile.mkdtemp(prefix='parsec-sqlite-')}/parsec.sqlite3"
    os.environ.setdefault("PARSEC_ADMINISTRATION_TOKEN", "test-admin-token")
    os.environ.setdefault("PARSEC_BACKEND_ADDR", "parsec://parsec.example.com:6777?no_ssl=true")
    os.environ.setdefault("DEBUG", "true")
    # Otherwise settings would generate one into ./var.
    os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key")
    return (yield)
