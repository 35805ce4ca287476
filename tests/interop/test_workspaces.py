"""Workspaces driven by the official 2.17.0 client (issue 3).

One organization, bootstrapped by alice, is shared by the whole module (the
tests run in file order; each later test relies on what the first one wrote):

* write a small file, a multi-block file (the client cuts at 512 KiB) and nested
  folders, then sync (`realm_create`, `vlob_create`/`vlob_update`, `block_create`);
* read everything back from a second client home holding a copy of the SAME
  device key file but an empty local storage (`vlob_read`, `block_read`);
* file history by version number (`vlob_list_versions`, `vlob_read{version}`)
  and by timestamp (`WorkspaceFS.to_timestamped`, `vlob_read{timestamp}`);
* re-encryption (`realm_start_reencryption_maintenance`, `vlob_maintenance_*`,
  `realm_finish_reencryption_maintenance`), then read everything back;
* archiving (`realm_update_archiving`, `archiving_config`): writes refused by the
  client (read-only) and by the server (`realm_archived`), then unarchived.

File operations go through `ParsecCli.batch` (one logged-in core session for
several operations, see refclient._FS_TOOL): a CLI process costs 2-3.5 s.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from .refclient import DeviceRef, ParsecCli

pytestmark = pytest.mark.interop

EMAIL = "alice@example.com"
LABEL = "Alice Liddell"
DEVICE_LABEL = "laptop"
PASSWORD = "P@ssw0rd-interop"
WORKSPACE = "Projects"
BLOCK_SIZE = 512 * 1024  # the 2.17 client's default block size

SMALL = b"Hello from the official Parsec 2.17 client!\n"
BIG = os.urandom(3 * 1024 * 1024 + 12_345)  # 7 blocks, the last one partial
DEEP = "Nested file, non-ASCII: é ß 日本\n".encode()
HISTORY = [b"first version", b"second version, longer", b"3rd"]  # successive contents of one file
HISTORY_PATH = "/history.txt"

# Everything in the workspace after the first test: path -> bytes (None for a folder)
EXPECTED_TREE: dict[str, bytes | None] = {
    "/small.txt": SMALL,
    "/big.bin": BIG,
    "/docs": None,
    "/docs/2024": None,
    "/docs/2024/reports": None,
    "/docs/2024/reports/deep.txt": DEEP,
    "/docs/empty": None,
    HISTORY_PATH: HISTORY[-1],
}


@dataclass
class WorkspaceCtx:
    server: Any
    org_id: str
    alice: ParsecCli
    device: DeviceRef
    make_home: Any  # name -> fresh ParsecCli holding a copy of alice's device
    workspace_id: str | None = None
    created_at: str | None = None  # right after the workspace was created and synced
    history_synced_at: list[str] = field(default_factory=list)  # after each HISTORY write


@pytest.fixture(scope="module")
def ctx(server, reference_client, tmp_path_factory) -> WorkspaceCtx:
    base = tmp_path_factory.mktemp("workspaces")
    alice = ParsecCli(reference_client, base / "alice")
    org_id = f"Ws{uuid.uuid4().hex[:12]}"
    url = alice.create_organization(server.addr, org_id, server.admin_token)
    device = alice.bootstrap_organization(url, EMAIL, LABEL, DEVICE_LABEL, PASSWORD)

    def make_home(name: str) -> ParsecCli:
        home = ParsecCli(reference_client, base / name)
        alice.copy_device_to(home, device)
        return home

    return WorkspaceCtx(server=server, org_id=org_id, alice=alice, device=device, make_home=make_home)


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_tree(tree: dict[str, dict[str, Any]], expected: dict[str, bytes | None]) -> None:
    """`read_tree` result == expected, byte for byte (sha256, and the data itself when inlined)."""
    assert sorted(tree) == sorted(expected)
    for path, content in expected.items():
        got = tree[path]
        if content is None:
            assert got == {"type": "folder"}, path
            continue
        assert got["type"] == "file", path
        assert (got["size"], got["sha256"]) == (len(content), _sha(content)), path
        if "data" in got:
            assert base64.b64decode(got["data"]) == content, path


def _db(server):
    """A psycopg connection to our server's database (None for the reference server)."""
    if not server.db_url:
        return None
    import psycopg

    return psycopg.connect(server.db_url)


