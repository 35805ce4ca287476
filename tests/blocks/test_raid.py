"""RAID0/1/5 (docs/configuration.md#blockstore): the RAID5 arithmetic as properties, and the read/write semantics
with nodes that fail or are slow (in-memory nodes; the same against real S3 servers is in test_raid_nodes)."""
from __future__ import annotations

import struct
import threading
import time
import uuid

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from blocks.stores.base import BlockNotFound, BlockStoreError
from blocks.stores.factory import blockstore_from_config
from blocks.stores.mocked import MockedBlockStore
from blocks.stores.raid import (
    Raid0BlockStore,
    Raid1BlockStore,
    Raid5BlockStore,
    join_raid5,
    raid5_chunk_len,
    split_raid5,
    xor_parts,
)

ORG = "CoolOrg"


class FlakyStore:
    """An in-memory node that can be down (every call fails) or slow."""

    def __init__(self) -> None:
        self.inner = MockedBlockStore()
        self.down = False
        self.delay = 0.0
        self.calls: list[str] = []

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if self.delay:
            time.sleep(self.delay)
        if self.down:
            raise BlockStoreError("node down")

    def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
        self._enter("create")
        self.inner.create(organization_id, block_id, data)

    def read(self, organization_id: str, block_id: uuid.UUID) -> bytes:
        self._enter("read")
        return self.inner.read(organization_id, block_id)

    def delete(self, organization_id: str, block_id: uuid.UUID) -> None:
        self._enter("delete")
        self.inner.delete(organization_id, block_id)

    def list_blocks(self, organization_id: str) -> set[uuid.UUID]:
        self._enter("list_blocks")
        return self.inner.list_blocks(organization_id)

    def part(self, block_id: uuid.UUID) -> bytes | None:
        return self.inner._blocks.get((ORG, block_id))

    def drop(self, block_id: uuid.UUID) -> None:
        del self.inner._blocks[ORG, block_id]


def nodes(count: int) -> list[FlakyStore]:
    return [FlakyStore() for _ in range(count)]


def reference_split(block: bytes, nb_chunks: int) -> list[bytes]:
    """The reference server's split (parsec 2.17 raid5_blockstore.split_block_in_chunks), written out again:
    the layouts must be identical so that a reference deployment's RAID5 nodes read back with ours."""
    payload_size = len(block) + 4
    chunk_len = payload_size // nb_chunks
    if nb_chunks * chunk_len < payload_size:
        chunk_len += 1
    payload = struct.pack("!I", len(block)) + block + b"\x00" * (chunk_len * nb_chunks - payload_size)
    return [payload[chunk_len * i : chunk_len * (i + 1)] for i in range(nb_chunks)]


# --- RAID5 arithmetic, for arbitrary blocks -----------------------------------------------------------

blocks = st.binary(max_size=4096)
data_chunk_counts = st.integers(min_value=2, max_value=8)  # RAID5 over 3 to 9 nodes


