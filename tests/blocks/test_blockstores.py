"""The blockstores (docs/configuration.md#blockstore) and the parsing of their configuration."""
from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Callable

import pytest
from django.db import OperationalError

from blocks.models import BlockData
from blocks.stores import factory
from blocks.stores.base import BlockNotFound, BlockStore, BlockStoreError
from blocks.stores.config import split_with_escaping
from blocks.stores.database import DatabaseBlockStore
from blocks.stores.factory import blockstore_from_config
from blocks.stores.local import LocalFolderBlockStore
from blocks.stores.mocked import MockedBlockStore

ORG = "CoolOrg"


@pytest.fixture(
    params=[
        "mocked",
        pytest.param("database", marks=pytest.mark.django_db),
        "local",
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlockStore:
    factories: dict[str, Callable[[], BlockStore]] = {
        "mocked": MockedBlockStore,
        "database": DatabaseBlockStore,
        "local": lambda: LocalFolderBlockStore(tmp_path / "blocks"),
    }
    return factories[request.param]()


# --- Behaviour common to every store ----------------------------------------------------------------


def test_create_then_read(store: BlockStore) -> None:
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    assert store.read(ORG, block_id) == b"data"


def test_create_again_is_idempotent(store: BlockStore) -> None:
    # The client retries a failed block_create with the same id and data.
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    store.create(ORG, block_id, b"data")
    assert store.read(ORG, block_id) == b"data"


def test_read_missing(store: BlockStore) -> None:
    with pytest.raises(BlockNotFound):
        store.read(ORG, uuid.uuid4())


def test_missing_is_a_store_error(store: BlockStore) -> None:
    # Callers that only know BlockStoreError (a command's `timeout`) catch it too.
    with pytest.raises(BlockStoreError):
        store.read(ORG, uuid.uuid4())


def test_organizations_are_separate(store: BlockStore) -> None:
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"cool")
    store.create("OtherOrg", block_id, b"other")
    assert store.read(ORG, block_id) == b"cool"
    assert store.read("OtherOrg", block_id) == b"other"
    with pytest.raises(BlockNotFound):
        store.read("ThirdOrg", block_id)


def test_one_mebibyte(store: BlockStore) -> None:
    block_id = uuid.uuid4()
    data = bytes(range(256)) * 4096
    store.create(ORG, block_id, data)
    assert store.read(ORG, block_id) == data


def test_delete(store: BlockStore) -> None:
    block_id, other_id = uuid.uuid4(), uuid.uuid4()
    store.create(ORG, block_id, b"data")
    store.create(ORG, other_id, b"other")
    store.create("OtherOrg", block_id, b"same id, other organization")
    store.delete(ORG, block_id)
    with pytest.raises(BlockNotFound):
        store.read(ORG, block_id)
    assert store.read(ORG, other_id) == b"other"
    assert store.read("OtherOrg", block_id) == b"same id, other organization"


def test_delete_missing_is_done(store: BlockStore) -> None:
    # An interrupted erase is run again: what is already gone counts as deleted.
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    store.delete(ORG, block_id)
    store.delete(ORG, block_id)
    store.delete(ORG, uuid.uuid4())
    with pytest.raises(BlockNotFound):
        store.read(ORG, block_id)


def test_list_blocks(store: BlockStore) -> None:
    assert store.list_blocks(ORG) == set()
    ids = {uuid.uuid4() for _ in range(3)}
    for block_id in ids:
        store.create(ORG, block_id, b"data")
    store.create("OtherOrg", uuid.uuid4(), b"other")
    store.create("CoolOrg2", uuid.uuid4(), b"an id that starts the same")
    assert store.list_blocks(ORG) == ids
    store.delete(ORG, min(ids))
    assert store.list_blocks(ORG) == ids - {min(ids)}


def test_local_list_blocks_skips_half_written_files(tmp_path: Path) -> None:
    store = LocalFolderBlockStore(tmp_path)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    (tmp_path / ORG / f".{uuid.uuid4()}-x1y2.tmp").write_bytes(b"half")
    assert store.list_blocks(ORG) == {block_id}


# --- Store specifics -------------------------------------------------------------------------------


def test_mocked_concurrent_writers() -> None:
    store = MockedBlockStore()
    ids = [[uuid.uuid4() for _ in range(50)] for _ in range(8)]

    def write(block_ids: list[uuid.UUID]) -> None:
        for block_id in block_ids:
            store.create(ORG, block_id, block_id.bytes)

    threads = [threading.Thread(target=write, args=(block_ids,)) for block_ids in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(store.read(ORG, block_id) == block_id.bytes for block_ids in ids for block_id in block_ids)


def test_mocked_overwrites_silently() -> None:
    store = MockedBlockStore()
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"first")
    store.create(ORG, block_id, b"second")
    assert store.read(ORG, block_id) == b"second"


@pytest.mark.django_db
def test_database_row_and_ignored_conflict() -> None:
    store = DatabaseBlockStore()
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"first")
    # Inserting an existing key is silently ignored (a block id is written once: docs/protocol.md#block-create).
    store.create(ORG, block_id, b"second")
    row = BlockData.objects.get(block_id=block_id)
    assert (row.organization_id, bytes(row.data)) == (ORG, b"first")
    assert store.read(ORG, block_id) == b"first"