def _realm_pk(conn, org_id: str, workspace_id: str) -> int:
    row = conn.execute(
        "SELECT r.id FROM realms_realm r JOIN organizations_organization o ON o.id = r.organization_id"
        " WHERE o.organization_id = %s AND r.realm_id = %s",
        (org_id, uuid.UUID(workspace_id)),
    ).fetchone()
    assert row, f"realm {workspace_id} not in the database"
    return row[0]


# --------------------------------------------------------------------------- #
# tests
# --------------------------------------------------------------------------- #


def test_write_files_and_folders(ctx: WorkspaceCtx, server):
    steps: list[dict[str, Any]] = [
        {"op": "create_workspace", "workspace": WORKSPACE},
        {"op": "now"},
        {"op": "write", "workspace": WORKSPACE, "path": "/small.txt", "data": SMALL},
        {"op": "write", "workspace": WORKSPACE, "path": "/big.bin", "data": BIG},
        # `write` creates the missing parents
        {"op": "write", "workspace": WORKSPACE, "path": "/docs/2024/reports/deep.txt", "data": DEEP},
        {"op": "mkdir", "workspace": WORKSPACE, "path": "/docs/empty"},
    ]
    steps += [{"op": "write", "workspace": WORKSPACE, "path": HISTORY_PATH, "data": c} for c in HISTORY]
    steps.append({"op": "listdir", "workspace": WORKSPACE, "path": "/docs"})
    res = ctx.alice.batch(steps, ctx.device, timeout=180)

    ctx.workspace_id = res[0]["workspace_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", ctx.workspace_id)
    ctx.created_at = res[1]["now"]
    assert [r["written"] for r in res[2:5]] == [len(SMALL), len(BIG), len(DEEP)]
    assert [r["written"] for r in res[6:9]] == [len(c) for c in HISTORY]
    ctx.history_synced_at = [r["synced_at"] for r in res[6:9]]
    assert sorted(res[9]["entries"]) == ["/docs/2024", "/docs/empty"]

    workspaces = ctx.alice.list_workspaces(ctx.device)
    assert [(w["name"], w["internal_id"], w["current_role"], w["status"]) for w in workspaces] == [
        (WORKSPACE, ctx.workspace_id, "OWNER", "available")
    ]

    conn = _db(server)
    if conn:
        with conn:
            realm = _realm_pk(conn, ctx.org_id, ctx.workspace_id)
            roles = conn.execute(
                "SELECT u.human_email, rr.role FROM realms_realmuserrole rr"
                " JOIN organizations_user u ON u.id = rr.user_id WHERE rr.realm_id = %s",
                (realm,),
            ).fetchall()
            assert roles == [(EMAIL, "OWNER")]
            # 7 blocks for the big file, 1 for each small one; encrypted (+40 bytes each)
            sizes = [r[0] for r in conn.execute(
                "SELECT size FROM blocks_block WHERE realm_id = %s", (realm,)).fetchall()]
            n_big = math.ceil(len(BIG) / BLOCK_SIZE)
            assert sizes.count(BLOCK_SIZE + 40) == n_big - 1
            assert len(sizes) >= n_big + 2 + len(HISTORY)
            assert max(sizes) == BLOCK_SIZE + 40
            data_rows = conn.execute(
                "SELECT count(*) FROM blocks_blockdata bd JOIN blocks_block b"
                " ON b.block_id = bd.block_id WHERE b.realm_id = %s", (realm,)
            ).fetchone()[0]
            assert data_rows == len(sizes)  # POSTGRESQL blockstore
            # workspace manifest + 3 folders + 2 nested folders + 4 files, each with >= 1 version
            n_vlobs = conn.execute(
                "SELECT count(DISTINCT vlob_id) FROM realms_vlobatom WHERE realm_id = %s", (realm,)
            ).fetchone()[0]
            assert n_vlobs == 1 + 4 + 4  # root, docs, 2024, reports, empty, 4 files


