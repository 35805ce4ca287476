"""RAID0 / RAID1 / RAID5 over any single stores (docs/configuration.md#blockstore), with the reference's semantics.

The node calls of one operation run concurrently, in a thread pool of the RAID store (the caller is
already a worker thread of the server, never the event loop). Any node failure is a `BlockStoreError`
of the node; the RAID store decides from the failures, as the reference does:

* RAID0: the block lives on node `block_id (128-bit integer) mod n`; its failure is the failure.
* RAID1: writes go to every node and fail if one fails (`partial_create_ok`: only if all fail); reads
  ask every node and return the first answer, failing only if every node fails.
* RAID5: payload = 4-byte big-endian length + block + zero padding, cut into k = n - 1 chunks of
  `ceil((len + 4) / k)` bytes, chunk i on node i, XOR parity on node n - 1. Writes fail if a node fails
  (`partial_create_ok`: if two do). Reads fetch the k data chunks, and the parity only when one of
  them fails, to rebuild it; two failures fail the read.

We answer as soon as the outcome is known (first RAID1 answer, first write failure) and let the
other node calls finish in the background: they cannot be interrupted inside a thread, and a write
that lands after a reported failure is harmless (writes are idempotent, and no metadata is recorded
for a failed `block_create`: the client retries with the same id and data).

`scrub()` is `manage.py blockstore_check`'s: read every node's part, compare with what the block's
size and the other parts say it must be, and with `repair` rewrite missing or wrong parts.
"""
from __future__ import annotations

import collections
import hashlib
import logging
import struct
import time
import uuid
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Sequence, TypeVar

from django.db import connections

