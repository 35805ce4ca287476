"""The S3 / Swift / RAID forms of `--blockstore` (docs/configuration.md#blockstore): what they build, and errors that
point at the bad part. The grammar itself is parsec_site.config's (tests/config/test_blockstore.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from blocks.stores.config import S3Blockstore, SwiftBlockstore
from blocks.stores.factory import blockstore_from_config, single_blockstore_from_config
from blocks.stores.raid import Raid1BlockStore, Raid5BlockStore
from blocks.stores.s3 import S3BlockStore
from blocks.stores.swift import SwiftBlockStore

MANAGE_PY = Path(__file__).resolve().parents[2] / "manage.py"


def test_s3_store_from_config() -> None:
    store = single_blockstore_from_config(r"S3:http\://minio\:9000:region1:parsec:KEY:SECRET")
    assert isinstance(store, S3BlockStore)
    assert store.config == S3Blockstore(
        endpoint_url="http://minio:9000", region="region1", bucket="parsec", key="KEY", secret="SECRET"
    )
    assert store.client.meta.endpoint_url == "http://minio:9000"
    assert "SECRET" not in repr(store) and "KEY" not in repr(store)


def test_s3_endpoint_without_scheme_is_https() -> None:
    store = single_blockstore_from_config(r"s3:minio.example.com\:9000:r:b:k:s")
    assert store.client.meta.endpoint_url == "https://minio.example.com:9000"  # type: ignore[attr-defined]


def test_swift_store_from_config() -> None:
    store = single_blockstore_from_config(r"swift:keystone.example\:5000/auth/v1.0:tenant:blocks:user:pass\:word")
    assert isinstance(store, SwiftBlockStore)
    assert store.config == SwiftBlockstore(
        auth_url="https://keystone.example:5000/auth/v1.0", tenant="tenant", container="blocks", user="user",
        password="pass:word",
    )
    assert store._new_connection().user == "user:tenant"
    assert "pass" not in repr(store)


def test_raid_of_mixed_stores(tmp_path: Path) -> None:
    store = blockstore_from_config((
        r"RAID1:1:swift:http\://127.0.0.1\:1/auth/v1.0:t:c:u:p",
        r"RAID1:0:s3:http\://127.0.0.1\:2:r:b:k:s",
        f"RAID1:2:LOCAL:{tmp_path}",
    ))
    assert isinstance(store, Raid1BlockStore)
    assert [type(node).__name__ for node in store.nodes] == ["S3BlockStore", "SwiftBlockStore", "LocalFolderBlockStore"]
    assert isinstance(blockstore_from_config(("RAID5:0:MOCKED", "RAID5:1:MOCKED", "RAID5:2:MOCKED", "RAID5:3:MOCKED")),
                      Raid5BlockStore)


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        # A `:` left unescaped in the URL adds fields: the count says so, and how to escape.
        (
            ("s3:http://minio:9000:region:bucket:key:secret",),
            "invalid S3 config, expected `s3:[<endpoint_url>]:<region>:<bucket>:<key>:<secret>`: 5 fields after "
            "the prefix, got 7 (write `\\:` for a `:` inside a field, e.g. `http\\://host\\:9000`)",
        ),
        (("s3:region:bucket:key:secret",), "5 fields after the prefix, got 4"),
        (("s3::region::key:secret",), "invalid S3 config, expected `s3:[<endpoint_url>]:<region>:<bucket>:<key>:"
                                      "<secret>`: <bucket> is empty"),
        ((r"s3:minio\:abc:r:b:k:s",), "invalid S3 config: <endpoint_url> `https://minio:abc` has a bad port"),
        ((r"s3:http\://\:9000:r:b:k:s",), "invalid S3 config: <endpoint_url> `http://:9000` has no host"),
        (("swift:a:b:c:d",), "invalid Swift config, expected `swift:<auth_url>:<tenant>:<container>:<user>:"
                             "<password>`: 5 fields after the prefix, got 4"),
        (("swift::tenant:container:user:password",), "<auth_url> is empty"),
        (("swift:auth:tenant::user:password",), "<container> is empty"),
        (("swift:auth:tenant:container::password",), "<user> is empty"),
        # In RAID, the node.
        (
            ("RAID5:0:MOCKED", "RAID5:1:s3:x:r:b:k", "RAID5:2:MOCKED"),
            "RAID5 node 1: invalid S3 config",
        ),
        (("RAID1:0:MOCKED", "RAID1:1:ftp:x"), "RAID1 node 1: invalid blockstore type `ftp`"),
        (("RAID1:0:MOCKED", "RAID5:1:MOCKED"), "different RAID modes (RAID1, RAID5)"),
        (("RAID0:0:MOCKED", "RAID0:0:MOCKED"), "duplicate node index `0` in RAID0 config"),
    ],
)
def test_errors_point_at_the_bad_part(specs: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        blockstore_from_config(specs)
    assert message in str(caught.value)
    assert "secret" not in str(caught.value).replace("<secret>", "")


def test_a_wrong_spec_stops_the_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(MANAGE_PY), "run", "--dev", "-b", "RAID5:0:MOCKED",
         "-b", r"RAID5:1:s3:http\://h:9000:r:b:k:s3cr3t", "-b", "RAID5:2:MOCKED"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr == (
        "Error: --blockstore / PARSEC_BLOCKSTORE: RAID5 node 1: invalid S3 config, expected "
        "`s3:[<endpoint_url>]:<region>:<bucket>:<key>:<secret>`: 5 fields after the prefix, got 6 "
        "(write `\\:` for a `:` inside a field, e.g. `http\\://host\\:9000`)\n"
    )
