"""Several server processes acting as one, driven by the official 2.17.0 client.

One PostgreSQL database (metadata and blocks), one real Redis (the channel layer), and:

* two of our servers, A and B, each on its own port with its own ``--backend-addr``:
  a greeter talking to A and a claimer talking to B finish an invitation; a client logged in on B
  (one long-lived core with its monitors, never syncing by itself) sees a file that a client on A
  writes, through the ``realm.vlobs_updated`` event that crosses from A to B through Redis;
* ``manage.py run --workers 2``: one port, two worker processes (both seen answering), and the
  official client bootstraps, writes, and reads back from a second, empty client home.

Every server logs JSON lines (``--log-format JSON``), which carry the process id, the organization,
the device and the command: the assertions read them to show who served what.

Run: ``.venv/bin/python -m pytest --db=postgresql -p no:cacheprovider tests/interop/test_multiprocess.py -q``
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .conftest import (
    REPO_ROOT,
    SERVER_START_TIMEOUT,
    _postgresql_database_for_interop,
    our_server_env,
    start_our_server,
)
from .refclient import DeviceRef, ParsecCli, ServerInfo, free_port, stop_process, wait_http_ready, with_address

pytestmark = pytest.mark.interop

PASSWORD = "P@ssw0rd-multiprocess"
ALICE_EMAIL, ALICE_LABEL = "alice@example.com", "Alice Liddell"
BOB_EMAIL, BOB_LABEL = "bob@example.com", "Bob Morane"
WORKSPACE = "Shared"
# How long the client on B may take to see a change made on A (the event itself takes milliseconds;
# the bound is loose because the machine is shared with other test runs).
EVENT_DEADLINE = 45.0


# --------------------------------------------------------------------------------------------- #
# Servers: one database, one Redis, two `manage.py run` processes
# --------------------------------------------------------------------------------------------- #


def _start_redis(log_path: Path) -> tuple[subprocess.Popen, str]:
    """A throwaway `redis-server` (no persistence) on a free port, once it answers PING."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError("redis-server does not answer PING")
        time.sleep(0.1)


def server_args(port: int, admin_token: str) -> list[str]:
    """`manage.py run` options shared by every server of the module (the port's own backend address)."""
    return ["--blockstore", "POSTGRESQL", "--administration-token", admin_token,
            "--backend-addr", f"parsec://127.0.0.1:{port}?no_ssl=true", "--email-host", "MOCKED",
            "--log-format", "JSON"]


@dataclass
class Cluster:
    db_url: str
    redis_url: str
    admin_token: str
    a: ServerInfo
    b: ServerInfo
    folder: Path

    def server_args(self, port: int) -> list[str]:
        return server_args(port, self.admin_token)

    def env(self) -> dict[str, str]:
        return our_server_env(PARSEC_DB=self.db_url, PARSEC_REDIS_URL=self.redis_url)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("multiprocess")
    db_url = _postgresql_database_for_interop()
    redis, redis_url = _start_redis(folder / "redis.log")
    started: list[subprocess.Popen] = []
    try:
        env = our_server_env(PARSEC_DB=db_url, PARSEC_REDIS_URL=redis_url)
        subprocess.run(
            [str(REPO_ROOT / ".venv/bin/python"), "manage.py", "migrate", "--no-input"],
            cwd=REPO_ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
        )
        admin_token = uuid.uuid4().hex
        infos = []
        for name in ("A", "B"):  # both start at once: ~5 s each on a loaded machine
            port = free_port()
            log_path = folder / f"server-{name}.log"
            proc = start_our_server(log_path, port, *server_args(port, admin_token), env=env)
            started.append(proc)
            infos.append(ServerInfo(kind=f"ours-{name}", addr=f"parsec://127.0.0.1:{port}?no_ssl=true",
                                    admin_token=admin_token, host="127.0.0.1", port=port,
                                    log_path=log_path, process=proc, db_url=db_url))
        for info in infos:
            wait_http_ready(f"{info.http_url}/", info.process, SERVER_START_TIMEOUT, info.log_path)
        yield Cluster(db_url, redis_url, admin_token, infos[0], infos[1], folder)
    finally:
        for proc in started:
            stop_process(proc, timeout=20)
        stop_process(redis)


# --------------------------------------------------------------------------------------------- #
# Logs and HTTP
# --------------------------------------------------------------------------------------------- #


