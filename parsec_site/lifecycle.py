"""The live websocket sessions of this process, for a graceful shutdown.

On SIGTERM the server stops accepting connections, then `drain` lets each session's running command
reply (bounded by `--shutdown-grace`), closes the sessions with 1001 "going away", and only then
stops the event loop, which cancels whatever is left.

A command that only waits for someone else has nothing of ours to finish, and what it waits for may
never come: a waiting `events_listen`, and an invitation step that has posted its half of the exchange
and waits for the peer's. Those are abandoned at once, as when the client leaves (the conduit keeps the
posted half; the client reconnects and carries on or starts the exchange again). A command doing work
(a database transaction, a block upload, an e-mail) is let finish, up to the grace; a session still
busy then is closed with 1001 all the same, its command cancelled.
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

logger = logging.getLogger("parsec.server")

# Consumers add themselves when they accept a connection; gone ones drop out on their own.
CONNECTIONS: weakref.WeakSet[Any] = weakref.WeakSet()

# How often a draining session looks whether its command has come to only wait (for a peer...).
DRAIN_POLL = 0.05


def nothing_to_finish(consumer: Any) -> bool:
    """The running command only waits for someone else: a cancellable one (`events_listen`), or an
    invitation step waiting for its peer's half of the exchange (invites.conduit keeps the step's
    wake-up event in the connection's `state.waiters` from the moment its own half is committed
    until the step ends)."""
    spec = consumer.current_spec
    return (spec is not None and spec.cancellable) or bool(consumer.state.waiters)


async def drain(grace: float) -> int:
    """Close every session once its running command has replied; returns how many were open."""
    sessions = [consumer for consumer in list(CONNECTIONS) if consumer.phase != "closed"]
    if not sessions:
        return 0
    tasks = {asyncio.ensure_future(_drain_session(consumer)): consumer for consumer in sessions}
    _done, pending = await asyncio.wait(tasks, timeout=grace)
    if pending:
        logger.warning("%d session(s) still busy after %ss: their commands are cancelled", len(pending), grace)
        for task in pending:
            task.cancel()
        await asyncio.wait(pending)
        # Closed with 1001 all the same: the client knows to reconnect instead of seeing a cut.
        await asyncio.gather(*(tasks[task].close_session(code=1001) for task in pending), return_exceptions=True)
    return len(sessions)


async def wait_closed(timeout: float) -> None:
    """Until every session has ended (its client answered the close, or left), for at most `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while any(consumer.phase != "closed" for consumer in list(CONNECTIONS)):
        if asyncio.get_running_loop().time() >= deadline:
            return
        await asyncio.sleep(DRAIN_POLL)


async def _drain_session(consumer: Any) -> None:
    draining = asyncio.ensure_future(consumer.drain())
    try:
        # Looked at again and again: a command may come to only wait after some work of its own.
        while not (await asyncio.wait([draining], timeout=DRAIN_POLL))[0]:
            command = consumer.current_command
            if command is not None and not command.done() and nothing_to_finish(consumer):
                command.cancel()  # as when the client leaves; consumer.drain then closes with 1001
        await draining
    finally:
        draining.cancel()
