"""Start and stop the servers under test: ours (`manage.py run`, daphne) and the reference
(parsec-cloud 2.17.0 `parsec backend run`), each on its own free loopback port with its own fresh
PostgreSQL database (metadata and blocks) in one throwaway cluster; and our application under other
ASGI servers (`ours-uvicorn`...: see ASGI_CANDIDATES), to compare the websocket layer."""
from __future__ import annotations

import ctypes
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.client import wait_http
from tests.pgcluster import PgCluster, free_port, start_cluster

REPO = Path(__file__).resolve().parent.parent
OUR_PYTHON = REPO / ".venv" / "bin" / "python"


def reference_parsec() -> Path:
    """The reference's `parsec` CLI: $PARSEC_REF_BIN, else /opt/parsec-ref, else the venv that
    scripts/setup.sh --tests installs ($PARSEC_REF_VENV, default .venv-ref)."""
    if os.environ.get("PARSEC_REF_BIN"):
        return Path(os.environ["PARSEC_REF_BIN"])
    candidates = [Path("/opt/parsec-ref/bin/parsec"),
                  Path(os.environ.get("PARSEC_REF_VENV", REPO / ".venv-ref")) / "bin" / "parsec"]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise RuntimeError("reference server not found: set PARSEC_REF_BIN, or install parsec-cloud 2.17.0 "
                       f"(scripts/setup.sh --tests); looked at {', '.join(map(str, candidates))}")

# The same application, settings and database options as `ours`, served by another ASGI server instead of
# daphne (issue 15, "the websocket layer"): one process serving (granian: one worker under its supervisor), no
# TLS, the standard asyncio loop like daphne's reactor, bench/asgi_app.py doing `run`'s start-up work in the
# ASGI lifespan. kind -> (the modules that must be importable, the command after the python).
# These servers are not requirements of the project: a kind whose server is missing is left out of the run.
WS_MAX_SIZE = str(16 * 1024 * 1024)  # parsec_site/server.py's WEBSOCKET_MAX_MESSAGE_SIZE
ASGI_APP = "bench.asgi_app:application"


def _uvicorn(ws: str) -> list[str]:
    # daphne pings every 30 s and never drops a connection for a late pong; the bench client never offers
    # permessage-deflate, so the deflate switch changes nothing here (it is off to say so).
    return ["-m", "uvicorn", ASGI_APP, "--host", "127.0.0.1", "--port", "{port}", "--loop", "asyncio",
            "--http", "h11", "--ws", ws, "--ws-max-size", WS_MAX_SIZE, "--ws-ping-interval", "30",
            "--ws-ping-timeout", "3600", "--ws-per-message-deflate", "false", "--lifespan", "on",
            "--no-access-log", "--log-level", "{log_level}", "--timeout-graceful-shutdown", "10"]


ASGI_CANDIDATES: dict[str, tuple[tuple[str, ...], list[str]]] = {
    "ours-uvicorn": (("uvicorn", "websockets"), _uvicorn("websockets")),
    "ours-uvicorn-sansio": (("uvicorn", "websockets"), _uvicorn("websockets-sansio")),
    "ours-uvicorn-wsproto": (("uvicorn", "wsproto"), _uvicorn("wsproto")),
    # --workers 0: hypercorn serves in this process instead of spawning one worker process.
    "ours-hypercorn": (("hypercorn",), [
        "-m", "hypercorn", ASGI_APP, "--bind", "127.0.0.1:{port}", "--workers", "0", "--worker-class", "asyncio",
        "--log-level", "{log_level}", "--graceful-timeout", "10"]),
    "ours-granian": (("granian",), [
        "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}", "--workers", "1",
        "--loop", "asyncio", "--no-access-log", "--log-level", "{log_level}", ASGI_APP]),
}
# ours2: our server with `--workers 2` (two processes on one port; each has its own database pool).
SERVER_KINDS = ("ours", "reference", "before", "ours2", *ASGI_CANDIDATES)


