"""`manage.py blockstore_check [--repair] [--organization ORG]` over folder-backed nodes."""
from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.core.management.base import CommandError

from blocks.stores.raid import split_raid5, xor_parts
from tests.conftest import World, bootstrap_organization, connect_as, create_realm

pytestmark = pytest.mark.django_db(transaction=True)

SIZES = [1, 2, 3, 100, 4096, 65536 + 7]


async def write_blocks(device, sizes=SIZES) -> dict[uuid.UUID, bytes]:
    client = await connect_as(device)
    realm_id = await create_realm(client, device)
    written = {}
    for size in sizes:
        block_id, data = uuid.uuid4(), os.urandom(size)
        reply = await client.command("block_create", block_id=block_id, realm_id=realm_id, block=data)
        assert reply == {"status": "ok"}
        written[block_id] = data
    return written


async def blockstore_check(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        await sync_to_async(call_command)("blockstore_check", *args, stdout=out, stderr=err)
        code = 0
    except CommandError as exc:
        code = exc.returncode
        err.write(f"CommandError: {exc}\n")
    return code, out.getvalue(), err.getvalue()


def raid_specs(mode: str, roots: list[Path]) -> tuple[str, ...]:
    return tuple(f"{mode}:{index}:LOCAL:{root}" for index, root in enumerate(roots))


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    return [tmp_path / f"node{index}" for index in range(3)]


def part(root: Path, organization_id: str, block_id: uuid.UUID) -> Path:
    return root / organization_id / str(block_id)


async def test_check_of_a_healthy_raid5(world: World, parsec_settings, roots) -> None:
    parsec_settings(blockstore=raid_specs("RAID5", roots))
    await write_blocks(world.alice)
    code, out, err = await blockstore_check("--no-progress")
    assert code == 0, err
    assert f"Checking {len(SIZES)} block(s) of all organizations in RAID5 over 3 nodes:" in out
    assert f"Checked {len(SIZES)} block(s)" in out and f"{len(SIZES)} ok, 0 damaged, 0 unreadable." in out
    assert "  node 0: ok\n  node 1: ok\n  node 2: ok" in out


async def test_replaced_empty_node_is_rebuilt(world: World, parsec_settings, roots) -> None:
    parsec_settings(blockstore=raid_specs("RAID5", roots))
    written = await write_blocks(world.alice)
    before = {block_id: part(roots[1], world.organization_id, block_id).read_bytes() for block_id in written}
    # The store of node 1 is replaced by an empty one.
    for path in roots[1].rglob("*"):
        if path.is_file():
            path.unlink()

    code, out, err = await blockstore_check("--no-progress")
    assert code == 1
    assert f"CommandError: {len(SIZES)} block(s) still damaged (run again with --repair)" in err
    for block_id in written:
        assert f"{world.organization_id}/{block_id} (" in out
    assert f"node 1: {len(SIZES)} missing" in out
    assert not any(part(roots[1], world.organization_id, block_id).exists() for block_id in written)

    code, out, err = await blockstore_check("--repair", "--no-progress")
    assert code == 0, err
    assert "node 1: missing, repaired" in out
    assert f"{len(SIZES)} damaged ({len(SIZES)} repaired, 0 not)" in out
    assert {block_id: part(roots[1], world.organization_id, block_id).read_bytes() for block_id in written} == before

    code, out, _ = await blockstore_check("--no-progress")
    assert code == 0 and f"{len(SIZES)} ok, 0 damaged" in out


async def test_wrong_parts_are_found_and_rewritten(world: World, parsec_settings, roots) -> None:
    parsec_settings(blockstore=raid_specs("RAID5", roots))
    blocks = list((await write_blocks(world.alice, sizes=[1000, 1000, 1000])).items())
    org = world.organization_id
    (truncated, data0), (bad_parity, data1), (bad_header, data2) = blocks
    part(roots[0], org, truncated).write_bytes(b"short")
    parity = bytearray(part(roots[2], org, bad_parity).read_bytes())
    parity[10] ^= 0xFF
    part(roots[2], org, bad_parity).write_bytes(bytes(parity))
    chunk = bytearray(part(roots[0], org, bad_header).read_bytes())
    chunk[0] ^= 0x01  # the length prefix: the chunk no longer holds a 1000-byte block
    part(roots[0], org, bad_header).write_bytes(bytes(chunk))

    code, out, _ = await blockstore_check("--no-progress")
    assert code == 1
    assert f"{org}/{truncated} (1000 bytes): node 0: wrong size (5 bytes instead of 502)" in out
    assert f"{org}/{bad_parity} (1000 bytes): node 2: parity mismatch (does not match the data chunks)" in out
    assert f"{org}/{bad_header} (1000 bytes): node 0: wrong data" in out

    code, out, err = await blockstore_check("--repair", "--no-progress")
    assert code == 0, out + err
    for block_id, data in ((truncated, data0), (bad_parity, data1), (bad_header, data2)):
        chunks = split_raid5(data, 2)
        assert [part(root, org, block_id).read_bytes() for root in roots] == [*chunks, xor_parts(chunks)]


async def test_two_lost_parts_cannot_be_repaired(world: World, parsec_settings, roots) -> None:
    parsec_settings(blockstore=raid_specs("RAID5", roots))
    [block_id] = await write_blocks(world.alice, sizes=[10])
    part(roots[0], world.organization_id, block_id).unlink()
    part(roots[2], world.organization_id, block_id).unlink()
    code, out, _ = await blockstore_check("--repair", "--no-progress")
    assert code == 1
    assert "node 0: missing, repair failed: only 1 of 3 parts left" in out
    assert "1 damaged (0 repaired, 1 not), 1 unreadable." in out


async def test_unreachable_node_is_reported_not_rewritten(world: World, parsec_settings, roots) -> None:
    parsec_settings(blockstore=raid_specs("RAID5", roots))
    [block_id] = await write_blocks(world.alice, sizes=[10])
    (roots[1] / world.organization_id).rename(roots[1] / "moved")
    (roots[1] / world.organization_id).write_bytes(b"")  # reading below a file: an I/O error, not "missing"
    code, out, _ = await blockstore_check("--repair", "--no-progress")
    assert code == 1
    assert f"{world.organization_id}/{block_id} (10 bytes): node 1: unreachable" in out
    assert "node 1: 1 unreachable" in out


async def test_raid1_copies_are_rewritten_from_the_majority(world: World, parsec_settings, roots) -> None:
    parsec_settings(blockstore=raid_specs("RAID1", roots))
    (missing, data0), (different, data1) = (await write_blocks(world.alice, sizes=[100, 100])).items()
    org = world.organization_id
    part(roots[2], org, missing).unlink()
    part(roots[0], org, different).write_bytes(os.urandom(100))
    code, out, _ = await blockstore_check("--repair", "--no-progress")
    assert code == 0, out
    assert f"{org}/{missing} (100 bytes): node 2: missing, repaired" in out
    assert f"{org}/{different} (100 bytes): node 0: wrong data (differs from the other copies), repaired" in out
    assert [part(root, org, missing).read_bytes() for root in roots] == [data0] * 3
    assert [part(root, org, different).read_bytes() for root in roots] == [data1] * 3


async def test_single_store_can_only_be_checked(world: World, parsec_settings, tmp_path: Path) -> None:
    parsec_settings(blockstore=(f"LOCAL:{tmp_path}",))
    [block_id] = await write_blocks(world.alice, sizes=[10])
    part(tmp_path, world.organization_id, block_id).unlink()
    code, out, _ = await blockstore_check("--repair", "--no-progress")
    assert code == 1
    assert f"{world.organization_id}/{block_id} (10 bytes): store: missing (no redundancy to rebuild it from)" in out


async def test_organization_filter(world: World, parsec_settings, roots) -> None:
    parsec_settings(blockstore=raid_specs("RAID5", roots))
    await write_blocks(world.alice, sizes=[10, 20])
    other = await bootstrap_organization("OtherOrg")
    [other_block] = await write_blocks(other.alice, sizes=[30])
    part(roots[0], "OtherOrg", other_block).unlink()

    code, out, _ = await blockstore_check("--organization", world.organization_id, "--no-progress")
    assert code == 0 and f"of organization {world.organization_id}" in out and "Checked 2 block(s)" in out
    code, out, _ = await blockstore_check("--organization", "OtherOrg", "--no-progress")
    assert code == 1 and "Checked 1 block(s)" in out
    code, _, err = await blockstore_check("--organization", "NoSuchOrg")
    assert code == 1 and "unknown organization `NoSuchOrg`" in err


async def test_blockstore_option_and_progress(world: World, parsec_settings, roots) -> None:
    parsec_settings(blockstore=raid_specs("RAID5", roots))
    await write_blocks(world.alice, sizes=[10] * 3)
    parsec_settings(blockstore=("MOCKED",))  # the command's -b wins over the configuration
    code, out, err = await blockstore_check(*(f"-b{spec}" for spec in raid_specs("RAID5", roots)), "--jobs", "2")
    assert code == 0, out + err
    assert "RAID5 over 3 nodes" in out
    # Not a terminal: one progress line per 10% step, the last one complete.
    assert err.splitlines()[-1] == f"[{'#' * 30}] 100%  3/3 blocks  0 damaged"
    code, _, err = await blockstore_check("-b", "RAID5:0:MOCKED")
    assert code == 1 and "--blockstore: RAID5 blockstore needs at least 3 nodes" in err
