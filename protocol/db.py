"""Running synchronous ORM work from the event loop without serialising every connection."""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

T = TypeVar("T")


def _call_and_release(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        # Give the connection back to the pool (PostgreSQL) so worker threads never hoard it.
        connections.close_all()


async def run_sync(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    # thread_sensitive=False: each call gets a worker thread, so database work of different
    # sessions runs in parallel instead of queueing on Django's single "sync" thread.
    return await sync_to_async(_call_and_release, thread_sensitive=False)(fn, args, kwargs)
