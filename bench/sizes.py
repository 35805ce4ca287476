"""The "flat with size" phases (issue 15): the same operations against a small and a large organization of one
server, both written by bench/largeorg.py, one measured window each, and the large/small latency ratio against
the 1.5x target. See bench/README.md#flat-with-size."""
from __future__ import annotations

import itertools
import json
import secrets
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.client import Conn, ProtocolError
from bench.largeorg import LoadedOrg, Shape, make_plan
from bench.largeorg_reference import load_reference
from bench.phases import (
    Operation,
    Options,
    Result,
    SkipPhase,
    _check,
    close_conns,
    event_latency,
    timed_loop,
)
from bench.servers import OUR_PYTHON, REPO, Server, _clean_env
from bench.setup import Org, gather_limited, random_bytes
from protocol.certificates import UserCertificate
from tests.testkit import certs

SIZE_TARGET = 1.5  # each latency of the large organization at most this times the small one's
SMALL = Shape(users=100, vlobs=1_000, member_realms=10)
LARGE = Shape()  # 10,000 users, 100,000 vlobs, 1,000 realms: the sizes
# A full first page on both sizes: the reply is the same size, only the organization behind it grows.
HUMAN_FIND_PER_PAGE = 100
# vlob_poll_changes asks for the changes since this many checkpoints back: a client that was in sync a moment ago.
POLL_BACK = 10
LOAD_TIMEOUT = 3600


def parse_shape(text: str, default: Shape) -> Shape:
    """`users=10000,vlobs=100000,realms=1000`: any subset, the rest from `default`."""
    names = {"users": "users", "vlobs": "vlobs", "realms": "member_realms"}
    values = {"users": default.users, "vlobs": default.vlobs, "member_realms": default.member_realms,
              "blob_size": default.blob_size}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        if key.strip() not in names or not value.strip().isdigit():
            raise ValueError(f"{item!r}: expected users=N, vlobs=N or realms=N")
        values[names[key.strip()]] = int(value)
    return Shape(**values)


def load_sized(server: Server, shapes: dict[str, Shape], workdir: Path, log=print) -> dict[str, LoadedOrg]:
    """Both organizations, loaded into the server's database. Ours: by `python -m bench.largeorg`, in its own
    process (it sets Django up on that database). The reference: by bench/largeorg_reference.py, from here."""
    loaded = {}
    for size, shape in shapes.items():
        organization_id = f"{size.capitalize()}{secrets.token_hex(3)}"
        started = time.perf_counter()
        if server.kind == "reference":
            plan = make_plan(organization_id, shape)
            load_reference(plan, server.db_url)
            loaded[size] = LoadedOrg.of(plan)
        else:
            loaded[size] = _load_ours(server, size, shape, organization_id, workdir)
        log(f"{server.kind}: {size} organization {organization_id} ({shape.users} users, {shape.vlobs} vlobs, "
            f"member of {shape.member_realms} realms) loaded in {time.perf_counter() - started:.0f} s")
    return loaded


def _load_ours(server: Server, size: str, shape: Shape, organization_id: str, workdir: Path) -> LoadedOrg:
    handles = workdir / f"largeorg-{server.kind}-{size}.json"
    output = workdir / f"largeorg-{server.kind}-{size}.log"
    command = [str(OUR_PYTHON), "-m", "bench.largeorg", "--db", server.db_url, "--organization", organization_id,
               "--users", str(shape.users), "--vlobs", str(shape.vlobs), "--member-realms", str(shape.member_realms),
               "--blob-size", str(shape.blob_size), "--handles", str(handles)]
    with open(output, "wb") as out:
        done = subprocess.run(command, check=False, cwd=REPO, env=_clean_env(), stdout=out,
                              stderr=subprocess.STDOUT, timeout=LOAD_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"loading the {size} organization failed (exit {done.returncode}), see {output}:\n"
                           + "\n".join(output.read_text(errors="replace").splitlines()[-15:]))
    return LoadedOrg.from_json(json.loads(handles.read_text()))