from blocks.stores.base import (
    BlockNotFound,
    BlockStore,
    BlockStoreError,
    PartIssue,
    ScrubResult,
    scrub_single,
    store_concurrency,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

LENGTH_PREFIX = struct.Struct("!I")  # uint32, big-endian
SUSPECT_SECONDS = 5.0  # after a node failed, RAID5 reads fetch the parity alongside its chunk for this long


# --- RAID5 arithmetic ------------------------------------------------------------------------------


def raid5_chunk_len(block_len: int, data_chunks: int) -> int:
    return -(-(block_len + LENGTH_PREFIX.size) // data_chunks)


def split_raid5(block: bytes, data_chunks: int) -> list[bytes]:
    """The `data_chunks` equal chunks of the payload (length prefix + block + zero padding)."""
    if data_chunks < 1:
        raise ValueError("at least one data chunk")
    chunk_len = raid5_chunk_len(len(block), data_chunks)
    padding = chunk_len * data_chunks - len(block) - LENGTH_PREFIX.size
    payload = LENGTH_PREFIX.pack(len(block)) + block + bytes(padding)
    return [payload[i * chunk_len : (i + 1) * chunk_len] for i in range(data_chunks)]


def xor_parts(parts: Sequence[bytes]) -> bytes:
    """Byte-wise XOR of equally long parts (the parity of the chunks, or a chunk rebuilt from the others)."""
    length = len(parts[0])
    if any(len(part) != length for part in parts):
        raise ValueError(f"parts of different sizes: {sorted({len(part) for part in parts})}")
    accumulator = 0
    for part in parts:
        accumulator ^= int.from_bytes(part, "little")
    return accumulator.to_bytes(length, "little")


def join_raid5(chunks: Sequence[bytes]) -> bytes:
    """The block back from its data chunks; ValueError if they do not hold a consistent payload."""
    payload = b"".join(chunks)
    if len(payload) < LENGTH_PREFIX.size:
        raise ValueError("chunks too short for the length prefix")
    (block_len,) = LENGTH_PREFIX.unpack_from(payload)
    end = LENGTH_PREFIX.size + block_len
    if end > len(payload):
        raise ValueError(f"length prefix {block_len} exceeds the {len(payload) - LENGTH_PREFIX.size} bytes of data")
    return payload[LENGTH_PREFIX.size : end]


def _well_formed(chunks: Sequence[bytes], size: int) -> bool:
    """Do these data chunks hold exactly a `size`-byte block with zero padding (what we would have written)?"""
    try:
        block = join_raid5(chunks)
    except ValueError:
        return False
    return len(block) == size and list(chunks) == split_raid5(block, len(chunks))


# --- Stores ----------------------------------------------------------------------------------------


class _RaidBlockStore(ABC):
    mode = "RAID"

    def __init__(self, nodes: Sequence[BlockStore], *, partial_create_ok: bool = False) -> None:
        if not nodes:
            raise ValueError(f"{self.mode} needs at least one node")
        self.nodes = list(nodes)
        self.partial_create_ok = partial_create_ok
        # monotonic() until which a node that failed is presumed down (RAID5 reads then fetch the parity at once).
        self._suspect_until = [0.0] * len(self.nodes)
        # Every request of the server may touch every node at once.
        self._executor = ThreadPoolExecutor(
            max_workers=len(self.nodes) * store_concurrency(), thread_name_prefix=self.mode.lower()
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.nodes))})"

    # Node calls -----------------------------------------------------------------------------------

    # Each RAID level's own layout (BlockStore's two methods).
    @abstractmethod
    def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None: ...

    @abstractmethod
    def read(self, organization_id: str, block_id: uuid.UUID) -> bytes: ...

    def _is_suspect(self, index: int) -> bool:
        return self._suspect_until[index] > time.monotonic()

    def _node_call(self, index: int, method: Callable[..., T], *args) -> T:
        try:
            result = method(*args)
        except BlockNotFound:
            raise  # the node answered
        except BlockStoreError:
            self._suspect_until[index] = time.monotonic() + SUSPECT_SECONDS
            raise
        except Exception as exc:  # a bug or an unexpected library error: one failed node, not a crash
            logger.exception("%s node %d: unexpected error", self.mode, index)
            raise BlockStoreError(f"unexpected {type(exc).__name__}: {exc}") from exc
        finally:
            # A POSTGRESQL node opens a connection in this pool thread: give it back at once.
            connections.close_all()
        self._suspect_until[index] = 0.0
        return result

    def _submit(self, index: int, name: str, *args) -> Future:
        return self._executor.submit(self._node_call, index, getattr(self.nodes[index], name), *args)

    def _read_all(self, organization_id: str, block_id: uuid.UUID) -> list[bytes | BlockStoreError]:
        futures = [self._submit(i, "read", organization_id, block_id) for i in range(len(self.nodes))]
        results: list[bytes | BlockStoreError] = []
        for future in futures:
            try:
                results.append(future.result())
            except BlockStoreError as exc:
                results.append(exc)
        return results

    def _write(self, index: int, organization_id: str, block_id: uuid.UUID, data: bytes, issue: PartIssue) -> None:
        try:
            self._node_call(index, self.nodes[index].create, organization_id, block_id, data)
        except BlockStoreError as exc:
            issue.repair_error = str(exc)
        else:
            issue.repaired = True

    def _write_all(self, organization_id: str, block_id: uuid.UUID, parts: Sequence[bytes], *, tolerated: int) -> None:
        """Write parts[i] to node i concurrently; fail as soon as more than `tolerated` nodes failed."""
        futures = {
            self._submit(i, "create", organization_id, block_id, part): i for i, part in enumerate(parts)
        }
        failures: list[str] = []
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                exc = future.exception()
                if exc is None:
                    continue
                failures.append(f"node {futures[future]}: {exc}")
                if len(failures) > tolerated:
                    for other in pending:
                        other.cancel()  # not started yet: never will; running: finishes in the background
                    raise BlockStoreError(f"{self.mode} write failed on {len(failures)} node(s): {'; '.join(failures)}")
        if failures:
            logger.warning("%s write of block %s degraded: %s", self.mode, block_id, "; ".join(failures))

    def check(self) -> None:
        """Start-up check of every node, concurrently; all problems in one error."""
        futures = [
            self._executor.submit(self._node_call, i, getattr(node, "check", lambda: None))
            for i, node in enumerate(self.nodes)
        ]
        errors = []
        for index, future in enumerate(futures):
            exc = future.exception()
            if exc is not None:
                errors.append(f"{self.mode} node {index}: {exc}")
        if errors:
            raise BlockStoreError("; ".join(errors))

    def _delete_on(self, indexes: Sequence[int], organization_id: str, block_id: uuid.UUID) -> None:
        """Delete the block's part on these nodes, concurrently; BlockStoreError naming every node that failed.

        Unlike a write, a delete waits for every node: the nodes that did answer are done for good, and a
        re-run (once the failed node is back) only has the others left to do.
        """
        futures = {self._submit(index, "delete", organization_id, block_id): index for index in indexes}
        failures = [
            f"node {futures[future]}: {future.exception()}" for future in futures if future.exception() is not None
        ]
        if failures:
            raise BlockStoreError(f"{self.mode} delete of block {block_id} failed on {'; '.join(failures)}")

    def delete(self, organization_id: str, block_id: uuid.UUID) -> None:
        self._delete_on(range(len(self.nodes)), organization_id, block_id)

    def list_blocks(self, organization_id: str) -> set[uuid.UUID]:
        """Blocks with a part on any node: every node must answer (a node down may hold parts of any block)."""
        futures = [self._submit(index, "list_blocks", organization_id) for index in range(len(self.nodes))]
        found: set[uuid.UUID] = set()
        failures = []
        for index, future in enumerate(futures):
            exc = future.exception()
            if exc is None:
                found |= future.result()
            else:
                failures.append(f"node {index}: {exc}")
        if failures:
            raise BlockStoreError(f"{self.mode} listing failed on {'; '.join(failures)}")
        return found

    @staticmethod
    def _failure(mode: str, errors: Sequence[BlockStoreError], what: str) -> BlockStoreError:
        text = f"{mode} {what}: " + "; ".join(str(error) for error in errors)
        # Every node said "not found": the block is missing (a data problem), not a store outage.
        return BlockNotFound(text) if errors and all(isinstance(e, BlockNotFound) for e in errors) else \
            BlockStoreError(text)


