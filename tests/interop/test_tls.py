"""TLS: the official 2.17 client against our server serving HTTPS and WSS itself.

A module fixture makes, with the real `openssl` command, a CA, a server certificate signed by it
for 127.0.0.1 and localhost (subjectAltName IP:127.0.0.1, DNS:localhost), and a second, unrelated
CA. Our server (`manage.py run`, PostgreSQL) is started with `--ssl-keyfile` / `--ssl-certfile` and
a `parsec://127.0.0.1:<port>` backend address (no `no_ssl`).

The 2.17 client trusts certifi's roots plus the PEM file named by `SSL_CAFILE`
(`parsec/core/backend_connection/transport.py`: both the urllib HTTPS context of the
administration and anonymous routes, and the trio SSL stream of the WebSocket). `ParsecCli.env`
drops `SSL_CAFILE` from the environment, so `TlsParsecCli` below puts it back per client home.

* right CA: create the organization (HTTPS administration API), bootstrap it (HTTPS anonymous
  route), create a workspace, write and sync a file (WSS), and read it back byte for byte from a
  second client home (same device, empty local storage);
* wrong CA: the administration API, the bootstrap and the WebSocket all fail on certificate
  verification, and nothing reached the server;
* a `no_ssl=true` (plain HTTP) address against the TLS port fails.

Run: ``.venv/bin/python -m pytest --db=postgresql -p no:cacheprovider tests/interop/test_tls.py -q``
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from .conftest import (
    REPO_ROOT,
    SERVER_START_TIMEOUT,
    _postgresql_database_for_interop,
    our_server_env,
    start_our_server,
)
from .refclient import DeviceRef, ParsecCli, ServerInfo, free_port, stop_process

pytestmark = pytest.mark.interop

EMAIL = "alice@example.com"
LABEL = "Alice Liddell"
DEVICE_LABEL = "laptop"
PASSWORD = "P@ssw0rd-tls"
WORKSPACE = "Secured"
CONTENT = os.urandom(700 * 1024) + "fin, é ß 日本\n".encode()  # two 512 KiB blocks
# What the CLI prints (stdout) when urllib refuses the server's certificate.
CERT_ERROR = re.compile(r"^Error: <urlopen error \[SSL: CERTIFICATE_VERIFY_FAILED\] certificate verify failed", re.M)


# --------------------------------------------------------------------------- #
# PKI made with the openssl command
# --------------------------------------------------------------------------- #


@dataclass
class Pki:
    ca_cert: Path  # the CA that signed the server certificate
    server_key: Path
    server_cert: Path  # leaf then CA (full chain), as deploy/make-ca.sh writes it
    leaf_der: bytes  # the server certificate alone, DER
    wrong_ca_cert: Path  # an unrelated CA


def _openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed by the TLS tests"
    res = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"openssl {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    return res


def _make_ca(directory: Path, name: str, common_name: str) -> tuple[Path, Path]:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes", "-days", "30",
        "-keyout", f"{name}.key", "-out", f"{name}.crt",
        "-subj", f"/O=Parsec interop tests/CN={common_name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    return directory / f"{name}.crt", directory / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("tls-pki")
    ca_cert, _ = _make_ca(d, "ca", "Parsec interop test CA")
    wrong_ca_cert, _ = _make_ca(d, "wrong-ca", "Unrelated CA")
    _openssl("req", "-newkey", "rsa:2048", "-sha256", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/O=Parsec interop tests/CN=127.0.0.1", cwd=d)
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "30", "-sha256", "-extfile", "server.ext",
             "-out", "server.leaf.crt", cwd=d)
    # Sanity of what was made: the right CA verifies the leaf, the other one does not.
    assert "server.leaf.crt: OK" in _openssl("verify", "-CAfile", "ca.crt", "server.leaf.crt", cwd=d).stdout
    wrong = subprocess.run(
        [shutil.which("openssl") or "openssl", "verify", "-CAfile", "wrong-ca.crt", "server.leaf.crt"],
        cwd=d, capture_output=True, text=True, timeout=60,
    )
    assert wrong.returncode != 0
    text = _openssl("x509", "-in", "server.leaf.crt", "-noout", "-ext", "subjectAltName", cwd=d).stdout
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text, text
    leaf_pem = (d / "server.leaf.crt").read_text()
    (d / "server.crt").write_text(leaf_pem + ca_cert.read_text())
    return Pki(ca_cert=ca_cert, server_key=d / "server.key", server_cert=d / "server.crt",
               leaf_der=ssl.PEM_cert_to_DER_cert(leaf_pem), wrong_ca_cert=wrong_ca_cert)


# --------------------------------------------------------------------------- #
# Our server with TLS
# --------------------------------------------------------------------------- #


def _https_get(url: str, context: ssl.SSLContext, timeout: float = 5) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(url, timeout=timeout) as rep:
            return rep.status
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_https_ready(url: str, cafile: Path, proc: subprocess.Popen, timeout: float, log_path: Path) -> None:
    """Wait until `url` answers any HTTP status over TLS verified with `cafile`."""
    context = ssl.create_default_context(cafile=str(cafile))
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log = log_path.read_text(errors="replace") if log_path.exists() else ""
            raise RuntimeError(f"server exited with code {proc.returncode} before answering:\n{log[-5000:]}")
        try:
            _https_get(url, context, timeout=2)
            return
        except ssl.SSLCertVerificationError:
            raise  # a bad certificate never gets better
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server at {url} not ready over TLS after {timeout}s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def tls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """Our server on PostgreSQL serving HTTPS/WSS with the test CA's certificate."""
    db_url = _postgresql_database_for_interop()
    log_path = tmp_path_factory.mktemp("tls-server") / "server.log"
    admin_token = uuid.uuid4().hex
    env = our_server_env(PARSEC_DB=db_url)
    subprocess.run(
        [str(REPO_ROOT / ".venv/bin/python"), "manage.py", "migrate", "--no-input"],
        cwd=REPO_ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
    )
    port = free_port()
    addr = f"parsec://127.0.0.1:{port}"
    proc = start_our_server(
        log_path, port, "--blockstore", "POSTGRESQL", "--administration-token", admin_token,
        "--ssl-keyfile", str(pki.server_key), "--ssl-certfile", str(pki.server_cert),
        "--backend-addr", addr, "--email-host", "MOCKED",
        env=env,
    )
    info = ServerInfo(kind="ours-tls", addr=addr, admin_token=admin_token, host="127.0.0.1",
                      port=port, log_path=log_path, process=proc, db_url=db_url)
    try:
        wait_https_ready(f"https://127.0.0.1:{port}/", pki.ca_cert, proc, SERVER_START_TIMEOUT, log_path)
        yield info
    finally:
        stop_process(proc)


