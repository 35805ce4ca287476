"""Where block data lives (server-config.md §2): a small synchronous interface and its stores.

Stores are called from worker threads only (the services wrap every call in `run_sync`), never
on the event loop, so they may block. Every failure surfaces as `BlockStoreError`, which the
commands answer with `timeout`. Writes are idempotent: a client retries a failed `block_create`
with the same id and data, and the store may already hold them.

`blockstore_from_config` builds the store of a `--blockstore` configuration once per process.
It knows MOCKED, POSTGRESQL and LOCAL:<path>; S3, Swift and the RAID combinations plug in there,
as more `BlockStore` implementations (a RAID store being one that holds several node stores).
"""
from __future__ import annotations

import functools
import os
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.db import DatabaseError

from blocks.models import BlockData


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


class MockedBlockStore:
    """`MOCKED`: in process memory, lost at exit."""

    def __init__(self) -> None:
        self._blocks: dict[tuple[str, uuid.UUID], bytes] = {}
        # Worker threads of concurrent commands share the store.
        self._lock = threading.Lock()

    def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
        with self._lock:
            self._blocks[organization_id, block_id] = bytes(data)

    def read(self, organization_id: str, block_id: uuid.UUID) -> bytes:
        with self._lock:
            data = self._blocks.get((organization_id, block_id))
        if data is None:
            raise BlockNotFound(f"block {block_id} not found")
        return data


class DatabaseBlockStore:
    """`POSTGRESQL`: the `BlockData` table of Django's database, whichever it is (SQLite too).

    Each call is its own autocommit statement: the services call it outside their transactions.
    """

    def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
        try:
            # ON CONFLICT DO NOTHING: a retried write finds the same data already there.
            BlockData.objects.bulk_create(
                [BlockData(organization_id=organization_id, block_id=block_id, data=data)], ignore_conflicts=True
            )
        except DatabaseError as exc:
            raise BlockStoreError(f"cannot write block {block_id}: {type(exc).__name__}") from exc

    def read(self, organization_id: str, block_id: uuid.UUID) -> bytes:
        try:
            data = (
                BlockData.objects.filter(organization_id=organization_id, block_id=block_id)
                .values_list("data", flat=True)
                .first()
            )
        except DatabaseError as exc:
            raise BlockStoreError(f"cannot read block {block_id}: {type(exc).__name__}") from exc
        if data is None:
            raise BlockNotFound(f"block {block_id} not found")
        return bytes(data)  # PostgreSQL gives a memoryview


class LocalFolderBlockStore:
    """`LOCAL:<path>` (ours): one file per block, `<path>/<organization id>/<block uuid with dashes>`.

    Organization ids are word characters and dashes (encoding.md §4), safe as folder names.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, organization_id: str, block_id: uuid.UUID) -> Path:
        return self.root / organization_id / str(block_id)

    def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
        path = self.path_of(organization_id, block_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written aside then renamed: a reader never sees half a block, a retry just replaces it.
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{block_id}-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    # The metadata row is committed right after: the data must survive a crash first.
                    os.fsync(file.fileno())
                os.replace(temporary, path)
            except BaseException:
                try:
                    os.unlink(temporary)
                except FileNotFoundError:
                    pass
                raise
            _fsync_directory(path.parent)
        except OSError as exc:
            raise BlockStoreError(f"cannot write block {block_id}: {exc.strerror or exc}") from exc

    def read(self, organization_id: str, block_id: uuid.UUID) -> bytes:
        try:
            return self.path_of(organization_id, block_id).read_bytes()
        except FileNotFoundError as exc:
            raise BlockNotFound(f"block {block_id} not found") from exc
        except OSError as exc:
            raise BlockStoreError(f"cannot read block {block_id}: {exc.strerror or exc}") from exc


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- Configuration ---------------------------------------------------------------------------------


def split_escaped(value: str) -> list[str]:
    """Split on `:` (server-config.md §2.1): `\\:` is a literal colon, `\\\\` a literal backslash,
    `\\` followed by anything else is kept as is."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            current.append(following if following in ("\\", ":") else "\\" + following)
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _is_raid(spec: str) -> bool:
    # Like the reference: a RAID prefix *and* three parts, else it is a (bad) single store.
    parts = spec.split(":", 2)
    return parts[0].upper() in ("RAID0", "RAID1", "RAID5") and len(parts) == 3


def single_blockstore_from_config(spec: str) -> BlockStore:
    """A new store for one non-RAID value (not cached: two RAID nodes may both be MOCKED)."""
    if spec.upper() == "MOCKED":
        return MockedBlockStore()
    if spec.upper() == "POSTGRESQL":
        return DatabaseBlockStore()
    prefix, *fields = split_escaped(spec)
    if prefix.upper() == "LOCAL":
        if len(fields) != 1 or not fields[0]:
            raise ValueError("invalid LOCAL blockstore, expected `LOCAL:<path>` (write `\\:` for a `:` in the path)")
        return LocalFolderBlockStore(Path(fields[0]).resolve())
    if prefix.upper() in ("S3", "SWIFT"):
        raise ValueError(f"{prefix.upper()} blockstore is not supported yet")
    raise ValueError(f"invalid blockstore type `{prefix}`, expected MOCKED, POSTGRESQL or LOCAL:<path>")


@functools.cache
def blockstore_from_config(specs: tuple[str, ...]) -> BlockStore:
    """The store of a `--blockstore` configuration, built once per process (MOCKED data lives in it)."""
    if not specs:
        raise ValueError("no blockstore configured")
    if any(_is_raid(spec) for spec in specs):
        raise ValueError("RAID blockstores are not supported yet")
    if len(specs) > 1:
        raise ValueError("several blockstores are only allowed in RAID mode")
    return single_blockstore_from_config(specs[0])


def get_blockstore() -> BlockStore:
    """The configured store (tests replace this function to inject a store)."""
    return blockstore_from_config(settings.PARSEC.blockstore)
