"""`MOCKED`: blocks in process memory, lost at exit."""
from __future__ import annotations

import threading
import uuid

from blocks.stores.base import BlockNotFound


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

    def delete(self, organization_id: str, block_id: uuid.UUID) -> None:
        with self._lock:
            self._blocks.pop((organization_id, block_id), None)

    def list_blocks(self, organization_id: str) -> set[uuid.UUID]:
        with self._lock:
            return {block_id for organization, block_id in self._blocks if organization == organization_id}