@pytest.fixture
def server(tls_server: ServerInfo) -> ServerInfo:
    """Under this name, the harness appends the server's log to a failure report."""
    return tls_server


# --------------------------------------------------------------------------- #
# The official client, told about a CA
# --------------------------------------------------------------------------- #


class TlsParsecCli(ParsecCli):
    """A ParsecCli whose processes get `SSL_CAFILE` (which ParsecCli.env removes)."""

    def __init__(self, bin_dir: Path, home: Path, ca_file: Path | None):
        super().__init__(bin_dir, home)
        self.ca_file = ca_file

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.ca_file is not None:
            env["SSL_CAFILE"] = str(self.ca_file)
        return env


@dataclass
class TlsOrg:
    org_id: str
    bootstrap_url: str
    alice: TlsParsecCli
    device: DeviceRef
    make_home: object  # (name, ca_file) -> a fresh TlsParsecCli holding a copy of alice's device


@pytest.fixture(scope="module")
def tls_org(tls_server: ServerInfo, pki: Pki, reference_client: Path,
            tmp_path_factory: pytest.TempPathFactory) -> TlsOrg:
    """An organization created and bootstrapped over TLS with the right CA."""
    base = tmp_path_factory.mktemp("tls-clients")
    alice = TlsParsecCli(reference_client, base / "alice", pki.ca_cert)
    org_id = f"Tls{uuid.uuid4().hex[:12]}"
    url = alice.create_organization(tls_server.addr, org_id, tls_server.admin_token)
    device = alice.bootstrap_organization(url, EMAIL, LABEL, DEVICE_LABEL, PASSWORD)

    def make_home(name: str, ca_file: Path | None) -> TlsParsecCli:
        home = TlsParsecCli(reference_client, base / name, ca_file)
        alice.copy_device_to(home, device)
        return home

    return TlsOrg(org_id=org_id, bootstrap_url=url, alice=alice, device=device, make_home=make_home)


def _established_connections(server: ServerInfo) -> int:
    """Authenticated WebSocket sessions our server has logged so far."""
    assert server.log_path
    return server.log_path.read_text(errors="replace").count("Connection established")


# --------------------------------------------------------------------------- #
# tests
# --------------------------------------------------------------------------- #


def test_server_presents_the_certificate_made_by_openssl(server: ServerInfo, pki: Pki):
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.getpeercert(binary_form=True) == pki.leaf_der
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # The certificate's DNS name works too.
    assert _https_get(f"https://localhost:{server.port}/", context) == 200


