"""No secret in any log line of a full interop run (issue "Logs": "a secret set in the environment
never appears in any log line of a full interop run").

One server of ours is started for the module, at the most verbose level (``--log-level DEBUG``),
with JSON lines written to ``--log-file`` (its stdout/stderr are captured too), and every secret
option given ONLY through the environment: the administration token, the SMTP password, the
metrics token and Django's secret key. The official 2.17.0 client then runs a full scenario
through it: create the organization (administration token), bootstrap it (bootstrap token),
create a workspace, write a multi-block file of random bytes and a small text file, sync, invite
bob (invitation token, e-mail written by the MOCKED mailer), greet and claim, share the
workspace, and read everything back from bob's client; ``/redirect`` is fetched with the
invitation token in its query string and ``/metrics`` with its bearer token.

After the server has stopped, every log output (the JSON file, stdout and stderr) is searched
for each secret, and for the data the server held: the plaintext the clients wrote (which the
server never sees) and the ciphertext it stored (blocks, vlob blobs, message bodies, read back
from its database), as raw bytes, hex, base64, Python bytes escapes and latin-1 text, both in
the raw file and in the decoded JSON values. The logs themselves are checked for substance
(valid JSON lines, the commands and HTTP requests of the scenario, DEBUG lines), so the test
cannot pass on empty logs.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import re
import secrets
import subprocess
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from .conftest import (
    REPO_ROOT,
    SERVER_START_TIMEOUT,
    _postgresql_database_for_interop,
    our_server_env,
    start_our_server,
)
from .refclient import ParsecCli, ParsecCliError, free_port, stop_process, wait_http_ready

pytestmark = pytest.mark.interop

ALICE_EMAIL, ALICE_LABEL = "alice@example.com", "Alice Liddell"
BOB_EMAIL, BOB_LABEL = "bob@example.com", "Bob Morane"
PASSWORD = "P@ssw0rd-interop"
WORKSPACE = "Secrets"
BIG_PATH, SMALL_PATH = "/vault/big.bin", "/note.txt"
BLOCK_SIZE = 512 * 1024  # the 2.17 client's block size
SLICE = 32  # length of the searched slices of data


@dataclass
class LogRun:
    org_id: str
    process_args: list[str]
    secrets: dict[str, str]  # name -> value (configured secrets and the tokens of the run)
    big: bytes
    small: bytes
    json_log: Path
    output_log: Path  # the server's stdout + stderr
    mail_files: list[Path]
    bob_read: dict[str, bytes]
    http_status: dict[str, int]
    blocks: list[bytes] = field(default_factory=list)  # the ciphertext stored by the server
    vlob_blobs: list[bytes] = field(default_factory=list)
    message_bodies: list[bytes] = field(default_factory=list)
    db_bootstrap_token: str | None = None
    db_invitation_tokens: list[str] = field(default_factory=list)


def _http_get(url: str, headers: dict[str, str] | None = None) -> int:
    """Status of a GET, redirects NOT followed, no proxy."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _url_token(url: str, length: int) -> str:
    m = re.search(rf"[?&]token=([0-9a-f]{{{length}}})(?:&|$)", url)
    assert m, url
    return m.group(1)


def _tail(path: Path, n: int = 40) -> str:
    if not path.exists():
        return "(missing)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture(scope="module")
