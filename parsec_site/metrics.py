"""Prometheus metrics (ours, beyond the reference): `/metrics` behind `--metrics-token`, or `--metrics-port`.

Label values come from closed sets (command names of the registry, reply statuses, URL patterns), never
from organization ids or paths, so the number of series stays small.

With `--workers N` every server process writes its values to files in the folder named by
`PROMETHEUS_MULTIPROC_DIR` (set by the supervisor before the workers start: prometheus_client reads it
when it is imported) and a scrape adds up the files of every process.
"""
from __future__ import annotations

import hmac
import os
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Protocol commands take from a millisecond to tens of seconds (blocks on a slow store, `events_listen`).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

COMMANDS = Counter(
    "parsec_commands", "Protocol commands answered, by family, command and reply status",
    ["family", "command", "status"],
)
COMMAND_DURATION = Histogram(
    "parsec_command_duration_seconds", "Time to answer a protocol command", ["family", "command"],
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter("parsec_http_requests", "HTTP requests answered", ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "parsec_http_request_duration_seconds", "Time to answer an HTTP request", ["route"], buckets=LATENCY_BUCKETS
)
WEBSOCKET_SESSIONS = Gauge(
    "parsec_websocket_sessions", "Open websocket sessions past their handshake, by kind", ["kind"],
    multiprocess_mode="livesum",
)
HANDSHAKE_FAILURES = Counter("parsec_handshake_failures", "Refused websocket handshakes, by result", ["result"])
CONNECTIONS_CLOSED_BY_LIMIT = Counter(
    "parsec_connections_closed_by_limit",
    "Connections closed or refused by a bound: websockets closed, HTTP requests answered 503 (server_full, organization_full, too_many_queued, database_unavailable)",
    ["reason"],
)
EVENTS_SENT = Counter("parsec_events_sent", "Events delivered to clients (`events_listen` replies with an event)")
BLOCKSTORE_OPERATIONS = Counter(
    "parsec_blockstore_operations", "Blockstore reads and writes of block commands, by outcome",
    ["operation", "outcome"],
)
DB_POOL_CONNECTIONS = Gauge(
    "parsec_db_pool_connections", "PostgreSQL pool connections: open (`size`), idle (`available`), `max`",
    ["state"], multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "parsec_db_pool_requests_waiting", "Requests waiting for a PostgreSQL pool connection",
    multiprocess_mode="livesum",
)

# The reply `timeout` of the block commands is the blockstore failing (docs/configuration.md#blockstore).
BLOCK_COMMANDS = {"block_create": "write", "block_read": "read"}
BLOCKSTORE_OUTCOMES = {"ok": "ok", "timeout": "error"}


def record_command(*, family: str, command: str, status: str, duration: float) -> None:
    COMMANDS.labels(family, command, status).inc()
    COMMAND_DURATION.labels(family, command).observe(duration)
    operation = BLOCK_COMMANDS.get(command)
    outcome = BLOCKSTORE_OUTCOMES.get(status)
    if operation is not None and outcome is not None:
        BLOCKSTORE_OPERATIONS.labels(operation, outcome).inc()


def record_http_request(*, method: str, route: str, status: int, duration: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(route).observe(duration)


def sample_db_pool() -> None:
    """Copy this process's pool statistics into the gauges (at scrape time, and periodically with workers)."""
    connection = connections[DEFAULT_DB_ALIAS]
    # The pool is shared by the threads of the process; read it only if some work already opened it.
    pool = getattr(type(connection), "_connection_pools", {}).get(DEFAULT_DB_ALIAS)
    if pool is None:
        return
    stats = pool.get_stats()
    DB_POOL_CONNECTIONS.labels("size").set(stats.get("pool_size", 0))
    DB_POOL_CONNECTIONS.labels("available").set(stats.get("pool_available", 0))
    DB_POOL_CONNECTIONS.labels("max").set(stats.get("pool_max", pool.max_size))
    DB_POOL_WAITING.set(stats.get("requests_waiting", 0))


def multiprocess_dir() -> str | None:
    # Read by prometheus_client itself at import; the `--workers` supervisor sets it for its workers.
    return os.environ.get(MULTIPROC_ENV) or None


def scrape_registry(folder: str | None = None) -> Any:
    """What a scrape reads: this process, or the files of every worker."""
    folder = folder or multiprocess_dir()
    if folder is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    return registry


def render() -> bytes:
    sample_db_pool()
    return generate_latest(scrape_registry())


def _token_matches(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """`GET /metrics`: 404 unless `--metrics-token` is set, 401 without that bearer token."""
    token = getattr(settings.PARSEC, "metrics_token", None)
    if not token:
        return HttpResponse("Metrics are not enabled on this port", status=404, content_type="text/plain")
    if not _token_matches(request, token):
        response = HttpResponse("Bearer token required", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)


def start_metrics_server(host: str, port: int, multiproc_dir: str | None = None) -> Any:
    """`--metrics-port`: a separate plain-HTTP listener (a thread) answering any path with the metrics.

    Served by the `--workers` supervisor from the workers' files, else by the server process itself.
    """
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=_SamplingRegistry(multiproc_dir))
    return server


class _SamplingRegistry:
    """prometheus_client's HTTP server calls `collect()`; sample the pool first, then read the registry."""

    def __init__(self, multiproc_dir: str | None) -> None:
        self.multiproc_dir = multiproc_dir

    def collect(self):
        if self.multiproc_dir is None:
            sample_db_pool()
        yield from scrape_registry(self.multiproc_dir).collect()

    def restricted_registry(self, names: list[str]) -> Any:
        # `?name[]=...` filters: not worth it for a few dozen series.
        return self

