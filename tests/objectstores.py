"""Real object stores for the tests: one-node OpenStack Swift (Debian packages) and moto's S3 server.

How they are run is described, with the measurements and gotchas, in
/work/shared/testing/object-stores.md; this module is that recipe as code, on free loopback ports
(several test sessions, or xdist workers, may run at once).

* pytest fixtures (import them into a conftest or test module):
  `swift_cluster` (session) and `swift_store` (a fresh container per test); call `launch_swift_early`
  from `pytest_collection_finish` and `stop_early_swift` from `pytest_sessionfinish` to boot Swift in
  the background while the first tests run (tests/blocks/conftest.py does);
  `moto_servers` (session, three independent `moto_server` processes) and `s3_servers` (the three,
  emptied, restarted if a test stopped one; `s3_bucket(server)` makes a fresh bucket).
* A script, to get the same servers by hand:

      .venv/bin/python -m tests.objectstores swift [--data DIR]
      .venv/bin/python -m tests.objectstores moto [--count 3]

  It starts them, prints the `--blockstore` values to use, and stops them on Ctrl-C.
  Swift needs `apt-get install swift swift-proxy swift-account swift-container swift-object memcached`
  (scripts/setup.sh --tests); moto comes with requirements.txt.
"""
from __future__ import annotations

import argparse
import ctypes
import getpass
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

PR_SET_PDEATHSIG = 1
SWIFT_USER, SWIFT_TENANT, SWIFT_KEY = "test", "tester", "testing"  # tempauth `test:tester`, key `testing`

SWIFT_COMMON_CONF = """\
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
user = {user}
swift_dir = {data}/etc
devices = {data}/srv
mount_check = false
log_udp_host = 127.0.0.1
log_udp_port = {syslog_port}
log_level = INFO
"""
SWIFT_PROXY_CONF = """
[pipeline:main]
pipeline = catch_errors healthcheck proxy-logging cache tempauth proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
error_suppression_interval = 0

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcached_port}
error_suppression_interval = 0

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging
"""
SWIFT_BACKEND_CONF = """
[pipeline:main]
pipeline = healthcheck {kind}-server

[app:{kind}-server]
use = egg:swift#{kind}

[filter:healthcheck]
use = egg:swift#healthcheck
"""
# Debian's python3-swift is importable only by Debian's /usr/bin/python3, not by the test venv.
SWIFT_RINGS_PY = """
import sys
from swift.common.ring import RingBuilder
etc, ports = sys.argv[1], sys.argv[2:]
for name, port in zip(("account", "container", "object"), ports):
    b = RingBuilder(6, 1, 1)  # part_power, replicas, min_part_hours
    b.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1",
               "port": int(port), "device": "d1", "weight": 1})
    b.rebalance()
    b.get_ring().save(f"{etc}/{name}.ring.gz")
"""


