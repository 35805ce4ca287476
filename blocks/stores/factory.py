"""Builds the stores of a parsed `--blockstore` configuration (`blocks.stores.config`), once per process.

The only module that knows every store; the stores know only `blocks.stores.base`. The services,
the health probe, `run`, `blockstore_check` and the organization erase get their store here.
"""
from __future__ import annotations

import threading

from django.conf import settings

from blocks.stores.base import BlockStore, check_blockstore
from blocks.stores.config import (
    BlockstoreConfig,
    LocalBlockstore,
    MockedBlockstore,
    PostgreSQLBlockstore,
    RaidBlockstore,
    S3Blockstore,
    SwiftBlockstore,
    parse_blockstore,
    parse_single_blockstore,
)
from blocks.stores.database import DatabaseBlockStore
from blocks.stores.local import LocalFolderBlockStore
from blocks.stores.mocked import MockedBlockStore
from blocks.stores.raid import raid_blockstore


def build_blockstore(config: BlockstoreConfig) -> BlockStore:
    """A new store for a parsed configuration (not cached: two RAID nodes may both be MOCKED)."""
    if isinstance(config, MockedBlockstore):
        return MockedBlockStore()
    if isinstance(config, PostgreSQLBlockstore):
        return DatabaseBlockStore()
    if isinstance(config, LocalBlockstore):
        return LocalFolderBlockStore(config.path)
    if isinstance(config, S3Blockstore):
        # Imported on use: importing boto3 takes ~0.6 s (this machine), a cost only S3 users should pay.
        from blocks.stores.s3 import S3BlockStore

        return S3BlockStore(config)
    if isinstance(config, SwiftBlockstore):
        # Imported on use, like S3 (swiftclient: ~0.2 s).
        from blocks.stores.swift import SwiftBlockStore

        return SwiftBlockStore(config)
    if isinstance(config, RaidBlockstore):
        return raid_blockstore(config.mode, [build_blockstore(node) for node in config.nodes])
    raise TypeError(f"unknown blockstore configuration {config!r}")


def single_blockstore_from_config(spec: str) -> BlockStore:
    """A new store for one non-RAID value; ValueError (pointing at the bad part) if it is invalid."""
    return build_blockstore(parse_single_blockstore(spec))


_stores: dict[tuple[str, ...], BlockStore] = {}
_stores_lock = threading.Lock()


def blockstore_from_config(specs: tuple[str, ...]) -> BlockStore:
    """The store of a `--blockstore` configuration, built once per process (MOCKED data lives in it).

    Under a lock: the first block commands arrive in several worker threads at once, and two MOCKED
    stores built side by side would each see only half of the blocks.
    """
    with _stores_lock:
        store = _stores.get(specs)
        if store is None:
            store = _stores[specs] = build_blockstore(parse_blockstore(specs))
        return store


def get_blockstore() -> BlockStore:
    """The configured store (tests replace this function to inject a store)."""
    return blockstore_from_config(settings.PARSEC.blockstore)


def prepare_blockstore() -> BlockStore:
    """Build the configured store and run its start-up check, before the server accepts requests.

    Like the reference, an S3 bucket or Swift container that cannot be reached (any RAID node's)
    aborts the start: BlockStoreError, whose message names the node, the bucket and the reason.
    Building it here also spares the first block command the clients' set-up (~0.1 s per S3 node).
    """
    store = get_blockstore()
    check_blockstore(store)
    return store
