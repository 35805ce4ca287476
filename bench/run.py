"""Benchmark of our server against the parsec-cloud 2.17.0 reference, same machine, same run.

    .venv/bin/python -m bench.run [--servers ours,reference] [--connections 8] [--duration 5]
                                  [--rounds 3] [--phases ping,vlob_create,...] [--idle 200]

See bench/README.md. Not a test: it prints a table (and writes JSON with --json)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from bench.phases import DEFAULT_PHASES, PHASES, Options, Result, SkipPhase, machine_busy_seconds
from bench.servers import ASGI_CANDIDATES, SERVER_KINDS, Lab, cpu_seconds_of, missing_server
from bench.setup import Org, add_bob_and_share, create_organization
from bench.sizes import LARGE, SIZE_PHASES, SIZE_TARGET, SMALL, check_loaded, load_sized, parse_shape

ALL_PHASES = {**PHASES, **SIZE_PHASES}

# Targets of the issue (ours compared with the reference measured in the same run).
OPS_RATIO_TARGET = {
    "ping": 5.0, "vlob_create": 5.0, "vlob_read": 5.0, "vlob_update": 5.0,
    "vlob_create_shared": 5.0, "vlob_update_shared": 5.0,
}
MB_RATIO_TARGET = {"block_create": 3.0, "block_read": 3.0}
# The event latency p99 against the reference's (issue 15); alone, an absolute bound.
EVENT_P99_RATIO_TARGET = 0.35
EVENT_P99_TARGET_MS = 10.0
IDLE_KIB_TARGET = 46.0
# "Many writers in one shared realm must not collapse": the shared-realm rate stays at least this
# fraction of the same server's own-realm rate, with a p99 below the reference's.
SHARED_MIN_FRACTION = 0.5
SHARED_P99_TARGET_MS = 100.0
SHARED_BASE = {"vlob_create_shared": "vlob_create", "vlob_update_shared": "vlob_update"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="ours,reference",
                        help="comma-separated, in round order: ours, reference, before, ours2 (ours with --workers 2), "
                        f"or our application under another ASGI server: {', '.join(ASGI_CANDIDATES)} "
                        "(default: ours,reference)")
    parser.add_argument("--before-tree", metavar="DIR",
                        help="the checkout the `before` server runs from (e.g. `git worktree add /tmp/before <commit>`), "
                        "with this repository's .venv: before/after comparisons of our own server in one run")
    parser.add_argument("--phases", default=",".join(DEFAULT_PHASES),
                        help=f"comma-separated among: {', '.join(ALL_PHASES)}; `size` = every size_* phase "
                        "(default: all but fanout and size_*)")
    parser.add_argument("--connections", "-c", type=int, default=8, help="concurrent connections (default 8)")
    parser.add_argument("--shared-connections", type=int, default=None,
                        help="connections of the vlob_*_shared phases (default: 4 x --connections)")
    parser.add_argument("--duration", "-d", type=float, default=5.0, help="measured seconds per phase (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each phase (default 1)")
    parser.add_argument("--rounds", "-r", type=int, default=3, help="rounds, servers alternating (default 3)")
    parser.add_argument("--idle", type=int, default=200, help="idle connections of the idle phase (default 200)")
    parser.add_argument("--fanout", default="0,2000,5000",
                        help="idle subscribed sessions of the fanout phase, one measurement per value "
                        "(default 0,2000,5000)")
    parser.add_argument("--blob-size", type=int, default=1024, help="vlob blob bytes (default 1024)")
    parser.add_argument("--block-size", type=int, default=512 * 1024, help="block bytes (default 524288)")
    parser.add_argument("--event-writers", type=int, default=1, help="writer connections of the event phase")
    parser.add_argument("--small-org", default="", metavar="users=N,vlobs=N,realms=N",
                        help=f"the small organization of the size_* phases (default users={SMALL.users},"
                        f"vlobs={SMALL.vlobs},realms={SMALL.member_realms})")
    parser.add_argument("--large-org", default="", metavar="users=N,vlobs=N,realms=N",
                        help=f"the large organization of the size_* phases (default users={LARGE.users},"
                        f"vlobs={LARGE.vlobs},realms={LARGE.member_realms})")
    parser.add_argument("--size-connections", type=int, default=1,
                        help="concurrent connections of the size_* phases (default 1: latency, not throughput)")
    parser.add_argument("--db-min-connections", type=int, default=5, help="both servers' pool min (default 5)")
    parser.add_argument("--db-max-connections", type=int, default=None,
                        help="both servers' pool max (default: max(7, connections + 2); the reference deadlocks "
                        "its pool when the concurrent block_create reach its size)")
    parser.add_argument("--db-socket", action="store_true",
                        help="both servers reach PostgreSQL over its Unix socket instead of loopback TCP")
    parser.add_argument("--log-level", default="WARNING",
                        help="both servers' --log-level (default WARNING; '' keeps their own default)")
    parser.add_argument("--wait-quiet", type=float, metavar="PCT", default=None,
                        help="before each measurement, wait (at most --wait-quiet-max s) until other work on the "
                        "machine uses at most PCT%% of one core")
    parser.add_argument("--wait-quiet-max", type=float, default=30.0, metavar="S",
                        help="longest wait of --wait-quiet per measurement (default 30 s)")
    parser.add_argument("--json", metavar="FILE", help="also write every round's raw results there")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy record each server during each window into DIR (collapsed stacks; "
                        "summarize with python -m bench.flame); the profiler slows the server down")
    parser.add_argument("--profile-idle", action="store_true",
                        help="with --profile: also sample waiting threads (wall-clock view instead of CPU)")
    parser.add_argument("--keep-running", action="store_true",
                        help="after the phases, print the servers' pids and wait for Ctrl-C (for profiling)")
    args = parser.parse_args(argv)
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.phase_list = []
    for phase in (p.strip() for p in args.phases.split(",") if p.strip()):
        args.phase_list += list(SIZE_PHASES) if phase == "size" else [phase]
    args.fanout_list = tuple(int(n) for n in args.fanout.split(",") if n.strip())
    for server in args.server_list:
        if server not in SERVER_KINDS:
            parser.error(f"unknown server {server!r}: expected {', '.join(SERVER_KINDS)}")
    # The other ASGI servers are optional: one that is not installed is left out, saying so, not a crash.
    args.missing_servers = {server: why for server in args.server_list if (why := missing_server(server))}
    args.server_list = [server for server in args.server_list if server not in args.missing_servers]
    if not args.server_list:
        parser.error("no server left to run: " + "; ".join(f"{s}: {w}" for s, w in args.missing_servers.items()))
    if "before" in args.server_list and not args.before_tree:
        parser.error("--servers before needs --before-tree DIR")
    args.before_tree = Path(args.before_tree).resolve() if args.before_tree else None
    for phase in args.phase_list:
        if phase not in ALL_PHASES:
            parser.error(f"unknown phase {phase!r}: expected size or {', '.join(ALL_PHASES)}")
    try:
        args.small_shape = parse_shape(args.small_org, SMALL)
        args.large_shape = parse_shape(args.large_org, LARGE)
    except ValueError as exc:
        parser.error(f"--small-org/--large-org: {exc}")
    if args.db_max_connections is None:
        args.db_max_connections = max(7, args.connections + 2)
    if args.shared_connections is None:
        args.shared_connections = 4 * args.connections
    return args


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def describe(result: Result) -> str:
    if result.skipped:
        return f"SKIPPED: {result.skipped}"
    parts = []
    if result.phase == "idle":
        parts.append(f"{result.extra['kib_per_conn']:.1f} KiB/conn (RSS {result.extra['rss_before_kib']} → "
                     f"{result.extra['rss_after_kib']} KiB, {result.extra['rss_after_close_kib']} after close)")
        parts.append(f"handshakes {fmt(result.ops_per_s)}/s p50 {fmt(result.p50_ms)} p99 {fmt(result.p99_ms)} ms")
    else:
        parts.append(f"{fmt(result.ops_per_s)} ops/s")
        if result.mb_per_s is not None:
            parts.append(f"{fmt(result.mb_per_s)} MB/s")
        parts.append(f"p50 {fmt(result.p50_ms, 2)} p99 {fmt(result.p99_ms, 2)} max {fmt(result.max_ms)} ms")
        parts.append(f"cpu: server {fmt(result.server_cpu, 0)}% db {fmt(result.db_cpu, 0)}% "
                     f"client {fmt(result.client_cpu, 0)}% other {fmt(result.other_cpu, 0)}%")
        if result.server_cpu and result.ops_per_s is not None:
            parts.append(f"{result.ops_per_s / (result.server_cpu / 100):.0f} ops per server cpu-s")
    if result.phase == "fanout":
        parts.append("; ".join(
            f"{count} idle sessions: p50 {fmt(step['p50_ms'], 2)} p99 {fmt(step['p99_ms'], 2)} ms "
            f"{fmt(step['ops_per_s'])}/s (opened in {step['opened_s']:.0f} s)"
            for count, step in result.extra["steps"].items()))
    if result.phase in SIZE_PHASES:
        small, large = result.extra["small"], result.extra["large"]
        parts.append(f"small p50 {fmt(small['p50_ms'], 2)} p99 {fmt(small['p99_ms'], 2)} ms, "
                     f"large p50 {fmt(large['p50_ms'], 2)} p99 {fmt(large['p99_ms'], 2)} ms "
                     f"(p50 x{_ratio(large['p50_ms'], small['p50_ms'])})")
    if result.phase in ("event", "size_member_event") and result.extra.get("after_reply_p50_ms") is not None:
        parts.append(f"event after the update's reply: p50 {fmt(result.extra['after_reply_p50_ms'], 2)} "
                     f"p99 {fmt(result.extra['after_reply_p99_ms'], 2)} ms")
    if result.errors:
        parts.append(f"ERRORS {result.errors}: {result.first_error}")
    return ", ".join(parts)


def _ratio(numerator: float | None, denominator: float | None) -> str:
    return f"{numerator / denominator:.2f}" if numerator is not None and denominator else "-"


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(results: list[Result]) -> dict | None:
    good = [r for r in results if r.ok]
    if not good:
        return None
    return {
        "rounds": len(good),
        "ops_per_s": median([r.ops_per_s for r in good]),
        "mb_per_s": median([r.mb_per_s for r in good]),
        "p50_ms": median([r.p50_ms for r in good]),
        "p99_ms": median([r.p99_ms for r in good]),
        "server_cpu": median([r.server_cpu for r in good]),
        "db_cpu": median([r.db_cpu for r in good]),
        "other_cpu": median([r.other_cpu for r in good]),
        "ops_per_cpu_s": median([r.ops_per_s / (r.server_cpu / 100) if r.server_cpu and r.ops_per_s is not None else None for r in good]),
        "kib_per_conn": median([r.extra.get("kib_per_conn") for r in good]),
    }


def failure(results: list[Result]) -> str:
    for result in results:
        if result.skipped:
            return f"skipped: {result.skipped}"
        if result.errors:
            return f"errors: {result.first_error}"
    return "no result"


def cell(summary: dict | None, phase: str) -> str:
    if summary is None:
        return "n/a"
    if phase == "idle":
        return f"{fmt(summary['kib_per_conn'])} KiB/conn"
    head = f"{fmt(summary['ops_per_s'])}/s"
    if summary["mb_per_s"] is not None:
        head = f"{fmt(summary['mb_per_s'])} MB/s"
    return f"{head} {fmt(summary['p50_ms'], 2)} {fmt(summary['p99_ms'], 2)}"


def ratio_and_target(phase: str, ours: dict | None, ref: dict | None, all_ours: dict) -> tuple[str, str]:
    """The headline ratio (ours / reference) and the target verdict for our server."""
    ratio, verdicts = "-", []
    p99_better = None
    if ours and ref and ours["p99_ms"] and ref["p99_ms"]:
        p99_better = ours["p99_ms"] < ref["p99_ms"]
    if phase == "idle":
        if ours and ref and ref["kib_per_conn"]:
            ratio = f"{ours['kib_per_conn'] / ref['kib_per_conn']:.2f}x KiB"
        if ours:
            ok = ours["kib_per_conn"] <= IDLE_KIB_TARGET
            verdicts.append(f"{'ok' if ok else 'MISS'} ≤{IDLE_KIB_TARGET:g} KiB")
        return ratio, "; ".join(verdicts)
    if phase == "event":
        if ours and ref:
            ratio = f"{ours['p99_ms'] / ref['p99_ms']:.2f}x p99"
        if ours and ref and ref["p99_ms"]:
            ok = ours["p99_ms"] <= EVENT_P99_RATIO_TARGET * ref["p99_ms"]
            verdicts.append(f"{'ok' if ok else 'MISS'} p99≤{EVENT_P99_RATIO_TARGET:g}x ref")
        elif ours:
            ok = ours["p99_ms"] <= EVENT_P99_TARGET_MS
            verdicts.append(f"{'ok' if ok else 'MISS'} p99≤{EVENT_P99_TARGET_MS:g}ms")
        if p99_better is not None:
            verdicts.append("ok p99<ref" if p99_better else "MISS p99<ref")
        return ratio, "; ".join(verdicts)
    if ours and ref:
        key = "mb_per_s" if ours["mb_per_s"] is not None else "ops_per_s"
        value = ours[key] / ref[key]
        ratio = f"{value:.2f}x"
        target = OPS_RATIO_TARGET.get(phase) or MB_RATIO_TARGET.get(phase)
        if target:
            verdicts.append(f"{'ok' if value >= target else 'MISS'} ≥{target:g}x")
    if phase in SHARED_BASE and ours and ours["p99_ms"]:
        ok = ours["p99_ms"] < SHARED_P99_TARGET_MS
        verdicts.append(f"{'ok' if ok else 'MISS'} p99<{SHARED_P99_TARGET_MS:g}ms")
    if phase in SHARED_BASE and ours and all_ours.get(SHARED_BASE[phase]):
        base = all_ours[SHARED_BASE[phase]]["ops_per_s"]
        ok = ours["ops_per_s"] >= SHARED_MIN_FRACTION * base
        verdicts.append(f"{'ok' if ok else 'MISS'} ≥{SHARED_MIN_FRACTION:g}x own {SHARED_BASE[phase]}")
    if p99_better is not None:
        verdicts.append("ok p99<ref" if p99_better else "MISS p99<ref")
    return ratio, "; ".join(verdicts)


def version_ratio(phase: str, ours: dict | None, before: dict | None) -> str:
    """Ours over the `before` checkout: the headline number (above 1: ours is faster; KiB per connection for
    idle, below 1 is leaner) and the p99 ratio (below 1: ours answers sooner)."""
    if not ours or not before:
        return "-"
    if phase == "idle":
        return f"{ours['kib_per_conn'] / before['kib_per_conn']:.2f}x KiB" if before["kib_per_conn"] else "-"
    key = "mb_per_s" if ours["mb_per_s"] is not None else "ops_per_s"
    parts = [f"{ours[key] / before[key]:.2f}x"] if before[key] else []
    if ours["p99_ms"] and before["p99_ms"]:
        parts.append(f"p99 {ours['p99_ms'] / before['p99_ms']:.2f}x")
    return " ".join(parts) or "-"


def print_table(args, collected: dict[str, dict[str, list[Result]]]) -> None:
    servers = args.server_list
    summaries = {server: {phase: summarize(collected[phase][server]) for phase in args.phase_list}
                 for server in servers}
    headers = ["phase"] + [f"{server} (ops/s|MB/s p50 p99 ms)" for server in servers]
    both = "ours" in servers and "reference" in servers
    versions = "ours" in servers and "before" in servers
    if both:
        headers += ["ours/ref", "target (ours)"]
    if versions:
        headers += ["ours/before"]
    workers = "ours" in servers and "ours2" in servers
    if workers:
        headers += ["ours2/ours"]
    # Our application under another ASGI server, against daphne (`ours`): headline and p99 ratios.
    candidates = [server for server in servers if server in ASGI_CANDIDATES] if "ours" in servers else []
    headers += [f"{server.removeprefix('ours-')}/ours" for server in candidates]
    rows = []
    for phase in args.phase_list:
        row = [phase] + [cell(summaries[server][phase], phase) for server in servers]
        if both:
            row += list(ratio_and_target(phase, summaries["ours"][phase], summaries["reference"][phase],
                                         summaries["ours"]))
        if versions:
            row.append(version_ratio(phase, summaries["ours"][phase], summaries["before"][phase]))
        if workers:
            row.append(version_ratio(phase, summaries["ours2"][phase], summaries["ours"][phase]))
        row += [version_ratio(phase, summaries[server][phase], summaries["ours"][phase]) for server in candidates]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"
    print()
    print(f"Median of {args.rounds} round(s), {args.connections} connections "
          f"({args.shared_connections} for *_shared), {args.duration:g} s per phase after {args.warmup:g} s warm-up, "
          f"blob {args.blob_size} B, block {args.block_size} B, idle {args.idle}, "
          f"db pool {args.db_min_connections}/{args.db_max_connections}")
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    print("Busy CPU of other work during the windows (median, % of one core; 200 = both cores): "
          + ", ".join(f"{server} {fmt(median([s['other_cpu'] for p in args.phase_list if (s := summaries[server][p])]), 0)}%"
                      for server in servers)
          + ". Above ~30% the servers compete with other work: rerun on a quiet machine.")
    print("Efficiency, operations per CPU-second of the server process (less sensitive to other work):")
    eff = []
    for phase in args.phase_list:
        if phase == "idle":
            continue
        values = [s["ops_per_cpu_s"] if (s := summaries[server][phase]) else None for server in servers]
        text = ", ".join(f"{server} {fmt(v)}" for server, v in zip(servers, values))
        if both and values[0] and values[1]:
            text += f" ({values[0] / values[1]:.2f}x)" if servers[0] == "ours" else f" ({values[1] / values[0]:.2f}x)"
        ours_value = values[servers.index("ours")] if candidates else None
        if ours_value:
            text += "; /ours: " + ", ".join(
                f"{server.removeprefix('ours-')} {v / ours_value:.2f}x" if v else f"{server.removeprefix('ours-')} -"
                for server, v in zip(servers, values) if server in candidates)
        eff.append(f"{phase}: {text}")
    for item in eff:
        print("  " + item)
    problems = [(phase, server, failure(collected[phase][server])) for phase in args.phase_list for server in servers
                if summaries[server][phase] is None]
    for phase, server, why in problems:
        print(f"  {phase} on {server}: {why}")
    for server, why in args.missing_servers.items():
        print(f"  {server}: left out of this run, {why}")
    print()


def size_ratio(large: float | None, small: float | None) -> float | None:
    return None if large is None or not small else large / small


def print_size_table(args, collected: dict[str, dict[str, list[Result]]]) -> None:
    """Flat with size: per size_* phase and server, the median across rounds of the small and the large
    organization's latencies, their ratio, and the target (p50 and p99 each at most SIZE_TARGET x small)."""
    phases = [phase for phase in args.phase_list if phase in SIZE_PHASES]
    if not phases:
        return
    small, large = args.small_shape, args.large_shape
    print(f"Flat with size: small organization {small.users} users, {small.vlobs} vlobs in the realm, member of "
          f"{small.member_realms} realms; large {large.users} users, {large.vlobs} vlobs, member of "
          f"{large.member_realms} realms; {args.size_connections} connection(s); median of the rounds, ms")
    headers = ["phase", "server", "small p50", "small p99", "large p50", "large p99", "large/small p50",
               "large/small p99", f"target ≤{SIZE_TARGET:g}x"]
    rows = []
    for phase in phases:
        for server in args.server_list:
            good = [r for r in collected[phase][server] if r.ok]
            if not good:
                rows.append([phase, server, failure(collected[phase][server])[:60], "", "", "", "", "", ""])
                continue
            values = {f"{size}_{key}": median([r.extra[size][key] for r in good])
                      for size in ("small", "large") for key in ("p50_ms", "p99_ms")}
            ratios = [size_ratio(values["large_p50_ms"], values["small_p50_ms"]),
                      size_ratio(values["large_p99_ms"], values["small_p99_ms"])]
            # A size that measured no latency (or a zero one) has no ratio: shown as such, not judged.
            present = [ratio for ratio in ratios if ratio is not None]
            verdict = ("ok" if max(present) <= SIZE_TARGET else "MISS") if len(present) == len(ratios) else "-"
            rows.append([phase, server, fmt(values["small_p50_ms"], 2), fmt(values["small_p99_ms"], 2),
                         fmt(values["large_p50_ms"], 2), fmt(values["large_p99_ms"], 2),
                         *("-" if ratio is None else f"{ratio:.2f}x" for ratio in ratios), verdict])
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    print()