def test_second_client_of_same_device_reads_everything(ctx: WorkspaceCtx, server):
    assert ctx.workspace_id, "test_write_files_and_folders did not run"
    other = ctx.make_home("alice-second-home")
    assert not other.data_dir.exists() or not any(other.data_dir.iterdir())  # empty local storage

    res = other.batch([
        {"op": "read_tree", "workspace": WORKSPACE},
        {"op": "read", "workspace": WORKSPACE, "path": "/big.bin"},
        {"op": "workspace_info", "workspace": WORKSPACE},
    ], timeout=180)
    assert_tree(res[0]["tree"], EXPECTED_TREE)
    assert base64.b64decode(res[1]["data"]) == BIG
    info = res[2]
    assert info["workspace_id"] == ctx.workspace_id
    assert info["role"] == "OWNER"
    assert info["encryption_revision"] == 1
    assert info["realm_status_rep"] == "RealmStatusRepOk"
    assert info["realm_status"]["in_maintenance"] == "False"
    assert info["archiving"]["configuration"] == "Available"
    assert list(info["roles"].values()) == ["OWNER"]


def test_file_history_by_version_and_timestamp(ctx: WorkspaceCtx, server):
    assert ctx.history_synced_at, "test_write_files_and_folders did not run"
    other = ctx.make_home("alice-history-home")
    steps: list[dict[str, Any]] = [
        {"op": "versions", "workspace": WORKSPACE, "path": HISTORY_PATH},
        {"op": "versions", "workspace": WORKSPACE, "path": "/big.bin", "with_data": False},
        {"op": "version_lister", "workspace": WORKSPACE, "path": HISTORY_PATH},
    ]
    # the workspace as it was right after each write
    steps += [{"op": "read_at", "workspace": WORKSPACE, "path": HISTORY_PATH, "timestamp": ts}
              for ts in ctx.history_synced_at]
    steps += [
        # before the organization existed: no workspace manifest at that time
        {"op": "read_at", "workspace": WORKSPACE, "path": HISTORY_PATH,
         "timestamp": "2000-01-01T00:00:00Z", "may_fail": True},
        # the workspace exists, the file does not yet
        {"op": "read_at", "workspace": WORKSPACE, "path": "/small.txt",
         "timestamp": ctx.created_at, "may_fail": True},
        {"op": "read_at", "workspace": WORKSPACE, "timestamp": ctx.created_at, "dir": "/"},
        {"op": "workspace_info", "workspace": WORKSPACE},
    ]
    res = other.batch(steps, timeout=180)
    versions, big_versions, lister = res[0]["versions"], res[1]["versions"], res[2]["items"]
    n = len(HISTORY)
    at_ts = res[3:3 + n]
    too_early, not_yet, empty_root = res[3 + n:6 + n]
    alice_user_id = next(iter(res[-1]["roles"]))

    # by version number: 1..N, each read with vlob_read{version} and its blocks
    numbers = sorted(int(v) for v in versions)
    assert numbers == list(range(1, len(numbers) + 1))
    for v in numbers:
        info = versions[str(v)]
        assert info["manifest_version"] == v
        assert info["author"].startswith(alice_user_id + "@")
        assert info["size"] == len(base64.b64decode(info["data"])) == sum(info["blocks"])
    contents = [base64.b64decode(versions[str(v)]["data"]) for v in numbers]
    # The first version may be the empty placeholder uploaded when the parent folder was synced
    assert [c for c in contents if c] == HISTORY
    timestamps = [versions[str(v)]["timestamp"] for v in numbers]
    parsed = [_ts(t) for t in timestamps]
    assert parsed == sorted(parsed) and len(set(parsed)) == len(parsed)

    # every write was uploaded before its `synced_at`, and the next one after it
    for content, synced_at in zip(HISTORY, ctx.history_synced_at):
        idx = contents.index(content)
        assert parsed[idx] <= _ts(synced_at)
        if idx + 1 < len(parsed):
            assert parsed[idx + 1] > _ts(synced_at)

    # the multi-block file: 512 KiB blocks, last version = what was written
    last_big = big_versions[str(max(int(v) for v in big_versions))]
    assert (last_big["size"], last_big["sha256"]) == (len(BIG), _sha(BIG))
    assert last_big["blocksize"] == BLOCK_SIZE
    n_full, rest = divmod(len(BIG), BLOCK_SIZE)
    assert last_big["blocks"] == [BLOCK_SIZE] * n_full + [rest]

    # by timestamp: a read-only view of the workspace at each `synced_at`
    assert [base64.b64decode(r["data"]) for r in at_ts] == HISTORY
    assert too_early["error"] == "FSWorkspaceTimestampedTooEarly"
    assert not_yet["error"] == "FSFileNotFoundError", not_yet
    assert empty_root["entries"] == []

    # the GUI's history dialog
    assert [item["size"] for item in lister if item["size"]] == [len(c) for c in HISTORY]
    assert lister[-1]["version"] == numbers[-1]
    assert all(item["is_folder"] is False for item in lister)

    conn = _db(server)
    if conn:
        with conn:
            realm = _realm_pk(conn, ctx.org_id, ctx.workspace_id)
            entry = uuid.UUID(res[0]["entry_id"])
            rows = conn.execute(
                "SELECT version, encryption_revision, created_on FROM realms_vlobatom"
                " WHERE realm_id = %s AND vlob_id = %s ORDER BY version", (realm, entry),
            ).fetchall()
            assert [r[:2] for r in rows] == [(v, 1) for v in numbers]
            # the client's timestamps, to the microsecond
            assert [r[2] for r in rows] == [_ts(t) for t in timestamps]