@given(block=blocks, k=data_chunk_counts)
@example(block=b"", k=2)
@example(block=b"\x00", k=2)
@example(block=b"\xff", k=7)
@example(block=b"abc", k=2)
@settings(max_examples=300)
def test_split_layout(block: bytes, k: int) -> None:
    chunks = split_raid5(block, k)
    assert chunks == reference_split(block, k)
    assert len(chunks) == k
    assert {len(chunk) for chunk in chunks} == {raid5_chunk_len(len(block), k)}
    assert raid5_chunk_len(len(block), k) == -(-(len(block) + 4) // k)
    payload = b"".join(chunks)
    assert payload[:4] == len(block).to_bytes(4, "big")
    assert payload[4 : 4 + len(block)] == block
    assert set(payload[4 + len(block) :]) <= {0}
    assert len(payload) - len(block) - 4 < k  # less than one byte of padding per chunk
    assert join_raid5(chunks) == block


@given(block=blocks, k=data_chunk_counts, data=st.data())
@example(block=b"", k=2, data=None)
@example(block=b"\x01", k=3, data=None)
@settings(max_examples=300)
def test_parity_rebuilds_any_one_part(block: bytes, k: int, data) -> None:
    chunks = split_raid5(block, k)
    parity = xor_parts(chunks)
    assert len(parity) == len(chunks[0])
    assert xor_parts([*chunks, parity]) == bytes(len(parity))  # parity makes the XOR of all parts zero
    lost = data.draw(st.integers(min_value=0, max_value=k), label="lost") if data is not None else 0
    parts = [*chunks, parity]
    rebuilt = xor_parts([part for index, part in enumerate(parts) if index != lost])
    assert rebuilt == parts[lost]
    parts[lost] = rebuilt
    assert join_raid5(parts[:k]) == block


def test_xor_refuses_parts_of_different_sizes() -> None:
    with pytest.raises(ValueError):
        xor_parts([b"ab", b"c"])


@pytest.mark.parametrize("payload", [b"", b"\x00\x00", b"\x00\x00\x00\x09abc"])
def test_join_refuses_inconsistent_payloads(payload: bytes) -> None:
    with pytest.raises(ValueError):
        join_raid5([payload])


# --- RAID5 store over in-memory nodes, arbitrary blocks and failures ------------------------------------

RAID5_NODES = nodes(4)
RAID5_STORE = Raid5BlockStore(RAID5_NODES)


@given(block=blocks, down=st.sampled_from([None, 0, 1, 2, 3]))
@example(block=b"", down=0)
@example(block=b"x", down=3)
@settings(max_examples=150, deadline=None)
def test_raid5_store_reads_back_with_any_one_node_down(block: bytes, down: int | None) -> None:
    for node in RAID5_NODES:
        node.down = False
    block_id = uuid.uuid4()
    RAID5_STORE.create(ORG, block_id, block)
    chunks = split_raid5(block, 3)
    assert [node.part(block_id) for node in RAID5_NODES] == [*chunks, xor_parts(chunks)]
    if down is not None:
        RAID5_NODES[down].down = True
    assert RAID5_STORE.read(ORG, block_id) == block
    RAID5_NODES[down or 0].down = False


@given(block_id=st.uuids(), count=st.integers(min_value=1, max_value=7))
def test_raid0_node_is_the_id_modulo_the_node_count(block_id: uuid.UUID, count: int) -> None:
    store = Raid0BlockStore.__new__(Raid0BlockStore)
    store.nodes = [None] * count  # type: ignore[list-item]
    assert store.node_index(block_id) == block_id.int % count


# --- RAID0 -------------------------------------------------------------------------------------------


def test_raid0_stripes_whole_blocks() -> None:
    members = nodes(3)
    store = Raid0BlockStore(members)
    ids = [uuid.uuid4() for _ in range(30)]
    for block_id in ids:
        store.create(ORG, block_id, block_id.bytes)
    for block_id in ids:
        holders = [index for index, node in enumerate(members) if node.part(block_id) is not None]
        assert holders == [block_id.int % 3]
        assert store.read(ORG, block_id) == block_id.bytes


def test_raid0_node_failure_fails_its_blocks_only() -> None:
    members = nodes(2)
    store = Raid0BlockStore(members)
    even = next(b for b in iter(uuid.uuid4, None) if b.int % 2 == 0)
    odd = next(b for b in iter(uuid.uuid4, None) if b.int % 2 == 1)
    store.create(ORG, even, b"even")
    store.create(ORG, odd, b"odd")
    members[1].down = True
    assert store.read(ORG, even) == b"even"
    with pytest.raises(BlockStoreError):
        store.read(ORG, odd)
    with pytest.raises(BlockStoreError):
        store.create(ORG, odd, b"odd")


# --- RAID1 -------------------------------------------------------------------------------------------


def test_raid1_writes_every_node() -> None:
    members = nodes(3)
    store = Raid1BlockStore(members)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    assert [node.part(block_id) for node in members] == [b"data"] * 3


def test_raid1_write_fails_if_any_node_fails() -> None:
    members = nodes(3)
    members[2].down = True
    with pytest.raises(BlockStoreError, match="node 2"):
        Raid1BlockStore(members).create(ORG, uuid.uuid4(), b"data")


def test_raid1_write_failure_does_not_wait_for_slow_nodes() -> None:
    members = nodes(2)
    members[0].down = True
    members[1].delay = 3.0
    started = time.monotonic()
    with pytest.raises(BlockStoreError):
        Raid1BlockStore(members).create(ORG, uuid.uuid4(), b"data")
    assert time.monotonic() - started < 2.0


def test_raid1_partial_create_ok_needs_one_node() -> None:
    members = nodes(3)
    members[0].down = members[1].down = True
    store = Raid1BlockStore(members, partial_create_ok=True)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    assert members[2].part(block_id) == b"data"
    members[2].down = True
    with pytest.raises(BlockStoreError):
        store.create(ORG, uuid.uuid4(), b"data")


def test_raid1_read_first_answer_wins() -> None:
    members = nodes(3)
    store = Raid1BlockStore(members)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    members[0].delay = members[1].delay = 3.0
    started = time.monotonic()
    assert store.read(ORG, block_id) == b"data"
    assert time.monotonic() - started < 2.0  # did not wait for the slow nodes


@pytest.mark.parametrize("down", [[0], [1, 2], [0, 2]])
def test_raid1_read_survives_all_but_one_node(down: list[int]) -> None:
    members = nodes(3)
    store = Raid1BlockStore(members)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    for index in down:
        members[index].down = True
    assert store.read(ORG, block_id) == b"data"


def test_raid1_read_missing_on_some_nodes() -> None:
    members = nodes(2)
    store = Raid1BlockStore(members)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    members[0].drop(block_id)
    assert store.read(ORG, block_id) == b"data"


def test_raid1_read_fails_when_every_node_fails() -> None:
    members = nodes(2)
    store = Raid1BlockStore(members)
    with pytest.raises(BlockNotFound):
        store.read(ORG, uuid.uuid4())  # nowhere: a missing block, not an outage
    members[0].down = True
    with pytest.raises(BlockStoreError) as caught:
        store.read(ORG, uuid.uuid4())
    assert not isinstance(caught.value, BlockNotFound)


# --- RAID5 -------------------------------------------------------------------------------------------


def test_raid5_needs_three_nodes() -> None:
    with pytest.raises(ValueError):
        Raid5BlockStore(nodes(2))


def test_raid5_read_does_not_fetch_parity_when_chunks_answer() -> None:
    members = nodes(3)
    store = Raid5BlockStore(members)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"some data")
    members[2].calls.clear()
    assert store.read(ORG, block_id) == b"some data"
    assert members[2].calls == []


