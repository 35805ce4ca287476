"""The live websocket sessions of this process, for a graceful shutdown.

On SIGTERM the server stops accepting connections, then `drain` lets each session's running command
reply (bounded by `--shutdown-grace`), closes the sessions with 1001 "going away", and only then
stops the event loop, which cancels whatever is left.
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

logger = logging.getLogger("parsec.server")

# Consumers add themselves when they accept a connection; gone ones drop out on their own.
CONNECTIONS: "weakref.WeakSet[Any]" = weakref.WeakSet()


async def drain(grace: float) -> int:
    """Close every session once its running command has replied; returns how many were still open."""
    sessions = [consumer for consumer in list(CONNECTIONS) if consumer.phase != "closed"]
    if not sessions:
        return 0
    tasks = [asyncio.ensure_future(consumer.drain()) for consumer in sessions]
    done, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        task.cancel()
    if pending:
        logger.warning("%d session(s) still busy after %ss: their commands are cancelled", len(pending), grace)
    return len(sessions)