def _die_with_parent() -> None:
    """preexec_fn: the server gets SIGTERM when the process that started it dies, even killed (Linux).

    Swift's servers call setsid(), so a test run killed by a timeout would otherwise leave them running.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def escape(value: str) -> str:
    """A field of a `--blockstore` value: `\\` and `:` escaped (docs/configuration.md#blockstore)."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _http_ok(request: urllib.request.Request | str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- Swift --------------------------------------------------------------------------------------


def swift_available() -> bool:
    tools = ("swift-proxy-server", "swift-account-server", "swift-container-server", "swift-object-server", "memcached")
    return all(shutil.which(tool) for tool in tools) and Path("/etc/swift/swift.conf").exists()


@dataclass
class SwiftCluster:
    """proxy + account + container + object servers and memcached, one process each, under `data`."""

    data: Path
    ports: dict[str, int] = field(default_factory=dict)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy']}/auth/v1.0"

    def configure(self) -> None:
        self.ports = {name: free_port() for name in ("proxy", "memcached", "account", "container", "object")}
        self.ports["syslog"] = free_port(socket.SOCK_DGRAM)  # nothing listens: Swift's syslog copy is dropped
        for sub in ("etc", "srv/d1", "log"):
            (self.data / sub).mkdir(parents=True, exist_ok=True)
        values = {"data": self.data, "user": getpass.getuser(), "syslog_port": self.ports["syslog"],
                  "memcached_port": self.ports["memcached"]}
        (self.data / "etc/proxy-server.conf").write_text(
            SWIFT_COMMON_CONF.format(port=self.ports["proxy"], **values) + SWIFT_PROXY_CONF.format(**values)
        )
        for kind in ("account", "container", "object"):
            (self.data / f"etc/{kind}-server.conf").write_text(
                SWIFT_COMMON_CONF.format(port=self.ports[kind], **values) + SWIFT_BACKEND_CONF.format(kind=kind)
            )
        subprocess.run(
            ["/usr/bin/python3", "-c", SWIFT_RINGS_PY, str(self.data / "etc"),
             *(str(self.ports[kind]) for kind in ("account", "container", "object"))],
            check=True,
        )

    def start(self, timeout: float = 60.0) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the five processes without waiting for them (see `wait_ready`)."""
        memcached = ["memcached", "-l", "127.0.0.1", "-p", str(self.ports["memcached"]), "-U", "0", "-m", "16"]
        if getpass.getuser() == "root":
            memcached += ["-u", "root"]  # memcached refuses to run as root without -u
        commands = {"memcached": memcached}
        for kind in ("account", "container", "object", "proxy"):
            commands[kind] = [f"swift-{kind}-server", str(self.data / f"etc/{kind}-server.conf"), "-v"]
        for name, command in commands.items():  # all at once: start-up is CPU-bound, ~4 s in parallel
            with open(self.data / f"log/{name}.log", "ab") as log:
                self.processes.append(
                    subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
                )

    def wait_ready(self, timeout: float = 60.0) -> None:
        # Every backend's healthcheck, not only the proxy's, then a tempauth login.
        deadline = time.monotonic() + timeout
        pending = [f"http://127.0.0.1:{self.ports[kind]}/healthcheck"
                   for kind in ("account", "container", "object", "proxy")]
        auth = urllib.request.Request(
            self.auth_url, headers={"X-Auth-User": f"{SWIFT_USER}:{SWIFT_TENANT}", "X-Auth-Key": SWIFT_KEY}
        )
        while pending or not _http_ok(auth):
            pending = [url for url in pending if not _http_ok(url)]
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited ({process.returncode}), see {self.data}/log")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Swift not ready: {pending or [self.auth_url]}, see {self.data}/log")
            time.sleep(0.05)

    def stop(self) -> None:
        _stop(self.processes)
        self.processes.clear()

    @property
    def running(self) -> bool:
        return bool(self.processes) and all(process.poll() is None for process in self.processes)

    def connection(self):
        import swiftclient

        return swiftclient.Connection(authurl=self.auth_url, user=f"{SWIFT_USER}:{SWIFT_TENANT}", key=SWIFT_KEY,
                                      retries=0, timeout=10)

    def new_container(self) -> str:
        container = f"parsec-{uuid.uuid4().hex[:12]}"
        self.connection().put_container(container)
        return container

    def blockstore(self, container: str) -> str:
        """`swift:<auth_url>:<tenant>:<container>:<user>:<password>`; the login is `<user>:<tenant>`."""
        return f"swift:{escape(self.auth_url)}:{SWIFT_TENANT}:{container}:{SWIFT_USER}:{SWIFT_KEY}"


# --- moto S3 ------------------------------------------------------------------------------------

MOTO_REGION = "us-east-1"


@dataclass
class MotoServer:
    """One `moto_server` process: an independent in-memory S3 (separate processes share nothing)."""

    log: Path
    port: int = 0
    process: subprocess.Popen | None = None
    _client: object = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if not self.port:
            self.port = free_port()
        executable = Path(sys.executable).with_name("moto_server")  # this venv's, not one on PATH
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(executable), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not _http_ok(f"{self.endpoint_url}/moto-api/"):
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited ({self.process.returncode}), see {self.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"moto_server on port {self.port} not ready, see {self.log}")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def reset(self) -> None:
        """Drop every bucket of this instance."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        opener.open(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"), timeout=5).close()

    def stop(self) -> None:
        if self.process is not None:
            _stop([self.process])
            self.process = None

    def client(self, **config):
        """A boto3 client of this server (the one without extra `config` is made once: that takes ~0.2 s)."""
        import boto3
        from botocore.config import Config

        if not config and self._client is not None:
            return self._client
        client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=MOTO_REGION, aws_access_key_id="testing",
            aws_secret_access_key="testing", config=Config(s3={"addressing_style": "path"}, **config),
        )
        if not config:
            self._client = client
        return client

    def new_bucket(self, name: str | None = None) -> str:
        bucket = name or f"parsec-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def blockstore(self, bucket: str) -> str:
        """`s3:<endpoint_url>:<region>:<bucket>:<key>:<secret>` (moto accepts any key and secret)."""
        return f"s3:{escape(self.endpoint_url)}:{MOTO_REGION}:{bucket}:testing:testing"


