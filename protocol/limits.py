"""Bounds on what connections may hold: how many at once (per process, per organization), and how fast
one connection — or, on the HTTP routes where every request is its own connection, one device or
invitation — may send commands. The numbers are options (docs/configuration.md).

Counts are per server process: with `--workers N` the server as a whole holds up to N times them.
"""
from __future__ import annotations

import time
from collections import Counter

# RFC 6455 close codes (IANA registry): 1013 "try again later" — the client's reconnection is the
# right reaction to a full server; 1008 "policy violation" for a client that breaks the protocol's pace.
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_POLICY_VIOLATION = 1008
SERVER_FULL = "Server at its connection limit, try again later"
ORGANIZATION_FULL = "Organization at its connection limit, try again later"
DATABASE_UNAVAILABLE = "Database unavailable, try again later"
TOO_MANY_QUEUED = "Too many requests sent without waiting for their replies"

# The protocol is strict request/reply: the official client sends the next request after the reply
# (or, once, to abandon a waiting `events_listen`). Frames queued beyond this are an abuse of memory.
MAX_QUEUED_REQUESTS = 64

_open_connections = 0
_organization_sessions: Counter[int] = Counter()


class ConnectionSlot:
    """One connection's share of the counts, given back once whatever happens (idempotent release)."""

    def __init__(self) -> None:
        self.open = False
        self.organization_pk: int | None = None

    def acquire(self, maximum: int) -> bool:
        global _open_connections
        if _open_connections >= maximum:
            return False
        _open_connections += 1
        self.open = True
        return True

    def join_organization(self, organization_pk: int, maximum: int) -> bool:
        if _organization_sessions[organization_pk] >= maximum:
            return False
        _organization_sessions[organization_pk] += 1
        self.organization_pk = organization_pk
        return True

    def release(self) -> None:
        global _open_connections
        if self.organization_pk is not None:
            _organization_sessions[self.organization_pk] -= 1
            if _organization_sessions[self.organization_pk] <= 0:
                del _organization_sessions[self.organization_pk]
            self.organization_pk = None
        if self.open:
            _open_connections -= 1
            self.open = False


def open_connections() -> int:
    return _open_connections


def organization_sessions(organization_pk: int) -> int:
    return _organization_sessions[organization_pk]


class CommandRate:
    """Token bucket: `per_second` commands a second, in bursts of as many. `delay()` takes one token
    and says how long the command must wait for it (0 within the rate): over the rate, commands are
    slowed down to it rather than refused, so a client that merely bursts never sees an error."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self.tokens = per_second
        self.updated = time.monotonic()

    def delay(self) -> float:
        now = time.monotonic()
        self.tokens = min(self.per_second, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.per_second


# The HTTP routes' rate is per client (device or invitation), since each request is a new connection. At most
# this many buckets are kept; past it the full ones (idle for a second or more) are forgotten first.
MAX_HTTP_RATE_BUCKETS = 10_000
_http_rates: dict[tuple[str, int], CommandRate] = {}


def http_command_delay(client: tuple[str, int], per_second: float) -> float:
    """How long an HTTP request of `client` (("device", pk) or ("invitation", pk)) waits for its turn: 0 within
    `--max-commands-per-second`, like a websocket command."""
    rate = _http_rates.get(client)
    if rate is None:
        if len(_http_rates) >= MAX_HTTP_RATE_BUCKETS:
            _forget_idle_http_rates()
        rate = _http_rates[client] = CommandRate(per_second)
    return rate.delay()


def _forget_idle_http_rates() -> None:
    now = time.monotonic()
    for client, rate in list(_http_rates.items()):
        if rate.tokens + (now - rate.updated) * rate.per_second >= rate.per_second:
            del _http_rates[client]  # back to a full bucket: forgetting it changes nothing
    while len(_http_rates) >= MAX_HTTP_RATE_BUCKETS:  # all busy: the oldest go
        del _http_rates[next(iter(_http_rates))]