def missing_server(kind: str) -> str | None:
    """Why `kind` cannot run here (its ASGI server is not installed in .venv), or None."""
    if kind not in ASGI_CANDIDATES:
        return None
    missing = [module for module in ASGI_CANDIDATES[kind][0] if importlib.util.find_spec(module) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (.venv/bin/pip install {' '.join(missing)})"
    return None
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _clean_env() -> dict[str, str]:
    """The bench's environment without anything that would configure a server behind our back."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARSEC_") and k not in ("DEBUG",
                                                                                          "DJANGO_SETTINGS_MODULE")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the bench dies, even killed, so no server outlives it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def cpu_seconds_of(root: int) -> float:
    """utime + stime of `root` and its descendants, in seconds."""
    total = 0
    for pid in _descendants(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / CLK_TCK


@dataclass
class Server:
    kind: str
    port: int
    db_url: str
    token: str
    log_path: Path
    process: subprocess.Popen | None = None
    postmaster_pid: int | None = None
    command: list[str] | None = None
    env: dict[str, str] | None = None
    cwd: Path | None = None
    profile_subprocesses: bool = False  # granian serves from a worker process below its supervisor

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_kib(self) -> int:
        """VmRSS of the server process and its children, in KiB."""
        total = 0
        for pid in _descendants(self.pid):
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def cpu_seconds(self) -> float:
        """utime + stime of the server process and its children."""
        return cpu_seconds_of(self.pid)

    def db_cpu_seconds(self) -> float | None:
        """utime + stime of the whole PostgreSQL cluster (shared, but only one server is loaded at a time)."""
        return None if self.postmaster_pid is None else cpu_seconds_of(self.postmaster_pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def launch(self) -> None:
        """Start the process (again: same database, same port) and wait until it listens."""
        assert self.command is not None
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(self.command, env=self.env, cwd=self.cwd, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            preexec_fn=_die_with_parent)
        try:
            wait_http(self.base_url + "/", timeout=60, process=self.process)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{self.kind} server did not start: {exc}\n{self.log_tail()}") from None

    def restart(self) -> None:
        """A fresh process on the same database: memory measurements start from a clean heap."""
        self.stop()
        self.launch()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _run_checked(command: list[str], *, env: dict[str, str], log: Path, what: str, cwd: Path | None = None) -> None:
    with open(log, "ab") as out:
        result = subprocess.run(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=300)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{what} failed (exit {result.returncode}), see {log}:\n{tail}")


class Lab:
    """The PostgreSQL cluster and the servers of one bench run."""

    def __init__(self, *, db_min: int, db_max: int, log_level: str | None, workdir: Path | None = None,
                 before_tree: Path | None = None, db_socket: bool = False) -> None:
        # `before`: our server from another checkout (e.g. `git worktree add /tmp/before <commit>`), run with
        # this repository's venv, to compare two versions of ours in one run.
        self.before_tree = before_tree
        self.db_socket = db_socket  # both servers reach PostgreSQL over its Unix socket instead of loopback TCP
        self.db_min = db_min
        self.db_max = db_max
        self.log_level = log_level
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="parsec-bench-"))
        self.cluster: PgCluster | None = None
        self.servers: list[Server] = []
        self.redis: subprocess.Popen | None = None  # for `ours2`: several processes share events through Redis
        self.redis_url: str | None = None

    def start_redis(self) -> str:
        """A throwaway `redis-server` (no persistence) on a free port, once it answers PING."""
        if self.redis_url is not None:
            return self.redis_url
        port = free_port()
        log = self.workdir / "redis.log"
        with open(log, "wb") as out:
            self.redis = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.redis.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.redis.returncode}, see {log}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        self.redis_url = f"redis://127.0.0.1:{port}/0"
                        return self.redis_url
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("redis-server does not answer PING")

    def start_cluster(self) -> None:
        self.cluster = start_cluster()

    def postmaster_pid(self) -> int | None:
        if self.cluster is None:
            return None
        try:
            return int((self.cluster.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self, kind: str) -> Server:
        assert self.cluster is not None
        database = f"bench_{kind}_{secrets.token_hex(3)}"
        db_url = self.cluster.create_database(database)
        if self.db_socket:
            db_url = f"postgresql:///{database}?host={self.cluster.data_dir.parent}&port={self.cluster.port}&user=parsec"
        port = free_port()
        token = secrets.token_hex(16)
        log = self.workdir / f"{kind}.log"
        env = _clean_env()
        addr = f"parsec://127.0.0.1:{port}?no_ssl=true"
        common = [
            "--port", str(port), "--db", db_url, "--blockstore", "POSTGRESQL",
            "--administration-token", token, "--backend-addr", addr, "--email-host", "MOCKED",
            "--db-min-connections", str(self.db_min), "--db-max-connections", str(self.db_max), "--debug",
        ]
        if self.log_level:
            common += ["--log-level", self.log_level]
        if kind in ("ours", "before", "ours2"):
            tree = self.before_tree if kind == "before" else REPO
            if tree is None:
                raise ValueError("the `before` server needs --before-tree")
            _run_checked([str(OUR_PYTHON), "manage.py", "migrate", "--noinput", "-v", "0"],
                         env={**env, "PARSEC_DB": db_url}, cwd=tree, log=log, what=f"{kind} migrate")
            command = [str(OUR_PYTHON), "manage.py", "run", *common]
            if kind == "ours2":
                command += ["--workers", "2", "--redis-url", self.start_redis()]
            cwd = tree
        elif kind == "reference":
            parsec = str(reference_parsec())
            _run_checked([parsec, "backend", "migrate", "--db", db_url], env=env, log=log,
                         what="reference migrate")
            command = [parsec, "backend", "run", *common]
            cwd = self.workdir
        elif kind in ASGI_CANDIDATES:
            if (why := missing_server(kind)) is not None:
                raise RuntimeError(f"{kind}: {why}")
            from parsec_site.cli import parse_run_arguments

            _run_checked([str(OUR_PYTHON), "manage.py", "migrate", "--noinput", "-v", "0"],
                         env={**env, "PARSEC_DB": db_url}, cwd=REPO, log=log, what=f"{kind} migrate")
            # `run`'s own flag parser turns the same options into the PARSEC_* variables settings.py reads.
            _namespace, variables, _rest = parse_run_arguments(common, {})
            env = {**env, **variables, "PYTHONPATH": str(REPO)}
            level = (self.log_level or "info").lower()
            command = [str(OUR_PYTHON), *(part.format(port=port, log_level=level)
                                          for part in ASGI_CANDIDATES[kind][1])]
            cwd = REPO
        else:
            raise ValueError(f"unknown server {kind!r} (expected one of {SERVER_KINDS})")
        server = Server(kind=kind, port=port, db_url=db_url, token=token, log_path=log,
                        postmaster_pid=self.postmaster_pid(), command=command, env=env, cwd=cwd,
                        profile_subprocesses=kind in ("ours2", "ours-granian"))
        self.servers.append(server)
        server.launch()
        return server

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(timeout=10)
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