class Raid0BlockStore(_RaidBlockStore):
    mode = "RAID0"

    def node_index(self, block_id: uuid.UUID) -> int:
        return block_id.int % len(self.nodes)

    def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
        index = self.node_index(block_id)
        self.nodes[index].create(organization_id, block_id, data)

    def read(self, organization_id: str, block_id: uuid.UUID) -> bytes:
        return self.nodes[self.node_index(block_id)].read(organization_id, block_id)

    def delete(self, organization_id: str, block_id: uuid.UUID) -> None:
        self._delete_on([self.node_index(block_id)], organization_id, block_id)

    def scrub(self, organization_id: str, block_id: uuid.UUID, size: int, *, repair: bool) -> ScrubResult:
        index = self.node_index(block_id)
        return scrub_single(self.nodes[index], organization_id, block_id, size, node=index)


class Raid1BlockStore(_RaidBlockStore):
    mode = "RAID1"

    def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
        tolerated = len(self.nodes) - 1 if self.partial_create_ok else 0
        self._write_all(organization_id, block_id, [data] * len(self.nodes), tolerated=tolerated)

    def read(self, organization_id: str, block_id: uuid.UUID) -> bytes:
        futures = {self._submit(i, "read", organization_id, block_id): i for i in range(len(self.nodes))}
        errors: list[BlockStoreError] = []
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    data = future.result()
                except BlockStoreError as exc:
                    errors.append(exc)
                    continue
                for other in pending:
                    other.cancel()
                return data
        raise self._failure(self.mode, errors, f"read of block {block_id} failed on every node")

    def scrub(self, organization_id: str, block_id: uuid.UUID, size: int, *, repair: bool) -> ScrubResult:
        result = ScrubResult(organization_id, block_id)
        copies = self._read_all(organization_id, block_id)
        good = [copy for copy in copies if isinstance(copy, bytes) and len(copy) == size]
        # The copy most nodes agree on (blocks are encrypted: agreement is all we can check).
        counts = collections.Counter(hashlib.sha256(copy).digest() for copy in good)
        ranked = counts.most_common(2)
        reference: bytes | None = None
        if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
            reference = next(copy for copy in good if hashlib.sha256(copy).digest() == ranked[0][0])
        result.readable = bool(good)
        for index, copy in enumerate(copies):
            if isinstance(copy, BlockNotFound):
                issue = PartIssue(index, "missing")
            elif isinstance(copy, BlockStoreError):
                result.issues.append(PartIssue(index, "unreachable", str(copy)))
                continue
            elif len(copy) != size:
                issue = PartIssue(index, "wrong size", f"{len(copy)} bytes instead of {size}")
            elif reference is not None and copy != reference:
                issue = PartIssue(index, "wrong data", "differs from the other copies")
            elif reference is None:
                issue = PartIssue(index, "unrecoverable", "copies of the right size differ, no majority")
                result.issues.append(issue)
                continue
            else:
                continue
            result.issues.append(issue)
            if reference is None:
                issue.repair_error = "no good copy to rebuild from"
            elif repair:
                self._write(index, organization_id, block_id, reference, issue)
        return result


