"""Official clients older than 2.17, each alone in an organization of our server (PostgreSQL).

Each version: its CLI creates and bootstraps the organization (2.0 over the API v1 websocket
handshakes, the others over the administration API and the anonymous route), a workspace gets a
text file, an empty file, a multi-block random file and nested folders, a second user joins through
the SAS exchange of `invite_user` / `greet_invitation` / `claim_invitation`, the workspace is
shared with him, and both read everything back from an empty local storage.

Where the version's own CLI is broken whatever the server, the test drives the version's core API
instead (same code path as its GUI):
* no CLI command of any version reads files, and `rsync` (the only one that writes) answers
  "Unknown workspace" in 2.10/2.11 and fails an assertion in 2.16.3: files always go through
  `WorkspaceFS` (write_bytes/mkdir/sync, then listdir/read_bytes);
* `create_workspace` of these CLIs only creates the workspace locally: the core API creates and syncs it;
* 2.0.0's `share_workspace` raises a TypeError before sending anything, and 2.10's and 2.11's answer
  "Unknown workspace" for an existing workspace (as their `rsync`): `UserFS.workspace_share`;
* 2.10.0's `bootstrap_organization --device-label` fails an assertion before sending anything: the
  test answers the CLI's device label prompt instead, which builds the right type.
The versions run in parallel with `-n` (pytest-xdist): each has its own organization.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from .oldclients import CLIENT_PYTHONS, VersionedCli, client_ok
from .refclient import ServerInfo

PASSWORD = "P@ssw0rd-interop"
BIG = os.urandom(3 * 512 * 1024 + 12345)  # four 512 KiB blocks, the last partial: ≥ 1.5 MiB
FILES = {
    "/hello.txt": "Bonjour, Parsec ! ✓\n".encode(),
    "/empty.bin": b"",
    "/big.bin": BIG,
    "/a/b/c/deep.txt": b"nested three folders down",
}
EXPECTED_TREE = {
    "/a": {"type": "folder"},
    "/a/b": {"type": "folder"},
    "/a/b/c": {"type": "folder"},
    "/a/b/c/deep.txt": {"type": "file", "size": len(FILES["/a/b/c/deep.txt"]),
                        "sha256": hashlib.sha256(FILES["/a/b/c/deep.txt"]).hexdigest()},
    **{
        path: {"type": "file", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for path, data in FILES.items() if path.count("/") == 1
    },
    "/empty-folder": {"type": "folder"},
}


@pytest.fixture(scope="session", params=list(CLIENT_PYTHONS))
def client_version(request: pytest.FixtureRequest) -> str:
    ok, what = client_ok(request.param)
    assert ok, f"client {request.param} unusable ({what}): run scripts/setup.sh --tests"
    return request.param


def share(cli: VersionedCli, workspace: str, recipient: VersionedCli, recipient_device, email: str, role: str) -> None:
    if cli.version in ("2.0.0", "2.10.0", "2.11.1"):
        # 2.0.0's `share_workspace` raises a TypeError before sending anything; 2.10's and 2.11's
        # answer "Unknown workspace" (their name lookup, as in their `rsync`).
        [me] = recipient.steps([{"op": "whoami"}], recipient_device)
        cli.steps([{"op": "share", "workspace": workspace, "user_id": me["user_id"], "role": role}])
    elif cli.version == "2.5.4":
        # No --recipient yet: the user id, as its core API sees it.
        [me] = recipient.steps([{"op": "whoami"}], recipient_device)
        cli.share_workspace(workspace, role, user_id=me["user_id"])
    else:
        cli.share_workspace(workspace, role, recipient=email)


# A dozen client processes, each starting a Python interpreter: minutes on a loaded machine.
@pytest.mark.timeout(900)
def test_client_version_alone(client_version: str, ours_server: ServerInfo, tmp_path: Path):
    server = ours_server
    org_id = f"V{client_version.replace('.', '')}{uuid.uuid4().hex[:8]}"
    alice = VersionedCli(client_version, tmp_path / "alice")

    url = alice.create_organization(server.addr, org_id, server.admin_token)
    assert f"/{org_id}?" in url and "action=bootstrap_organization" in url
    alice.bootstrap_organization(url, "alice@example.com", "Alice", "laptop", PASSWORD)

    steps = [{"op": "create_workspace", "workspace": "W"}]
    steps += [{"op": "write", "workspace": "W", "path": path, "data": data} for path, data in FILES.items()]
    steps += [{"op": "mkdir", "workspace": "W", "path": "/empty-folder"}]
    alice.steps(steps)

    invitation = alice.invite_user("bob@example.com")
    bob = VersionedCli(client_version, tmp_path / "bob")
    bob_dev = alice.greet_and_claim_user(invitation, bob, label="Bob", device_label="desktop", password=PASSWORD)
    share(alice, "W", bob, bob_dev, "bob@example.com", "CONTRIBUTOR")

    # Both read everything back with an empty local storage: only the server has the data.
    for cli, name in ((bob, "bob-fresh"), (alice, "alice-fresh")):
        fresh = VersionedCli(client_version, tmp_path / name)
        device = cli.copy_device_to(fresh)
        assert fresh.read_tree("W", device) == EXPECTED_TREE, f"{name} ({client_version})"

    log = server.log_path.read_text(errors="replace")
    assert "bad_message" not in _lines_of(log, org_id)


def _lines_of(log: str, org_id: str) -> str:
    return "\n".join(line for line in log.splitlines() if org_id in line)