def log_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a server log (the start banner and tracebacks are plain text)."""
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    return records


def requests_of(path: Path, org_id: str) -> list[dict[str, Any]]:
    """The organization's websocket command lines (`Request`, with cmd/status/device_id/pid)."""
    return [r for r in log_records(path) if r.get("event") == "Request" and r.get("organization_id") == org_id]


def when(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))


def rfc3339(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def tails(*servers: ServerInfo) -> str:
    return "\n".join(f"--- {s.kind} log (tail) ---\n{s.log_tail(40)}" for s in servers)


def http_json(url: str, timeout: float = 15) -> tuple[int, dict[str, Any]]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


# --------------------------------------------------------------------------------------------- #
# One organization, alice on A; bob joins through B
# --------------------------------------------------------------------------------------------- #


@dataclass
class Org:
    cluster: Cluster
    org_id: str
    alice: ParsecCli
    alice_dev: DeviceRef
    make_home: Callable[[str], ParsecCli]
    bob_cli: ParsecCli | None = None
    bob_dev: DeviceRef | None = None
    invitation: dict[str, Any] = field(default_factory=dict)

    def bob(self) -> tuple[ParsecCli, DeviceRef]:
        """bob, invited by alice: the greeter's CLI talks to A, the claimer's CLI to B (once per module)."""
        if self.bob_dev is None:
            a, b = self.cluster.a, self.cluster.b
            url = self.alice.invite_user(BOB_EMAIL)
            assert url.startswith(f"parsec://127.0.0.1:{a.port}/{self.org_id}?"), url
            claimer_url = with_address(url, b.host, b.port)
            bob = self.make_home("bob")
            dev = self.alice.greet_and_claim_user(
                url, bob, label=BOB_LABEL, device_label="bob-on-b", password=PASSWORD,
                claimer_url=claimer_url, timeout=90,
            )
            self.invitation = {"url": url, "claimer_url": claimer_url, "done_at": time.time()}
            self.bob_cli, self.bob_dev = bob, dev
        assert self.bob_cli is not None
        return self.bob_cli, self.bob_dev


@pytest.fixture(scope="module")
def org(cluster: Cluster, reference_client: Path, tmp_path_factory: pytest.TempPathFactory) -> Org:
    base = tmp_path_factory.mktemp("multiprocess-clients")
    alice = ParsecCli(reference_client, base / "alice")
    org_id = f"Multi{uuid.uuid4().hex[:10]}"
    url = alice.create_organization(cluster.a.addr, org_id, cluster.admin_token)
    dev = alice.bootstrap_organization(url, ALICE_EMAIL, ALICE_LABEL, "alice-on-a", PASSWORD)
    return Org(cluster=cluster, org_id=org_id, alice=alice, alice_dev=dev,
               make_home=lambda name: ParsecCli(reference_client, base / name))


# --------------------------------------------------------------------------------------------- #
# Tests
# --------------------------------------------------------------------------------------------- #


def test_both_servers_share_redis_and_database(cluster: Cluster, reference_client: Path) -> None:
    """Two processes, two ports, each ready with the Redis channel layer; an organization created
    through A's administration API is seen by B's."""
    pids = {cluster.a.process.pid, cluster.b.process.pid}
    assert len(pids) == 2 and all(s.process.poll() is None for s in (cluster.a, cluster.b))
    for server in (cluster.a, cluster.b):
        status, body = http_json(f"{server.http_url}/health/ready")
        assert status == 200 and body["checks"]["channel_layer"]["status"] == "ok", (server.kind, body)
    org_id = f"Shared{uuid.uuid4().hex[:8]}"
    cli = ParsecCli(reference_client, cluster.folder / "admin")
    cli.create_organization(cluster.a.addr, org_id, cluster.admin_token)
    assert cli.status_organization(cluster.b.addr, org_id, cluster.admin_token)["is_bootstrapped"] is False


def test_invitation_greeted_through_a_claimed_through_b(org: Org) -> None:
    a, b = org.cluster.a, org.cluster.b
    bob, bob_dev = org.bob()
    assert org.invitation["claimer_url"].startswith(f"parsec://127.0.0.1:{b.port}/{org.org_id}?")
    assert org.invitation["claimer_url"].split("?", 1)[1] == org.invitation["url"].split("?", 1)[1]
    greeter_out, claimer_out = bob_dev.extra["greeter_stdout"], bob_dev.extra["claimer_stdout"]
    assert "Creating the user in the backend" in greeter_out, greeter_out
    assert f"Invitation greeter: {ALICE_LABEL} <{ALICE_EMAIL}>" in claimer_out, claimer_out

    # The new user exists, whichever server's administration API is asked.
    for server in (a, b):
        users = org.alice.list_users(server.addr, org.org_id, org.cluster.admin_token)
        assert sorted(u["user_email"] for u in users) == [ALICE_EMAIL, BOB_EMAIL], (server.kind, users)
        assert {u["user_name"] for u in users} == {ALICE_LABEL, BOB_LABEL}
    assert org.alice.list_invitations() == []
    assert [d["user"] for d in bob.list_devices()] == [f"{BOB_LABEL} <{BOB_EMAIL}>"]

    # Each side of the exchange was served by its own process: the greeter's commands by A only,
    # the claimer's by B only; the steps where each side waits for the other crossed processes.
    on_a = {r["cmd"] for r in requests_of(a.log_path, org.org_id)}
    on_b = {r["cmd"] for r in requests_of(b.log_path, org.org_id)}
    greeter_steps = {"invite_1_greeter_wait_peer", "invite_2a_greeter_get_hashed_nonce",
                     "invite_2b_greeter_send_nonce", "invite_3a_greeter_wait_peer_trust",
                     "invite_3b_greeter_signify_trust", "invite_4_greeter_communicate", "user_create"}
    claimer_steps = {"invite_info", "invite_1_claimer_wait_peer", "invite_2a_claimer_send_hashed_nonce",
                     "invite_2b_claimer_send_nonce", "invite_3a_claimer_signify_trust",
                     "invite_3b_claimer_wait_peer_trust", "invite_4_claimer_communicate"}
    assert greeter_steps <= on_a, (sorted(on_a), tails(a))
    assert claimer_steps <= on_b, (sorted(on_b), tails(b))
    assert not {c for c in on_a if "claimer" in c} and not {c for c in on_b if "greeter" in c}, (on_a, on_b)

    # bob's device is bound to B: his first logged-in session opens its connections there, not on A.
    assert bob.list_workspaces() == []
    bob_prefix = users_id(org, BOB_EMAIL) + "@"
    sessions = {name: [r for r in log_records(server.log_path) if r.get("organization_id") == org.org_id
                       and r.get("device_id", "").startswith(bob_prefix)
                       and r["event"].startswith("Connection established")]
                for name, server in (("A", a), ("B", b))}
    assert sessions["B"] and not sessions["A"], (sessions, tails(b))


def users_id(org: Org, email: str) -> str:
    users = org.alice.list_users(org.cluster.a.addr, org.org_id, org.cluster.admin_token)
    return next(u["user_id"] for u in users if u["user_email"] == email)


def test_change_on_a_reaches_a_core_on_b_by_events(org: Org) -> None:
    """alice (on A) writes a file; bob's long-lived core on B gets it without ever syncing by itself:
    A's `vlob_create`/`vlob_update` → Redis → B's `events_listen` → bob's sync monitor downloads it."""
    a, b = org.cluster.a, org.cluster.b
    bob, _bob_dev = org.bob()
    alice_id, bob_id = users_id(org, ALICE_EMAIL), users_id(org, BOB_EMAIL)
    workspace_id = org.alice.create_workspace_synced(WORKSPACE)
    org.alice.share_workspace(WORKSPACE, "CONTRIBUTOR", recipient=BOB_EMAIL)
    # bob's session processes the sharing message; nothing in the workspace yet
    assert bob.listdir(WORKSPACE) == []

    path, content = "/reports/from-a.txt", b"written through server A, read through server B\n" * 50
    run, ready = bob.watch_file(WORKSPACE, path, content, timeout=EVENT_DEADLINE + 30)
    try:
        assert ready["workspace_id"] == workspace_id
        assert ready["initial"] == "FSFileNotFoundError" and not ready["already_there"], ready
        written = org.alice.core_script("write", workspace=WORKSPACE, path=path,
                                        data=base64.b64encode(content).decode())
        result = run.result(timeout=EVENT_DEADLINE + 60)
    finally:
        run.kill()
    assert written["written"] == len(content)
    assert result["found"], (result, tails(a, b))
    ready_at, synced_at, seen_at = (rfc3339(v) for v in (ready["ready_at"], written["synced_at"], result["seen_at"]))
    lag = (seen_at - synced_at).total_seconds()
    assert lag < EVENT_DEADLINE, (lag, result)

    # The core heard the server's realm.vlobs_updated events for this workspace, from alice's writes,
    # after it was ready; its sync monitor then downloaded the changes.
    vlob_events = [e for e in result["events"] if e["event"] == "BACKEND_REALM_VLOBS_UPDATED"]
    ours = [e for e in vlob_events if e["realm_id"] == workspace_id and rfc3339(e["at"]) >= ready_at]
    assert ours, result["events"]
    assert result["entry_id"] in {e["src_id"] for e in ours}, (result["entry_id"], ours)
    assert rfc3339(ours[0]["at"]) <= seen_at, (ours, result["seen_at"])
    assert any(e["event"] in ("FS_ENTRY_REMOTE_CHANGED", "FS_ENTRY_DOWNSYNCED") and rfc3339(e["at"]) >= ready_at
               for e in result["events"]), result["events"]

    # The logs agree: alice wrote through A only, bob listened (and was answered) through B only.
    on_a, on_b = requests_of(a.log_path, org.org_id), requests_of(b.log_path, org.org_id)
    alice_writes = [r for r in on_a if r.get("device_id", "").startswith(alice_id + "@")
                    and r["cmd"] in ("vlob_create", "vlob_update") and r["status"] == "ok"
                    and when(r) >= ready_at]
    assert alice_writes, tails(a)
    assert not [r for r in on_b if r.get("device_id", "").startswith(alice_id + "@")], "alice never talks to B"
    assert not [r for r in on_a if r.get("device_id", "").startswith(bob_id + "@")], "bob never talks to A"
    delivered = [r for r in on_b if r.get("device_id", "").startswith(bob_id + "@") and r["cmd"] == "events_listen"
                 and r["status"] == "ok" and ready_at <= when(r) <= seen_at]
    assert delivered, tails(b)
    # bob wrote nothing and never asked for the realm's changes while waiting: no sync of his own
    waiting = [r for r in on_b if r.get("device_id", "").startswith(bob_id + "@") and ready_at <= when(r) <= seen_at]
    assert not [r for r in waiting if r["cmd"] in ("vlob_create", "vlob_update", "vlob_poll_changes")], waiting
    assert {"vlob_read", "block_read"} <= {r["cmd"] for r in waiting}, sorted({r["cmd"] for r in waiting})
    print(f"\nB saw the file {lag:.2f}s after A's sync returned ({result['waited_s']}s after READY, "
          f"{result['polls']} local reads); {len(ours)} realm.vlobs_updated event(s) for the workspace; "
          f"B answered {len(delivered)} events_listen; bob's commands while waiting: "
          f"{sorted({r['cmd'] for r in waiting})}")


def _children(pid: int) -> dict[int, str]:
    """{pid: command line} of the live processes whose parent is `pid` (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_workers_2_serve_one_port(cluster: Cluster, reference_client: Path, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "workers.log"
    proc = start_our_server(log_path, port, "--workers", "2", "--shutdown-grace", "3",
                            *cluster.server_args(port), env=cluster.env())
    info = ServerInfo(kind="ours-workers", addr=f"parsec://127.0.0.1:{port}?no_ssl=true",
                      admin_token=cluster.admin_token, host="127.0.0.1", port=port, log_path=log_path,
                      process=proc, db_url=cluster.db_url)
    worker_pids: set[int] = set()
    try:
        wait_http_ready(f"{info.http_url}/", proc, SERVER_START_TIMEOUT, log_path)
        banner = next((line for line in log_path.read_text().splitlines() if line.startswith("Started 2 server")), "")
        assert banner.startswith(f"Started 2 server processes on 127.0.0.1:{port} (pids "), log_path.read_text()
        worker_pids = {int(p) for p in banner.split("(pids ", 1)[1].rstrip(")").split(", ")}
        children = _children(proc.pid)
        assert set(children) == worker_pids and len(worker_pids) == 2, (children, banner)
        assert all("manage.py run" in cmdline for cmdline in children.values()), children

        # Both processes accept on the one port: hit it until each one has logged an answer.
        def get(_: int) -> int:
            return http_json(f"{info.http_url}/health/live", timeout=20)[0]

        answered_by: set[int] = set()
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(8) as pool:
            while answered_by != worker_pids and time.monotonic() < deadline:
                assert set(pool.map(get, range(16))) == {200}
                time.sleep(0.3)  # the access lines of the last requests
                answered_by = {r["pid"] for r in log_records(log_path)
                               if r.get("event") == "HTTP request" and r.get("path") == "/health/live"}
        assert answered_by == worker_pids, (answered_by, worker_pids)
        status, body = http_json(f"{info.http_url}/health/ready")
        assert status == 200 and body["checks"]["channel_layer"]["status"] == "ok", body

        # The official client through the two workers: bootstrap, write, read back from an empty home.
        alice = ParsecCli(reference_client, tmp_path / "alice")
        org_id = f"Workers{uuid.uuid4().hex[:8]}"
        url = alice.create_organization(info.addr, org_id, cluster.admin_token)
        alice.bootstrap_organization(url, ALICE_EMAIL, ALICE_LABEL, "laptop", PASSWORD)
        workspace_id = alice.create_workspace_synced(WORKSPACE)
        data = os.urandom(600 * 1024) + b"end"  # two blocks
        assert alice.write_file(WORKSPACE, "/big.bin", data) == len(data)
        other = ParsecCli(reference_client, tmp_path / "alice-elsewhere")
        alice.copy_device_to(other)
        assert other.read_file(WORKSPACE, "/big.bin") == data
        assert [w["internal_id"] for w in other.list_workspaces()] == [workspace_id]

        served = requests_of(log_path, org_id)
        assert {"vlob_create", "block_create", "vlob_read", "block_read"} <= {r["cmd"] for r in served}
        assert {r["pid"] for r in served} <= worker_pids and proc.pid not in {r["pid"] for r in served}
    finally:
        stop_process(proc, timeout=30)
        for pid in worker_pids:  # a supervisor killed before its workers ended would leave them running
            if _is_our_worker(pid, port):
                os.kill(pid, 9)
    assert proc.returncode == 0, log_path.read_text()[-3000:]
    # the supervisor stopped (and reaped) both workers
    assert not [pid for pid in worker_pids if Path(f"/proc/{pid}").exists()], worker_pids


def _is_our_worker(pid: int, port: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"manage.py" in cmdline and f"PARSEC_PORT={port}".encode() in environ


def _http_status(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_workers_serve_the_console_on_its_own_port(cluster: Cluster, tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    log_path = tmp_path / "workers.log"
    proc = start_our_server(log_path, port, "--workers", "2", "--shutdown-grace", "3",
                            "--admin-port", str(admin_port), "--admin-host", "127.0.0.1",
                            *cluster.server_args(port), env=cluster.env())
    worker_pids: set[int] = set()
    try:
        wait_http_ready(f"http://127.0.0.1:{admin_port}/admin/login/", proc, SERVER_START_TIMEOUT, log_path)
        banner = next((line for line in log_path.read_text().splitlines() if line.startswith("Started 2 server")), "")
        worker_pids = {int(p) for p in banner.split("(pids ", 1)[1].rstrip(")").split(", ")}
        assert f"Web console on 127.0.0.1:{admin_port}/admin/" in log_path.read_text()
        # Every worker serves the console's port (the socket is inherited), and not on the clients' port.
        answered_by: set[int] = set()
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(8) as pool:
            while answered_by != worker_pids and time.monotonic() < deadline:
                statuses = set(pool.map(lambda _: _http_status(f"http://127.0.0.1:{admin_port}/admin/login/"),
                                        range(16)))
                assert statuses == {200}
                time.sleep(0.3)
                answered_by = {r["pid"] for r in log_records(log_path)
                               if r.get("event") == "HTTP request" and r.get("path") == "/admin/login/"}
        assert answered_by == worker_pids, (answered_by, worker_pids)
        assert _http_status(f"http://127.0.0.1:{admin_port}/static/admin/css/base.css") == 200
        assert _http_status(f"http://127.0.0.1:{port}/admin/login/") == 404
        assert _http_status(f"http://127.0.0.1:{port}/health/live") == 200
    finally:
        stop_process(proc, timeout=30)
        for pid in worker_pids:
            if _is_our_worker(pid, port):
                os.kill(pid, 9)
    assert proc.returncode == 0, log_path.read_text()[-3000:]
