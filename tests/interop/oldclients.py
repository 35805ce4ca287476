"""Older official clients (2.0.0 ... 2.16.3), each in its own virtualenv, driven like the 2.17 one.

The venvs live in the checkout (`.venv-clients/<version>`, or `$PARSEC_CLIENTS_DIR/<version>`) and are
installed by `scripts/setup.sh --tests` through `python -m tests.interop.oldclients install`, all
versions at once. 2.0.0 needs Python 3.8 (it pins packages without 3.9 wheels); the others 3.9.

Data access (no FUSE, and several old CLI commands are broken whatever the server, see the tests)
goes through the version's own `LoggedCore` in a small script run by the venv's Python, as
`refclient.ParsecCli.core_script` does for 2.17. 2.16.3 already has 2.17's core API, so it uses
that script; 2.0-2.11 use `_OLD_CORE_SCRIPT`, written against their common pure-Python core API.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .refclient import DeviceRef, ParsecCli, ParsecCliError, _SAVING_DEVICE_RE

REPO_ROOT = Path(__file__).resolve().parents[2]
# version -> the pyenv Python it installs with
CLIENT_PYTHONS = {
    "2.0.0": "3.8.18",
    "2.5.4": "3.9.18",
    "2.10.0": "3.9.18",
    "2.11.1": "3.9.18",
    "2.16.3": "3.9.18",
}
OLD_CORE_API = {"2.0.0", "2.5.4", "2.10.0", "2.11.1"}


def clients_dir() -> Path:
    return Path(os.environ.get("PARSEC_CLIENTS_DIR") or REPO_ROOT / ".venv-clients")


def venv_of(version: str) -> Path:
    return clients_dir() / version


def client_ok(version: str) -> tuple[bool, str]:
    python = venv_of(version) / "bin" / "python"
    if not python.exists():
        return False, "not installed"
    probe = "import parsec, parsec.core.cli; print(parsec.__version__)"
    proc = subprocess.run([str(python), "-W", "ignore", "-c", probe], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        return False, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "import failed"
    installed = proc.stdout.strip().lstrip("v")
    return installed == version, f"parsec-cloud {installed}"


# oscrypto (a dependency of some of these releases) finds OpenSSL's version with the regex
# `\d\.\d\.\d`, which does not match "OpenSSL 3.0.13" (two-digit patch level), and then refuses to
# import ("Error detecting the version of libcrypto"). Widen it to `\d+\.\d+\.\d+` in the venv's copy;
# `client_ok` then imports the CLI for real, so any other import failure still shows.
_OSCRYPTO_OLD = "'\\\\b(\\\\d\\\\.\\\\d\\\\.\\\\d[a-z]*)\\\\b'"
_OSCRYPTO_NEW = "'\\\\b(\\\\d+\\\\.\\\\d+\\\\.\\\\d+[a-z]*)\\\\b'"


def patch_oscrypto(venv: Path) -> list[Path]:
    patched = []
    for path in venv.glob("lib/python3.*/site-packages/oscrypto/_openssl/_libcrypto_c*.py"):
        text = path.read_text()
        if _OSCRYPTO_OLD in text:
            path.write_text(text.replace(_OSCRYPTO_OLD, _OSCRYPTO_NEW))
            patched.append(path)
    return patched


def _python_for(python_version: str) -> list[str]:
    try:
        prefix = subprocess.run(["pyenv", "prefix", python_version], capture_output=True, text=True, check=True)
        return [str(Path(prefix.stdout.strip()) / "bin" / "python")]
    except (OSError, subprocess.CalledProcessError):
        return [f"python{python_version.rsplit('.', 1)[0]}"]


def install(version: str) -> str:
    """Create the venv and pip-install `parsec-cloud[core]==version` unless it already works."""
    ok, what = client_ok(version)
    if ok:
        return f"{version}: present ({what})"
    venv = venv_of(version)
    log = clients_dir() / f"{version}.log"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        steps = [
            [*_python_for(CLIENT_PYTHONS[version]), "-m", "venv", "--clear", str(venv)],
            [str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", "--upgrade", "pip"],
            [str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", f"parsec-cloud[core]=={version}"],
        ]
        for step in steps:
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise RuntimeError(f"{version}: `{' '.join(step)}` failed, see {log}")
    patch_oscrypto(venv)
    ok, what = client_ok(version)
    if not ok:
        raise RuntimeError(f"{version}: installed but unusable: {what} (see {log})")
    return f"{version}: installed ({what})"


def install_all(versions: list[str]) -> int:
    failures = 0
    with ThreadPoolExecutor(max_workers=len(versions)) as pool:
        for future in [pool.submit(install, version) for version in versions]:
            try:
                print(future.result(), flush=True)
            except Exception as exc:
                failures += 1
                print(f"ERROR {exc}", file=sys.stderr, flush=True)
    return 1 if failures else 0


# --------------------------------------------------------------------------------------------------

_OLD_CORE_SCRIPT = r'''
import base64, hashlib, json, os, sys
from pathlib import Path
import trio
from parsec.core import logged_core_factory
from parsec.core.config import get_default_config_dir, load_config
from parsec.core.local_device import list_available_devices, load_device_with_password
from parsec.api.protocol import UserID
from parsec.core.types import WorkspaceRole
try:
    from parsec.api.data import EntryName
except ImportError:  # 2.0-2.5 take workspace names as str
    EntryName = str


def load_device(config, slughash, password):
    found = [d for d in list_available_devices(config.config_dir) if d.slughash.startswith(slughash)]
    if len(found) != 1:
        raise SystemExit("device %r: %d match(es)" % (slughash, len(found)))
    return load_device_with_password(Path(found[0].key_file_path), password)


def get_ws(core, name):
    for entry in core.user_fs.get_user_manifest().workspaces:
        if str(entry.name) == name:
            return core.user_fs.get_workspace(entry.id)
    raise SystemExit("unknown workspace %r" % name)


async def full_sync(core):
    await core.user_fs.sync()
    await core.user_fs.process_last_messages()
    await core.user_fs.sync()
    for entry in core.user_fs.get_user_manifest().workspaces:
        await core.user_fs.get_workspace(entry.id).sync()


async def read_tree(ws, path, out):
    for child in await ws.listdir(path):
        if await ws.is_dir(child):
            out[str(child)] = {"type": "folder"}
            await read_tree(ws, child, out)
        else:
            data = await ws.read_bytes(child)
            out[str(child)] = {"type": "file", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


async def wait_for_file(core, req):
    # Logged in, never syncing by itself: only the core's monitors, woken by the server's
    # `realm.vlobs_updated` event on its events_listen connection, can bring the change.
    events = []
    from parsec.core.core_events import CoreEvent

    core.event_bus.connect(CoreEvent.BACKEND_REALM_VLOBS_UPDATED, lambda event, **kwargs: events.append(str(event)))
    ws = get_ws(core, req["workspace"])
    expected = base64.b64decode(req["data"])
    with trio.fail_after(60):
        await core.wait_idle_monitors()
    print("READY {}", flush=True)
    found = False
    with trio.move_on_after(req.get("timeout", 60)):
        while not found:
            try:
                found = await ws.read_bytes(req["path"]) == expected
            except Exception:
                pass
            await trio.sleep(0.1)
    return {"found": found, "events": events}


async def run_op(core, req):
    op = req["op"]
    out = {}
    if op == "create_workspace":
        wid = await core.user_fs.workspace_create(EntryName(req["workspace"]))
        await core.user_fs.sync()
        await core.user_fs.get_workspace(wid).sync()
        out["workspace_id"] = wid.hex
    elif op == "mkdir":
        ws = get_ws(core, req["workspace"])
        await ws.mkdir(req["path"], parents=True, exist_ok=True)
        await ws.sync()
    elif op == "write":
        ws = get_ws(core, req["workspace"])
        parent = req["path"].rsplit("/", 1)[0]
        if parent:
            await ws.mkdir(parent, parents=True, exist_ok=True)
        await ws.write_bytes(req["path"], base64.b64decode(req["data"]))
        await ws.sync()
    elif op == "share":
        ws = get_ws(core, req["workspace"])
        await core.user_fs.workspace_share(ws.workspace_id, UserID(req["user_id"]), getattr(WorkspaceRole, req["role"]))
    elif op == "read_tree":
        out["tree"] = {}
        await read_tree(get_ws(core, req["workspace"]), "/", out["tree"])
    elif op == "read":
        data = await get_ws(core, req["workspace"]).read_bytes(req["path"])
        out["data"] = base64.b64encode(data).decode()
    elif op == "whoami":
        out["user_id"] = str(core.device.user_id)
    elif op == "wait_for_file":
        out.update(await wait_for_file(core, req))
    elif op != "sync":
        raise SystemExit("unknown op %r" % op)
    return out


async def main(req):
    config = load_config(get_default_config_dir(os.environ))
    device = load_device(config, req["device"], req["password"])
    async with logged_core_factory(config, device) as core:
        await full_sync(core)
        steps = req["steps"] if req["op"] == "batch" else [req]
        out = {"steps": [await run_op(core, step) for step in steps]}
        out["workspaces"] = [str(entry.name) for entry in core.user_fs.get_user_manifest().workspaces]
    return out


result = trio.run(main, json.loads(sys.stdin.read()))
print("RESULT " + json.dumps(result))
'''


class VersionedCli(ParsecCli):
    """`parsec core` of one older release, in an isolated home."""

    def __init__(self, version: str, home: Path, timeout: float = 90.0):
        super().__init__(venv_of(version) / "bin", home, timeout=timeout)
        self.version = version

    @property
    def old_core(self) -> bool:
        return self.version in OLD_CORE_API

    def spawn(self, *args: str):
        if self.version in ("2.0.0", "2.5.4") and args[:1] == ("greet_invitation",):
            # Up to 2.5, `greet_invitation` takes the invitation token, not the URL.
            token = re.search(r"[?&]token=([0-9a-f]+)", args[1])
            assert token, args[1]
            args = (args[0], token.group(1), *args[2:])
        return super().spawn(*args)

    def create_organization(self, addr: str, organization_id: str, token: str) -> str:
        if self.version != "2.0.0":
            return super().create_organization(addr, organization_id, token)
        # The hosting guide's command, verbatim (2.0.0 sends it over the API v1 administration handshake).
        res = self.run("create_organization", f"--administration-token={token}", f"--addr={addr}", organization_id)
        match = re.search(r"Bootstrap organization url: (parsec://\S+)", res.stdout)
        if not match:
            raise ParsecCliError("no bootstrap url in output", res)
        return match.group(1)

    def bootstrap_organization(self, url: str, email: str, label: str, device_label: str,
                               password: str) -> DeviceRef:
        if self.version == "2.0.0":
            # 2.0's CLI has no --human-* options: it asks for them.
            res = self.run("bootstrap_organization", url, "--password", password,
                           input=f"{label}\n{email}\n{device_label}\n")
        elif self.version == "2.10.0":
            # 2.10's `--device-label` hands a str where a DeviceLabel is expected and fails an
            # assertion before sending anything; answering the prompt builds the DeviceLabel.
            res = self.run("bootstrap_organization", url, "--password", password, "--human-label", label,
                           "--human-email", email, input=f"{device_label}\n")
        else:
            return super().bootstrap_organization(url, email, label, device_label, password)
        match = _SAVING_DEVICE_RE.search(res.stdout)
        if not match:
            raise ParsecCliError("no saved device in output", res)
        organization = re.match(r"parsec://[^/]+/([^?]+)", url)
        device = DeviceRef(slughash=match.group(1), password=password, human_email=email, human_label=label,
                           organization_id=organization.group(1) if organization else None,
                           device_label=device_label)
        self.devices.append(device)
        return device

    def old_script(self, req: dict[str, Any], device: DeviceRef | None = None,
                   timeout: float | None = None) -> dict[str, Any]:
        dev = self._dev(device)
        res = self.run("-c", _OLD_CORE_SCRIPT, input=json.dumps({"device": dev.slughash, "password": dev.password, **req}),
                       timeout=timeout, program=[str(self.bin_dir / "python")])
        match = re.search(r"^RESULT (.*)$", res.stdout, re.M)
        if not match:
            raise ParsecCliError("no RESULT line from core script", res)
        return json.loads(match.group(1))

    def steps(self, steps: list[dict[str, Any]], device: DeviceRef | None = None) -> list[dict[str, Any]]:
        """Core-API operations in one logged-in session, with this version's script."""
        if not self.old_core:
            return self.batch(steps, device)
        import base64

        encoded = [{k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in step.items()}
                   for step in steps]
        return self.old_script({"op": "batch", "steps": encoded}, device)["steps"]

    def read_tree(self, workspace: str, device: DeviceRef | None = None) -> dict[str, dict[str, Any]]:
        """{path: {"type": "folder"} | {"type": "file", "size", "sha256"}} of the whole workspace."""
        [result] = self.steps([{"op": "read_tree", "workspace": workspace}], device)
        return {path: {k: v for k, v in entry.items() if k != "data"} for path, entry in result["tree"].items()}

    def start_old_script(self, req: dict[str, Any], device: DeviceRef | None = None):
        from .refclient import CoreScriptRun, _Interactive

        dev = self._dev(device)
        proc = _Interactive([str(self.bin_dir / "python"), "-c", _OLD_CORE_SCRIPT], self.env(), self.home)
        assert proc.proc.stdin is not None
        proc.proc.stdin.write(json.dumps({"device": dev.slughash, "password": dev.password, **req}).encode())
        proc.proc.stdin.close()
        return CoreScriptRun(proc)


if __name__ == "__main__":
    if sys.argv[1:2] != ["install"]:
        raise SystemExit("usage: python -m tests.interop.oldclients install [VERSION ...]")
    sys.exit(install_all(sys.argv[2:] or list(CLIENT_PYTHONS)))