async def other_cpu_now(lab: Lab, sample: float = 1.0) -> float:
    """CPU used by everything but the bench, its servers and PostgreSQL over `sample` seconds (% of a core)."""
    def ours() -> float:
        times = os.times()
        total = times.user + times.system
        for server in lab.servers:
            if server.process is not None and server.process.poll() is None:
                total += server.cpu_seconds()
        pg = lab.postmaster_pid()
        return total + (cpu_seconds_of(pg) if pg else 0.0)

    machine0, ours0 = machine_busy_seconds(), ours()
    await asyncio.sleep(sample)
    machine1, ours1 = machine_busy_seconds(), ours()
    return max(0.0, 100 * ((machine1 - machine0) - (ours1 - ours0)) / sample)


async def wait_quiet(lab: Lab, threshold: float, max_wait: float) -> None:
    deadline = time.monotonic() + max_wait
    started = time.monotonic()
    while True:
        other = await other_cpu_now(lab)
        if other <= threshold:
            if time.monotonic() - started > 1.5:
                print(f"  (waited {time.monotonic() - started:.0f} s for other work to calm down)", flush=True)
            return
        if time.monotonic() >= deadline:
            print(f"  (other work still at {other:.0f}% after {max_wait:.0f} s: measuring anyway)", flush=True)
            return


