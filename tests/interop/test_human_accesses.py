"""`manage.py human_accesses` against the reference's `parsec backend human_accesses` (issue 13).

The same story is played by the official 2.17.0 client on our server and on a reference server
backed by PostgreSQL (the reference reads its own database): alice bootstraps, greets bob, creates
a workspace and shares it with bob as READER then CONTRIBUTOR. Both
commands' outputs must have the same layout once ids and dates are replaced by placeholders and
the reference's 2.17 quirks are undone: ANSI colours printed even into a pipe, Rust wrappers
(`HumanHandle("…")`, `UserID("…")`) and capitalised profiles (`Admin`).

The story removes no access: the 2.17 reference crashes on a removed role (its dump reads the NULL
role with `RealmRole.from_str`), so "Access removed" is only checked by tests/realms/test_human_accesses.py.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from .conftest import REPO_ROOT, SERVER_START_TIMEOUT, _postgresql_database_for_interop, our_server_env
from .refclient import ParsecCli, ServerInfo, free_port, stop_process, wait_http_ready

pytestmark = pytest.mark.interop

PASSWORD = "P@ssw0rd-interop"
ADMIN_TOKEN = "human-accesses-token"


def _reference_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARSEC_", "PYTHON"))}
    env.update(PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1")
    env.pop("DEBUG", None)
    return env


@pytest.fixture(scope="module")
def reference_pg_server(reference_client: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """The reference server on its own PostgreSQL database (its `human_accesses` reads the database)."""
    db_url = _postgresql_database_for_interop()
    env = _reference_env()
    subprocess.run([str(reference_client / "parsec"), "backend", "migrate", "--db", db_url],
                   env=env, check=True, capture_output=True)
    port = free_port()
    log_path = tmp_path_factory.mktemp("reference-pg-server") / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(reference_client / "parsec"), "backend", "run", "--db", db_url, "--blockstore", "POSTGRESQL",
             "--administration-token", ADMIN_TOKEN, "--backend-addr", f"parsec://127.0.0.1:{port}?no_ssl=true",
             "--email-host", "MOCKED", "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    info = ServerInfo(kind="reference-pg", addr=f"parsec://127.0.0.1:{port}?no_ssl=true", admin_token=ADMIN_TOKEN,
                      host="127.0.0.1", port=port, log_path=log_path, process=proc, db_url=db_url)
    try:
        wait_http_ready(f"{info.http_url}/", proc, SERVER_START_TIMEOUT, log_path)
        yield info
    finally:
        stop_process(proc)


def play_story(server: ServerInfo, alice_cli: ParsecCli, bob_cli: ParsecCli, org_id: str) -> None:
    url = alice_cli.create_organization(server.addr, org_id, server.admin_token)
    alice = alice_cli.bootstrap_organization(url, "alice@example.com", "Alice", "alice-pc", PASSWORD)
    invitation = alice_cli.invite_user("bob@example.com", device=alice)
    alice_cli.greet_and_claim_user(invitation, bob_cli, label="Bob", device_label="bob-pc", password=PASSWORD)
    alice_cli.create_workspace_synced("Shared", alice)
    for role in ("READER", "CONTRIBUTOR"):
        alice_cli.share_workspace("Shared", role, recipient="bob@example.com", device=alice)


def normalised(output: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", output)
    text = re.sub(r'(?:HumanHandle|UserID)\("([^"]*)"\)', r"\1", text)
    text = re.sub(r"\((Admin|Standard|Outsider),", lambda m: f"({m[1].upper()},", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?Z", "<date>", text)
    ids: dict[str, str] = {}
    return re.sub(r"\b[0-9a-f]{32}\b", lambda m: ids.setdefault(m[0], f"<id{len(ids)}>"), text)


def test_same_layout_as_the_reference(reference_client: Path, reference_pg_server: ServerInfo, ours_server: ServerInfo,
                                      make_parsec_cli, org_id: str):
    for server in (reference_pg_server, ours_server):
        play_story(server, make_parsec_cli(f"alice-{server.kind}"), make_parsec_cli(f"bob-{server.kind}"), org_id)
    reference = subprocess.run(
        [str(reference_client / "parsec"), "backend", "human_accesses", "--db", reference_pg_server.db_url,
         "--organization", org_id],
        env=_reference_env(), capture_output=True, text=True,
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    ours = subprocess.run(
        [str(REPO_ROOT / ".venv/bin/python"), "manage.py", "human_accesses", org_id],
        cwd=REPO_ROOT, env=our_server_env(PARSEC_DB=ours_server.db_url), capture_output=True, text=True, check=True,
    )
    outputs = {"reference": normalised(reference.stdout), "ours": normalised(ours.stdout)}
    assert outputs["ours"] == outputs["reference"], outputs
    # The story is all there: two humans, bob's two role changes on the shared workspace.
    assert outputs["ours"].startswith("Found 2 result(s)\nHuman Alice <alice@example.com>\n")
    assert "Access READER granted\n\t\t\t<date>: Access CONTRIBUTOR granted\n" in outputs["ours"]