@pytest.mark.parametrize("method", ["bulk_create", "filter"])
def test_database_failure_is_a_store_error(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    def unreachable(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(BlockData.objects, method, unreachable)  # the ORM path (SQLite)
    monkeypatch.setattr(DatabaseBlockStore, "_execute_binary", staticmethod(unreachable))  # PostgreSQL's
    store = DatabaseBlockStore()
    with pytest.raises(BlockStoreError):
        if method == "bulk_create":
            store.create(ORG, uuid.uuid4(), b"data")
        else:
            store.read(ORG, uuid.uuid4())


def test_local_layout(tmp_path: Path) -> None:
    store = LocalFolderBlockStore(tmp_path)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    assert (tmp_path / ORG / str(block_id)).read_bytes() == b"data"
    # Written through a temporary file renamed in place: nothing else is left behind.
    assert [path.name for path in (tmp_path / ORG).iterdir()] == [str(block_id)]


def test_local_overwrites_silently(tmp_path: Path) -> None:
    store = LocalFolderBlockStore(tmp_path)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"first")
    store.create(ORG, block_id, b"second")
    assert store.read(ORG, block_id) == b"second"
    assert len(list((tmp_path / ORG).iterdir())) == 1


def test_local_write_failure(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_bytes(b"")
    store = LocalFolderBlockStore(tmp_path / "not-a-folder")
    with pytest.raises(BlockStoreError) as caught:
        store.create(ORG, uuid.uuid4(), b"data")
    assert not isinstance(caught.value, BlockNotFound)


def test_local_read_failure(tmp_path: Path) -> None:
    store = LocalFolderBlockStore(tmp_path)
    block_id = uuid.uuid4()
    (tmp_path / ORG / str(block_id)).mkdir(parents=True)  # unreadable as a file
    with pytest.raises(BlockStoreError) as caught:
        store.read(ORG, block_id)
    assert not isinstance(caught.value, BlockNotFound)


# --- Configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["MOCKED", "mocked", "Mocked"])
def test_config_mocked(spec: str) -> None:
    assert isinstance(factory.single_blockstore_from_config(spec), MockedBlockStore)


@pytest.mark.parametrize("spec", ["POSTGRESQL", "postgresql", "PostgreSQL"])
def test_config_postgresql(spec: str) -> None:
    assert isinstance(factory.single_blockstore_from_config(spec), DatabaseBlockStore)


def test_config_local(tmp_path: Path) -> None:
    store = factory.single_blockstore_from_config(f"LOCAL:{tmp_path}/blocks")
    assert isinstance(store, LocalFolderBlockStore) and store.root == tmp_path / "blocks"


def test_config_local_is_case_insensitive_and_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = factory.single_blockstore_from_config("local:blocks")
    assert isinstance(store, LocalFolderBlockStore) and store.root == tmp_path.resolve() / "blocks"


def test_config_local_escaped_colon(tmp_path: Path) -> None:
    store = factory.single_blockstore_from_config(f"LOCAL:{tmp_path}/a\\:b\\\\c")
    assert isinstance(store, LocalFolderBlockStore) and store.root == tmp_path / "a:b\\c"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("a:b", ["a", "b"]),
        ("a\\:b", ["a:b"]),
        ("a\\\\:b", ["a\\", "b"]),
        ("a\\xb", ["a\\xb"]),
        (
            "s3:http\\://minio\\:9000:region1:parsec:KEY:SECRET",
            ["s3", "http://minio:9000", "region1", "parsec", "KEY", "SECRET"],
        ),
        ("a:", ["a", ""]),
        ("trailing\\", ["trailing\\"]),
    ],
)
def test_split_with_escaping(value: str, expected: list[str]) -> None:
    assert split_with_escaping(value) == expected


@pytest.mark.parametrize(
    "specs, message",
    [
        ((), "no blockstore"),
        (("LOCAL:",), "invalid LOCAL"),
        (("LOCAL:/a:b",), "invalid LOCAL"),
        (("s3:region:bucket:key:secret",), "invalid S3 config"),
        (("swift:https://auth:tenant:container:user:password",), "invalid Swift config"),
        (("RAID1:0:MOCKED", "RAID1:2:MOCKED"), "Missing node index `1`"),
        (("RAID5:0:MOCKED", "RAID5:1:MOCKED"), "RAID5 blockstore needs at least 3 nodes"),
        (("RAID1:0:MOCKED", "RAID1:1:DYNAMO"), "RAID1 node 1: invalid blockstore type `DYNAMO`"),
        (("MOCKED", "POSTGRESQL"), "only available in RAID mode"),
        (("DYNAMO",), "invalid blockstore type `DYNAMO`"),
    ],
)
def test_config_errors(specs: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        blockstore_from_config(specs)


def test_config_store_is_built_once() -> None:
    # MOCKED data lives in the store: every command of the process must see the same one.
    assert blockstore_from_config(("MOCKED",)) is blockstore_from_config(("MOCKED",))
    assert blockstore_from_config(("MOCKED",)) is not blockstore_from_config(("mocked",))


def test_get_blockstore_follows_settings(parsec_settings, tmp_path: Path) -> None:
    parsec_settings(blockstore=(f"LOCAL:{tmp_path}",))
    store = factory.get_blockstore()
    assert isinstance(store, LocalFolderBlockStore) and store.root == tmp_path
    parsec_settings(blockstore=("POSTGRESQL",))
    assert isinstance(factory.get_blockstore(), DatabaseBlockStore)


@pytest.mark.django_db
def test_block_bytes_are_stored_out_of_line_without_compression() -> None:
    # Encrypted bytes never compress: PostgreSQL must not try (migration blocks/0002).
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("storage modes are PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'data'",
            [BlockData._meta.db_table],
        )
        assert cursor.fetchone()[0] == "e"  # EXTERNAL
    store = DatabaseBlockStore()
    block_id, data = uuid.uuid4(), bytes(range(256)) * 4096  # 1 MiB that would compress very well
    store.create("Org", block_id, data)
    assert store.read("Org", block_id) == data
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT pg_column_size("data") FROM "{BlockData._meta.db_table}" WHERE "block_id" = %s', [block_id]
        )
        assert cursor.fetchone()[0] >= len(data)  # stored as is
