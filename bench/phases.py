"""The timed phases. Each one opens its own connections, prepares what it needs (realms, vlobs,
blocks), runs a warm-up then a fixed measuring window with every connection looping its operation,
and returns a `Result` (ops/s, MB/s, latency percentiles, server and client CPU)."""
from __future__ import annotations

import asyncio
import math
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from websockets.exceptions import ConnectionClosed

from bench.client import Conn, OpTimeout, ProtocolError
from bench.setup import Org, block_create, gather_limited, random_bytes, realm_create, vlob_create
from tests.testkit import certs

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Options:
    connections: int = 8
    shared_connections: int = 32
    duration: float = 5.0
    warmup: float = 1.0
    blob_size: int = 1024
    block_size: int = 512 * 1024
    idle: int = 200
    fanout: tuple[int, ...] = (0, 2000, 5000)  # idle subscribed sessions of the fanout phase, in steps
    event_writers: int = 1
    size_connections: int = 1  # connections of the size_* phases (bench/sizes.py)
    profile_dir: str | None = None  # py-spy record of the server during each measuring window
    profile_idle: bool = False  # also sample threads that wait (wall-clock view instead of CPU view)
    round_index: int = 0


class SkipPhase(Exception):
    """The phase cannot run against this server (a setup command is missing...)."""


@dataclass
class Result:
    phase: str
    server: str
    ops: int = 0
    seconds: float = 0.0
    ops_per_s: float | None = None
    mb_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    errors: int = 0
    first_error: str | None = None
    server_cpu: float | None = None  # % of one core over the window
    db_cpu: float | None = None  # the PostgreSQL cluster's
    other_cpu: float | None = None  # everything else on the machine (other work competing for the cores)
    client_cpu: float | None = None
    extra: dict = field(default_factory=dict)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.skipped is None and self.ops > 0 and self.errors == 0


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    # nearest rank
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


# An operation performs one request/reply; it may return a latency (seconds) that replaces the
# measured wall time of the call (the handshake excludes its close, the event phase measures the
# event's arrival).
Operation = Callable[[], Awaitable[float | None]]


async def timed_loop(org: Org, phase: str, operations: list[Operation], options: Options,
                     bytes_per_op: int = 0) -> Result:
    loop_start = time.perf_counter()
    measure_start = loop_start + options.warmup
    measure_end = measure_start + options.duration
    latencies: list[float] = []
    result = Result(phase=phase, server=org.server.kind)
    cpu: dict[str, tuple[float, float, float | None, float]] = {}

    async def worker(operation: Operation) -> None:
        while True:
            started = time.perf_counter()
            if started >= measure_end:
                return
            try:
                latency = await operation()
            except ConnectionClosed as exc:
                result.errors += 1
                result.first_error = result.first_error or f"connection closed by the server: {exc}"
                return
            except OpTimeout as exc:
                result.errors += 1
                result.first_error = result.first_error or f"timeout: {exc}"
                return
            except (TimeoutError, ProtocolError, OSError) as exc:
                result.errors += 1
                result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
                if result.errors >= 50 and not latencies:
                    return  # nothing works: do not spin for the whole window
                continue
            ended = time.perf_counter()
            if measure_start <= ended <= measure_end:
                latencies.append(latency if latency is not None else ended - started)

    def snapshot() -> tuple[float, float, float | None, float]:
        times = os.times()
        return (org.server.cpu_seconds(), times.user + times.system, org.server.db_cpu_seconds(),
                machine_busy_seconds())

    async def monitor() -> None:
        await asyncio.sleep(max(0.0, measure_start - time.perf_counter()))
        cpu["start"] = snapshot()
        profiler = start_profiler(org, phase, options)
        if profiler is not None:
            profiler = await profiler
        await asyncio.sleep(max(0.0, measure_end - time.perf_counter()))
        cpu["end"] = snapshot()
        if profiler is not None:
            await profiler.wait()

    monitor_task = asyncio.create_task(monitor())
    await asyncio.gather(*(worker(operation) for operation in operations))
    await monitor_task
    window = options.duration
    latencies.sort()
    result.ops = len(latencies)
    result.seconds = window
    result.ops_per_s = len(latencies) / window
    if bytes_per_op:
        result.mb_per_s = len(latencies) * bytes_per_op / window / 1e6
    result.p50_ms = _ms(percentile(latencies, 0.50))
    result.p99_ms = _ms(percentile(latencies, 0.99))
    result.max_ms = _ms(latencies[-1] if latencies else None)
    if "end" in cpu:
        result.server_cpu = 100 * (cpu["end"][0] - cpu["start"][0]) / window
        result.client_cpu = 100 * (cpu["end"][1] - cpu["start"][1]) / window
        if cpu["start"][2] is not None and cpu["end"][2] is not None:
            result.db_cpu = 100 * (cpu["end"][2] - cpu["start"][2]) / window
        machine = 100 * (cpu["end"][3] - cpu["start"][3]) / window
        result.other_cpu = max(0.0, machine - result.server_cpu - result.client_cpu - (result.db_cpu or 0.0))
    return result