def start_moto_servers(count: int, logs: Path) -> list[MotoServer]:
    servers = [MotoServer(logs / f"moto-{index}.log") for index in range(count)]
    for server in servers:  # start all, then wait: they boot in parallel
        server.start()
    try:
        for server in servers:
            server.wait_ready()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


# --- pytest fixtures ----------------------------------------------------------------------------


_early_swift: list[SwiftCluster] = []


def launch_swift_early(session: pytest.Session) -> None:
    """`pytest_collection_finish` hook body: when a selected test needs Swift, boot it now, in the background.

    Its start-up (~4-5 s of CPU on an idle 2-core machine, much more under load) then overlaps the
    tests that run before the first one using it; `swift_cluster` only waits for what is left.
    """
    wanted = any("swift_cluster" in getattr(item, "fixturenames", ()) for item in session.items)
    if wanted and swift_available() and not _early_swift:
        factory: pytest.TempPathFactory | None = getattr(session.config, "_tmp_path_factory", None)
        data = factory.mktemp("swift") if factory else Path(tempfile.mkdtemp(prefix="pytest-swift-"))
        cluster = SwiftCluster(data)
        cluster.configure()
        cluster.launch()
        _early_swift.append(cluster)


def stop_early_swift() -> None:
    """`pytest_sessionfinish` hook body: stop a cluster launched early that no test ended up using."""
    while _early_swift:
        _early_swift.pop().stop()


@pytest.fixture(scope="session")
def swift_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwiftCluster]:
    if not swift_available():
        pytest.skip("needs Swift: apt-get install swift swift-proxy swift-account swift-container swift-object "
                    "memcached (scripts/setup.sh --tests)")
    if _early_swift:
        cluster = _early_swift.pop()
    else:
        cluster = SwiftCluster(tmp_path_factory.mktemp("swift"))
        cluster.configure()
        cluster.launch()
    try:
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def swift_store(swift_cluster: SwiftCluster) -> str:
    """A `--blockstore` value for a fresh container of the session's Swift (restarted if a test stopped it)."""
    if not swift_cluster.running:
        swift_cluster.stop()
        swift_cluster.start()
    return swift_cluster.blockstore(swift_cluster.new_container())


MOTO_SERVERS = 3


@pytest.fixture(scope="session")
def moto_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[MotoServer]]:
    servers = start_moto_servers(MOTO_SERVERS, tmp_path_factory.mktemp("moto"))
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def s3_servers(moto_servers: list[MotoServer]) -> list[MotoServer]:
    """The three S3 servers, empty; any a previous test stopped is started again (same port)."""
    restarted = [server for server in moto_servers if not server.running]
    for server in restarted:
        server.start()
    for server in restarted:
        server.wait_ready()
    for server in moto_servers:
        server.reset()
    return moto_servers


# --- Script -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.objectstores", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    swift = sub.add_parser("swift", help="one-node Swift with tempauth")
    swift.add_argument("--data", type=Path, help="folder for configs, rings, objects and logs (default: a temp dir)")
    swift.add_argument("--container", default="parsec", help="container to create (default: parsec)")
    moto = sub.add_parser("moto", help="independent moto S3 servers")
    moto.add_argument("--count", type=int, default=3)
    moto.add_argument("--bucket", default="parsec", help="bucket to create on each (default: parsec)")
    args = parser.parse_args(argv)

    stoppers = []
    if args.what == "swift":
        if not swift_available():
            parser.error("Swift is not installed (scripts/setup.sh --tests)")
        data = (args.data or Path(tempfile.mkdtemp(prefix="swift-"))).resolve()
        cluster = SwiftCluster(data)
        cluster.configure()
        cluster.start()
        stoppers.append(cluster.stop)
        cluster.connection().put_container(args.container)
        print(f"Swift ready (data and logs in {data}); auth {cluster.auth_url}, user {SWIFT_USER}:{SWIFT_TENANT}")
        print(f"  --blockstore '{cluster.blockstore(args.container)}'")
    else:
        servers = start_moto_servers(args.count, Path(tempfile.mkdtemp(prefix="moto-")))
        stoppers.extend(server.stop for server in servers)
        print(f"{len(servers)} moto S3 server(s) ready")
        for index, server in enumerate(servers):
            server.new_bucket(args.bucket)
            prefix = f"RAID5:{index}:" if len(servers) >= 3 else ""
            print(f"  --blockstore '{prefix}{server.blockstore(args.bucket)}'")
    sys.stdout.flush()
    try:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        for stop in stoppers:
            stop()


if __name__ == "__main__":
    main()
