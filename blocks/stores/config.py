"""The `--blockstore` grammar (docs/configuration.md#blockstore): values in, parsed configurations out.

The one parser of the grammar: `parsec_site.config` calls it when it reads PARSEC_BLOCKSTORE (a bad
value stops the start naming the option), `blocks.stores.factory` builds stores from what it returns,
and `manage.py blockstore_check -b` goes through the same path. Pure data: no Django, no store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit


@dataclass(frozen=True)
class MockedBlockstore:
    kind = "MOCKED"


@dataclass(frozen=True)
class PostgreSQLBlockstore:
    """Blocks in the metadata database (whatever its kind: the reference's `POSTGRESQL` name is kept)."""

    kind = "POSTGRESQL"


@dataclass(frozen=True)
class LocalBlockstore:
    """Ours: one file per block under a folder."""

    path: Path
    kind = "LOCAL"


@dataclass(frozen=True)
class S3Blockstore:
    endpoint_url: str | None
    region: str
    bucket: str
    key: str = field(repr=False)
    secret: str = field(repr=False)
    kind = "S3"


@dataclass(frozen=True)
class SwiftBlockstore:
    auth_url: str
    tenant: str
    container: str
    user: str
    password: str = field(repr=False)
    kind = "SWIFT"


SingleBlockstore = MockedBlockstore | PostgreSQLBlockstore | LocalBlockstore | S3Blockstore | SwiftBlockstore
RaidMode = Literal["RAID0", "RAID1", "RAID5"]


@dataclass(frozen=True)
class RaidBlockstore:
    mode: RaidMode
    nodes: tuple[SingleBlockstore, ...]

    @property
    def kind(self) -> str:
        return self.mode


BlockstoreConfig = SingleBlockstore | RaidBlockstore

SINGLE_BLOCKSTORE_GRAMMAR = (
    "MOCKED, POSTGRESQL, LOCAL:<path>, s3:[<endpoint_url>]:<region>:<bucket>:<key>:<secret> "
    "or swift:<auth_url>:<tenant>:<container>:<user>:<password>"
)


def split_with_escaping(text: str) -> list[str]:
    """Split on `:`; `\\:` is a literal colon, `\\\\` a literal backslash, `\\` + other is kept as is."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars, None)
            if following is None:
                current.append("\\")
            elif following in ("\\", ":"):
                current.append(following)
            else:
                current.append("\\" + following)
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _with_https_default(url: str) -> str:
    # An endpoint without scheme gets TLS, like the reference (`s3:foo.com:...` -> https://foo.com).
    return url if not url or url.startswith(("http://", "https://")) else f"https://{url}"


def _check_fields(
    kind: str, grammar: str, names: tuple[str, ...], fields: list[str], required: tuple[str, ...]
) -> None:
    """Point at the bad part of an S3 / Swift value: the field count (unescaped `:`) or an empty field."""
    if len(fields) != len(names):
        raise ValueError(
            f"invalid {kind} config, expected `{grammar}`: {len(names)} fields after the prefix, got {len(fields)} "
            "(write `\\:` for a `:` inside a field, e.g. `http\\://host\\:9000`)"
        )
    for name, value in zip(names, fields):
        if name in required and not value:
            raise ValueError(f"invalid {kind} config, expected `{grammar}`: <{name}> is empty")


def _check_url(kind: str, name: str, url: str) -> None:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"invalid {kind} config: <{name}> `{url}` has a bad port") from None
    if not parts.hostname:
        raise ValueError(f"invalid {kind} config: <{name}> `{url}` has no host")


def parse_single_blockstore(value: str) -> SingleBlockstore:
    if value.upper() == "MOCKED":
        return MockedBlockstore()
    if value.upper() == "POSTGRESQL":
        return PostgreSQLBlockstore()
    prefix, *fields = split_with_escaping(value)
    if prefix.upper() == "LOCAL":
        if len(fields) != 1 or not fields[0]:
            raise ValueError("invalid LOCAL config, expected `LOCAL:<path>` (write `\\:` for a `:` in the path)")
        return LocalBlockstore(path=Path(fields[0]).resolve())
    if prefix.upper() == "S3":
        _check_fields(
            "S3", "s3:[<endpoint_url>]:<region>:<bucket>:<key>:<secret>",
            ("endpoint_url", "region", "bucket", "key", "secret"), fields, required=("bucket",),
        )
        endpoint_url, region, bucket, key, secret = fields
        endpoint_url = _with_https_default(endpoint_url)
        if endpoint_url:
            _check_url("S3", "endpoint_url", endpoint_url)
        return S3Blockstore(endpoint_url=endpoint_url or None, region=region, bucket=bucket, key=key, secret=secret)
    if prefix.upper() == "SWIFT":
        _check_fields(
            "Swift", "swift:<auth_url>:<tenant>:<container>:<user>:<password>",
            ("auth_url", "tenant", "container", "user", "password"), fields, required=("auth_url", "container", "user"),
        )
        auth_url, tenant, container, user, password = fields
        auth_url = _with_https_default(auth_url)
        _check_url("Swift", "auth_url", auth_url)
        return SwiftBlockstore(auth_url=auth_url, tenant=tenant, container=container, user=user, password=password)
    raise ValueError(f"invalid blockstore type `{prefix}`, expected {SINGLE_BLOCKSTORE_GRAMMAR}")


def parse_blockstore(values: tuple[str, ...]) -> BlockstoreConfig:
    """One single store, or several `RAID<0|1|5>:<node index>:<single store>` values of one RAID mode."""
    if not values:
        raise ValueError("no blockstore given")
    raid_nodes: dict[str | None, list[tuple[int | None, str]]] = {}
    for value in values:
        parts = value.split(":", 2)
        # RAID only with a prefix *and* 3 parts, like the reference: `RAID1` alone is a bad single store.
        if parts[0].upper() in ("RAID0", "RAID1", "RAID5") and len(parts) == 3:
            raid_mode, raw_index, node_value = parts
            try:
                index: int | None = int(raw_index)
            except ValueError:
                raise ValueError(f"invalid node index `{raw_index}` (must be an integer)") from None
            raid_nodes.setdefault(raid_mode.upper(), []).append((index, node_value))
        else:
            raid_nodes.setdefault(None, []).append((None, value))
    if len(raid_nodes) != 1:
        modes = ", ".join(sorted(mode or "non-RAID" for mode in raid_nodes))
        raise ValueError(f"multiple blockstore configs using different RAID modes ({modes})")
    [(mode, nodes)] = raid_nodes.items()
    if mode is None:
        if len(nodes) != 1:
            raise ValueError("multiple blockstore configs are only available in RAID mode")
        return parse_single_blockstore(nodes[0][1])
    by_index: dict[int, str] = {}
    for index, node_value in nodes:
        assert index is not None
        if index in by_index:
            raise ValueError(f"duplicate node index `{index}` in {mode} config")
        by_index[index] = node_value
    for expected in range(len(nodes)):
        if expected not in by_index:
            raise ValueError(f"Missing node index `{expected}` in {mode} config")
    if mode == "RAID5" and len(nodes) < 3:
        raise ValueError("RAID5 blockstore needs at least 3 nodes")
    parsed: list[SingleBlockstore] = []
    for index in range(len(nodes)):
        try:
            parsed.append(parse_single_blockstore(by_index[index]))
        except ValueError as exc:
            raise ValueError(f"{mode} node {index}: {exc}") from None
    return RaidBlockstore(mode=mode, nodes=tuple(parsed))  # type: ignore[arg-type]
