"""Drive the official Parsec 2.17.0 client (``parsec core ...``) from our tests.

Our test process runs Python 3.11; the reference client needs Python 3.9, so it
lives in its own venv (``$PARSEC_REF_VENV``, default ``/opt/parsec-ref``) and is
always launched as a subprocess.

Every ``ParsecCli`` instance is bound to one isolated client home: ``HOME`` and
the ``XDG_*`` variables all point inside it, so the device key files
(``$XDG_CONFIG_HOME/parsec/devices/*.keys``), the local SQLite caches
(``$XDG_DATA_HOME/parsec/...``) and the (unused) mountpoint dir (``~/Parsec``)
never leak between clients.

Actions raise ``ParsecCliError`` (with the command line, exit code, stdout and
stderr) on an unexpected failure. For expected failures use ``ParsecCli.fails``::

    res = cli.fails(cli.create_organization, addr, "Org", "wrong-token")
    assert res.returncode == 1 and "HTTP Error 403" in res.stdout

See NOTES.md next to this file for the observed outputs.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

PARSEC_VERSION = "2.17.0"
PYTHON_VERSION = "3.9.18"
DEFAULT_VENV = "/opt/parsec-ref"
# `[core]` alone does NOT provide `parsec backend ...` (jinja2/quart/hypercorn...)
PIP_REQUIREMENT = f"parsec-cloud[core,backend]=={PARSEC_VERSION}"

DEFAULT_TIMEOUT = 60.0  # a CLI call takes ~2 s (mostly Python/Qt imports)

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BOOTSTRAP_URL_RE = re.compile(r"Bootstrap organization url: (parsec://\S+)")
_INVITE_URL_RE = re.compile(r"^url: (parsec://\S+)", re.M)
_SAVING_DEVICE_RE = re.compile(r"Saving device ([0-9a-f]{8,})")


# --------------------------------------------------------------------------- #
# Reference client installation
# --------------------------------------------------------------------------- #


def _venv_dir(venv_dir: str | os.PathLike[str] | None = None) -> Path:
    return Path(venv_dir or os.environ.get("PARSEC_REF_VENV") or DEFAULT_VENV)


def _reference_client_ok(bin_dir: Path) -> bool:
    python = bin_dir / "python"
    if not (python.exists() and (bin_dir / "parsec").exists()):
        return False
    probe = (
        "import parsec._version as v, parsec.core.cli, parsec.backend.cli;"
        "print(v.__version__)"
    )
    try:
        out = subprocess.run(
            [str(python), "-W", "ignore", "-c", probe],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip().lstrip("v") == PARSEC_VERSION


def ensure_reference_client(venv_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the bin dir of a venv holding parsec-cloud 2.17.0 (client + backend).

    Creates the venv (``PYENV_VERSION=3.9.18 python -m venv``) and/or pip-installs
    the package when missing. Serialized with a lock file so that parallel test
    workers do not install concurrently.
    """
    venv = _venv_dir(venv_dir)
    bin_dir = venv / "bin"
    if _reference_client_ok(bin_dir):
        return bin_dir

    digest = hashlib.sha1(str(venv.resolve()).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"parsec-ref-venv-{digest}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _reference_client_ok(bin_dir):
                return bin_dir
            if not (bin_dir / "python").exists():
                env = dict(os.environ, PYENV_VERSION=PYTHON_VERSION)
                _checked([os.environ.get("PARSEC_REF_BASE_PYTHON", "python"), "-m", "venv", str(venv)],
                         env=env, timeout=600)
            _checked([str(bin_dir / "python"), "-m", "pip", "install", "--upgrade", "pip"],
                     timeout=600, allow_fail=True)
            _checked([str(bin_dir / "python"), "-m", "pip", "install", PIP_REQUIREMENT], timeout=1800)
            if not _reference_client_ok(bin_dir):
                raise RuntimeError(f"reference client in {venv} still unusable after install")
            return bin_dir
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _checked(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float,
             allow_fail: bool = False) -> None:
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0 and not allow_fail:
        raise RuntimeError(
            f"command failed ({res.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{res.stdout[-5000:]}\n--- stderr ---\n{res.stderr[-5000:]}"
        )


# --------------------------------------------------------------------------- #
# Results and errors
# --------------------------------------------------------------------------- #


def clean_output(text: str) -> str:
    """Strip ANSI sequences and collapse spinner redraws (``\\r``) line by line."""
    text = _ANSI_RE.sub("", text).replace("\r\n", "\n")
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


@dataclass
class CliResult:
    args: list[str]
    returncode: int
    stdout: str  # cleaned (no ANSI, no spinner frames)
    stderr: str
    raw_stdout: str
    duration: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n"
            f"exit code: {self.returncode} (after {self.duration:.1f}s)\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


class ParsecCliError(AssertionError):
    def __init__(self, message: str, result: CliResult | None = None):
        self.result = result
        super().__init__(message + ("\n" + result.describe() if result else ""))


@dataclass
class DeviceRef:
    """A device stored in a ParsecCli home (password-protected key file)."""

    slughash: str
    password: str
    organization_id: str | None = None
    human_email: str | None = None
    human_label: str | None = None
    device_label: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- #
# Helper script run with the reference venv's Python (no FUSE needed)
# --------------------------------------------------------------------------- #

_FS_TOOL = r'''
import base64, hashlib, json, sys, logging
from pathlib import Path
import trio
from parsec.logging import configure_logging
configure_logging(log_level="WARNING", log_format="CONSOLE", log_stream=sys.stderr)
from parsec._parsec import Chunk, DateTime, list_available_devices
from parsec.api.data import EntryName
from parsec.api.protocol import BlockID, RealmID, UserID, VlobID
from parsec.core import logged_core_factory
from parsec.core.config import load_config
from parsec.core.fs.path import FsPath
from parsec.core.types import LocalDevice


def load_device(config, slughash, password):
    found = [d for d in list_available_devices(config.config_dir) if d.slughash.startswith(slughash)]
    if len(found) != 1:
        raise SystemExit("device %r: %d match(es)" % (slughash, len(found)))
    return LocalDevice.load_device_with_password(Path(found[0].key_file_path), password)


def get_ws(core, name):
    entry = core.find_workspace_from_name(EntryName(name))
    if entry is None:
        raise SystemExit("unknown workspace %r" % name)
    return core.user_fs.get_workspace(entry.id)


async def full_sync(core):
    await core.user_fs.sync()
    await core.user_fs.process_last_messages()
    await core.user_fs.sync()
    for ws in core.user_fs.get_available_workspaces():
        await ws.sync()


def file_info(data, with_data):
    info = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if with_data:
        info["data"] = base64.b64encode(data).decode()
    return info


async def read_tree(ws, path, out, max_inline):
    # {path: {"type": "folder"} | {"type": "file", size, sha256[, data]}}
    for child in await ws.listdir(path):
        if await ws.is_dir(child):
            out[str(child)] = {"type": "folder"}
            await read_tree(ws, child, out, max_inline)
        else:
            data = await ws.read_bytes(child)
            out[str(child)] = dict(type="file", **file_info(data, len(data) <= max_inline))


async def read_manifest_data(ws, manifest):
    # the content of a remote file manifest, block by block (block_read)
    data = bytearray(manifest.size)
    for access in manifest.blocks:
        await ws.remote_loader.load_block(access)
        block = await ws.local_storage.get_chunk(Chunk.from_block_access(access).id)
        data[access.offset : access.offset + access.size] = block[: access.size]
    return bytes(data)


def archiving_info(ws):
    config, configured_on, configured_by = ws.get_archiving_configuration()
    return {
        "configuration": str(config),
        "is_available": config.is_available(),
        "is_archived": ws.is_archived(),
        "is_deletion_planned": ws.is_deletion_planned() is not None,
        "is_read_only": ws.is_read_only(),
        "configured_on": configured_on.to_rfc3339() if configured_on else None,
        "configured_by": configured_by.str if configured_by else None,
    }


def jsonable(value):
    # event arguments: ids as hex, numbers and strings as they are, anything else as its str()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    hex_value = getattr(value, "hex", None)
    return hex_value if isinstance(hex_value, str) else str(value)


async def wait_for_file(core, req):
    # Stay logged in and wait until `path` holds `data`, WITHOUT syncing anything ourselves: only the
    # core's own monitors (the sync monitor, woken by the server's `realm.vlobs_updated` events that
    # arrive on the events_listen connection) can bring the change. Prints `READY <json>` once the
    # backend connection is READY (events subscribed, monitors started) and the monitors are idle.
    from parsec._parsec import CoreEvent
    from parsec.core.backend_connection import BackendConnStatus
    from parsec.core.fs.exceptions import FSError

    ws = get_ws(core, req["workspace"])
    path = FsPath(req["path"])
    expected = base64.b64decode(req["data"])
    started = trio.current_time()
    events = []

    def recorder(name):
        def on_event(event, **kwargs):
            events.append(dict(event=name, at=DateTime.now().to_rfc3339(),
                               after_s=round(trio.current_time() - started, 3),
                               **{k: jsonable(v) for k, v in kwargs.items()}))
        return on_event

    for name in ("BACKEND_REALM_VLOBS_UPDATED", "FS_ENTRY_REMOTE_CHANGED", "FS_ENTRY_DOWNSYNCED"):
        core.event_bus.connect(getattr(CoreEvent, name), recorder(name))

    async def current():
        # purely local path resolution; a file manifest missing locally is fetched on demand (vlob_read)
        try:
            return await ws.read_bytes(path)
        except FSError as exc:
            return type(exc).__name__

    with trio.fail_after(req.get("ready_timeout", 60)):
        while core.backend_status != BackendConnStatus.READY:
            await trio.sleep(0.05)
        await core.wait_idle_monitors()
    initial = await current()
    ready_at = DateTime.now()
    ready_time = trio.current_time()
    print("READY " + json.dumps({
        "ready_at": ready_at.to_rfc3339(), "backend_status": str(core.backend_status),
        "initial": initial if isinstance(initial, str) else {"size": len(initial)},
        "already_there": initial == expected, "workspace_id": ws.workspace_id.hex,
    }), flush=True)
    polls = 0
    found = False
    last = initial
    while trio.current_time() - ready_time < req.get("timeout", 60):
        polls += 1
        last = await current()
        if last == expected:
            found = True
            break
        await trio.sleep(req.get("poll_interval", 0.1))
    seen_at = DateTime.now()
    out = {
        "found": found, "ready_at": ready_at.to_rfc3339(), "seen_at": seen_at.to_rfc3339(),
        "waited_s": round(trio.current_time() - ready_time, 3), "polls": polls,
        "last": "content" if found else (last if isinstance(last, str) else {"size": len(last)}),
        "workspace_id": ws.workspace_id.hex, "backend_status": str(core.backend_status),
        "events": events,
    }
    if found:
        out["entry_id"] = (await ws.path_id(path)).hex
    return out


async def run_op(core, req):
    op = req["op"]
    out = {}
    if op == "create_workspace":
        wid = await core.user_fs.workspace_create(EntryName(req["workspace"]))
        await core.user_fs.sync()
        await core.user_fs.get_workspace(wid).sync()
        out["workspace_id"] = wid.hex
    elif op == "write":
        ws = get_ws(core, req["workspace"])
        path = FsPath(req["path"])
        if str(path.parent) != "/":
            await ws.mkdir(path.parent, parents=True, exist_ok=True)
        out["written"] = await ws.write_bytes(path, base64.b64decode(req["data"]))
        await ws.sync()
        # the file is now uploaded: a timestamped view at this time sees this content
        out["synced_at"] = DateTime.now().to_rfc3339()
    elif op == "mkdir":
        ws = get_ws(core, req["workspace"])
        await ws.mkdir(FsPath(req["path"]), parents=True, exist_ok=True)
        await ws.sync()
    elif op == "read":
        ws = get_ws(core, req["workspace"])
        out["data"] = base64.b64encode(await ws.read_bytes(FsPath(req["path"]))).decode()
    elif op == "listdir":
        ws = get_ws(core, req["workspace"])
        out["entries"] = [str(p) for p in await ws.listdir(FsPath(req.get("path", "/")))]
    elif op == "read_tree":
        ws = get_ws(core, req["workspace"])
        out["tree"] = {}
        await read_tree(ws, FsPath(req.get("path", "/")), out["tree"], req.get("max_inline", 65536))
    elif op == "versions":
        # vlob_list_versions, then vlob_read by version number and block_read of each version
        ws = get_ws(core, req["workspace"])
        entry_id = await ws.path_id(FsPath(req["path"]))
        out["entry_id"] = entry_id.hex
        out["versions"] = {}
        for version, (timestamp, author) in sorted((await ws.remote_loader.list_versions(entry_id)).items()):
            info = {"timestamp": timestamp.to_rfc3339(), "author": author.str}
            if req.get("read", True):
                manifest = await ws.remote_loader.load_manifest(entry_id, version=version)
                info.update(manifest_version=manifest.version, updated=manifest.updated.to_rfc3339(),
                            blocksize=manifest.blocksize, blocks=[a.size for a in manifest.blocks],
                            **file_info(await read_manifest_data(ws, manifest), req.get("with_data", True)))
            out["versions"][str(version)] = info
    elif op == "version_lister":
        # the GUI's history dialog: WorkspaceFS.get_version_lister().list(path)
        ws = get_ws(core, req["workspace"])
        items, download_limit_reached = await ws.get_version_lister().list(FsPath(req["path"]))
        out["download_limit_reached"] = download_limit_reached
        out["items"] = [
            {"version": v.version, "early": v.early.to_rfc3339(), "late": v.late.to_rfc3339(),
             "creator": v.creator.str, "size": v.size, "is_folder": v.is_folder}
            for v in items
        ]
    elif op == "read_at":
        # a read-only view of the workspace at a timestamp (vlob_read with timestamp)
        ws = get_ws(core, req["workspace"])
        tws = await ws.to_timestamped(DateTime.from_rfc3339(req["timestamp"]))
        if req.get("path"):
            out.update(file_info(await tws.read_bytes(FsPath(req["path"])), req.get("with_data", True)))
        out["entries"] = [str(p) for p in await tws.listdir(FsPath(req.get("dir", "/")))]
    elif op == "workspace_info":
        ws = get_ws(core, req["workspace"])
        await core.user_fs.update_archiving_status()
        rep = await ws.backend_cmds.realm_status(RealmID.from_entry_id(ws.workspace_id))
        out.update(
            workspace_id=ws.workspace_id.hex,
            role=ws.get_workspace_entry().role.str if ws.get_workspace_entry().role else None,
            encryption_revision=ws.get_encryption_revision(),
            realm_status={k: str(getattr(rep, k, None)) for k in
                          ("in_maintenance", "maintenance_type", "encryption_revision")},
            realm_status_rep=type(rep).__name__,
            archiving=archiving_info(ws),
            roles={u.str: r.str for u, r in (await ws.get_user_roles()).items()},
        )
    elif op == "raw_write":
        # server-side write checks, bypassing the client's own (read-only) checks:
        # a vlob_create and a block_create in the workspace's realm
        ws = get_ws(core, req["workspace"])
        realm_id = RealmID.from_entry_id(ws.workspace_id)
        rep = await ws.backend_cmds.vlob_create(realm_id, ws.get_encryption_revision(), VlobID.new(),
                                                core.device.timestamp(), b"not a manifest", None)
        out["vlob_create"] = type(rep).__name__
        rep = await ws.backend_cmds.block_create(BlockID.new(), realm_id, b"not a block")
        out["block_create"] = type(rep).__name__
    elif op == "reencrypt":
        # what `parsec core reencrypt_workspace` runs, but even when no user/role was revoked
        ws = get_ws(core, req["workspace"])
        need = await ws.get_reencryption_need()
        out["needed"] = need.need_reencryption
        out["encryption_revision_before"] = ws.get_encryption_revision()
        if need.reencryption_already_in_progress:
            job = await core.user_fs.workspace_continue_reencryption(ws.workspace_id)
        else:
            job = await core.user_fs.workspace_start_reencryption(ws.workspace_id)
        out["batches"] = []
        while True:
            total, done = await job.do_one_batch()
            out["batches"].append([total, done])
            if total == done:
                break
        await core.user_fs.process_last_messages()
        out["encryption_revision_after"] = get_ws(core, req["workspace"]).get_encryption_revision()
    elif op == "revoke_user":
        await core.revoke_user(UserID(req["user_id"]))
    elif op == "find_humans":
        # LoggedCore.find_humans (human_find + user_get), as the GUI's user list
        users, total = await core.find_humans(req.get("query"), omit_revoked=req.get("omit_revoked", False))
        out["total"] = total
        out["users"] = [
            {"user_id": u.user_id.str, "human": u.human_handle.str if u.human_handle else None,
             "profile": u.profile.str, "revoked": u.is_revoked,
             "revoked_on": u.revoked_on.to_rfc3339() if u.revoked_on else None}
            for u in users
        ]
    elif op == "sync":
        pass
    elif op == "now":
        out["now"] = DateTime.now().to_rfc3339()
    elif op == "wait_for_file":
        out.update(await wait_for_file(core, req))
    else:
        raise SystemExit("unknown op %r" % op)
    return out


async def main(req):
    config = load_config()
    device = load_device(config, req["device"], req["password"])
    async with logged_core_factory(config, device) as core:
        await full_sync(core)
        if req["op"] == "batch":
            # several operations in one session; an operation may be expected to fail
            out = {"steps": []}
            for step in req["steps"]:
                try:
                    result = await run_op(core, step)
                except Exception as exc:
                    if not step.get("may_fail"):
                        raise
                    result = {"error": type(exc).__name__, "message": str(exc)}
                out["steps"].append(result)
        else:
            out = await run_op(core, req)
        out["workspaces"] = [
            {"name": w.get_workspace_name().str, "id": w.workspace_id.hex}
            for w in core.user_fs.get_available_workspaces()
        ]
    return out


result = trio.run(main, json.loads(sys.stdin.read()))
print("RESULT " + json.dumps(result))
'''


# --------------------------------------------------------------------------- #
# Interactive subprocess (greet / claim)
# --------------------------------------------------------------------------- #


class _Interactive:
    """Tiny pexpect-like wrapper: reads stdout in a thread, matches regexes."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path):
        self.args = args
        self.started = time.monotonic()
        self._stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process; closed by its owner
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr_file,
        )
        self._buf = ""
        self._pos = 0
        self._cond = threading.Condition()
        self._eof = False
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 4096)
            with self._cond:
                if not chunk:
                    self._eof = True
                    self._cond.notify_all()
                    return
                self._buf += _ANSI_RE.sub("", chunk.decode("utf-8", "replace"))
                self._cond.notify_all()

    def expect(self, pattern: str, timeout: float) -> re.Match[str]:
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = regex.search(self._buf, self._pos)
                if m:
                    self._pos = m.end()
                    return m
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "process exited" if self._eof else f"timeout ({timeout}s)"
                    raise ParsecCliError(
                        f"{why} while waiting for {pattern!r}", self.snapshot()
                    )
                self._cond.wait(min(remaining, 0.5))

    def sendline(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((text + "\n").encode())
        self.proc.stdin.flush()

    def wait(self, timeout: float) -> CliResult:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ParsecCliError(f"timeout ({timeout}s) waiting for exit", self.snapshot()) from None
        self._thread.join(5)
        return self.snapshot()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def snapshot(self) -> CliResult:
        self._stderr_file.seek(0)
        stderr = self._stderr_file.read().decode("utf-8", "replace")
        with self._cond:
            raw = self._buf
        return CliResult(
            args=self.args,
            returncode=self.proc.returncode if self.proc.returncode is not None else -1,
            stdout=clean_output(raw),
            stderr=stderr,
            raw_stdout=raw,
            duration=time.monotonic() - self.started,
        )


_CHOICES = r"((?:[ ]?\d+ - [A-Z0-9]+[ \t]*\r?\n)+)"  # ` 0 - ABCD` lines (click prompt choices)


def _choice_index(text: str, wanted: str) -> str:
    """Return the number printed in front of `wanted` in ` 0 - ABCD` lines.

    NB: the first line may follow a previous prompt on the same line
    (`New user device label [x]:  0 - ADMIN`), so no `^` anchoring.
    """
    choices = {v: i for i, v in re.findall(r"(\d+) - ([A-Z0-9]+)", clean_output(text))}
    if wanted not in choices:
        raise ParsecCliError(f"{wanted!r} not among proposed choices {choices}")
    return choices[wanted]


class CoreScriptRun:
    """A core-script operation running in the background (``ParsecCli.start_core_script``)."""

    def __init__(self, proc: _Interactive):
        self.proc = proc

    def wait_line(self, word: str, timeout: float) -> dict[str, Any]:
        """The JSON of the next ``<word> <json>`` line the script prints."""
        return json.loads(self.proc.expect(rf"^{re.escape(word)} (.*)\n", timeout).group(1))

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait for the script's end; its ``RESULT`` (ParsecCliError on a failure)."""
        res = self.proc.wait(timeout)
        m = re.search(r"^RESULT (.*)$", res.stdout, re.M)
        if res.returncode != 0 or not m:
            raise ParsecCliError("core script failed", res)
        return json.loads(m.group(1))

    def kill(self) -> None:
        self.proc.kill()


# --------------------------------------------------------------------------- #
# The CLI wrapper
# --------------------------------------------------------------------------- #


class ParsecCli:
    """``parsec core ...`` bound to one isolated client home directory."""

    def __init__(self, bin_dir: Path, home: Path, timeout: float = DEFAULT_TIMEOUT,
                 extra_env: dict[str, str] | None = None):
        self.bin_dir = Path(bin_dir)
        self.home = Path(home)
        self.timeout = timeout
        # e.g. UNSTABLE_OXIDIZED_CLIENT_CONNECTION=true, which moves commands to the HTTP routes
        self.extra_env = dict(extra_env or {})
        self.devices: list[DeviceRef] = []
        for sub in (".config", ".local/share", ".cache"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)

    # ---- environment ---------------------------------------------------- #

    @property
    def config_dir(self) -> Path:
        return self.home / ".config" / "parsec"

    @property
    def data_dir(self) -> Path:
        return self.home / ".local" / "share" / "parsec"

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            # no proxy / parsec settings from the outer environment
            if not k.upper().startswith(("PARSEC_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                                         "PREFERRED_ORG_CREATION", "XDG_", "PYTHON",
                                         "VIRTUAL_ENV", "SSL_CAFILE"))
        }
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            NO_PROXY="*",
            no_proxy="*",
            PYTHONWARNINGS="ignore",  # trio.MultiError deprecation noise
            PYTHONUNBUFFERED="1",
            PYTHONIOENCODING="utf-8",
            LANG="C.UTF-8",
            LC_ALL="C.UTF-8",
            QT_QPA_PLATFORM="offscreen",
        )
        env["PATH"] = f"{self.bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
        env.update(self.extra_env)
        return env

    # ---- low level -------------------------------------------------------- #

    def run(self, *args: str, check: bool = True, timeout: float | None = None,
            input: str | None = None, program: Sequence[str] | None = None) -> CliResult:
        """Run ``parsec core <args>`` (or ``program + args``), stdin closed unless `input`."""
        cmd = [*(program or [str(self.bin_dir / "parsec"), "core"]), *map(str, args)]
        timeout = timeout or self.timeout
        started = time.monotonic()
        try:
            proc = subprocess.run(
                cmd, env=self.env(), cwd=self.home, capture_output=True,
                input=(input or "").encode(), timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            res = CliResult(cmd, -1, clean_output((exc.stdout or b"").decode("utf-8", "replace")),
                            (exc.stderr or b"").decode("utf-8", "replace"),
                            (exc.stdout or b"").decode("utf-8", "replace"), timeout)
            raise ParsecCliError(f"timeout after {timeout}s", res) from None
        raw = proc.stdout.decode("utf-8", "replace")
        res = CliResult(cmd, proc.returncode, clean_output(raw),
                        proc.stderr.decode("utf-8", "replace"), raw,
                        time.monotonic() - started)
        if check and res.returncode != 0:
            raise ParsecCliError("parsec CLI command failed", res)
        return res

    @staticmethod
    def fails(action: Callable[..., Any], *args: Any, **kwargs: Any) -> CliResult:
        """Call an action that is expected to fail; return its CliResult."""
        try:
            value = action(*args, **kwargs)
        except ParsecCliError as exc:
            if exc.result is None or exc.result.returncode == -1:  # harness error / timeout
                raise
            return exc.result
        raise AssertionError(f"{getattr(action, '__name__', action)} unexpectedly succeeded: {value!r}")

    def spawn(self, *args: str) -> _Interactive:
        return _Interactive([str(self.bin_dir / "parsec"), "core", *args], self.env(), self.home)

    def _dev(self, device: DeviceRef | None) -> DeviceRef:
        if device is not None:
            return device
        if not self.devices:
            raise ValueError("no device in this client home")
        return self.devices[-1]

    @staticmethod
    def _dev_args(device: DeviceRef) -> list[str]:
        return ["--device", device.slughash, "--password", device.password]

    # ---- administration API (no device needed) ---------------------------- #

    def create_organization(self, addr: str, organization_id: str, token: str) -> str:
        """POST /administration/organizations; returns the printed bootstrap URL."""
        res = self.run("create_organization", organization_id, "--addr", addr,
                       "--administration-token", token)
        m = _BOOTSTRAP_URL_RE.search(res.stdout)
        if not m:
            raise ParsecCliError("no bootstrap url in output", res)
        return m.group(1)

    def status_organization(self, addr: str, organization_id: str, token: str) -> dict[str, Any]:
        """GET /administration/organizations/<org>."""
        res = self.run("status_organization", organization_id, "--addr", addr,
                       "--administration-token", token)
        return _parse_key_values(res.stdout)

    def stats_organization(self, addr: str, organization_id: str, token: str) -> dict[str, Any]:
        """GET /administration/organizations/<org>/stats."""
        res = self.run("stats_organization", organization_id, "--addr", addr,
                       "--administration-token", token)
        return _parse_key_values(res.stdout)

    def stats_server(self, addr: str, token: str, fmt: str = "json", at: str | None = None) -> Any:
        """GET /administration/stats?format=..; json -> parsed dict, csv -> text."""
        args = ["stats_server", "--addr", addr, "--administration-token", token, "--format", fmt]
        if at:
            args += ["--at", at]
        res = self.run(*args)
        return json.loads(res.stdout) if fmt == "json" else res.stdout

    def list_users(self, addr: str, organization_id: str, token: str) -> list[dict[str, Any]]:
        """GET /administration/organizations/<org>/users."""
        res = self.run("list_users", organization_id, "--addr", addr,
                       "--administration-token", token)
        users = []
        for m in re.finditer(
            r"^• (?P<name>.*) <(?P<email>[^>]*)> *\n\s+- Parsec ID: (?P<id>\S+) *\n"
            r"\s+- Status: (?P<status>.*?) *$", res.stdout, re.M,
        ):
            users.append({"user_name": m["name"], "user_email": m["email"],
                          "user_id": m["id"], "frozen": m["status"] == "Frozen"})
        return users

    def freeze_user(self, addr: str, organization_id: str, token: str, user: str,
                    freeze: bool = True) -> CliResult:
        """POST /administration/organizations/<org>/users/freeze (user = id or email)."""
        return self.run("freeze_user", organization_id, user,
                        "--freeze" if freeze else "--unfreeze",
                        "--addr", addr, "--administration-token", token)

    # ---- organization bootstrap (anonymous HTTP RPC) ---------------------- #

    def bootstrap_organization(self, url: str, email: str, label: str, device_label: str,
                               password: str, sequester_verify_key: Path | None = None) -> DeviceRef:
        """POST /anonymous/<org> organization_bootstrap; saves the new device locally.

        With `sequester_verify_key` (an RSA public key PEM), a sequestered organization
        (the client asks for a confirmation: answered yes)."""
        sequester = [] if sequester_verify_key is None else ["--sequester-verify-key", str(sequester_verify_key)]
        res = self.run("bootstrap_organization", url, "--human-email", email,
                       "--human-label", label, "--device-label", device_label,
                       "--password", password, *sequester,
                       input=None if sequester_verify_key is None else "y\n")
        m = _SAVING_DEVICE_RE.search(res.stdout)
        if not m:
            raise ParsecCliError("no saved device in output", res)
        org = re.match(r"parsec://[^/]+/([^?]+)", url)
        dev = DeviceRef(slughash=m.group(1), password=password,
                        organization_id=org.group(1) if org else None, human_email=email,
                        human_label=label, device_label=device_label)
        self.devices.append(dev)
        return dev

    # ---- local ------------------------------------------------------------ #

    def list_devices(self) -> list[dict[str, str]]:
        res = self.run("list_devices")
        out = []
        for m in re.finditer(r"^(\S+) - ([^:]+): (.*) @ (.*)$", res.stdout, re.M):
            out.append({"slughash_prefix": m[1], "organization_id": m[2],
                        "user": m[3], "device": m[4]})
        return out

    # ---- logged-in commands (WebSocket /ws, authenticated) ----------------- #

    def list_workspaces(self, device: DeviceRef | None = None) -> list[dict[str, Any]]:
        res = self.run("list_workspaces", *self._dev_args(self._dev(device)))
        workspaces = []
        for block in re.split(r"^━+\s+", res.stdout, flags=re.M)[1:]:
            name, _, body = block.partition("\n")
            ws: dict[str, Any] = {"name": name.strip().rstrip("━").strip(), "other_users": {}}
            for line in body.splitlines():
                if line.startswith("- "):
                    who, _, role = line[2:].rpartition(": ")
                    ws["other_users"][who] = role
                elif ": " in line:
                    k, _, v = line.partition(": ")
                    ws[k.strip().lower().replace(" ", "_")] = v.strip()
            workspaces.append(ws)
        return workspaces

    def create_workspace(self, name: str, device: DeviceRef | None = None) -> CliResult:
        """NB: only creates the workspace LOCALLY (no realm_create until a sync/share)."""
        return self.run("create_workspace", name, *self._dev_args(self._dev(device)))

    def share_workspace(self, workspace: str, role: str, *, recipient: str | None = None,
                        user_id: str | None = None, device: DeviceRef | None = None) -> CliResult:
        """role: OWNER|MANAGER|CONTRIBUTOR|READER|NONE (NONE = unshare)."""
        args = ["share_workspace", "--workspace-name", workspace, "--role", role]
        if recipient:
            args += ["--recipient", recipient]
        if user_id:
            args += ["--user-id", user_id]
        return self.run(*args, *self._dev_args(self._dev(device)))

    def reencrypt_workspace(self, workspace: str, device: DeviceRef | None = None) -> CliResult:
        return self.run("reencrypt_workspace", "--workspace-name", workspace,
                        *self._dev_args(self._dev(device)), timeout=max(self.timeout, 120))

    def human_find(self, query: str, include_revoked: bool = False,
                   device: DeviceRef | None = None) -> list[dict[str, Any]]:
        args = ["human_find", query, *self._dev_args(self._dev(device))]
        if include_revoked:
            args.append("--include-revoked")
        res = self.run(*args)
        found = []
        for m in re.finditer(r"^(.*) - UserID: (\S+)( \(revoked\))?$", res.stdout, re.M):
            found.append({"human": m[1], "user_id": m[2], "revoked": bool(m[3])})
        return found

    def invite_user(self, email: str, send_email: bool = False,
                    device: DeviceRef | None = None) -> str:
        args = ["invite_user", email, *self._dev_args(self._dev(device))]
        if send_email:
            args.append("--send-email")
        return self._invite_url(self.run(*args))

    def invite_device(self, device: DeviceRef | None = None) -> str:
        return self._invite_url(self.run("invite_device", *self._dev_args(self._dev(device))))

    @staticmethod
    def _invite_url(res: CliResult) -> str:
        m = _INVITE_URL_RE.search(res.stdout)
        if not m:
            raise ParsecCliError("no invitation url in output", res)
        return m.group(1)

    def list_invitations(self, device: DeviceRef | None = None) -> list[dict[str, str]]:
        res = self.run("list_invitations", *self._dev_args(self._dev(device)))
        return [{"token": t, "status": s, "type": ty}
                for t, s, ty in re.findall(r"^([0-9a-f]{32})\t(\S+)\t(.*)$", res.stdout, re.M)]

    def cancel_invitation(self, token_or_url: str, device: DeviceRef | None = None) -> CliResult:
        return self.run("cancel_invitation", token_or_url, *self._dev_args(self._dev(device)))

    # ---- greet / claim (two interactive processes) ------------------------- #

    def greet_and_claim_user(self, url: str, claimer: ParsecCli, *, label: str,
                             device_label: str, password: str, profile: str = "STANDARD",
                             greeter_device: DeviceRef | None = None,
                             timeout: float | None = None,
                             claimer_url: str | None = None) -> DeviceRef:
        """Run `greet_invitation` here and `claim_invitation` in `claimer`'s home.

        The greeter keeps the claimer's requested email/label/device label and
        grants `profile` (ADMIN|STANDARD|OUTSIDER). Returns the claimer's device.
        `claimer_url` (default `url`) is the invitation URL given to the claimer, e.g. the
        same invitation on another server address (see ``with_address``).
        """
        return self._greet_and_claim(url, claimer, user=True, label=label,
                                     device_label=device_label, password=password,
                                     profile=profile, greeter_device=greeter_device,
                                     timeout=timeout, claimer_url=claimer_url)

    def greet_and_claim_device(self, url: str, claimer: ParsecCli, *, device_label: str,
                               password: str, greeter_device: DeviceRef | None = None,
                               timeout: float | None = None) -> DeviceRef:
        return self._greet_and_claim(url, claimer, user=False, label=None,
                                     device_label=device_label, password=password,
                                     profile=None, greeter_device=greeter_device,
                                     timeout=timeout)

    def _greet_and_claim(self, url: str, claimer: ParsecCli, *, user: bool,
                         label: str | None, device_label: str, password: str,
                         profile: str | None, greeter_device: DeviceRef | None,
                         timeout: float | None, claimer_url: str | None = None) -> DeviceRef:
        t = timeout or self.timeout
        gdev = self._dev(greeter_device)
        greeter = self.spawn("greet_invitation", url, *self._dev_args(gdev))
        claim = claimer.spawn("claim_invitation", claimer_url or url, "--password", password)
        try:
            # 1. greeter shows its SAS code, claimer must pick it among 3 choices
            greeter_sas = greeter.expect(r"Code to provide to claimer: (\S+)", t).group(1)
            m = claim.expect(_CHOICES + r"Select code provided by greeter[^:]*:", t)
            claim.sendline(_choice_index(m.group(1), greeter_sas))
            # 2. claimer shows its SAS code, greeter must pick it
            claimer_sas = claim.expect(r"Code to provide to greeter: (\S+)", t).group(1)
            m = greeter.expect(_CHOICES + r"Select code provided by claimer[^:]*:", t)
            greeter.sendline(_choice_index(m.group(1), claimer_sas))
            # 3. claimer sends its request
            if user:
                claim.expect(r"User fullname:", t)
                claim.sendline(label or "")
            claim.expect(r"Device label[^:]*:", t)
            claim.sendline(device_label)
            # 4. greeter validates (keep the claimer's values) and grants
            if user:
                greeter.expect(r"New user label[^:]*:", t)
                greeter.sendline("")
                greeter.expect(r"New user email[^:]*:", t)
                greeter.sendline("")
                greeter.expect(r"New user device label[^:]*:", t)
                greeter.sendline("")
                m = greeter.expect(_CHOICES + r"New user profile[^:]*:", t)
                greeter.sendline(_choice_index(m.group(1), (profile or "STANDARD").upper()))
            else:
                greeter.expect(r"New device label[^:]*:", t)
                greeter.sendline("")
            gres = greeter.wait(t)
            cres = claim.wait(t)
        except BaseException:
            greeter.kill()
            claim.kill()
            raise
        if gres.returncode != 0:
            raise ParsecCliError("greet_invitation failed", gres)
        if cres.returncode != 0:
            raise ParsecCliError("claim_invitation failed", cres)
        m = _SAVING_DEVICE_RE.search(cres.stdout)
        if not m:
            raise ParsecCliError("no saved device in claimer output", cres)
        org = re.match(r"parsec://[^/]+/([^?]+)", url)
        dev = DeviceRef(slughash=m.group(1), password=password,
                        organization_id=org.group(1) if org else None,
                        human_label=label if user else gdev.human_label,
                        human_email=None if user else gdev.human_email,
                        device_label=device_label,
                        extra={"greeter_stdout": gres.stdout, "claimer_stdout": cres.stdout})
        claimer.devices.append(dev)
        return dev

    # ---- data access without FUSE (helper script in the 3.9 venv) ----------- #

    def core_script(self, op: str, device: DeviceRef | None = None,
                    timeout: float | None = None, **params: Any) -> dict[str, Any]:
        """Run an operation through parsec.core's LoggedCore (see _FS_TOOL).

        Every call first syncs the user manifest, processes messages (sharing
        granted/revoked) and syncs all workspaces.
        """
        dev = self._dev(device)
        req = {"op": op, "device": dev.slughash, "password": dev.password, **params}
        res = self.run("-c", _FS_TOOL, input=json.dumps(req), timeout=timeout,
                       program=[str(self.bin_dir / "python")])
        m = re.search(r"^RESULT (.*)$", res.stdout, re.M)
        if not m:
            raise ParsecCliError("no RESULT line from core script", res)
        return json.loads(m.group(1))

    def start_core_script(self, op: str, device: DeviceRef | None = None,
                          **params: Any) -> CoreScriptRun:
        """Start a core-script operation in the background (same request as ``core_script``).

        For long-lived operations such as ``wait_for_file``, which print intermediate
        ``<WORD> <json>`` lines (``CoreScriptRun.wait_line``) before their ``RESULT``."""
        dev = self._dev(device)
        req = {"op": op, "device": dev.slughash, "password": dev.password, **params}
        proc = _Interactive([str(self.bin_dir / "python"), "-c", _FS_TOOL], self.env(), self.home)
        assert proc.proc.stdin is not None
        proc.proc.stdin.write(json.dumps(req).encode())
        proc.proc.stdin.close()
        return CoreScriptRun(proc)

    def watch_file(self, workspace: str, path: str, data: bytes, timeout: float = 60,
                   device: DeviceRef | None = None,
                   ready_timeout: float | None = None) -> tuple[CoreScriptRun, dict[str, Any]]:
        """Log in (one long-lived LoggedCore with its monitors) and wait until `path` holds `data`.

        The script never syncs while it waits: the change can only come through the server's
        events (``realm.vlobs_updated`` on the events_listen connection, which wake the core's
        sync monitor). Returns once the core is connected and idle, with the ``READY`` info
        (``ready_at``, ``initial``, ``already_there``, ``workspace_id``); then make the change
        elsewhere and call ``run.result()``: ``{"found", "ready_at", "seen_at", "waited_s",
        "polls", "last", "events": [{"event", "at", "after_s", ...}], "entry_id"}``."""
        run = self.start_core_script("wait_for_file", device, workspace=workspace, path=path,
                                     data=base64.b64encode(data).decode(), timeout=timeout)
        try:
            ready = run.wait_line("READY", ready_timeout or max(self.timeout, 90))
        except BaseException:
            run.kill()
            raise
        return run, ready

    def create_workspace_synced(self, name: str, device: DeviceRef | None = None) -> str:
        """Create a workspace AND sync it (realm_create + vlob_create). Returns its id (hex)."""
        return self.core_script("create_workspace", device, workspace=name)["workspace_id"]

    def write_file(self, workspace: str, path: str, data: bytes,
                   device: DeviceRef | None = None) -> int:
        return self.core_script("write", device, workspace=workspace, path=path,
                                data=base64.b64encode(data).decode())["written"]

    def read_file(self, workspace: str, path: str, device: DeviceRef | None = None) -> bytes:
        return base64.b64decode(
            self.core_script("read", device, workspace=workspace, path=path)["data"])

    def listdir(self, workspace: str, path: str = "/", device: DeviceRef | None = None) -> list[str]:
        return self.core_script("listdir", device, workspace=workspace, path=path)["entries"]

    def sync(self, device: DeviceRef | None = None) -> dict[str, Any]:
        return self.core_script("sync", device)

    def revoke_user(self, user_id: str, device: DeviceRef | None = None) -> dict[str, Any]:
        """No `parsec core` command exists for this: uses LoggedCore.revoke_user."""
        return self.core_script("revoke_user", device, user_id=user_id)

    # ---- more core-script operations (one logged-in session each) ------------ #

    def batch(self, steps: Sequence[dict[str, Any]], device: DeviceRef | None = None,
              timeout: float | None = None) -> list[dict[str, Any]]:
        """Run several core-script operations in ONE logged-in session (saves ~2 s per step).

        Each step is ``{"op": ..., **params}`` with the parameters of the single-op
        methods (e.g. ``{"op": "write", "workspace": "W", "path": "/a", "data": b"..."}``;
        bytes values are base64-encoded here). A step with ``"may_fail": True``
        returns ``{"error": <exception class>, "message": str(exc)}`` instead of
        aborting the session. Returns the steps' results, in order.

        Ops: create_workspace, write (-> written, synced_at), mkdir, read, listdir,
        read_tree, versions, version_lister, read_at, workspace_info, raw_write,
        reencrypt, revoke_user, find_humans, sync, now (-> now, RFC 3339).
        """
        encoded = [
            {k: (base64.b64encode(v).decode() if isinstance(v, (bytes, bytearray)) else v)
             for k, v in step.items()}
            for step in steps
        ]
        return self.core_script("batch", device, timeout=timeout, steps=encoded)["steps"]

    def mkdir(self, workspace: str, path: str, device: DeviceRef | None = None) -> dict[str, Any]:
        """mkdir -p + sync."""
        return self.core_script("mkdir", device, workspace=workspace, path=path)

    def read_tree(self, workspace: str, path: str = "/", max_inline: int = 65536,
                  device: DeviceRef | None = None) -> dict[str, dict[str, Any]]:
        """Every folder and file under `path`: ``{path: {"type": "folder"}}`` or
        ``{path: {"type": "file", "size", "sha256"[, "data" (base64, files <= max_inline)]}}``."""
        return self.core_script("read_tree", device, workspace=workspace, path=path,
                                max_inline=max_inline)["tree"]

    def file_versions(self, workspace: str, path: str, read: bool = True, with_data: bool = True,
                      device: DeviceRef | None = None) -> dict[int, dict[str, Any]]:
        """History of a file by version number: ``vlob_list_versions`` then, per version,
        ``vlob_read(version=N)`` and the ``block_read`` of its blocks.

        Returns ``{version: {"timestamp", "author", "manifest_version", "updated", "blocksize",
        "blocks" (sizes), "size", "sha256"[, "data"]}}`` (data base64)."""
        out = self.core_script("versions", device, workspace=workspace, path=path, read=read,
                               with_data=with_data)
        return {int(v): info for v, info in out["versions"].items()}

    def version_lister(self, workspace: str, path: str,
                       device: DeviceRef | None = None) -> list[dict[str, Any]]:
        """The GUI's history dialog (``WorkspaceFS.get_version_lister().list(path)``)."""
        return self.core_script("version_lister", device, workspace=workspace, path=path)["items"]

    def read_file_at(self, workspace: str, path: str, timestamp: str,
                     device: DeviceRef | None = None) -> bytes:
        """Read a file in ``WorkspaceFS.to_timestamped(timestamp)`` (RFC 3339 timestamp)."""
        out = self.core_script("read_at", device, workspace=workspace, path=path, timestamp=timestamp)
        return base64.b64decode(out["data"])

    def workspace_info(self, workspace: str, device: DeviceRef | None = None) -> dict[str, Any]:
        """Role, encryption revision, ``realm_status``, archiving configuration and roles."""
        return self.core_script("workspace_info", device, workspace=workspace)

    def force_reencrypt(self, workspace: str, device: DeviceRef | None = None) -> dict[str, Any]:
        """Re-encrypt through the core API even when `reencrypt_workspace` would say
        "does not need to be reencrypted" (no revoked user or role). Returns
        ``{"needed", "encryption_revision_before", "batches": [[total, done], ...],
        "encryption_revision_after"}``."""
        return self.core_script("reencrypt", device, workspace=workspace,
                                timeout=max(self.timeout, 120))

    def archive_workspace(self, workspace: str, device: DeviceRef | None = None) -> CliResult:
        """`parsec core archive_workspace` (realm_update_archiving with ARCHIVED)."""
        return self.run("archive_workspace", "--workspace-name", workspace,
                        *self._dev_args(self._dev(device)))

    def unarchive_workspace(self, workspace: str, device: DeviceRef | None = None) -> CliResult:
        """`parsec core unarchive_workspace` (realm_update_archiving with AVAILABLE)."""
        return self.run("unarchive_workspace", "--workspace-name", workspace,
                        *self._dev_args(self._dev(device)))

    def copy_device_to(self, other: ParsecCli, device: DeviceRef | None = None) -> DeviceRef:
        """Copy a device key file into another client home (same device, empty local storage)."""
        dev = self._dev(device)
        src_dir = self.config_dir / "devices"
        matches = [p for p in src_dir.glob("*.keys") if p.stem.startswith(dev.slughash)]
        if len(matches) != 1:
            raise ValueError(f"device {dev.slughash}: {len(matches)} key file(s) in {src_dir}")
        dst_dir = other.config_dir / "devices"
        dst_dir.mkdir(parents=True, exist_ok=True)
        (dst_dir / matches[0].name).write_bytes(matches[0].read_bytes())
        copy = DeviceRef(**{**dev.__dict__, "extra": dict(dev.extra)})
        other.devices.append(copy)
        return copy


# --------------------------------------------------------------------------- #
# Server process helpers (shared by the reference and our server fixtures)
# --------------------------------------------------------------------------- #


@dataclass
class ServerInfo:
    kind: str
    addr: str  # parsec://127.0.0.1:<port>?no_ssl=true
    admin_token: str
    host: str
    port: int
    log_path: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    # Our server only: its metadata database, for assertions on what was stored.
    db_url: str | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, n: int = 60) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def with_address(url: str, host: str, port: int) -> str:
    """The same parsec:// URL (organization, action, token...) on another server address."""
    return re.sub(r"^parsec://[^/?]+", f"parsec://{host}:{port}", url, count=1)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_http_ready(url: str, proc: subprocess.Popen | None, timeout: float, log_path: Path | None) -> None:
    """Wait until `url` answers any HTTP status (the process must stay alive)."""
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while True:
        if proc is not None and proc.poll() is not None:
            log = log_path.read_text(errors="replace") if log_path and log_path.exists() else ""
            raise RuntimeError(f"server exited with code {proc.returncode} before answering:\n{log[-5000:]}")
        try:
            with opener.open(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server at {url} not ready after {timeout}s")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)



def _parse_key_values(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if ": " not in line:
            continue
        key, _, raw = line.partition(": ")
        value: Any = raw.strip()
        if value == "None":
            value = None
        elif value in ("True", "False"):
            value = value == "True"
        elif re.fullmatch(r"-?\d+", value):
            value = int(value)
        elif value.startswith("[{"):  # users_per_profile_detail (Python repr, enum names)
            value = [
                {k: (int(v) if v.isdigit() else v.upper()) for k, v in re.findall(r"'(\w+)': (\w+)", d)}
                for d in re.findall(r"\{([^}]*)\}", value)
            ]
        out[key.strip()] = value
    return out