@pytest.mark.parametrize("lost", [0, 1, 2])
def test_raid5_read_rebuilds_a_missing_chunk(lost: int) -> None:
    members = nodes(3)
    store = Raid5BlockStore(members)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"some data that spans the chunks")
    members[lost].drop(block_id)
    assert store.read(ORG, block_id) == b"some data that spans the chunks"


def test_raid5_read_fetches_the_parity_at_once_while_a_node_is_presumed_down(monkeypatch) -> None:
    members = nodes(3)
    store = Raid5BlockStore(members)
    first, second = uuid.uuid4(), uuid.uuid4()
    store.create(ORG, first, b"first block")
    store.create(ORG, second, b"second block")
    members[0].down = True
    assert store.read(ORG, first) == b"first block"  # node 0 failed: rebuilt from the parity
    # Node 0 now takes long to answer (or to fail): the next read does not wait for it.
    members[0].delay = 3.0
    members[2].calls.clear()
    started = time.monotonic()
    assert store.read(ORG, second) == b"second block"
    assert time.monotonic() - started < 2.0
    assert members[2].calls == ["read"]
    # Once it answers again, it is trusted again: no more parity reads.
    members[0].down = False
    members[0].delay = 0.0
    monkeypatch.setattr("blocks.stores.raid.SUSPECT_SECONDS", 0.0)
    time.sleep(3.1)  # the slow call above ends
    assert store.read(ORG, first) == b"first block"
    members[2].calls.clear()
    assert store.read(ORG, second) == b"second block"
    assert members[2].calls == []


def test_raid5_read_fails_with_two_nodes_down() -> None:
    members = nodes(4)
    store = Raid5BlockStore(members)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    members[0].down = members[3].down = True  # a chunk, and the parity that would rebuild it
    with pytest.raises(BlockStoreError):
        store.read(ORG, block_id)
    members[3].down = False
    members[1].down = True
    with pytest.raises(BlockStoreError):
        store.read(ORG, block_id)


@pytest.mark.parametrize("down", [0, 1, 2])
def test_raid5_write_fails_if_any_node_fails(down: int) -> None:
    members = nodes(3)
    members[down].down = True
    with pytest.raises(BlockStoreError, match=f"node {down}"):
        Raid5BlockStore(members).create(ORG, uuid.uuid4(), b"data")


def test_raid5_partial_create_ok_tolerates_one_node() -> None:
    members = nodes(3)
    store = Raid5BlockStore(members, partial_create_ok=True)
    members[1].down = True
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    members[1].down = False
    assert store.read(ORG, block_id) == b"data"  # chunk 1 rebuilt from the parity
    members[0].down = members[2].down = True
    with pytest.raises(BlockStoreError):
        store.create(ORG, uuid.uuid4(), b"data")


def test_raid5_corrupt_parts_are_an_error_not_garbage() -> None:
    members = nodes(3)
    store = Raid5BlockStore(members)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    members[0].inner.create(ORG, block_id, b"\xff\xff\xff\xff")  # a length prefix beyond the data
    with pytest.raises(BlockStoreError, match="corrupt"):
        store.read(ORG, block_id)
    members[0].inner.create(ORG, block_id, b"\x00")  # a chunk of the wrong size
    with pytest.raises(BlockStoreError, match="corrupt"):
        store.read(ORG, block_id)


