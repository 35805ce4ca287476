"""User revocation driven by the official 2.17.0 client (issue 4).

Module setup: alice bootstraps an organization, invites and greets bob
(STANDARD), creates a workspace, shares it with bob as CONTRIBUTOR; bob reads it
and writes a file. Then, in file order:

* alice revokes bob (`user_revoke`, through `LoggedCore.revoke_user`: no CLI
  command exists); `human_find` hides him unless `--include-revoked`;
* bob's next commands are refused at the authenticated handshake
  (`revoked_device`: "Device has been revoked");
* `reencrypt_workspace` now re-encrypts (bob was revoked after the workspace key
  was issued) and alice reads everything back from a fresh client home.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from .refclient import DeviceRef, ParsecCli

pytestmark = pytest.mark.interop

ALICE_EMAIL, ALICE_LABEL = "alice@example.com", "Alice Liddell"
BOB_EMAIL, BOB_LABEL = "bob@example.com", "Bob Morane"
PASSWORD = "P@ssw0rd-interop"
WORKSPACE = "Shared"
FILES = {
    "/notes.txt": b"Shared notes\n",
    "/data/blob.bin": os.urandom(600 * 1024),  # 2 blocks
}
BOB_FILE = ("/data/from-bob.txt", b"written by bob before his revocation\n")
REVOKED = "Device has been revoked"


@dataclass
class RevocationCtx:
    server: Any
    org_id: str
    alice: ParsecCli
    alice_dev: DeviceRef
    bob: ParsecCli
    bob_dev: DeviceRef
    bob_user_id: str
    workspace_id: str
    new_home: Any  # name -> fresh ParsecCli holding a copy of alice's device
    revoked: bool = False
    reencrypted: bool = False


@pytest.fixture(scope="module")
def ctx(server, reference_client, tmp_path_factory) -> RevocationCtx:
    base = tmp_path_factory.mktemp("revocation")
    alice = ParsecCli(reference_client, base / "alice")
    bob = ParsecCli(reference_client, base / "bob")
    org_id = f"Rev{uuid.uuid4().hex[:12]}"
    url = alice.create_organization(server.addr, org_id, server.admin_token)
    alice_dev = alice.bootstrap_organization(url, ALICE_EMAIL, ALICE_LABEL, "laptop", PASSWORD)
    invite_url = alice.invite_user(BOB_EMAIL, device=alice_dev)
    bob_dev = alice.greet_and_claim_user(invite_url, bob, label=BOB_LABEL, device_label="bob-pc",
                                         password=PASSWORD, greeter_device=alice_dev)

    steps: list[dict[str, Any]] = [{"op": "create_workspace", "workspace": WORKSPACE}]
    steps += [{"op": "write", "workspace": WORKSPACE, "path": p, "data": d} for p, d in FILES.items()]
    workspace_id = alice.batch(steps, alice_dev, timeout=120)[0]["workspace_id"]
    alice.share_workspace(WORKSPACE, "CONTRIBUTOR", recipient=BOB_EMAIL, device=alice_dev)

    # bob has access before his revocation
    res = bob.batch([
        {"op": "read_tree", "workspace": WORKSPACE},
        {"op": "write", "workspace": WORKSPACE, "path": BOB_FILE[0], "data": BOB_FILE[1]},
        {"op": "workspace_info", "workspace": WORKSPACE},
    ], bob_dev, timeout=120)
    assert _files(res[0]["tree"]) == _expected(FILES)
    bob_user_id = next(u for u, role in res[2]["roles"].items() if role == "CONTRIBUTOR")

    def new_home(name: str) -> ParsecCli:
        home = ParsecCli(reference_client, base / name)
        alice.copy_device_to(home, alice_dev)
        return home

    return RevocationCtx(server=server, org_id=org_id, alice=alice, alice_dev=alice_dev, bob=bob,
                         bob_dev=bob_dev, bob_user_id=bob_user_id, workspace_id=workspace_id,
                         new_home=new_home)


def _files(tree: dict[str, dict[str, Any]]) -> dict[str, tuple[int, str]]:
    return {p: (v["size"], v["sha256"]) for p, v in tree.items() if v["type"] == "file"}


def _expected(files: dict[str, bytes]) -> dict[str, tuple[int, str]]:
    return {p: (len(d), hashlib.sha256(d).hexdigest()) for p, d in files.items()}


def _db(server):
    if not server.db_url:
        return None
    import psycopg

    return psycopg.connect(server.db_url)


def test_revoke_user(ctx: RevocationCtx, server):
    # one core session: find bob, revoke him, find him again
    res = ctx.alice.batch([
        {"op": "find_humans", "query": "bob"},
        {"op": "revoke_user", "user_id": ctx.bob_user_id},
        {"op": "find_humans", "query": "bob"},
        {"op": "find_humans", "query": "bob", "omit_revoked": True},
    ], ctx.alice_dev)
    ctx.revoked = True
    before, after, active_only = res[0]["users"], res[2]["users"], res[3]["users"]
    assert [(u["user_id"], u["human"], u["profile"], u["revoked"]) for u in before] == [
        (ctx.bob_user_id, f"{BOB_LABEL} <{BOB_EMAIL}>", "STANDARD", False)]
    assert [(u["user_id"], u["revoked"]) for u in after] == [(ctx.bob_user_id, True)]
    assert after[0]["revoked_on"] is not None
    assert active_only == [] and res[3]["total"] == 0

    # the CLI: revoked users are hidden, unless asked for
    found = ctx.alice.human_find("bob", include_revoked=True, device=ctx.alice_dev)
    assert found == [{"human": f"{BOB_LABEL} <{BOB_EMAIL}>", "user_id": ctx.bob_user_id, "revoked": True}]

    # organization stats count him as revoked
    stats = ctx.alice.stats_organization(server.addr, ctx.org_id, server.admin_token)
    assert (stats["users"], stats["active_users"]) == (2, 1)
    per_profile = {d["profile"]: (d["active"], d["revoked"]) for d in stats["users_per_profile_detail"]}
    assert per_profile == {"ADMIN": (1, 0), "STANDARD": (0, 1), "OUTSIDER": (0, 0)}

    conn = _db(server)
    if conn:
        with conn:
            row = conn.execute(
                "SELECT u.revoked_on IS NOT NULL, u.revoked_user_certificate IS NOT NULL, d.device_id"
                " FROM organizations_user u JOIN organizations_organization o ON o.id = u.organization_id"
                " LEFT JOIN organizations_device d ON d.id = u.revoked_user_certifier_id"
                " WHERE o.organization_id = %s AND u.user_id = %s", (ctx.org_id, ctx.bob_user_id),
            ).fetchone()
            assert row[:2] == (True, True)
            assert row[2] and not row[2].startswith(ctx.bob_user_id + "@")  # revoked by alice


def test_revoked_user_is_refused(ctx: RevocationCtx, server):
    if not ctx.revoked:
        pytest.fail("bob was not revoked (test_revoke_user failed)")
    # a CLI command: the handshake answers `revoked_device`
    res = ctx.bob.fails(ctx.bob.list_workspaces, ctx.bob_dev)
    assert res.returncode == 1
    assert res.stdout.strip() == f"Error: {REVOKED}"

    # the core API (what the GUI uses): the first request of the session fails
    res = ctx.bob.fails(ctx.bob.read_file, WORKSPACE, "/notes.txt", ctx.bob_dev)
    assert res.returncode == 1
    assert "RESULT" not in res.stdout
    assert f"BackendConnectionRefused: {REVOKED}" in res.stderr


def test_reencrypt_after_revocation(ctx: RevocationCtx, server):
    if not ctx.revoked:
        pytest.fail("bob was not revoked (test_revoke_user failed)")
    info = ctx.alice.workspace_info(WORKSPACE, ctx.alice_dev)
    assert info["encryption_revision"] == 1
    # revoking a user does not remove his realm role
    assert info["roles"][ctx.bob_user_id] == "CONTRIBUTOR"
    assert sorted(info["roles"].values()) == ["CONTRIBUTOR", "OWNER"]

    res = ctx.alice.reencrypt_workspace(WORKSPACE, ctx.alice_dev)
    assert res.stdout.splitlines() == ["Re-encrypting the workspace ✔", "The workspace has been reencrypted"]
    ctx.reencrypted = True

    # everything, read from an empty local storage, with the new key
    other = ctx.new_home("alice-after-reencryption")
    res = other.batch([
        {"op": "read_tree", "workspace": WORKSPACE},
        {"op": "workspace_info", "workspace": WORKSPACE},
        {"op": "read", "workspace": WORKSPACE, "path": BOB_FILE[0]},
    ], timeout=120)
    assert _files(res[0]["tree"]) == _expected({**FILES, BOB_FILE[0]: BOB_FILE[1]})
    info = res[1]
    assert info["encryption_revision"] == 2
    assert info["realm_status"] == {"in_maintenance": "False", "maintenance_type": "None",
                                    "encryption_revision": "2"}
    assert base64.b64decode(res[2]["data"]) == BOB_FILE[1]

    # nothing left to do. NB: asked from `other`, which processed the re-encryption message
    # (`reencrypt_workspace` does not process messages first: a home that has not seen the
    # new key since would try revision 2 again and get `bad_encryption_revision`)
    res = other.reencrypt_workspace(WORKSPACE)
    assert res.stdout.strip() == "The workspace does not need to be reencrypted"

    conn = _db(server)
    if conn:
        with conn:
            rev, maintenance = conn.execute(
                "SELECT encryption_revision, maintenance_type FROM realms_realm WHERE realm_id = %s",
                (uuid.UUID(ctx.workspace_id),),
            ).fetchone()
            assert (rev, maintenance) == (2, None)
            per_rev = dict(conn.execute(
                "SELECT v.encryption_revision, count(*) FROM realms_vlobatom v JOIN realms_realm r"
                " ON r.id = v.realm_id WHERE r.realm_id = %s GROUP BY v.encryption_revision",
                (uuid.UUID(ctx.workspace_id),),
            ).fetchall())
            assert set(per_rev) == {1, 2} and per_rev[1] == per_rev[2]
