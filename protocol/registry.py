"""The command registry: one dispatch table per session family, filled by each app's `commands.py`."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Awaitable, Callable

from protocol.types import FieldType


class Family(StrEnum):
    ANONYMOUS = "anonymous"
    INVITED = "invited"
    AUTHENTICATED = "authenticated"
    # The two sides of the API v1 websocket handshake still used by the 2.0-2.5 clients.
    APIV1_ANONYMOUS = "apiv1_anonymous"
    APIV1_ADMINISTRATION = "apiv1_administration"


# A handler returns the reply as a map, or already encoded (bytes).
Handler = Callable[[Any, dict[str, Any]], Awaitable[dict[str, Any] | bytes]]

logger = logging.getLogger("parsec.protocol")

# The commands whose reply schema has `timeout`, which the official client takes as "try again later"
# (it retries the upload or the read at its next sync): what they answer when the database is out of
# reach. The schema of every other command has no such status, and an unknown one would surface to the
# user as an error: for those the connection is closed instead (1013), which the client takes as the
# server being offline, reconnecting and retrying.
TIMEOUT_REPLY_COMMANDS = frozenset({"vlob_create", "vlob_update", "block_create", "block_read"})


class DatabaseUnavailable(Exception):
    """A command could not run because the database is out of reach, and has no status to say so."""


def _outage_aware(name: str, handler: Handler) -> Handler:
    from protocol.db import database_unavailable

    @functools.wraps(handler)
    async def run(session: Any, req: dict[str, Any]) -> Any:
        try:
            return await handler(session, req)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            logger.warning("Database unavailable during %s: %s", name, exc)
            if name in TIMEOUT_REPLY_COMMANDS:
                return {"status": "timeout"}
            raise DatabaseUnavailable(str(exc)) from exc

    return run


@dataclass(frozen=True)
class CommandSpec:
    name: str
    family: Family
    request: dict[str, FieldType] | FieldType
    handler: Handler
    # Only `events_listen` and `invite_1_claimer_wait_peer`: a new request abandons them.
    cancellable: bool = False
    # `ping` exists only with --debug / --dev.
    debug_only: bool = False
    # Request-level checks run after field decoding (e.g. exactly-one-of rules); return an error text.
    validate: Callable[[dict[str, Any]], str | None] | None = field(default=None)


_REGISTRY: dict[Family, dict[str, CommandSpec]] = {family: {} for family in Family}


def command(
    name: str,
    *,
    family: Family | tuple[Family, ...],
    request: dict[str, FieldType] | FieldType | None = None,
    cancellable: bool = False,
    debug_only: bool = False,
) -> Callable[[Handler], Handler]:
    families = family if isinstance(family, tuple) else (family,)

    def register(handler: Handler) -> Handler:
        for fam in families:
            if name in _REGISTRY[fam]:
                raise RuntimeError(f"command {name} registered twice for {fam}")
            _REGISTRY[fam][name] = CommandSpec(
                name=name,
                family=fam,
                request=request or {},
                handler=_outage_aware(name, handler),
                cancellable=cancellable,
                debug_only=debug_only,
            )
        return handler

    return register


def lookup(family: Family, name: Any, *, debug: bool) -> CommandSpec | None:
    if not isinstance(name, str):
        return None
    spec = _REGISTRY[family].get(name)
    if spec is None or (spec.debug_only and not debug):
        return None
    return spec


def registered_commands(family: Family) -> dict[str, CommandSpec]:
    return dict(_REGISTRY[family])