def machine_busy_seconds() -> float:
    """Non-idle CPU time of the whole machine (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def start_profiler(org: Org, phase: str, options: Options):
    """`py-spy record` of the server for the measuring window, as collapsed stacks (bench/flame.py
    summarizes them). By default only threads on CPU are sampled; with `profile_idle` waiting threads
    too (waits on the database, on locks and on the pool show up)."""
    if not options.profile_dir:
        return None
    os.makedirs(options.profile_dir, exist_ok=True)
    output = os.path.join(options.profile_dir, f"{phase}-{org.server.kind}-r{options.round_index + 1}.txt")
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    command = [py_spy, "record", "--pid", str(org.server.pid), "--duration", str(max(1, int(options.duration))),
               "--rate", "250", "--format", "raw", "--threads", "--nonblocking", "--output", output]
    if options.profile_idle:
        command.append("--idle")
    if org.server.profile_subprocesses:  # the Python that serves is a child of the started process
        command.append("--subprocesses")
    return asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL,
                                          stderr=asyncio.subprocess.DEVNULL)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


async def open_conns(org: Org, count: int, device=None) -> list[Conn]:
    return list(await gather_limited([org.connect(device) for _ in range(count)], limit=16))


async def close_conns(conns: list[Conn]) -> None:
    await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)


def _check(reply: dict, cmd: str) -> None:
    if reply.get("status") != "ok":
        raise ProtocolError(f"{cmd}: {reply!r}"[:400])


# --- phases -------------------------------------------------------------------------------------


async def phase_handshake(org: Org, options: Options) -> Result:
    async def operation() -> float:
        started = time.perf_counter()
        conn = await org.connect()
        latency = time.perf_counter() - started
        await conn.close()
        return latency

    return await timed_loop(org, "handshake", [operation] * options.connections, options)


async def _with_conns(org: Org, count: int, body) -> Result:
    conns = await open_conns(org, count)
    try:
        return await body(conns)
    finally:
        await close_conns(conns)


async def phase_ping(org: Org, options: Options) -> Result:
    async def body(conns: list[Conn]) -> Result:
        # One probe first: `ping` only exists in debug mode.
        reply = await conns[0].call("ping", ping="probe")
        if reply.get("status") != "ok":
            raise SkipPhase(f"ping: {reply!r} (is the server in debug mode?)")

        def make(conn: Conn) -> Operation:
            async def operation() -> None:
                _check(await conn.call("ping", ping="bench"), "ping")
            return operation

        return await timed_loop(org, "ping", [make(conn) for conn in conns], options)

    return await _with_conns(org, options.connections, body)


async def _vlob_create_phase(org: Org, options: Options, name: str, count: int, shared: bool) -> Result:
    async def body(conns: list[Conn]) -> Result:
        if shared:
            realm = await realm_create(conns[0])
            realms = [realm] * len(conns)
        else:
            realms = await asyncio.gather(*(realm_create(conn) for conn in conns))
        blob = random_bytes(options.blob_size)

        def make(conn: Conn, realm_id: uuid.UUID) -> Operation:
            async def operation() -> None:
                reply = await conn.call("vlob_create", realm_id=realm_id, encryption_revision=1,
                                        vlob_id=uuid.uuid4(), timestamp=certs.now(), blob=blob, sequester_blob=None)
                _check(reply, "vlob_create")
            return operation

        return await timed_loop(org, name, [make(c, r) for c, r in zip(conns, realms)], options)

    return await _with_conns(org, count, body)


async def phase_vlob_create(org: Org, options: Options) -> Result:
    """Each connection creates vlobs in its own realm."""
    return await _vlob_create_phase(org, options, "vlob_create", options.connections, shared=False)


async def phase_vlob_create_shared(org: Org, options: Options) -> Result:
    """`shared_connections` connections create vlobs in ONE realm (checkpoint contention)."""
    return await _vlob_create_phase(org, options, "vlob_create_shared", options.shared_connections, shared=True)


async def phase_vlob_read(org: Org, options: Options) -> Result:
    async def body(conns: list[Conn]) -> Result:
        blob = random_bytes(options.blob_size)
        realms = await asyncio.gather(*(realm_create(conn) for conn in conns))
        vlobs = await asyncio.gather(*(vlob_create(conn, realm, blob) for conn, realm in zip(conns, realms)))

        def make(conn: Conn, vlob_id: uuid.UUID) -> Operation:
            async def operation() -> None:
                reply = await conn.call("vlob_read", encryption_revision=1, vlob_id=vlob_id, version=None,
                                        timestamp=None)
                _check(reply, "vlob_read")
            return operation

        return await timed_loop(org, "vlob_read", [make(c, v) for c, v in zip(conns, vlobs)], options)

    return await _with_conns(org, options.connections, body)


async def _vlob_update_phase(org: Org, options: Options, name: str, count: int, shared: bool) -> Result:
    async def body(conns: list[Conn]) -> Result:
        blob = random_bytes(options.blob_size)
        if shared:
            realm = await realm_create(conns[0])
            realms = [realm] * len(conns)
        else:
            realms = await asyncio.gather(*(realm_create(conn) for conn in conns))
        vlobs = await gather_limited([vlob_create(c, r, blob) for c, r in zip(conns, realms)], limit=8)

        def make(conn: Conn, vlob_id: uuid.UUID) -> Operation:
            version = 1

            async def operation() -> None:
                nonlocal version
                reply = await conn.call("vlob_update", encryption_revision=1, vlob_id=vlob_id,
                                        timestamp=certs.now(), version=version + 1, blob=blob, sequester_blob=None)
                _check(reply, "vlob_update")
                version += 1
            return operation

        return await timed_loop(org, name, [make(c, v) for c, v in zip(conns, vlobs)], options)

    return await _with_conns(org, count, body)


async def phase_vlob_update(org: Org, options: Options) -> Result:
    """Each connection updates its own vlob in its own realm."""
    return await _vlob_update_phase(org, options, "vlob_update", options.connections, shared=False)


async def phase_vlob_update_shared(org: Org, options: Options) -> Result:
    """`shared_connections` connections update distinct vlobs of ONE realm."""
    return await _vlob_update_phase(org, options, "vlob_update_shared", options.shared_connections, shared=True)


async def phase_block_create(org: Org, options: Options) -> Result:
    async def body(conns: list[Conn]) -> Result:
        realms = await asyncio.gather(*(realm_create(conn) for conn in conns))
        block = random_bytes(options.block_size)

        def make(conn: Conn, realm_id: uuid.UUID) -> Operation:
            async def operation() -> None:
                reply = await conn.call("block_create", block_id=uuid.uuid4(), realm_id=realm_id, block=block)
                _check(reply, "block_create")
            return operation

        return await timed_loop(org, "block_create", [make(c, r) for c, r in zip(conns, realms)], options,
                                bytes_per_op=options.block_size)

    return await _with_conns(org, options.connections, body)


async def phase_block_read(org: Org, options: Options) -> Result:
    async def body(conns: list[Conn]) -> Result:
        realms = await asyncio.gather(*(realm_create(conn) for conn in conns))
        blocks = await asyncio.gather(*(block_create(c, r, random_bytes(options.block_size))
                                        for c, r in zip(conns, realms)))

        def make(conn: Conn, block_id: uuid.UUID) -> Operation:
            async def operation() -> None:
                reply = await conn.call("block_read", block_id=block_id)
                _check(reply, "block_read")
                if len(reply["block"]) != options.block_size:
                    raise ProtocolError(f"block_read: got {len(reply['block'])} bytes")
            return operation

        return await timed_loop(org, "block_read", [make(c, b) for c, b in zip(conns, blocks)], options,
                                bytes_per_op=options.block_size)

    return await _with_conns(org, options.connections, body)


async def phase_event(org: Org, options: Options) -> Result:
    """Writers (alice) update vlobs of the realm shared with bob, one update at a time each; bob's
    subscribed connection listens. Latency = vlob_update sent → matching `realm.vlobs_updated` received."""
    if org.shared_realm is None or org.bob is None:
        raise SkipPhase(f"event setup failed: {org.sharing_error}")
    listener = await org.connect(org.bob)
    writers = await open_conns(org, options.event_writers)
    return await event_latency(org, "event", listener, writers, org.shared_realm, options)


async def event_latency(org: Org, name: str, listener: Conn, writers: list[Conn], realm_id: uuid.UUID,
                        options: Options) -> Result:
    """The event phase's loop, for any listener and realm; closes the connections it is given."""
    loop = asyncio.get_running_loop()
    waiting: dict[tuple[uuid.UUID, int], asyncio.Future] = {}
    blob = random_bytes(options.blob_size)
    listen_task = None
    try:
        await listener.call_ok("events_subscribe")
        vlobs = [await vlob_create(writer, realm_id, blob) for writer in writers]

        async def listen() -> None:
            while True:
                await listener.send("events_listen", wait=True)
                reply = await listener.recv(timeout=None)
                arrived = time.perf_counter()
                if reply.get("event") != "realm.vlobs_updated":
                    continue
                future = waiting.pop((reply["src_id"], reply["src_version"]), None)
                if future is not None and not future.done():
                    future.set_result(arrived)

        listen_task = asyncio.create_task(listen())
        await asyncio.sleep(0.2)  # the creation events drain; the listener is waiting

        def make(writer: Conn, vlob_id: uuid.UUID) -> Operation:
            version = 1

            async def operation() -> float:
                nonlocal version
                future = loop.create_future()
                waiting[(vlob_id, version + 1)] = future
                started = time.perf_counter()
                reply = await writer.call("vlob_update", encryption_revision=1, vlob_id=vlob_id,
                                          timestamp=certs.now(), version=version + 1, blob=blob, sequester_blob=None)
                replied = time.perf_counter()
                _check(reply, "vlob_update")
                version += 1
                try:
                    arrived = await asyncio.wait_for(future, timeout=5)
                except TimeoutError:
                    raise ProtocolError("no realm.vlobs_updated event within 5 s") from None
                if started >= measured_from:
                    after_reply.append(arrived - replied)
                return arrived - started
            return operation

        after_reply: list[float] = []
        measured_from = time.perf_counter() + options.warmup
        result = await timed_loop(org, name, [make(w, v) for w, v in zip(writers, vlobs)], options)
        # How much of the latency is the delivery itself (negative: the event beat the reply).
        after_reply.sort()
        result.extra = {"after_reply_p50_ms": _ms(percentile(after_reply, 0.5)),
                        "after_reply_p99_ms": _ms(percentile(after_reply, 0.99))}
        return result
    finally:
        if listen_task is not None:
            listen_task.cancel()
            await asyncio.gather(listen_task, return_exceptions=True)
        await close_conns([listener, *writers])


