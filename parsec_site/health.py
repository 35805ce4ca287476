"""Health endpoints (ours, beyond the reference), for load balancers and orchestrators.

* `GET /health/live`: the process answers HTTP. Nothing else is probed: restarting the process
  would not fix a database outage.
* `GET /health/ready`: the database answers and has no unapplied migration, the blockstore answers,
  the channel layer (Redis with `--redis-url`) carries a message. 200 when all pass, else 503; the JSON
  body names each probe's outcome. Failures show the exception type only: messages can hold hosts
  or credentials.

Each probe is cheap and bounded by `PROBE_TIMEOUT`; the database is probed with a connection of its
own, outside the pool, so a probe never waits for the pool's 30 s checkout timeout nor takes a
connection from the commands.

When the database comes back (a probe failed since the last success) or restarted (its start time
changed), the connections idle in the pool died with it: the probe has the pool check them, which
replaces the dead ones, so that a 200 comes with a pool of live connections. (Commands and the
administration API survive dead connections anyway, protocol/db.py runs them again on another one;
other views, e.g. the admin console, would fail once per dead connection.)
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Awaitable, Callable

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse

from protocol.db import run_sync

logger = logging.getLogger("parsec.health")

PROBE_TIMEOUT = 5.0
DATABASE_CONNECT_TIMEOUT = 3


class ProbeFailed(Exception):
    """A probe's own verdict, with a message safe to show (no host, no credential)."""


async def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


async def ready(request: HttpRequest) -> JsonResponse:
    names = ("database", "migrations", "blockstore", "channel_layer")
    results = await asyncio.gather(*(_run_probe(name, PROBES[name]) for name in names))
    checks = dict(zip(names, results))
    healthy = all(check["status"] == "ok" for check in checks.values())
    return JsonResponse({"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503)


async def _run_probe(name: str, probe: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        await asyncio.wait_for(probe(), timeout=PROBE_TIMEOUT)
    except ProbeFailed as exc:
        outcome: dict[str, Any] = {"status": "error", "error": str(exc)}
    except TimeoutError:
        outcome = {"status": "error", "error": f"no answer within {PROBE_TIMEOUT:g}s"}
    except Exception as exc:
        logger.warning("Readiness probe %s failed: %s: %s", name, type(exc).__name__, exc)
        outcome = {"status": "error", "error": type(exc).__name__}
    else:
        outcome = {"status": "ok"}
    outcome["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    return outcome


# --- database ------------------------------------------------------------------------------------


def _database_answers() -> Any:
    """The PostgreSQL server's start time (None on SQLite), through a connection outside the pool."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor == "postgresql":
        params = connection.get_connection_params()
        with connection.Database.connect(**params, connect_timeout=DATABASE_CONNECT_TIMEOUT) as raw:  # type: ignore[attr-defined]  # the backend's DB-API module (psycopg), not in the stubs
            return raw.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return None


# What the database probe saw last: whether the pool may hold connections that died since.
_database_lost = False
_database_started: Any = None


def _probe_database() -> None:
    global _database_lost, _database_started
    try:
        started = _database_answers()
    except Exception:
        _database_lost = True
        raise
    if _database_lost or (_database_started is not None and started != _database_started):
        _check_pooled_connections()
    _database_lost, _database_started = False, started


def _check_pooled_connections() -> None:
    # Only a pool that some work already opened (as metrics.sample_db_pool reads it).
    pool = getattr(type(connections[DEFAULT_DB_ALIAS]), "_connection_pools", {}).get(DEFAULT_DB_ALIAS)
    if pool is not None:
        logger.info("The database is back: checking the pool's idle connections")
        pool.check()  # drops the broken ones and opens their replacements


async def probe_database() -> None:
    await run_sync(_probe_database)


# Migrations are never unapplied under a running server: once the plan is empty, it stays empty.
_migrations_checked = False


def _pending_migrations() -> int:
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


async def probe_migrations() -> None:
    global _migrations_checked
    if _migrations_checked:
        return
    # Without the database there is nothing to read; its own probe says why.
    await run_sync(_database_answers)
    pending = await run_sync(_pending_migrations)
    if pending:
        raise ProbeFailed(f"{pending} unapplied migration(s): run `manage.py migrate`")
    _migrations_checked = True


# --- blockstore ----------------------------------------------------------------------------------


def _blockstore_answers() -> None:
    from blocks.stores.base import check_blockstore
    from blocks.stores.config import LocalBlockstore
    from blocks.stores.factory import get_blockstore

    config = settings.PARSEC.blockstore_config
    for node in getattr(config, "nodes", (config,)):
        if isinstance(node, LocalBlockstore) and not (node.path.is_dir() and os.access(node.path, os.W_OK)):
            raise ProbeFailed("a LOCAL blockstore folder is missing or not writable")
    # S3 / Swift: HEAD of the bucket or container; the database store is the database probe's.
    check_blockstore(get_blockstore())


async def probe_blockstore() -> None:
    await run_sync(_blockstore_answers)


# --- channel layer -------------------------------------------------------------------------------


async def probe_channel_layer() -> None:
    """One message through the layer and back: with Redis, a write and a blocking read on the server."""
    layer = get_channel_layer()
    if layer is None:
        raise ProbeFailed("no channel layer configured")
    channel = await layer.new_channel("health")
    await layer.send(channel, {"type": "health.probe"})
    message = await layer.receive(channel)
    if message.get("type") != "health.probe":
        raise ProbeFailed("the channel layer returned another message")


PROBES: dict[str, Callable[[], Awaitable[None]]] = {
    "database": probe_database,
    "migrations": probe_migrations,
    "blockstore": probe_blockstore,
    "channel_layer": probe_channel_layer,
}
