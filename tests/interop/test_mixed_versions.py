"""Clients 2.0.0, 2.11.1 and 2.17.0 in one organization of our server (PostgreSQL), one workspace.

2.0.0 (API 2.0, the hosting guide's version) creates and bootstraps the organization and the
workspace; it greets a 2.11.1 user (API 3.2) and a 2.17.0 user (API 3.4) through the SAS exchange,
whose claimers run their own versions, and shares the workspace with both. Each writes a file; each
reads every file byte for byte from an empty local storage. A 2.0.0 client stays logged in while the
2.11.1 user writes: the server's `realm.vlobs_updated` event must bring the change to it.
Files and the 2.0/2.11 sharing go through each version's core API (see test_client_versions.py).
"""
from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import pytest

from .oldclients import VersionedCli, client_ok
from .refclient import ParsecCli, ServerInfo

PASSWORD = "P@ssw0rd-mixed"


def read_all(cli: ParsecCli, device, paths: list[str]) -> dict[str, bytes]:
    steps = [{"op": "read", "workspace": "Shared", "path": path} for path in paths]
    results = cli.steps(steps, device) if isinstance(cli, VersionedCli) else cli.batch(steps, device)
    return {path: base64.b64decode(result["data"]) for path, result in zip(paths, results)}


# A dozen client processes, each starting a Python interpreter: minutes on a loaded machine.
@pytest.mark.timeout(900)
def test_three_versions_share_one_workspace(ours_server: ServerInfo, reference_client: Path, tmp_path: Path):
    for version in ("2.0.0", "2.11.1"):
        ok, what = client_ok(version)
        assert ok, f"client {version} unusable ({what}): run scripts/setup.sh --tests"
    server = ours_server
    org_id = f"Mixed{uuid.uuid4().hex[:8]}"
    alice = VersionedCli("2.0.0", tmp_path / "alice")
    bob = VersionedCli("2.11.1", tmp_path / "bob")
    carol = ParsecCli(reference_client, tmp_path / "carol")

    url = alice.create_organization(server.addr, org_id, server.admin_token)
    alice_dev = alice.bootstrap_organization(url, "alice@example.com", "Alice", "laptop", PASSWORD)
    alice.steps([{"op": "create_workspace", "workspace": "Shared"}])

    bob_dev = alice.greet_and_claim_user(alice.invite_user("bob@example.com"), bob, label="Bob",
                                         device_label="bob-pc", password=PASSWORD)
    carol_dev = alice.greet_and_claim_user(alice.invite_user("carol@example.com"), carol, label="Carol",
                                           device_label="carol-pc", password=PASSWORD)
    [bob_id] = [step["user_id"] for step in bob.steps([{"op": "whoami"}])]
    [carol_user] = carol.human_find("carol")
    alice.steps([
        {"op": "share", "workspace": "Shared", "user_id": bob_id, "role": "CONTRIBUTOR"},
        {"op": "share", "workspace": "Shared", "user_id": carol_user["user_id"], "role": "CONTRIBUTOR"},
    ])

    files = {
        "/from-2.0.0.bin": os.urandom(700_000),  # two blocks
        "/from-2.11.1.txt": "écrit par 2.11.1\n".encode(),
        "/from-2.17.0.bin": os.urandom(40_000),
    }
    alice.steps([{"op": "write", "workspace": "Shared", "path": "/from-2.0.0.bin", "data": files["/from-2.0.0.bin"]}])

    # 2.0.0 logged in and idle; only the event of bob's write can bring it bob's file.
    watcher_home = VersionedCli("2.0.0", tmp_path / "alice-watcher")
    watcher_dev = alice.copy_device_to(watcher_home, alice_dev)
    watch = watcher_home.start_old_script({"op": "wait_for_file", "workspace": "Shared", "path": "/from-2.11.1.txt",
                                           "data": base64.b64encode(files["/from-2.11.1.txt"]).decode(),
                                           "timeout": 60}, watcher_dev)
    try:
        watch.wait_line("READY", timeout=120)
        bob.steps([{"op": "write", "workspace": "Shared", "path": "/from-2.11.1.txt",
                    "data": files["/from-2.11.1.txt"]}], bob_dev)
        seen = watch.result(timeout=120)
    finally:
        watch.kill()
    [outcome] = seen["steps"]
    assert outcome["found"], outcome
    assert outcome["events"], "no realm.vlobs_updated reached the 2.0.0 client"

    carol.batch([{"op": "write", "workspace": "Shared", "path": "/from-2.17.0.bin", "data": files["/from-2.17.0.bin"]}],
                carol_dev)

    # Every user reads every file from an empty local storage.
    for cli, device, name in ((alice, alice_dev, "alice"), (bob, bob_dev, "bob"), (carol, carol_dev, "carol")):
        fresh = (VersionedCli(cli.version, tmp_path / f"{name}-fresh") if isinstance(cli, VersionedCli)
                 else ParsecCli(reference_client, tmp_path / f"{name}-fresh"))
        copy = cli.copy_device_to(fresh, device)
        assert read_all(fresh, copy, list(files)) == files, name