class Raid5BlockStore(_RaidBlockStore):
    mode = "RAID5"

    def __init__(self, nodes: Sequence[BlockStore], *, partial_create_ok: bool = False) -> None:
        if len(nodes) < 3:
            raise ValueError("RAID5 needs at least 3 nodes")
        super().__init__(nodes, partial_create_ok=partial_create_ok)

    @property
    def data_chunks(self) -> int:
        return len(self.nodes) - 1

    def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
        chunks = split_raid5(data, self.data_chunks)
        self._write_all(
            organization_id, block_id, [*chunks, xor_parts(chunks)], tolerated=1 if self.partial_create_ok else 0
        )

    def read(self, organization_id: str, block_id: uuid.UUID) -> bytes:
        k = self.data_chunks
        parity_index = k
        futures: dict[Future, int] = {}

        def fetch(index: int) -> None:
            futures[self._submit(index, "read", organization_id, block_id)] = index

        for index in range(k):
            fetch(index)
        # A node that failed a moment ago is probably still down: ask for the parity at once rather than
        # after its chunk fails (the chunk is still asked for, in case the node is back).
        if any(self._is_suspect(index) for index in range(k)):
            fetch(parity_index)
        parts: dict[int, bytes] = {}
        errors: list[tuple[int, BlockStoreError]] = []
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = futures[future]
                try:
                    parts[index] = future.result()
                except BlockStoreError as exc:
                    errors.append((index, exc))
            if len(errors) > 1:
                for other in pending:
                    other.cancel()
                raise self._failure(
                    self.mode, [error for _, error in errors], f"read of block {block_id} failed on 2 nodes"
                )
            if errors and parity_index not in futures.values():
                fetch(parity_index)  # one chunk is missing: the parity rebuilds it
                pending |= {future for future, index in futures.items() if index == parity_index}
            data_present = sum(1 for index in parts if index < k)
            if data_present == k or (data_present == k - 1 and parity_index in parts):
                for other in pending:
                    other.cancel()  # a parity fetched for nothing, or a chunk rebuilt instead of waited for
                break
        chunks: list[bytes | None] = [parts.get(index) for index in range(k)]
        try:
            if len({len(part) for part in parts.values()}) > 1:
                raise ValueError("parts of different sizes")
            if None in chunks:
                missing = chunks.index(None)
                chunks[missing] = xor_parts([c for c in chunks if c is not None] + [parts[parity_index]])
                if errors:
                    logger.warning("RAID5 read of block %s rebuilt from parity (node %d: %s)", block_id, *errors[0])
            return join_raid5(chunks)  # type: ignore[arg-type]
        except (ValueError, KeyError) as exc:
            raise BlockStoreError(f"RAID5 block {block_id} is corrupt or incomplete: {exc}") from exc

    def scrub(self, organization_id: str, block_id: uuid.UUID, size: int, *, repair: bool) -> ScrubResult:
        result = ScrubResult(organization_id, block_id)
        parity_index = len(self.nodes) - 1
        chunk_len = raid5_chunk_len(size, self.data_chunks)
        parts = self._read_all(organization_id, block_id)
        usable: dict[int, bytes] = {}
        rebuildable: list[PartIssue] = []  # missing or wrong-size parts we may rewrite
        for index, part in enumerate(parts):
            if isinstance(part, BlockNotFound):
                rebuildable.append(PartIssue(index, "missing"))
            elif isinstance(part, BlockStoreError):
                result.issues.append(PartIssue(index, "unreachable", str(part)))
            elif len(part) != chunk_len:
                rebuildable.append(PartIssue(index, "wrong size", f"{len(part)} bytes instead of {chunk_len}"))
            else:
                usable[index] = part
        result.issues.extend(rebuildable)

        def data_chunks(parts_by_index: dict[int, bytes]) -> list[bytes]:
            return [parts_by_index[i] for i in range(self.data_chunks)]

        if len(usable) < len(self.nodes) - 1:
            # Two parts or more are gone: nothing to rebuild from.
            result.readable = False
            for issue in rebuildable:
                issue.repair_error = f"only {len(usable)} of {len(self.nodes)} parts left"
            return result

        if len(usable) == len(self.nodes) - 1:
            # One part unusable: it is the XOR of the others, if they hold a sound block.
            [lost] = [i for i in range(len(self.nodes)) if i not in usable]
            whole = {**usable, lost: xor_parts(list(usable.values()))}
            if not _well_formed(data_chunks(whole), size):
                result.readable = False
                result.issues.append(PartIssue(None, "unrecoverable", "the remaining parts do not hold the block"))
                for issue in rebuildable:
                    issue.repair_error = "the remaining parts do not hold the block"
                return result
            for issue in rebuildable:
                if repair:
                    self._write(lost, organization_id, block_id, whole[lost], issue)
            return result

        # Every part is there: check the parity, then the payload.
        chunks = data_chunks(usable)
        if _well_formed(chunks, size):
            if xor_parts(chunks) != usable[parity_index]:
                issue = PartIssue(parity_index, "parity mismatch", "parity rewritten from the data chunks" if repair
                                  else "does not match the data chunks")
                result.issues.append(issue)
                if repair:
                    self._write(parity_index, organization_id, block_id, xor_parts(chunks), issue)
            return result
        # The data chunks do not hold a sound block: is it one chunk the others and the parity can rebuild?
        candidates = []
        for index in range(self.data_chunks):
            others = [part for i, part in usable.items() if i != index]
            rebuilt = {**usable, index: xor_parts(others)}
            if _well_formed(data_chunks(rebuilt), size):
                candidates.append((index, rebuilt[index]))
        if len(candidates) == 1:
            index, chunk = candidates[0]
            issue = PartIssue(index, "wrong data", "does not match the parity and the other chunks")
            result.issues.append(issue)
            if repair:
                self._write(index, organization_id, block_id, chunk, issue)
        else:
            result.readable = False
            result.issues.append(PartIssue(None, "unrecoverable", "chunks and parity disagree"))
        return result


RAID_STORES: dict[str, type[_RaidBlockStore]] = {
    "RAID0": Raid0BlockStore,
    "RAID1": Raid1BlockStore,
    "RAID5": Raid5BlockStore,
}


def raid_blockstore(mode: str, nodes: Sequence[BlockStore], *, partial_create_ok: bool = False) -> _RaidBlockStore:
    return RAID_STORES[mode.upper()](nodes, partial_create_ok=partial_create_ok)