def _ts(rfc3339: str) -> datetime:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))


def test_reencrypt_workspace(ctx: WorkspaceCtx, server):
    assert ctx.workspace_id, "test_write_files_and_folders did not run"
    # Nobody was revoked and no role removed: the CLI does nothing (realm_status,
    # realm_get_role_certificates, user_get are still exchanged)
    res = ctx.alice.reencrypt_workspace(WORKSPACE, ctx.device)
    assert res.stdout.strip() == "The workspace does not need to be reencrypted"

    # The same job the CLI runs, forced through the core API
    out = ctx.alice.force_reencrypt(WORKSPACE, ctx.device)
    assert out["needed"] is False
    assert (out["encryption_revision_before"], out["encryption_revision_after"]) == (1, 2)
    total, done = out["batches"][-1]
    assert total == done and total >= 12  # every version of every vlob

    other = ctx.make_home("alice-after-reencryption")
    res = other.batch([
        {"op": "read_tree", "workspace": WORKSPACE},
        {"op": "workspace_info", "workspace": WORKSPACE},
        {"op": "versions", "workspace": WORKSPACE, "path": HISTORY_PATH},
    ], timeout=180)
    assert_tree(res[0]["tree"], EXPECTED_TREE)
    info = res[1]
    assert info["encryption_revision"] == 2
    assert info["realm_status"] == {"in_maintenance": "False", "maintenance_type": "None",
                                    "encryption_revision": "2"}
    # the history survives the re-encryption
    contents = [base64.b64decode(v["data"]) for _, v in sorted(res[2]["versions"].items(),
                                                               key=lambda kv: int(kv[0]))]
    assert [c for c in contents if c] == HISTORY

    conn = _db(server)
    if conn:
        with conn:
            realm = _realm_pk(conn, ctx.org_id, ctx.workspace_id)
            rev, maintenance = conn.execute(
                "SELECT encryption_revision, maintenance_type FROM realms_realm WHERE id = %s", (realm,)
            ).fetchone()
            assert (rev, maintenance) == (2, None)
            per_rev = dict(conn.execute(
                "SELECT encryption_revision, count(*) FROM realms_vlobatom WHERE realm_id = %s"
                " GROUP BY encryption_revision", (realm,)
            ).fetchall())
            assert per_rev[2] == per_rev[1] == total