async def run_phase(name: str, org: Org, options: Options) -> Result:
    # Setup, warm-up, window, teardown: anything beyond this is a stuck server.
    limit = options.warmup + options.duration + 120 + options.idle * 0.5
    if name in SIZE_PHASES:
        limit = 2 * limit  # one window per organization
    if name == "fanout":
        limit = len(options.fanout) * (options.warmup + options.duration + 2) + 120 + max(options.fanout, default=0) * 0.1
    try:
        return await asyncio.wait_for(ALL_PHASES[name](org, options), limit)
    except TimeoutError:
        return Result(phase=name, server=org.server.kind, skipped=f"failed: phase not done within {limit:.0f} s")
    except SkipPhase as exc:
        return Result(phase=name, server=org.server.kind, skipped=str(exc))
    except Exception as exc:  # a phase failing on one server must not stop the run
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return Result(phase=name, server=org.server.kind, skipped=f"failed: {detail[:500]}")


async def main_async(args) -> int:
    options = Options(
        connections=args.connections, shared_connections=args.shared_connections, duration=args.duration,
        warmup=args.warmup, blob_size=args.blob_size, block_size=args.block_size, idle=args.idle,
        fanout=args.fanout_list,
        event_writers=args.event_writers, profile_dir=args.profile, profile_idle=args.profile_idle,
        size_connections=args.size_connections,
    )
    lab = Lab(db_min=args.db_min_connections, db_max=args.db_max_connections, log_level=args.log_level or None,
              before_tree=args.before_tree, db_socket=args.db_socket)
    collected: dict[str, dict[str, list[Result]]] = {p: {s: [] for s in args.server_list} for p in args.phase_list}
    try:
        for server, why in args.missing_servers.items():
            print(f"{server}: left out of this run, {why}", flush=True)
        print(f"workdir (server logs): {lab.workdir}", flush=True)
        lab.start_cluster()
        orgs: dict[str, Org] = {}
        for kind in args.server_list:
            started = time.perf_counter()
            server = lab.start(kind)
            org = create_organization(server)
            await add_bob_and_share(org)
            orgs[kind] = org
            note = f"; event phase unavailable: {org.sharing_error}" if org.sharing_error else ""
            if any(phase in SIZE_PHASES for phase in args.phase_list):
                # `before` gets this checkout's loader: fine while the schema is the same, and the read-back
                # check says so when it is not.
                try:
                    sized = load_sized(server, {"small": args.small_shape, "large": args.large_shape},
                                       lab.workdir, log=lambda line: print(line, flush=True))
                    for loaded in sized.values():
                        await check_loaded(server.ws_url, loaded)
                    org.sized = sized
                except Exception as exc:
                    org.sized_error = f"loading failed: {type(exc).__name__}: {str(exc)[:400]}"
                    print(f"{kind}: size_* phases unavailable, {org.sized_error}", flush=True)
            print(f"{kind}: pid {server.pid}, port {server.port}, organization {org.organization_id} "
                  f"ready in {time.perf_counter() - started:.1f} s{note}", flush=True)
        for phase in args.phase_list:
            for round_index in range(args.rounds):
                for kind in args.server_list:
                    server = orgs[kind].server
                    assert server.process is not None  # started by the lab above
                    if server.process.poll() is not None:
                        result = Result(phase=phase, server=kind,
                                        skipped=f"server exited ({server.process.returncode}):\n{server.log_tail(10)}")
                    else:
                        if args.wait_quiet is not None:
                            await wait_quiet(lab, args.wait_quiet, args.wait_quiet_max)
                        options.round_index = round_index
                        result = await run_phase(phase, orgs[kind], options)
                    collected[phase][kind].append(result)
                    load = os.getloadavg()[0]
                    print(f"[{phase} r{round_index + 1} {kind:9}] {describe(result)} (load {load:.1f})", flush=True)
        print_table(args, collected)
        print_size_table(args, collected)
        if args.json:
            with open(args.json, "w") as f:  # noqa: ASYNC230 - once, after the last phase: nothing else waits on the loop
                json.dump({"args": {k: v for k, v in vars(args).items()},
                           "results": {p: {s: [asdict(r) for r in rs] for s, rs in v.items()}
                                       for p, v in collected.items()}}, f, indent=1, default=str)
            print(f"raw results: {args.json}")
        if args.keep_running:
            for kind, org in orgs.items():
                print(f"{kind}: pid {org.server.pid} port {org.server.port} (Ctrl-C to stop)", flush=True)
            await asyncio.Event().wait()
    finally:
        lab.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def terminate(signum, frame):  # SIGTERM (e.g. `timeout`) cleans up like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