async def phase_idle(org: Org, options: Options) -> Result:
    """Open N authenticated connections and leave them idle: server RSS growth per connection."""
    server = org.server
    # A fresh process (same database): the heap left by the previous phases would hide the growth.
    # Synchronous on purpose: the server is forked from the main thread, whose death it follows
    # (PR_SET_PDEATHSIG); nothing else runs meanwhile.
    server.restart()
    await close_conns(await open_conns(org, 10))  # one-time costs of the first connections
    await asyncio.sleep(0.5)
    rss_before = server.rss_kib()
    latencies: list[float] = []

    async def open_one() -> Conn:
        started = time.perf_counter()
        conn = await org.connect()
        latencies.append(time.perf_counter() - started)
        return conn

    started = time.perf_counter()
    conns = list(await gather_limited([open_one() for _ in range(options.idle)], limit=options.connections))
    opened_in = time.perf_counter() - started
    try:
        await asyncio.sleep(2.0)
        rss_after = server.rss_kib()
    finally:
        await close_conns(conns)
    await asyncio.sleep(1.0)
    rss_closed = server.rss_kib()
    latencies.sort()
    result = Result(phase="idle", server=server.kind, ops=len(conns), seconds=opened_in,
                    ops_per_s=len(conns) / opened_in, p50_ms=_ms(percentile(latencies, 0.5)),
                    p99_ms=_ms(percentile(latencies, 0.99)), max_ms=_ms(latencies[-1]))
    result.extra = {
        "kib_per_conn": (rss_after - rss_before) / len(conns),
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_after_close_kib": rss_closed,
    }
    return result


