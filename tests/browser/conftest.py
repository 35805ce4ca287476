"""Fixtures of the browser tests: the web console in a real headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by selenium) against a server started from this repository on PostgreSQL.

Every test here is marked `browser`; scripts/test.sh runs them in its PostgreSQL half. Screenshots of each
step go to `.test-logs/browser/<test>/` and their paths are printed (`-s` shows them, the CI log keeps them).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.interop.conftest import _postgresql_database_for_interop, our_server_env, start_our_server
from tests.interop.refclient import (
    ParsecCli,
    ServerInfo,
    ensure_reference_client,
    free_port,
    stop_process,
    wait_http_ready,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / ".test-logs" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
OPERATOR = "operator"
OPERATOR_PASSWORD = "correct horse battery staple"
SERVER_START_TIMEOUT = 60.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session", autouse=True)
def close_database_pools():
    """Shadow tests/conftest.py's autouse DB fixture: the servers under test have their own database."""
    yield


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REPO_ROOT / ".venv/bin/python"), "manage.py", *args], cwd=REPO_ROOT, env=env, check=True,
        capture_output=True, text=True,
    )


@pytest.fixture(scope="session")
def console_database() -> str:
    """A migrated database with an operator account (`manage.py createsuperuser`)."""
    db_url = _postgresql_database_for_interop()
    env = our_server_env(PARSEC_DB=db_url, DJANGO_SUPERUSER_PASSWORD=OPERATOR_PASSWORD)
    manage("migrate", "--no-input", env=env)
    manage("createsuperuser", "--no-input", "--username", OPERATOR, "--email", "ops@example.com", env=env)
    return db_url


def start_console_server(db_url: str, log_path: Path, port: int, *args: str, backend_addr: str,
                         tls: bool = False) -> ServerInfo:
    admin_token = uuid.uuid4().hex
    proc = start_our_server(
        log_path, port, "--blockstore", "POSTGRESQL", "--administration-token", admin_token,
        "--backend-addr", backend_addr, "--email-host", "MOCKED", *args,
        env=our_server_env(PARSEC_DB=db_url),
    )
    info = ServerInfo(kind="ours", addr=f"parsec://127.0.0.1:{port}?no_ssl=true", admin_token=admin_token,
                      host="127.0.0.1", port=port, log_path=log_path, process=proc, db_url=db_url)
    try:
        if tls:  # a self-signed certificate: only wait for the port
            wait_listening(port, proc, log_path, SERVER_START_TIMEOUT)
        else:
            wait_http_ready(f"{info.http_url}/", proc, SERVER_START_TIMEOUT, log_path)
    except BaseException:
        stop_process(proc)
        raise
    return info


def wait_listening(port: int, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited: {log_path.read_text() if log_path.exists() else ''}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens on {port}: {log_path.read_text() if log_path.exists() else ''}")


@pytest.fixture(scope="session")
def console_server(console_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """`manage.py run` on PostgreSQL (POSTGRESQL blocks), console on the client port."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("console-server") / "server.log"
    info = start_console_server(console_database, log_path, port,
                                backend_addr=f"parsec://127.0.0.1:{port}?no_ssl=true")
    try:
        yield info
    finally:
        stop_process(info.process)


@pytest.fixture
def browser(tmp_path: Path):
    """Headless Chromium as root needs no sandbox and a fresh profile; English pages, insecure certs allowed."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are needed (scripts/setup.sh --tests installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=tmp_path)}", "--window-size=1400,1000",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    options.accept_insecure_certs = True
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Screenshots:
    def __init__(self, folder: Path, driver) -> None:
        self.folder = folder
        self.driver = driver
        self.count = 0

    def __call__(self, step: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{step}.png"
        self.driver.save_screenshot(str(path))
        print(f"screenshot: {path}")
        return path


@pytest.fixture
def screenshot(browser, request: pytest.FixtureRequest) -> Screenshots:
    folder = SCREENSHOTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return Screenshots(folder, browser)


@pytest.fixture(scope="session")
def reference_client() -> Path:
    return ensure_reference_client()


@pytest.fixture
def parsec_cli(reference_client: Path, tmp_path: Path) -> ParsecCli:
    return ParsecCli(reference_client, tmp_path / "client-home")