async def check_loaded(ws_url: str, loaded: LoadedOrg) -> None:
    """A sample of the loaded organization read back through the server's own protocol (raises ProtocolError):
    the loaded rows must serve the commands as their own rows do. tests/bench does it thoroughly for ours; this
    is what checks the reference's loader."""
    def expect(condition: bool, what: str) -> None:
        if not condition:
            raise ProtocolError(f"loaded organization {loaded.organization_id}: {what}")

    alice = await Conn.open(ws_url, loaded.alice)
    try:
        reply = await alice.call_ok("user_get", user_id=loaded.sample_user_id)
        certificate = UserCertificate.verify_and_load(reply["user_certificate"], loaded.alice.verify_key)
        expect(certificate.user_id == loaded.sample_user_id and len(reply["device_certificates"]) == 1,
               f"user_get {loaded.sample_user_id}: {certificate}")
        reply = await alice.call_ok("human_find", query=None, omit_revoked=True, omit_non_human=False, page=1,
                                    per_page=1)
        expect(reply["total"] == loaded.shape.users, f"human_find total {reply['total']}")
        reply = await alice.call_ok("vlob_read", encryption_revision=1, vlob_id=loaded.sample_vlobs[-1], version=None,
                                    timestamp=None)
        expect((reply["version"], reply["author"]) == (1, "alice@dev1"), f"vlob_read {reply['version']}")
        back = min(3, loaded.big_realm_checkpoint)
        reply = await alice.call_ok("vlob_poll_changes", realm_id=loaded.big_realm,
                                    last_checkpoint=loaded.big_realm_checkpoint - back)
        expect(reply["current_checkpoint"] == loaded.big_realm_checkpoint and len(reply["changes"]) == back,
               f"vlob_poll_changes {reply['current_checkpoint']} {len(reply['changes'])}")
    finally:
        await alice.close()
    member = await Conn.open(ws_url, loaded.member)
    try:
        await member.call_ok("events_subscribe")
        reply = await member.call_ok("realm_get_role_certificates", realm_id=loaded.member_realms[-1])
        expect(len(reply["certificates"]) == 2, f"{len(reply['certificates'])} role certificates")
        count = len(loaded.member_realms)
        reply = await member.call_ok("message_get", offset=count - 1)
        expect([m["count"] for m in reply["messages"]] == [count], "message_get")
    finally:
        await member.close()


# Versions of the vlobs the update phase writes, across rounds: (organization, vlob) -> latest version.
_versions: dict[tuple[str, uuid.UUID], int] = {}


def _brief(result: Result) -> dict:
    return {"ops_per_s": result.ops_per_s, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
            "max_ms": result.max_ms, "server_cpu": result.server_cpu, "db_cpu": result.db_cpu,
            "errors": result.errors}


async def _both_sizes(org: Org, options: Options, name: str,
                      run_one: Callable[[LoadedOrg], Awaitable[Result]]) -> Result:
    """One window on each organization, the order alternating with the rounds; the returned Result is the large
    organization's, with both in `extra`."""
    if not org.sized:
        raise SkipPhase(org.sized_error or "no loaded organization")
    order = ("small", "large") if options.round_index % 2 == 0 else ("large", "small")
    results = {size: await run_one(org.sized[size]) for size in order}
    large, small = results["large"], results["small"]
    if small.errors and not large.errors:
        large.errors, large.first_error = small.errors, f"small organization: {small.first_error}"
    if not small.ops:
        large.skipped = "no operation completed on the small organization"
    large.phase = name
    large.extra = {"small": _brief(small), "large": _brief(large)}
    return large


async def _conns(org: Org, device, count: int) -> list[Conn]:
    return list(await gather_limited([Conn.open(org.server.ws_url, device) for _ in range(count)], limit=16))


async def _looping(org: Org, options: Options, name: str, loaded: LoadedOrg,
                   make: Callable[[int, Conn], Operation]) -> Result:
    """`size_connections` connections of alice, each looping `make(index, conn)`."""
    conns = await _conns(org, loaded.alice, options.size_connections)
    try:
        return await timed_loop(org, name, [make(i, conn) for i, conn in enumerate(conns)], options)
    finally:
        await close_conns(conns)


async def phase_size_handshake(org: Org, options: Options) -> Result:
    """alice's authenticated handshake (open /ws, challenge, answer, result), then close, as `handshake`."""
    async def run_one(loaded: LoadedOrg) -> Result:
        async def operation() -> float:
            started = time.perf_counter()
            conn = await Conn.open(org.server.ws_url, loaded.alice)
            latency = time.perf_counter() - started
            await conn.close()
            return latency
        return await timed_loop(org, "size_handshake", [operation] * options.size_connections, options)
    return await _both_sizes(org, options, "size_handshake", run_one)


async def phase_size_user_get(org: Org, options: Options) -> Result:
    """`user_get` of a user in the middle of the organization (certified by alice: the reply is the same size)."""
    async def run_one(loaded: LoadedOrg) -> Result:
        def make(index: int, conn: Conn) -> Operation:
            async def operation() -> None:
                _check(await conn.call("user_get", user_id=loaded.sample_user_id), "user_get")
            return operation
        return await _looping(org, options, "size_user_get", loaded, make)
    return await _both_sizes(org, options, "size_user_get", run_one)


async def phase_size_human_find(org: Org, options: Options) -> Result:
    """`human_find` without a query, first page of HUMAN_FIND_PER_PAGE (the GUI's user list)."""
    async def run_one(loaded: LoadedOrg) -> Result:
        expected = min(HUMAN_FIND_PER_PAGE, loaded.shape.users)

        def make(index: int, conn: Conn) -> Operation:
            async def operation() -> None:
                reply = await conn.call("human_find", query=None, omit_revoked=True, omit_non_human=False, page=1,
                                        per_page=HUMAN_FIND_PER_PAGE)
                _check(reply, "human_find")
                if len(reply["results"]) != expected:
                    raise ProtocolError(f"human_find: {len(reply['results'])} results, expected {expected}")
            return operation
        return await _looping(org, options, "size_human_find", loaded, make)
    return await _both_sizes(org, options, "size_human_find", run_one)