def run(reference_client: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogRun]:
    base = tmp_path_factory.mktemp("log-secrets")
    json_log, output_log = base / "server.jsonl", base / "server.out"
    server_tmp = base / "server-tmp"  # the MOCKED mailer writes its e-mails under $TMPDIR
    server_tmp.mkdir()
    configured = {
        "administration token": secrets.token_hex(32),
        "SMTP password": f"smtp-{secrets.token_hex(16)}",
        "metrics token": f"metrics-{secrets.token_hex(16)}",
        "Django secret key": secrets.token_urlsafe(50),
    }
    db_url = _postgresql_database_for_interop()
    env = our_server_env(
        PARSEC_DB=db_url,
        PARSEC_ADMINISTRATION_TOKEN=configured["administration token"],
        PARSEC_EMAIL_HOST_USER="parsec-mailer",
        PARSEC_EMAIL_HOST_PASSWORD=configured["SMTP password"],
        PARSEC_METRICS_TOKEN=configured["metrics token"],
        DJANGO_SECRET_KEY=configured["Django secret key"],
        TMPDIR=str(server_tmp),
    )
    subprocess.run(
        [str(REPO_ROOT / ".venv/bin/python"), "manage.py", "migrate", "--no-input"],
        cwd=REPO_ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
    )
    port = free_port()
    addr = f"parsec://127.0.0.1:{port}?no_ssl=true"
    http = f"http://127.0.0.1:{port}"
    proc = start_our_server(
        output_log, port, "--blockstore", "POSTGRESQL", "--backend-addr", addr, "--email-host", "MOCKED",
        "--log-level", "DEBUG", "--log-format", "JSON", "--log-file", str(json_log), "--shutdown-grace", "3",
        env=env,
    )
    org_id = f"Log{uuid.uuid4().hex[:12]}"
    # A multi-block file (2 blocks, the last one partial) of random bytes, and a small text.
    big = os.urandom(600 * 1024)
    small = f"log-secrets plaintext marker {uuid.uuid4().hex} -- never in a log line\n".encode()
    http_status: dict[str, int] = {}
    try:
        wait_http_ready(f"{http}/", proc, SERVER_START_TIMEOUT, output_log)
        alice = ParsecCli(reference_client, base / "alice")
        bob = ParsecCli(reference_client, base / "bob")

        bootstrap_url = alice.create_organization(addr, org_id, configured["administration token"])
        bootstrap_token = _url_token(bootstrap_url, 64)
        alice_dev = alice.bootstrap_organization(bootstrap_url, ALICE_EMAIL, ALICE_LABEL, "laptop", PASSWORD)
        # Refusals are where a token is most tempting to echo: bootstrap again with the used token...
        late = ParsecCli(reference_client, base / "late")
        res = late.fails(late.bootstrap_organization, bootstrap_url, "eve@example.com", "Eve", "pc", PASSWORD)
        assert "InviteAlreadyUsedError" in res.stdout, res.describe()
        res = alice.batch([
            {"op": "create_workspace", "workspace": WORKSPACE},
            {"op": "write", "workspace": WORKSPACE, "path": BIG_PATH, "data": big},
            {"op": "write", "workspace": WORKSPACE, "path": SMALL_PATH, "data": small},
        ], alice_dev, timeout=120)
        assert [r.get("written") for r in res[1:]] == [len(big), len(small)]

        invite_url = alice.invite_user(BOB_EMAIL, send_email=True, device=alice_dev)
        invitation_token = _url_token(invite_url, 32)
        # The e-mail link's route: the token is in the query string.
        http_status["redirect"] = _http_get(
            f"{http}/redirect/{org_id}?no_ssl=true&action=claim_user&token={invitation_token}")
        bob_dev = alice.greet_and_claim_user(invite_url, bob, label=BOB_LABEL, device_label="bob-pc",
                                             password=PASSWORD, profile="STANDARD", greeter_device=alice_dev)
        # ...and claim again with the used invitation (refused at the invited handshake).
        res = late.run("claim_invitation", invite_url, "--password", PASSWORD, check=False)
        assert res.returncode == 1 and "Invitation not found" in res.stdout, res.describe()
        alice.share_workspace(WORKSPACE, "CONTRIBUTOR", recipient=BOB_EMAIL, device=alice_dev)
        res = bob.batch([
            {"op": "read", "workspace": WORKSPACE, "path": BIG_PATH},
            {"op": "read", "workspace": WORKSPACE, "path": SMALL_PATH},
        ], bob_dev, timeout=120)
        bob_read = {BIG_PATH: base64.b64decode(res[0]["data"]), SMALL_PATH: base64.b64decode(res[1]["data"])}

        http_status["metrics with token"] = _http_get(
            f"{http}/metrics", {"Authorization": f"Bearer {configured['metrics token']}"})
        http_status["metrics without token"] = _http_get(f"{http}/metrics")
    except (ParsecCliError, AssertionError, RuntimeError, KeyError) as exc:
        stop_process(proc)
        raise AssertionError(
            f"scenario failed: {exc}\n--- server output ---\n{_tail(output_log)}\n"
            f"--- JSON log (tail) ---\n{_tail(json_log)}"
        ) from exc
    finally:
        # Stopped before the search: every line is flushed, the shutdown lines included.
        stop_process(proc)

    run = LogRun(
        org_id=org_id,
        process_args=[str(a) for a in proc.args],
        secrets={**configured, "bootstrap token": bootstrap_token, "invitation token": invitation_token},
        big=big, small=small, json_log=json_log, output_log=output_log,
        mail_files=sorted(p for p in server_tmp.rglob("tmp-email-*") if p.is_file()),
        bob_read=bob_read, http_status=http_status,
    )
    import psycopg

    with psycopg.connect(db_url) as conn:
        run.blocks = [bytes(r[0]) for r in conn.execute(
            "SELECT data FROM blocks_blockdata WHERE organization_id = %s", (org_id,))]
        run.vlob_blobs = [bytes(r[0]) for r in conn.execute(
            "SELECT v.blob FROM realms_vlobatom v JOIN organizations_organization o ON o.id = v.organization_id"
            " WHERE o.organization_id = %s", (org_id,))]
        run.message_bodies = [bytes(r[0]) for r in conn.execute(
            "SELECT m.body FROM realms_message m JOIN organizations_user u ON u.id = m.recipient_id"
            " JOIN organizations_organization o ON o.id = u.organization_id WHERE o.organization_id = %s",
            (org_id,))]
        row = conn.execute(
            "SELECT bootstrap_token FROM organizations_organization WHERE organization_id = %s", (org_id,)
        ).fetchone()
        run.db_bootstrap_token = row[0] if row else None
        run.db_invitation_tokens = [r[0].hex for r in conn.execute(
            "SELECT i.token FROM invites_invitation i JOIN organizations_organization o ON o.id = i.organization_id"
            " WHERE o.organization_id = %s", (org_id,))]
    yield run


