"""`manage.py blockstore_check [--repair] [--organization ORG]`: scrub the blockstore against the database.

Walks every block the database knows (`blocks.models.Block`), reads each node's part from the
configured blockstore (PARSEC_BLOCKSTORE, or `-b` given here) and checks it: present, of the size
the block's recorded size implies, and for RAID5 that the parity matches the data chunks. With
`--repair`, a missing or wrong part is rewritten from the other nodes (RAID1: the copy the nodes agree
on; RAID5: rebuilt from the other chunks and the parity), e.g. after a node's store was replaced by an
empty one. Stores without redundancy (a single store, RAID0) can only be checked.

Exit status 0 when every block is whole (after the repairs), 1 otherwise.
"""
from __future__ import annotations

import collections
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import connections

from blocks.stores.base import BlockStore, ScrubResult, scrub_block
from blocks.stores.factory import blockstore_from_config
from blocks.models import Block

DEFAULT_JOBS = 8
SHOWN_PROBLEMS = 20  # problem blocks listed at the default verbosity (all with -v 2)


def _plain(text: str) -> str:
    return text  # stderr is styled as errors (red) on a terminal; the progress bar is not one


class ProgressBar:
    """`[#####.....]  52%  520/1000 blocks  3 damaged` redrawn in place on a terminal; a line every 10% otherwise."""

    WIDTH = 30

    def __init__(self, total: int, stream: OutputWrapper, *, enabled: bool) -> None:
        self.total = total
        self.stream = stream
        self.enabled = enabled
        self.interactive = enabled and stream.isatty()
        self._last_draw = 0.0
        self._last_step = -1
        self._drawn = False

    def _text(self, done: int, damaged: int) -> str:
        fraction = done / self.total if self.total else 1.0
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        return f"[{bar}] {fraction:4.0%}  {done}/{self.total} blocks  {damaged} damaged"

    def update(self, done: int, damaged: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        if self.interactive:
            now = time.monotonic()
            if force or now - self._last_draw >= 0.1:
                self._last_draw = now
                self.stream.write("\r" + self._text(done, damaged), style_func=_plain, ending="")
                self.stream.flush()
                self._drawn = True
            return
        step = int(done * 10 / self.total) if self.total else 10
        if step > self._last_step or force:
            self._last_step = step
            self.stream.write(self._text(done, damaged), style_func=_plain)
            self.stream.flush()

    def clear(self) -> None:
        """Make room for a line of the report (terminal only)."""
        if self.interactive and self._drawn:
            self.stream.write("\r\x1b[K", style_func=_plain, ending="")
            self.stream.flush()
            self._drawn = False

    def finish(self, done: int, damaged: int) -> None:
        if not self.enabled:
            return
        if self.interactive:
            self.update(done, damaged, force=True)
            self.stream.write("", style_func=_plain)  # end the line
            self.stream.flush()
        elif self._last_step < 10:
            self.update(done, damaged, force=True)


def describe_store(store: BlockStore) -> str:
    nodes = getattr(store, "nodes", None)
    if nodes is None:
        return repr(store)
    mode = getattr(store, "mode", "RAID")
    listed = "\n".join(f"  node {index}: {node!r}" for index, node in enumerate(nodes))
    return f"{mode} over {len(nodes)} nodes:\n{listed}"


class Command(BaseCommand):
    help = (
        "Check that every block known to the database is whole in the blockstore (each node holds its part, "
        "RAID5 parity matches); with --repair, rewrite missing or wrong parts from the other nodes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--repair", action="store_true", help="rewrite missing or wrong parts on a node from the other nodes"
        )
        parser.add_argument("--organization", metavar="ORG", help="only the blocks of this organization")
        parser.add_argument(
            "-b", "--blockstore", action="append", metavar="CONFIG",
            help="blockstore configuration, as for `run` (repeatable for RAID); default: PARSEC_BLOCKSTORE",
        )
        parser.add_argument(
            "--jobs", type=int, default=DEFAULT_JOBS, metavar="N",
            help=f"blocks checked at once (default {DEFAULT_JOBS})",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (on stderr)")

    def handle(self, *args: Any, **options: Any) -> None:
        specs = tuple(options["blockstore"] or settings.PARSEC.blockstore)
        try:
            store = blockstore_from_config(specs)
        except ValueError as exc:
            raise CommandError(f"--blockstore: {exc}") from None
        if options["jobs"] < 1:
            raise CommandError("--jobs must be at least 1")
        repair: bool = options["repair"]
        verbosity: int = options["verbosity"]

        blocks = Block.objects.order_by("pk")
        organization = options["organization"]
        if organization:
            from organizations.models import Organization

            if not Organization.objects.filter(organization_id=organization).exists():
                raise CommandError(f"unknown organization `{organization}`")
            blocks = blocks.filter(organization__organization_id=organization)
        total = blocks.count()

        if verbosity >= 1:
            scope = f"organization {organization}" if organization else "all organizations"
            action = "Checking and repairing" if repair else "Checking"
            self.stdout.write(f"{action} {total} block(s) of {scope} in {describe_store(store)}")
            self.stdout.flush()

        started = time.monotonic()
        progress = ProgressBar(total, self.stderr, enabled=not options["no_progress"] and verbosity >= 1)
        counts: collections.Counter[str] = collections.Counter()
        by_node: dict[int | None, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        checked_bytes = 0
        shown = 0

        def record(result: ScrubResult, size: int) -> None:
            nonlocal shown
            counts["checked"] += 1
            if result.ok:
                counts["ok"] += 1
                return
            counts["damaged"] += 1
            if result.fixed:
                counts["repaired"] += 1
            elif not result.readable:
                counts["unreadable"] += 1
            else:
                counts["degraded"] += 1
            for issue in result.issues:
                by_node[issue.node][issue.problem] += 1
                if issue.repaired:
                    by_node[issue.node]["repaired"] += 1
            if verbosity >= 2 or (verbosity >= 1 and shown < SHOWN_PROBLEMS):
                shown += 1
                progress.clear()
                details = "; ".join(issue.describe() for issue in result.issues)
                self.stdout.write(f"{result.organization_id}/{result.block_id} ({size} bytes): {details}")
                self.stdout.flush()

        def scrub(organization_id: str, block_id, size: int) -> ScrubResult:
            try:
                return scrub_block(store, organization_id, block_id, size, repair=repair)
            finally:
                connections.close_all()  # a POSTGRESQL store used this worker thread's connection

        rows = blocks.values_list("organization__organization_id", "block_id", "size").iterator(chunk_size=500)
        window = options["jobs"] * 4
        with ThreadPoolExecutor(max_workers=options["jobs"], thread_name_prefix="blockstore-check") as executor:
            in_flight: dict[Future, int] = {}

            def drain(until: int) -> None:
                while len(in_flight) > until:
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        record(future.result(), in_flight.pop(future))
                    progress.update(counts["checked"], counts["damaged"])

            for organization_id, block_id, size in rows:
                checked_bytes += size
                in_flight[executor.submit(scrub, organization_id, block_id, size)] = size
                drain(window)
            drain(0)
        progress.finish(counts["checked"], counts["damaged"])

        remaining = counts["damaged"] - counts["repaired"]
        if verbosity >= 1:
            self._report(counts, by_node, total=total, size=checked_bytes, elapsed=time.monotonic() - started,
                         repair=repair, store=store, shown=shown)
        if remaining:
            raise CommandError(
                f"{remaining} block(s) still damaged" + ("" if repair else " (run again with --repair)"),
                returncode=1,
            )

    def _report(self, counts, by_node, *, total: int, size: int, elapsed: float, repair: bool,
                store: BlockStore, shown: int) -> None:
        write = self.stdout.write
        if counts["damaged"] > shown:
            write(f"... {counts['damaged'] - shown} more damaged block(s) (use -v 2 to list them all)")
        write(
            f"Checked {total} block(s), {size} bytes, in {elapsed:.1f} s: {counts['ok']} ok, "
            f"{counts['damaged']} damaged"
            + (f" ({counts['repaired']} repaired, {counts['damaged'] - counts['repaired']} not)" if repair else "")
            + f", {counts['unreadable']} unreadable."
        )
        node_count = len(getattr(store, "nodes", ())) or 0
        indexes: list[int | None] = list(range(node_count)) if node_count else [None]
        for index in sorted({*indexes, *by_node}, key=lambda i: -1 if i is None else i):
            label = "store" if index is None else f"node {index}"
            problems = by_node.get(index)
            if not problems:
                if index is not None or not node_count:
                    write(f"  {label}: ok")
                continue
            listed = ", ".join(f"{count} {problem}" for problem, count in sorted(problems.items()))
            write(f"  {label}: {listed}")
        self.stdout.flush()