def test_archive_and_unarchive_workspace(ctx: WorkspaceCtx, server):
    assert ctx.workspace_id, "test_write_files_and_folders did not run"
    res = ctx.alice.archive_workspace(WORKSPACE, ctx.device)
    assert res.stdout.strip() == "Configuration `Archived` applied!"

    [ws] = ctx.alice.list_workspaces(ctx.device)
    assert ws["status"] == "archived"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", ws["status_configured_on"])

    res = ctx.alice.batch([
        {"op": "workspace_info", "workspace": WORKSPACE},
        # refused by the client itself (the workspace is read-only)...
        {"op": "write", "workspace": WORKSPACE, "path": "/small.txt", "data": b"refused", "may_fail": True},
        {"op": "mkdir", "workspace": WORKSPACE, "path": "/new-folder", "may_fail": True},
        # ...and by the server (vlob_create / block_create answer `realm_archived`)
        {"op": "raw_write", "workspace": WORKSPACE},
        {"op": "read", "workspace": WORKSPACE, "path": "/small.txt"},
    ], ctx.device)
    archiving = res[0]["archiving"]
    assert archiving["configuration"] == "Archived"
    assert (archiving["is_archived"], archiving["is_read_only"], archiving["is_available"]) == (True, True, False)
    assert archiving["configured_on"] == ws["status_configured_on"]
    assert archiving["configured_by"].startswith(next(iter(res[0]["roles"])) + "@")
    assert res[1]["error"] == "FSReadOnlyError" and "/small.txt" in res[1]["message"]
    assert res[2]["error"] == "FSReadOnlyError"
    assert res[3] == {"vlob_create": "VlobCreateRepRealmArchived", "block_create": "BlockCreateRepRealmArchived"}
    assert base64.b64decode(res[4]["data"]) == SMALL  # reads still work

    # archiving twice: refused by the CLI itself (it read the current config from archiving_config)
    res = ctx.alice.fails(ctx.alice.archive_workspace, WORKSPACE, ctx.device)
    assert res.returncode == 1
    assert "Error: This configuration is already applied (`Archived`)" in res.stdout

    conn = _db(server)
    if conn:
        with conn:
            realm = _realm_pk(conn, ctx.org_id, ctx.workspace_id)
            rows = conn.execute(
                "SELECT configuration, deletion_date FROM realms_realmarchiving WHERE realm_id = %s"
                " ORDER BY certified_on", (realm,)
            ).fetchall()
            assert rows[-1] == ("ARCHIVED", None)

    res = ctx.alice.unarchive_workspace(WORKSPACE, ctx.device)
    assert res.stdout.strip() == "Configuration `Available` applied!"

    res = ctx.alice.batch([
        {"op": "workspace_info", "workspace": WORKSPACE},
        {"op": "write", "workspace": WORKSPACE, "path": "/after-unarchive.txt", "data": b"writable again"},
    ], ctx.device)
    archiving = res[0]["archiving"]
    assert archiving["configuration"] == "Available"
    assert (archiving["is_archived"], archiving["is_read_only"]) == (False, False)
    assert archiving["configured_on"] is not None  # the AVAILABLE certificate's timestamp

    other = ctx.make_home("alice-after-unarchive")
    tree = other.read_tree(WORKSPACE)
    assert_tree(tree, {**EXPECTED_TREE, "/after-unarchive.txt": b"writable again"})

    conn = _db(server)
    if conn:
        with conn:
            realm = _realm_pk(conn, ctx.org_id, ctx.workspace_id)
            rows = conn.execute(
                "SELECT configuration FROM realms_realmarchiving WHERE realm_id = %s ORDER BY certified_on",
                (realm,),
            ).fetchall()
            assert [r[0] for r in rows][-2:] == ["ARCHIVED", "AVAILABLE"]
