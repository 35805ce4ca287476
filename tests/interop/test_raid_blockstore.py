"""The official 2.17 client against our server with `--blockstore RAID5` over three S3 servers (moto).

Files are written and read back; a second client (another user the workspace is shared with)
reads everything while one of the three S3 servers is down; the server then comes back empty,
`manage.py blockstore_check --repair` rebuilds its parts, and with another node down a third
client still reads everything (so the rebuilt parts are right).

Run: ``.venv/bin/python -m pytest tests/interop/test_raid_blockstore.py -q``
"""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.objectstores import MotoServer, start_moto_servers

from .conftest import (
    REPO_ROOT,
    SERVER_START_TIMEOUT,
    _postgresql_database_for_interop,
    our_server_env,
    start_our_server,
)
from .refclient import ServerInfo, free_port, stop_process, wait_http_ready

pytestmark = pytest.mark.interop

BUCKET = "parsec-blocks"
PASSWORD = "P@ssw0rd-raid"
KIB = 1024


@pytest.fixture(scope="module")
def raid5_s3_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[MotoServer]]:
    """Three independent S3 servers for this module only (tests stop and restart them)."""
    servers = start_moto_servers(3, tmp_path_factory.mktemp("raid5-moto"))
    try:
        for s3 in servers:
            s3.new_bucket(BUCKET)
        yield servers
    finally:
        for s3 in servers:
            s3.stop()


def raid5_blockstore(servers: list[MotoServer]) -> list[str]:
    return [f"RAID5:{index}:{s3.blockstore(BUCKET)}" for index, s3 in enumerate(servers)]


@pytest.fixture(scope="module")
def raid5_server(
    raid5_s3_servers: list[MotoServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerInfo]:
    """Our server (`manage.py run`, PostgreSQL metadata) with `-b RAID5:<i>:s3:...` for the three S3 servers."""
    db_url = _postgresql_database_for_interop()
    log_path = tmp_path_factory.mktemp("raid5-server") / "server.log"
    admin_token = uuid.uuid4().hex
    env = our_server_env(PARSEC_DB=db_url)
    subprocess.run(
        [str(REPO_ROOT / ".venv/bin/python"), "manage.py", "migrate", "--no-input"],
        cwd=REPO_ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
    )
    port = free_port()
    blockstore_args = [arg for spec in raid5_blockstore(raid5_s3_servers) for arg in ("--blockstore", spec)]
    proc = start_our_server(
        log_path, port, *blockstore_args, "--administration-token", admin_token,
        "--backend-addr", f"parsec://127.0.0.1:{port}?no_ssl=true", "--email-host", "MOCKED",
        env=env,
    )
    info = ServerInfo(
        kind="ours-raid5", addr=f"parsec://127.0.0.1:{port}?no_ssl=true", admin_token=admin_token,
        host="127.0.0.1", port=port, log_path=log_path, process=proc, db_url=db_url,
    )
    try:
        wait_http_ready(f"{info.http_url}/", proc, SERVER_START_TIMEOUT, log_path)
        yield info
    finally:
        stop_process(proc)


@pytest.fixture
def server(raid5_server: ServerInfo) -> ServerInfo:
    """Under this name, the harness appends the server's log to a failure report."""
    return raid5_server


def s3_keys(s3: MotoServer) -> set[str]:
    paginator = s3.client().get_paginator("list_objects_v2")
    return {item["Key"] for page in paginator.paginate(Bucket=BUCKET) for item in page.get("Contents", [])}


def blockstore_check(server: ServerInfo, servers: list[MotoServer], *args: str) -> subprocess.CompletedProcess:
    """`manage.py blockstore_check` as an operator runs it: the server's PARSEC_DB and PARSEC_BLOCKSTORE."""
    assert server.db_url
    env = our_server_env(PARSEC_DB=server.db_url, PARSEC_BLOCKSTORE=" ".join(raid5_blockstore(servers)))
    return subprocess.run(
        [str(REPO_ROOT / ".venv/bin/python"), "manage.py", "blockstore_check", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


def test_raid5_over_three_s3_servers(
    server: ServerInfo, raid5_s3_servers: list[MotoServer], make_parsec_cli, org_id: str
) -> None:
    alice = make_parsec_cli("alice")
    url = alice.create_organization(server.addr, org_id, server.admin_token)
    alice_device = alice.bootstrap_organization(url, "alice@example.com", "Alice", "laptop", PASSWORD)
    alice.create_workspace_synced("raid")
    files = {
        "/small.txt": b"hello RAID5\n",
        "/medium.bin": os.urandom(300 * KIB),
        "/big.bin": os.urandom(1600 * KIB),  # several 512 KiB blocks
    }
    alice.batch([{"op": "write", "workspace": "raid", "path": path, "data": data} for path, data in files.items()])
    for path, data in files.items():
        assert alice.read_file("raid", path) == data

    # Every block is striped over the three servers, under `<organization_id>/<block uuid>`.
    keys = [s3_keys(s3) for s3 in raid5_s3_servers]
    org_keys = {key for key in keys[0] if key.startswith(f"{org_id}/")}
    assert len(org_keys) >= 6  # 1 + 1 + 4 data blocks, plus the client's own manifests' blocks if any
    assert all({key for key in k if key.startswith(f"{org_id}/")} == org_keys for k in keys)
    for key in org_keys:
        uuid.UUID(key.split("/", 1)[1])

    # A second client: bob, invited and given the workspace.
    bob = make_parsec_cli("bob")
    invitation = alice.invite_user("bob@example.com")
    bob_device = alice.greet_and_claim_user(invitation, bob, label="Bob", device_label="desktop", password=PASSWORD)
    alice.share_workspace("raid", "READER", recipient="bob@example.com")

    # One of the three S3 servers goes down: bob still reads every file (chunks rebuilt from the parity).
    raid5_s3_servers[1].stop()
    tree = bob.read_tree("raid", "/", max_inline=0, device=bob_device)
    assert {path for path, entry in tree.items() if entry["type"] == "file"} == set(files)
    steps = bob.batch([{"op": "read", "workspace": "raid", "path": path} for path in files], device=bob_device)
    assert {path: base64.b64decode(step["data"]) for path, step in zip(files, steps)} == files

    # It comes back empty (a replaced store): the check finds its parts missing, --repair rebuilds them.
    raid5_s3_servers[1].start()
    raid5_s3_servers[1].wait_ready()
    raid5_s3_servers[1].new_bucket(BUCKET)
    checked = blockstore_check(server, raid5_s3_servers, "--organization", org_id, "--no-progress")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "still damaged (run again with --repair)" in checked.stderr
    repaired = blockstore_check(server, raid5_s3_servers, "--repair", "--organization", org_id)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "repaired, 0 not)" in repaired.stdout and "100%" in repaired.stderr  # report and progress bar
    assert {key for key in s3_keys(raid5_s3_servers[1]) if key.startswith(f"{org_id}/")} == org_keys

    # With node 0 down now, a third client (alice's device in a fresh home) reads everything:
    # the parts rebuilt on node 1 are right.
    raid5_s3_servers[0].stop()
    carol = make_parsec_cli("alice-again")
    device = alice.copy_device_to(carol, alice_device)
    for path, data in files.items():
        assert carol.read_file("raid", path, device=device) == data

    log = Path(server.log_path).read_text(errors="replace") if server.log_path else ""
    assert "Traceback" not in log