async def phase_size_vlob_read(org: Org, options: Options) -> Result:
    """`vlob_read` (latest version) of the big realm's sample vlobs, in turn."""
    async def run_one(loaded: LoadedOrg) -> Result:
        def make(index: int, conn: Conn) -> Operation:
            vlobs = itertools.cycle(loaded.sample_vlobs[index:] + loaded.sample_vlobs[:index])

            async def operation() -> None:
                _check(await conn.call("vlob_read", encryption_revision=1, vlob_id=next(vlobs), version=None,
                                       timestamp=None), "vlob_read")
            return operation
        return await _looping(org, options, "size_vlob_read", loaded, make)
    return await _both_sizes(org, options, "size_vlob_read", run_one)


async def phase_size_vlob_update(org: Org, options: Options) -> Result:
    """`vlob_update` to version n+1, each connection its own vlob of the big realm (the realm's checkpoint moves)."""
    async def run_one(loaded: LoadedOrg) -> Result:
        blob = random_bytes(loaded.shape.blob_size)

        def make(index: int, conn: Conn) -> Operation:
            vlob_id = loaded.sample_vlobs[index % len(loaded.sample_vlobs)]
            key = (loaded.organization_id, vlob_id)

            async def operation() -> None:
                version = _versions.get(key, 1) + 1
                _check(await conn.call("vlob_update", encryption_revision=1, vlob_id=vlob_id, timestamp=certs.now(),
                                       version=version, blob=blob, sequester_blob=None), "vlob_update")
                _versions[key] = version
            return operation
        return await _looping(org, options, "size_vlob_update", loaded, make)
    return await _both_sizes(org, options, "size_vlob_update", run_one)


async def phase_size_vlob_poll_changes(org: Org, options: Options) -> Result:
    """`vlob_poll_changes` of the big realm from POLL_BACK checkpoints before its current one."""
    async def run_one(loaded: LoadedOrg) -> Result:
        def make(index: int, conn: Conn) -> Operation:
            last_checkpoint: int | None = None

            async def operation() -> None:
                nonlocal last_checkpoint
                if last_checkpoint is None:  # the current checkpoint (earlier phases may have moved it)
                    reply = await conn.call("vlob_poll_changes", realm_id=loaded.big_realm,
                                            last_checkpoint=loaded.big_realm_checkpoint)
                    _check(reply, "vlob_poll_changes")
                    last_checkpoint = max(0, reply["current_checkpoint"] - POLL_BACK)
                reply = await conn.call("vlob_poll_changes", realm_id=loaded.big_realm, last_checkpoint=last_checkpoint)
                _check(reply, "vlob_poll_changes")
                if not 1 <= len(reply["changes"]) <= POLL_BACK:
                    raise ProtocolError(f"vlob_poll_changes: {len(reply['changes'])} changes, expected 1..{POLL_BACK}")
            return operation
        return await _looping(org, options, "size_vlob_poll_changes", loaded, make)
    return await _both_sizes(org, options, "size_vlob_poll_changes", run_one)


async def phase_size_member_subscribe(org: Org, options: Options) -> Result:
    """The member's session start: handshake, then `events_subscribe` (which takes every realm it holds);
    latency to the subscription's reply, then close."""
    async def run_one(loaded: LoadedOrg) -> Result:
        async def operation() -> float:
            started = time.perf_counter()
            conn = await Conn.open(org.server.ws_url, loaded.member)
            try:
                await conn.call_ok("events_subscribe")
                return time.perf_counter() - started
            finally:
                await conn.close()
        return await timed_loop(org, "size_member_subscribe", [operation] * options.size_connections, options)
    return await _both_sizes(org, options, "size_member_subscribe", run_one)


async def phase_size_member_event(org: Org, options: Options) -> Result:
    """The event phase with the member as listener: alice updates a vlob in one of the member's realms; latency
    to the `realm.vlobs_updated` on the member's subscribed session."""
    async def run_one(loaded: LoadedOrg) -> Result:
        listener = await Conn.open(org.server.ws_url, loaded.member)
        writers = await _conns(org, loaded.alice, options.event_writers)
        realm_id = loaded.member_realms[(options.round_index * 7) % len(loaded.member_realms)]
        return await event_latency(org, "size_member_event", listener, writers, realm_id, options)
    return await _both_sizes(org, options, "size_member_event", run_one)


SIZE_PHASES = {
    "size_handshake": phase_size_handshake,
    "size_user_get": phase_size_user_get,
    "size_human_find": phase_size_human_find,
    "size_vlob_read": phase_size_vlob_read,
    "size_vlob_update": phase_size_vlob_update,
    "size_vlob_poll_changes": phase_size_vlob_poll_changes,
    "size_member_subscribe": phase_size_member_subscribe,
    "size_member_event": phase_size_member_event,
}
