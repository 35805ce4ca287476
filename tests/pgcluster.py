"""A throwaway PostgreSQL cluster from the machine's binaries, for tests and the interop server.

Started in a temporary folder, listening on a Unix socket and a free loopback port; removed at exit.
"""
from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def _pg_bin_dir() -> Path:
    override = os.environ.get("PARSEC_TEST_PG_BIN")
    if override:
        return Path(override)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if not candidates:
        found = shutil.which("initdb")
        if found is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        return Path(found).parent
    return Path(candidates[0]).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PgCluster:
    data_dir: Path
    port: int
    process_owner: str | None

    @property
    def url(self) -> str:
        return f"postgresql://parsec@127.0.0.1:{self.port}/parsec"

    def url_for(self, database: str) -> str:
        return f"postgresql://parsec@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        command = list(args)
        if self.process_owner:
            command = ["runuser", "-u", self.process_owner, "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        pg_ctl = str(_pg_bin_dir() / "pg_ctl")
        try:
            self._run(pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def create_database(self, name: str) -> str:
        subprocess.run(
            [str(_pg_bin_dir() / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "parsec", name],
            check=True,
        )
        return self.url_for(name)


def start_cluster() -> PgCluster:
    bin_dir = _pg_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="parsec-pg-"))
    data_dir = root / "data"
    # PostgreSQL refuses to run as root: use the `postgres` account when we are root.
    owner = "postgres" if os.geteuid() == 0 else None
    if owner:
        shutil.chown(root, owner)
        os.chmod(root, 0o755)
    cluster = PgCluster(data_dir=data_dir, port=free_port(), process_owner=owner)
    cluster._run(str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "parsec", "--auth=trust", "-E", "UTF8", "--no-sync")
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={cluster.port} -c unix_socket_directories={root} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    )
    cluster._run(str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-o", options, "-w", "-l", str(root / "log"), "start")
    atexit.register(cluster.stop)
    cluster.create_database("parsec")
    return cluster
