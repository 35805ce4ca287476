"""The blockstore grammar (docs/configuration.md#blockstore): single stores, `\\:` escaping, RAID validation."""
from __future__ import annotations

from pathlib import Path

import pytest

from blocks.stores.config import (
    LocalBlockstore,
    MockedBlockstore,
    PostgreSQLBlockstore,
    RaidBlockstore,
    S3Blockstore,
    SwiftBlockstore,
    parse_blockstore,
    split_with_escaping,
)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("a:b", ["a", "b"]),
        (r"a\:b:c", ["a:b", "c"]),
        (r"a\\:b", ["a\\", "b"]),
        (r"a\xb", [r"a\xb"]),
        ("a::b:", ["a", "", "b", ""]),
        ("trailing\\", ["trailing\\"]),
    ],
)
def test_split_with_escaping(text: str, parts: list[str]) -> None:
    assert split_with_escaping(text) == parts


@pytest.mark.parametrize("value", ["MOCKED", "mocked", "Mocked"])
def test_mocked(value: str) -> None:
    assert parse_blockstore((value,)) == MockedBlockstore()


@pytest.mark.parametrize("value", ["POSTGRESQL", "postgresql"])
def test_postgresql(value: str) -> None:
    assert parse_blockstore((value,)) == PostgreSQLBlockstore()


def test_local(tmp_path: Path) -> None:
    assert parse_blockstore((f"LOCAL:{tmp_path}",)) == LocalBlockstore(path=tmp_path)
    assert parse_blockstore((f"local:{tmp_path}\\:x",)) == LocalBlockstore(path=Path(f"{tmp_path}:x"))


def test_local_relative_path_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_blockstore(("LOCAL:blocks",)) == LocalBlockstore(path=tmp_path / "blocks")


def test_s3_with_escaped_endpoint() -> None:
    config = parse_blockstore((r"s3:http\://minio\:9000:region1:parsec:KEY:SECRET",))
    assert config == S3Blockstore(
        endpoint_url="http://minio:9000", region="region1", bucket="parsec", key="KEY", secret="SECRET"
    )
    assert "SECRET" not in repr(config)


def test_s3_endpoint_defaults_to_https_and_may_be_empty() -> None:
    assert parse_blockstore(("S3:foo.com:r:b:k:s",)).endpoint_url == "https://foo.com"  # type: ignore[union-attr]
    assert parse_blockstore(("s3::r:b:k:s",)).endpoint_url is None  # type: ignore[union-attr]


def test_swift() -> None:
    config = parse_blockstore(("SWIFT:auth.example/v3:tenant:container:user:password",))
    assert config == SwiftBlockstore(
        auth_url="https://auth.example/v3", tenant="tenant", container="container", user="user", password="password"
    )
    assert "password'" not in repr(config)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (("s3:r:b:k:s",), "invalid S3 config"),
        (("s3:e:r:b:k:s:extra",), "invalid S3 config"),
        (("swift:a:b:c:d",), "invalid Swift config"),
        (("LOCAL",), "invalid LOCAL config"),
        (("LOCAL:",), "invalid LOCAL config"),
        (("LOCAL:a:b",), "invalid LOCAL config"),
        (("ftp:x",), "invalid blockstore type `ftp`"),
        (("RAID1:0",), "invalid blockstore type `RAID1`"),
        (("MOCKED", "POSTGRESQL"), "multiple blockstore configs are only available in RAID mode"),
        (("RAID0:0:MOCKED", "RAID1:1:MOCKED"), "multiple blockstore configs using different RAID modes (RAID0, RAID1)"),
        (("RAID1:0:MOCKED", "MOCKED"), "different RAID modes (RAID1, non-RAID)"),
        (("RAID1:0:MOCKED", "RAID1:2:MOCKED"), "Missing node index `1` in RAID1 config"),
        (("RAID1:1:MOCKED",), "Missing node index `0` in RAID1 config"),
        (("RAID1:0:MOCKED", "RAID1:0:MOCKED"), "duplicate node index `0` in RAID1 config"),
        (("RAID1:x:MOCKED",), "invalid node index `x` (must be an integer)"),
        (("RAID5:0:MOCKED", "RAID5:1:MOCKED"), "RAID5 blockstore needs at least 3 nodes"),
        (("RAID1:0:RAID1:0:MOCKED",), "invalid blockstore type `RAID1`"),
        (("RAID0:0:s3:bad",), "invalid S3 config"),
    ],
)
def test_invalid(values: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_blockstore(values)
    assert message in str(error.value)


def test_raid_nodes_are_ordered_by_index() -> None:
    config = parse_blockstore((r"raid5:2:s3:http\://m\:9000:r:b:k:s", "RAID5:0:MOCKED", "Raid5:1:POSTGRESQL"))
    assert config == RaidBlockstore(
        mode="RAID5",
        nodes=(
            MockedBlockstore(),
            PostgreSQLBlockstore(),
            S3Blockstore(endpoint_url="http://m:9000", region="r", bucket="b", key="k", secret="s"),
        ),
    )
    assert config.kind == "RAID5"


def test_raid_single_node_is_raid() -> None:
    assert parse_blockstore(("RAID0:0:MOCKED",)) == RaidBlockstore(mode="RAID0", nodes=(MockedBlockstore(),))