def test_raid_nodes_run_concurrently() -> None:
    members = nodes(5)
    store = Raid5BlockStore(members)
    for node in members:
        node.delay = 1.0
    started = time.monotonic()
    store.create(ORG, uuid.uuid4(), b"data")
    assert time.monotonic() - started < 3.5  # not 5 x 1 s


def test_raid_unexpected_node_error_is_a_store_error() -> None:
    class Broken(FlakyStore):
        def read(self, organization_id, block_id):
            raise RuntimeError("bug")

    members = [FlakyStore(), Broken()]
    store = Raid1BlockStore(members)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    assert store.read(ORG, block_id) == b"data"
    members[0].down = True
    with pytest.raises(BlockStoreError, match="unexpected RuntimeError"):
        store.read(ORG, block_id)


# --- Configuration -----------------------------------------------------------------------------------


def test_config_builds_raid_stores(tmp_path) -> None:
    store = blockstore_from_config(
        (f"RAID5:2:LOCAL:{tmp_path}/c", "raid5:0:MOCKED", f"Raid5:1:LOCAL:{tmp_path}/b")
    )
    assert isinstance(store, Raid5BlockStore)
    assert isinstance(store.nodes[0], MockedBlockStore)
    assert [getattr(node, "root", None) for node in store.nodes[1:]] == [tmp_path / "b", tmp_path / "c"]
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    assert (tmp_path / "c" / ORG / str(block_id)).read_bytes() == xor_parts(split_raid5(b"data", 2))
    assert isinstance(blockstore_from_config(("RAID0:0:MOCKED",)), Raid0BlockStore)
    assert isinstance(blockstore_from_config(("RAID1:0:MOCKED", "RAID1:1:MOCKED")), Raid1BlockStore)


def test_config_store_is_built_once_even_by_concurrent_threads(tmp_path) -> None:
    specs = ("RAID1:0:MOCKED", f"RAID1:1:LOCAL:{tmp_path}")  # a configuration no other test built
    barrier = threading.Barrier(8)
    built = []

    def build() -> None:
        barrier.wait()
        built.append(blockstore_from_config(specs))

    threads = [threading.Thread(target=build) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(store) for store in built}) == 1


# --- delete (erasing an organization) ------------------------------------------------------------------


@pytest.mark.parametrize("store_class", [Raid1BlockStore, Raid5BlockStore])
def test_delete_removes_every_part(store_class) -> None:
    members = nodes(3)
    store = store_class(members)
    block_id, kept_id = uuid.uuid4(), uuid.uuid4()
    store.create(ORG, block_id, b"data" * 10)
    store.create(ORG, kept_id, b"kept" * 10)
    store.delete(ORG, block_id)
    assert [node.part(block_id) for node in members] == [None] * 3
    assert store.read(ORG, kept_id) == b"kept" * 10
    store.delete(ORG, block_id)  # again: nothing left, not an error


def test_raid0_delete_asks_the_node_holding_the_block() -> None:
    members = nodes(3)
    store = Raid0BlockStore(members)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data")
    for node in members:
        node.calls.clear()
    store.delete(ORG, block_id)
    assert [node.calls for node in members] == [["delete"] if i == block_id.int % 3 else [] for i in range(3)]
    assert members[block_id.int % 3].part(block_id) is None


@pytest.mark.parametrize("down", [0, 2])
def test_raid5_delete_with_a_node_down_names_it_and_a_retry_finishes(down: int) -> None:
    members = nodes(3)
    store = Raid5BlockStore(members)
    block_id = uuid.uuid4()
    store.create(ORG, block_id, b"data" * 10)
    members[down].down = True
    with pytest.raises(BlockStoreError, match=f"RAID5 delete of block {block_id} failed on node {down}: node down"):
        store.delete(ORG, block_id)
    # The nodes that answered are done; the one that was down still holds its part.
    assert [node.part(block_id) is None for node in members] == [index != down for index in range(3)]
    members[down].down = False
    store.delete(ORG, block_id)
    assert [node.part(block_id) for node in members] == [None] * 3


@pytest.mark.parametrize("store_class", [Raid0BlockStore, Raid1BlockStore, Raid5BlockStore])
def test_list_blocks_is_the_union_of_the_nodes(store_class) -> None:
    members = nodes(3)
    store = store_class(members)
    ids = {uuid.uuid4() for _ in range(6)}
    for block_id in ids:
        store.create(ORG, block_id, b"data")
    only_on_node_2 = uuid.uuid4()
    members[2].inner.create(ORG, only_on_node_2, b"a part left behind")
    assert store.list_blocks(ORG) == ids | {only_on_node_2}
    members[1].down = True
    with pytest.raises(BlockStoreError, match=f"{store.mode} listing failed on node 1: node down"):
        store.list_blocks(ORG)
