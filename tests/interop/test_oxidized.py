"""The 2.17 client with `UNSTABLE_OXIDIZED_CLIENT_CONNECTION=true`, which sends its commands over the HTTP routes.

With the flag, the client's Rust layer carries the anonymous commands (`POST /anonymous`), the authenticated
commands of the file system, the remote loader (vlobs, blocks) and the device manager (`POST /authenticated`),
and the invitation steps (`POST /invited`, `POST /authenticated`). Its connection monitor still opens `/ws`
for `organization_config`, `events_subscribe` and the `events_listen` loop; no 2.17 client reads the SSE stream.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import uuid

import pytest

from .refclient import ParsecCli

pytestmark = pytest.mark.interop

OXIDIZED = {"UNSTABLE_OXIDIZED_CLIENT_CONNECTION": "true"}
PASSWORD = "P@ssw0rd-oxidized"
WORKSPACE = "oxidized"
SMALL = b"Over plain HTTP\n"
BIG = os.urandom(1024 * 1024 + 77)  # three blocks


def _routes_seen(server, org_id: str) -> set[str]:
    """The HTTP routes of the organization in our server's access log (empty for the reference server)."""
    if server.kind != "ours":
        return set()
    text = server.log_path.read_text(errors="replace")
    return set(re.findall(rf"method=\w+ path=/(\w+)/{re.escape(org_id)}(?:/events)? ", text))


def test_bootstrap_write_and_sync_on_a_second_home(server, reference_client, tmp_path):
    alice = ParsecCli(reference_client, tmp_path / "alice", extra_env=OXIDIZED)
    org_id = f"Ox{uuid.uuid4().hex[:12]}"
    url = alice.create_organization(server.addr, org_id, server.admin_token)
    device = alice.bootstrap_organization(url, "alice@example.com", "Alice", "laptop", PASSWORD)

    res = alice.batch([
        {"op": "create_workspace", "workspace": WORKSPACE},
        {"op": "write", "workspace": WORKSPACE, "path": "/small.txt", "data": SMALL},
        {"op": "write", "workspace": WORKSPACE, "path": "/dir/big.bin", "data": BIG},
    ], device, timeout=180)
    workspace_id = res[0]["workspace_id"]
    assert [r["written"] for r in res[1:]] == [len(SMALL), len(BIG)]

    # The same device in an empty home: everything comes back from the server.
    other = ParsecCli(reference_client, tmp_path / "alice-second", extra_env=OXIDIZED)
    alice.copy_device_to(other, device)
    res = other.batch([
        {"op": "read_tree", "workspace": WORKSPACE},
        {"op": "read", "workspace": WORKSPACE, "path": "/dir/big.bin"},
        {"op": "workspace_info", "workspace": WORKSPACE},
    ], timeout=180)
    tree = res[0]["tree"]
    assert sorted(tree) == ["/dir", "/dir/big.bin", "/small.txt"]
    assert tree["/small.txt"]["sha256"] == hashlib.sha256(SMALL).hexdigest()
    assert base64.b64decode(res[1]["data"]) == BIG
    assert res[2]["workspace_id"] == workspace_id

    if server.kind == "ours":
        assert {"anonymous", "authenticated"} <= _routes_seen(server, org_id)
        commands = _http_commands(server, org_id)
        # The file system's and the remote loader's commands came over HTTP.
        assert {"vlob_create", "block_create", "vlob_read", "block_read"} <= commands


def _http_commands(server, org_id: str) -> set[str]:
    text = server.log_path.read_text(errors="replace")
    return set(re.findall(rf"\[info\s*\] Request .*cmd=(\w+) .*transport=http.*organization_id={re.escape(org_id)}", text))


def test_invitation_and_sharing(server, reference_client, tmp_path):
    alice = ParsecCli(reference_client, tmp_path / "alice", extra_env=OXIDIZED)
    org_id = f"Ox{uuid.uuid4().hex[:12]}"
    url = alice.create_organization(server.addr, org_id, server.admin_token)
    alice_dev = alice.bootstrap_organization(url, "alice@example.com", "Alice", "laptop", PASSWORD)

    invitation = alice.invite_user("bob@example.com", device=alice_dev)
    # The greeter's steps over HTTP, the claimer's over /ws: the 2.17 CLI cannot claim with the flag, on
    # the reference server too (its Rust claim context is reused after being consumed: "UserClaimInitialCtx
    # has been consumed" once the SAS codes are exchanged).
    claimer = ParsecCli(reference_client, tmp_path / "bob")
    bob_dev = alice.greet_and_claim_user(invitation, claimer, label="Bob", device_label="bob-pc", password=PASSWORD,
                                         profile="STANDARD", greeter_device=alice_dev)
    assert "Creating the user in the backend ✔" in bob_dev.extra["greeter_stdout"]
    bob = ParsecCli(reference_client, tmp_path / "bob", extra_env=OXIDIZED)

    alice.batch([
        {"op": "create_workspace", "workspace": WORKSPACE},
        {"op": "write", "workspace": WORKSPACE, "path": "/hello.txt", "data": SMALL},
    ], alice_dev, timeout=120)
    assert alice.share_workspace(WORKSPACE, "CONTRIBUTOR", recipient="bob@example.com", device=alice_dev).stdout == ""
    res = bob.batch([
        {"op": "read", "workspace": WORKSPACE, "path": "/hello.txt"},
        {"op": "write", "workspace": WORKSPACE, "path": "/from-bob.txt", "data": b"bob was here\n"},
    ], bob_dev, timeout=120)
    assert base64.b64decode(res[0]["data"]) == SMALL
    assert alice.read_file(WORKSPACE, "/from-bob.txt", alice_dev) == b"bob was here\n"

    if server.kind == "ours":
        assert _routes_seen(server, org_id) == {"anonymous", "authenticated"}
        commands = _http_commands(server, org_id)
        assert {"invite_new", "invite_1_greeter_wait_peer", "invite_4_greeter_communicate", "user_create",
                "realm_update_roles", "message_get"} <= commands