async def phase_fanout(org: Org, options: Options) -> Result:
    """One writer (alice, `vlob_create` in her own realm, one request at a time) while N sessions of
    another user of the organization (bob) sit subscribed, each with an `events_listen` waiting, as
    idle official clients do. Measured for each N of `--fanout` in turn (sessions are added between
    steps): the writer's latency should not grow with sessions that do not hold its realm."""
    if org.bob is None:
        raise SkipPhase(f"fanout needs a second user: {org.sharing_error}")
    writer = await org.connect()
    realm_id = await realm_create(writer)
    blob = random_bytes(options.blob_size)
    idle: list[Conn] = []

    async def open_idle() -> Conn:
        conn = await org.connect(org.bob)
        await conn.call_ok("events_subscribe")
        await conn.send("events_listen", wait=True)  # never answered: nothing happens in bob's realms
        return conn

    async def operation() -> None:
        reply = await writer.call("vlob_create", realm_id=realm_id, encryption_revision=1, vlob_id=uuid.uuid4(),
                                  timestamp=certs.now(), blob=blob, sequester_blob=None)
        _check(reply, "vlob_create")

    steps: dict[int, dict] = {}
    result = None
    try:
        for count in sorted(options.fanout):
            opened = time.perf_counter()
            idle += await gather_limited([open_idle() for _ in range(count - len(idle))], limit=16)
            opened = time.perf_counter() - opened
            await asyncio.sleep(1.0)
            result = await timed_loop(org, "fanout", [operation], options)
            steps[count] = {"p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "ops_per_s": result.ops_per_s,
                            "server_cpu": result.server_cpu, "errors": result.errors, "opened_s": opened}
            if result.errors:
                break
    finally:
        await close_conns([writer, *idle])
    assert result is not None
    result.extra = {"steps": steps}
    return result


PHASES: dict[str, Callable[[Org, Options], Awaitable[Result]]] = {
    "handshake": phase_handshake,
    "ping": phase_ping,
    "vlob_create": phase_vlob_create,
    "vlob_read": phase_vlob_read,
    "vlob_update": phase_vlob_update,
    "block_create": phase_block_create,
    "block_read": phase_block_read,
    "vlob_create_shared": phase_vlob_create_shared,
    "vlob_update_shared": phase_vlob_update_shared,
    "event": phase_event,
    "idle": phase_idle,
    "fanout": phase_fanout,
}
# Not in a default run: thousands of sessions take minutes to open (and the reference far longer).
DEFAULT_PHASES = [name for name in PHASES if name != "fanout"]