# --------------------------------------------------------------------------- #
# searching the logs
# --------------------------------------------------------------------------- #


def _json_strings(value: Any) -> Iterator[str]:
    """Every key and string value of a decoded JSON document (JSON escapes undone)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _json_strings(v)
    elif isinstance(value, str):
        yield value
    elif value is not None:
        yield str(value)


@dataclass
class Haystack:
    name: str
    raw: bytes
    texts: list[str]  # the file as text, plus its decoded JSON values

    @classmethod
    def of(cls, path: Path) -> Haystack:
        raw = path.read_bytes() if path.exists() else b""
        text = raw.decode("utf-8", "replace")
        decoded = []
        for line in text.splitlines():
            try:
                decoded.extend(_json_strings(json.loads(line)))
            except ValueError:
                continue
        return cls(path.name, raw, [text, "\n".join(decoded)])

    def find(self, needle: Needle) -> str | None:
        """Where the needle is (a short description), else None."""
        if needle.raw is not None and needle.raw in self.raw:
            return f"raw bytes at offset {self.raw.index(needle.raw)}"
        for i, text in enumerate(self.texts):
            where = "file text" if i == 0 else "decoded JSON values"
            haystack = text.lower() if needle.case_insensitive else text
            for s in needle.texts:
                if s in haystack:
                    pos = haystack.index(s)
                    return f"{where}: …{text[max(0, pos - 80):pos + len(s) + 20]!r}…"
        return None


@dataclass
class Needle:
    label: str
    texts: list[str]
    raw: bytes | None = None
    case_insensitive: bool = False


def _text_needles(label: str, value: str) -> list[Needle]:
    """A secret string as is, and as the base64 of its UTF-8 bytes (e.g. a basic-auth header)."""
    needles = [Needle(f"{label} (text)", [value])]
    if re.fullmatch(r"[0-9a-fA-F]+", value):
        needles.append(Needle(f"{label} (hex, any case)", [value.lower()], case_insensitive=True))
        if len(value) == 32:  # a UUID: also in its dashed form
            needles.append(Needle(f"{label} (UUID)", [str(uuid.UUID(value))], case_insensitive=True))
        token_bytes = bytes.fromhex(value)
        needles.extend(_bytes_needles(f"{label} (as bytes)", token_bytes, whole=True))
    needles.append(Needle(f"{label} (base64)", _b64_windows(value.encode())))
    return needles


def _b64_windows(data: bytes, longest: int = 30) -> list[str]:
    """base64 of `data` as it would show inside the base64 of a longer buffer holding it.

    The encoding depends on where that buffer started: one of the three shifted windows (whole
    3-byte groups, no padding) is aligned on it. Standard and URL-safe alphabets.
    """
    windows = []
    for shift in range(3):
        length = min(longest, (len(data) - shift) // 3 * 3)
        if length >= 12:
            windows.append(base64.b64encode(data[shift:shift + length]).decode())
    assert windows, data
    return windows + [w.replace("+", "-").replace("/", "_") for w in windows]


def _escaped(chunk: bytes) -> str:
    """`repr(bytes)` without the b'' around it (the chunk has no quote byte)."""
    return repr(chunk)[2:-1]


def _bytes_needles(label: str, chunk: bytes, whole: bool = False) -> list[Needle]:
    """A slice of data, in every form a careless log line could give it.

    `whole`: a short value (a token's bytes), which may contain quote bytes.
    """
    assert whole or (b"'" not in chunk and b'"' not in chunk)
    needles = [
        Needle(f"{label} (hex)", [chunk.hex()], case_insensitive=True),
        Needle(f"{label} (base64)", _b64_windows(chunk)),
        Needle(f"{label} (latin-1 text)", [chunk.decode("latin-1")]),
    ]
    if b"'" not in chunk and b'"' not in chunk:
        needles.append(Needle(f"{label} (bytes escapes)", [_escaped(chunk)]))
    needles.append(Needle(f"{label} (raw)", [], raw=chunk))
    return needles


def _slices(data: bytes, label: str) -> list[Needle]:
    """32-byte slices of `data` (its start, middle and end), each without quote bytes."""
    assert len(data) >= SLICE, (label, len(data))
    needles = []
    for target in sorted({0, len(data) // 2, len(data) - SLICE}):
        for offset in [*range(target, len(data) - SLICE + 1), *range(target, -1, -1)]:
            chunk = data[offset:offset + SLICE]
            if b"'" not in chunk and b'"' not in chunk:
                needles.extend(_bytes_needles(f"{label}[{offset}:{offset + SLICE}]", chunk))
                break
    return needles


def _leaks(paths: list[Path], needles: list[Needle]) -> list[str]:
    """"<needle> in <file>, <where>" for every needle found in one of the files."""
    haystacks = [Haystack.of(path) for path in paths]
    found = []
    for needle in needles:
        for haystack in haystacks:
            where = haystack.find(needle)
            if where:
                found.append(f"{needle.label} in {haystack.name}, {where}")
    return found


def _log_lines(run: LogRun) -> list[dict[str, Any]]:
    lines = run.json_log.read_text().splitlines()
    assert lines, "empty JSON log"
    out = []
    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"{run.json_log.name} line {n} is not JSON: {line[:300]!r}")
        assert isinstance(entry, dict), line
        out.append(entry)
    return out


# --------------------------------------------------------------------------- #
# tests
# --------------------------------------------------------------------------- #


def test_scenario_ran_with_secrets_from_the_environment_only(run: LogRun):
    # None of the secret options is on the command line: the server read them from its environment.
    assert "--log-file" in run.process_args and "--administration-token" not in run.process_args
    for name in ("administration token", "SMTP password", "metrics token", "Django secret key"):
        assert not any(run.secrets[name] in arg for arg in run.process_args), name
    # ...and used them: the administration token created the organization, the metrics token opened /metrics.
    assert run.http_status == {"redirect": 302, "metrics with token": 200, "metrics without token": 401}
    # bob read back, from the server, exactly what alice wrote
    assert run.bob_read == {BIG_PATH: run.big, SMALL_PATH: run.small}
    # the server held the tokens and the ciphertext we search for
    assert run.db_bootstrap_token == run.secrets["bootstrap token"]
    assert run.db_invitation_tokens == [run.secrets["invitation token"]]
    assert sorted(len(b) for b in run.blocks) == sorted(
        [BLOCK_SIZE + 40, len(run.big) - BLOCK_SIZE + 40, len(run.small) + 40])
    assert len(run.vlob_blobs) >= 4 and run.message_bodies  # manifests; the sharing message
    # the MOCKED mailer wrote the invitation e-mail, link and token included, to a file (not to the log)
    [mail_file] = run.mail_files
    mail = email.message_from_bytes(mail_file.read_bytes(), policy=email.policy.default)
    bodies = [part.get_content() for part in mail.walk() if part.get_content_maintype() == "text"]
    assert mail["To"] == BOB_EMAIL
    assert any(run.secrets["invitation token"] in body for body in bodies)


def test_logs_are_verbose_json_lines(run: LogRun):
    entries = _log_lines(run)
    for entry in entries:
        assert {"event", "level", "logger", "timestamp"} <= entry.keys(), entry
    assert any(e["level"] == "debug" for e in entries), "no DEBUG line at --log-level DEBUG"

    commands: dict[str, set[str]] = {}
    for e in entries:
        if e["event"] == "Request" and e.get("organization_id") == run.org_id:
            commands.setdefault(e["cmd"], set()).add(e["status"])
    for cmd in ("realm_create", "vlob_create", "vlob_read", "block_create", "block_read", "invite_new",
                "invite_info", "invite_1_greeter_wait_peer", "invite_1_claimer_wait_peer",
                "invite_4_claimer_communicate", "user_create", "realm_update_roles", "message_get"):
        assert "ok" in commands.get(cmd, set()), (cmd, sorted(commands.items()))

    http = {(e.get("method"), e.get("path"), e.get("status")) for e in entries if e["event"] == "HTTP request"}
    assert ("POST", "/administration/organizations", 200) in http, sorted(http)
    assert ("POST", f"/anonymous/{run.org_id}", 200) in http, sorted(http)
    assert ("GET", f"/redirect/{run.org_id}", 302) in http, sorted(http)
    assert ("GET", "/metrics", 200) in http and ("GET", "/metrics", 401) in http, sorted(http)
    assert any(e["event"].startswith("E-mail to") for e in entries)
    # the used invitation was refused at the invited handshake
    assert any(e["event"] == "Connection dropped: bad handshake" and e.get("organization_id") == run.org_id
               for e in entries), [e for e in entries if "handshake" in e["event"]]

    # With --log-file, stdout keeps only the start and stop lines.
    output = run.output_log.read_text()
    assert "Starting Parsec Backend on 127.0.0.1:" in output and "Parsec Backend stopped." in output


def test_no_token_or_configured_secret_in_logs(run: LogRun):
    needles = [n for name, value in run.secrets.items() for n in _text_needles(name, value)]
    assert _leaks([run.json_log, run.output_log], needles) == []


def test_no_plaintext_in_logs(run: LogRun):
    marker = run.small.decode().split(" -- ")[0]
    needles = [
        Needle("small file marker", [marker]),
        *_bytes_needles("small file", run.small[:SLICE], whole=True),
        *_slices(run.big, "big file"),
        *_slices(run.big[BLOCK_SIZE:], "big file's 2nd block"),
    ]
    assert _leaks([run.json_log, run.output_log], needles) == []


def test_no_stored_ciphertext_in_logs(run: LogRun):
    needles = [
        *(n for i, data in enumerate(run.blocks) for n in _slices(data, f"stored block #{i}")),
        *(n for i, data in enumerate(run.vlob_blobs) for n in _slices(data, f"vlob blob #{i}")),
        *(n for i, data in enumerate(run.message_bodies) for n in _slices(data, f"message body #{i}")),
    ]
    assert len(needles) > 100
    assert _leaks([run.json_log, run.output_log], needles) == []


def test_search_finds_planted_leaks(run: LogRun, tmp_path: Path):
    """The search itself: each careless way of logging a stored block or a token is caught."""
    block = max(run.blocks, key=len)
    token = run.secrets["invitation token"]
    needles = [*_slices(block, "block"), *_text_needles("invitation token", token)]
    planted = {
        "bytes repr in a JSON value": json.dumps({"event": "Request", "data": str(block[5:])}),
        "base64 (any start) in a JSON value": json.dumps({"blob": base64.b64encode(block[1:]).decode()}),
        "URL-safe base64": base64.urlsafe_b64encode(block[2:]).decode(),
        "upper-case hex": block[3:].hex().upper(),
        "latin-1 text in JSON (\\u escapes)": json.dumps({"event": block.decode("latin-1")}),
        "raw bytes": block[4:],
        "token as a UUID": f"claim {uuid.UUID(token)} refused",
        "token's bytes as base64": json.dumps({"t": base64.b64encode(b"x" + bytes.fromhex(token)).decode()}),
        "token in a query string": f"GET /redirect/Org?action=claim_user&token={token.upper()}",
    }
    for name, content in planted.items():
        path = tmp_path / "planted.log"
        path.write_bytes(content if isinstance(content, bytes) else (content + "\n").encode())
        assert _leaks([path], needles), f"a planted leak was not found: {name}"
    clean = tmp_path / "clean.log"
    clean.write_text(json.dumps({"event": "Request", "cmd": "block_create", "size": len(block)}) + "\n")
    assert _leaks([clean], needles) == []
