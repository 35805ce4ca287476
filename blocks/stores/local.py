"""`LOCAL:<path>` (ours): one file per block under a folder."""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from blocks.stores.base import BlockNotFound, BlockStoreError, block_ids_of


class LocalFolderBlockStore:
    """`LOCAL:<path>` (ours): one file per block, `<path>/<organization id>/<block uuid with dashes>`.

    Organization ids are word characters and dashes (docs/protocol.md#identifiers), safe as folder names.
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

    def delete(self, organization_id: str, block_id: uuid.UUID) -> None:
        try:
            self.path_of(organization_id, block_id).unlink(missing_ok=True)
        except OSError as exc:
            raise BlockStoreError(f"cannot delete block {block_id}: {exc.strerror or exc}") from exc

    def list_blocks(self, organization_id: str) -> set[uuid.UUID]:
        try:
            names = [path.name for path in (self.root / organization_id).iterdir()]
        except FileNotFoundError:
            return set()
        except OSError as exc:
            raise BlockStoreError(f"cannot list blocks: {exc.strerror or exc}") from exc
        return block_ids_of(names)


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
