"""Our ASGI application as the bench's other websocket servers serve it (`ours-uvicorn`, `ours-hypercorn`,
`ours-granian`: see servers.py), with what `manage.py run` does around daphne before it serves.

`run` (server/management/commands/run.py) reads its flags into PARSEC_* variables (the bench gives those
variables directly), checks the configuration, prepares the blockstore, and sizes the event loop's default
executor for the database pool: protocol/db.py runs every ORM call with `sync_to_async(thread_sensitive=False)`,
i.e. in that executor, so with asyncio's default (min(32, cpus + 4) = 6 threads here) a candidate server would
queue its database calls where daphne does not. The database wait and the migration check are left out: the bench
migrated the database itself. Those steps run here in the ASGI lifespan startup, on the loop that then serves.
At shutdown the database pools are closed, as `run` does once daphne stops.

Not a deployment entry point: daphne (`manage.py run`) is the server; this module exists to measure the others.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from parsec_site.asgi import application as parsec_application  # sets DJANGO_SETTINGS_MODULE, sets Django up

from django.conf import settings
from django.db import connections

from parsec_site.config import check_supported
from protocol import loop_db
from server.management.commands.run import EXECUTOR_MARGIN


def _start() -> None:
    """`run`'s checks and blockstore preparation (blocking: run in a thread)."""
    from blocks.stores.factory import prepare_blockstore

    check_supported(settings.PARSEC)
    prepare_blockstore()
    connections.close_all()


def _stop() -> None:
    for connection in connections.all(initialized_only=True):
        if getattr(connection, "pool", None) is not None:
            connection.close_pool()  # type: ignore[attr-defined]  # PostgreSQL's wrapper, as in run.py


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                loop = asyncio.get_running_loop()
                loop.set_default_executor(ThreadPoolExecutor(
                    max_workers=settings.PARSEC.db_max_connections + EXECUTOR_MARGIN, thread_name_prefix="parsec"))
                await loop.run_in_executor(None, _start)
                # As the `run` command does: the vlob hot path's own pool lives on the serving loop.
                loop_db.serve_from(loop)
            except Exception as exc:  # the server reports it and does not start
                await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                return
            # In the server's log: the bench reader can see which loop served, and that startup ran.
            print(f"Parsec application ready on {type(loop).__module__}.{type(loop).__name__} "
                  f"(executor of {settings.PARSEC.db_max_connections + EXECUTOR_MARGIN} threads)", flush=True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await asyncio.get_running_loop().run_in_executor(None, _stop)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    else:
        await parsec_application(scope, receive, send)
