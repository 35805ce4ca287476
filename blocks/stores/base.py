"""Where block data lives (docs/configuration.md#blockstore): the interface every store implements.

This module is the bottom of `blocks.stores`: the interface, its errors, the object naming and the
helpers the stores share. Each store is a module of its own that imports only this one (and its
parsed configuration from `blocks.stores.config`): `mocked`, `database` (POSTGRESQL), `local`
(LOCAL:<path>), `s3`, `swift` and `raid` (RAID0/1/5 over any of them). `blocks.stores.factory`
builds them from the parsed `--blockstore` configuration; nothing here knows the factory.

Stores are called from worker threads only (the services wrap every call in `run_sync`), never
on the event loop, so they may block. Every failure surfaces as `BlockStoreError`, which the
commands answer with `timeout`. Writes are idempotent: a client retries a failed `block_create`
with the same id and data, and the store may already hold them.

Besides `create` and `read`, every store has `delete` and `list_blocks` (erasing an organization,
`organizations.erase`: the blocks the database knows, then whatever else the store holds for it), and
stores may have `check()` (start-up check: S3 bucket / Swift container
reachable) and `scrub()` (used by `manage.py blockstore_check`: is every part of a block where it
should be, and optionally rewrite it); `check_blockstore` and `scrub_block` fall back to defaults.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Iterable, Protocol

from django.conf import settings


class BlockStoreError(Exception):
    """The store could not do the operation (unreachable, refused, I/O error): the reply is `timeout`."""


class BlockNotFound(BlockStoreError):
    """The store has no data for this block (a RAID1 read tries the next node, a command answers `timeout`)."""


class BlockStore(Protocol):
    def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
        """Store the block, silently overwriting (or keeping) an existing copy; raise BlockStoreError."""
        ...

    def read(self, organization_id: str, block_id: uuid.UUID) -> bytes:
        """The block's data; raise BlockNotFound if absent, BlockStoreError on any other failure."""
        ...

    def delete(self, organization_id: str, block_id: uuid.UUID) -> None:
        """Remove the block; already absent is success (an interrupted erase is re-run); BlockStoreError."""
        ...

    def list_blocks(self, organization_id: str) -> set[uuid.UUID]:
        """Every block the store holds for the organization (metadata or not); BlockStoreError."""
        ...


def object_name(organization_id: str, block_id: uuid.UUID) -> str:
    """`<organization_id>/<block uuid with dashes>`, the S3 key / Swift object name of the reference."""
    return f"{organization_id}/{block_id}"


# Requests a store must serve at once: the server runs block I/O in the event loop's default executor,
# sized `--db-max-connections` + 4 by `manage.py run` (EXECUTOR_MARGIN); at least botocore's default.
EXECUTOR_MARGIN = 4
MIN_POOL_SIZE = 10


def store_concurrency() -> int:
    return max(MIN_POOL_SIZE, settings.PARSEC.db_max_connections + EXECUTOR_MARGIN)


def block_ids_of(names: Iterable[str]) -> set[uuid.UUID]:
    """The block ids among object or file names (a LOCAL store's half-written `.<id>-….tmp` files are not blocks)."""
    found = set()
    for name in names:
        try:
            found.add(uuid.UUID(name))
        except ValueError:
            continue
    return found


# --- Checking and repairing (manage.py blockstore_check) -----------------------------------------


@dataclass
class PartIssue:
    """What is wrong with one node's part of a block (`node` is None for a single, non-RAID store)."""

    node: int | None
    problem: str  # missing | unreachable | wrong size | wrong data | parity mismatch | unrecoverable
    detail: str = ""
    repaired: bool = False
    repair_error: str | None = None

    def describe(self) -> str:
        where = "store" if self.node is None else f"node {self.node}"
        text = f"{where}: {self.problem}" + (f" ({self.detail})" if self.detail else "")
        if self.repaired:
            text += ", repaired"
        elif self.repair_error:
            text += f", repair failed: {self.repair_error}"
        return text


@dataclass
class ScrubResult:
    organization_id: str
    block_id: uuid.UUID
    issues: list[PartIssue] = field(default_factory=list)
    readable: bool = True  # the block can still be served (maybe degraded)

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def fixed(self) -> bool:
        """Every issue was repaired: the block is whole again."""
        return bool(self.issues) and all(issue.repaired for issue in self.issues)


def scrub_single(
    store: BlockStore, organization_id: str, block_id: uuid.UUID, size: int, *, node: int | None = None
) -> ScrubResult:
    """A store without redundancy: the block must be there with its recorded size; nothing to repair from."""
    result = ScrubResult(organization_id, block_id)
    try:
        data = store.read(organization_id, block_id)
    except BlockNotFound:
        result.issues.append(PartIssue(node, "missing", "no redundancy to rebuild it from"))
        result.readable = False
    except BlockStoreError as exc:
        result.issues.append(PartIssue(node, "unreachable", str(exc)))
        result.readable = False
    else:
        if len(data) != size:
            result.issues.append(PartIssue(node, "wrong size", f"{len(data)} bytes instead of {size}"))
            result.readable = False
    return result


def scrub_block(
    store: BlockStore, organization_id: str, block_id: uuid.UUID, size: int, *, repair: bool
) -> ScrubResult:
    """Check (and with `repair`, rewrite) every part of one block; stores without `scrub` are read back."""
    scrub = getattr(store, "scrub", None)
    if scrub is not None:
        return scrub(organization_id, block_id, size, repair=repair)
    return scrub_single(store, organization_id, block_id, size)


def check_blockstore(store: BlockStore) -> None:
    """The start-up check: S3 buckets and Swift containers exist and answer; BlockStoreError if not."""
    check = getattr(store, "check", None)
    if check is not None:
        check()