def test_bootstrap_write_sync_and_read_back_over_tls(server: ServerInfo, tls_org: TlsOrg, pki: Pki):
    m = re.fullmatch(
        rf"parsec://127\.0\.0\.1:{server.port}/{tls_org.org_id}"
        r"\?action=bootstrap_organization&token=[0-9a-f]{64}",
        tls_org.bootstrap_url,
    )
    assert m, tls_org.bootstrap_url  # no `no_ssl=true`: the client spoke HTTPS
    assert re.fullmatch(r"[0-9a-f]{64}", tls_org.device.slughash)
    status = tls_org.alice.status_organization(server.addr, tls_org.org_id, server.admin_token)
    assert status["is_bootstrapped"] is True

    # Logged-in session over WSS: realm_create, vlob_create, block_create.
    res = tls_org.alice.batch([
        {"op": "create_workspace", "workspace": WORKSPACE},
        {"op": "write", "workspace": WORKSPACE, "path": "/secret.bin", "data": CONTENT},
    ], tls_org.device, timeout=180)
    assert re.fullmatch(r"[0-9a-f]{32}", res[0]["workspace_id"])
    assert res[1]["written"] == len(CONTENT)

    # Another home, same device, empty local storage: everything comes from the server.
    other = tls_org.make_home("alice-second-home", pki.ca_cert)
    assert not other.data_dir.exists() or not any(other.data_dir.iterdir())
    res = other.batch([
        {"op": "listdir", "workspace": WORKSPACE, "path": "/"},
        {"op": "read", "workspace": WORKSPACE, "path": "/secret.bin"},
    ], timeout=180)
    assert res[0]["entries"] == ["/secret.bin"]
    assert base64.b64decode(res[1]["data"]) == CONTENT


def test_wrong_ca_fails_on_certificate_verification(
    server: ServerInfo, tls_org: TlsOrg, pki: Pki, reference_client: Path, tmp_path: Path
):
    good = TlsParsecCli(reference_client, tmp_path / "good", pki.ca_cert)
    eve = TlsParsecCli(reference_client, tmp_path / "wrong-ca", pki.wrong_ca_cert)

    # Administration API (urllib HTTPS).
    other_org = f"Tls{uuid.uuid4().hex[:12]}"
    res = eve.fails(eve.create_organization, server.addr, other_org, server.admin_token)
    assert res.returncode == 1
    assert CERT_ERROR.search(res.stdout), res.describe()
    assert "Bootstrap organization url" not in res.stdout

    # Anonymous route (bootstrap): an organization created with the right CA stays unbootstrapped.
    org_id = f"Tls{uuid.uuid4().hex[:12]}"
    url = good.create_organization(server.addr, org_id, server.admin_token)
    res = eve.fails(eve.bootstrap_organization, url, "eve@example.com", "Eve", "pc", PASSWORD)
    assert res.returncode == 1
    assert CERT_ERROR.search(res.stdout), res.describe()
    assert not list((eve.config_dir / "devices").glob("*.keys"))  # no device saved

    # Nothing reached the server: the first organization does not exist, the second is not bootstrapped.
    res = good.fails(good.status_organization, server.addr, other_org, server.admin_token)
    assert "HTTP Error 404" in res.stdout, res.describe()
    assert good.status_organization(server.addr, org_id, server.admin_token)["is_bootstrapped"] is False

    # The WebSocket (trio SSL stream): a valid device in a home trusting the wrong CA cannot sync.
    wrong_home = tls_org.make_home("alice-wrong-ca", pki.wrong_ca_cert)
    sessions_before = _established_connections(server)
    res = wrong_home.fails(wrong_home.read_file, WORKSPACE, "/secret.bin")
    assert res.returncode != 0
    assert "RESULT" not in res.stdout
    assert "ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED]" in res.stderr, res.describe()
    assert "BackendNotAvailable" in res.stderr, res.describe()
    assert _established_connections(server) == sessions_before  # no WebSocket handshake got through


def test_plain_http_address_against_tls_port_fails(server: ServerInfo, tmp_path: Path, reference_client: Path,
                                                   pki: Pki):
    cli = TlsParsecCli(reference_client, tmp_path / "plain", pki.ca_cert)
    org_id = f"Tls{uuid.uuid4().hex[:12]}"
    res = cli.fails(cli.create_organization, f"{server.addr}?no_ssl=true", org_id, server.admin_token)
    assert res.returncode == 1
    # The TLS server gets bytes that are no TLS record and closes the connection.
    assert re.search(r"^Error: .*(Remote end closed connection|Connection reset|EOF)", res.stdout, re.M), \
        res.describe()
    assert "Bootstrap organization url" not in res.stdout
    res = cli.fails(cli.status_organization, server.addr, org_id, server.admin_token)
    assert "HTTP Error 404" in res.stdout, res.describe()
