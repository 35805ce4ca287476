"""The web console as an operator uses it, in headless Chromium, against `manage.py run` on PostgreSQL."""
from __future__ import annotations

import csv
import http.client
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.interop.refclient import ServerInfo, free_port, stop_process

from .conftest import OPERATOR, OPERATOR_PASSWORD, REPO_ROOT, start_console_server, wait_listening

# Django's admin stylesheet paints the header with its --header-bg colour (#417690): only when it is applied.
ADMIN_HEADER_BACKGROUND = "rgba(65, 118, 144, 1)"
EMAIL, LABEL, PASSWORD = "alice@example.com", "Alice", "P@ssw0rd."


def wait_for(driver, css: str, timeout: float = 15):
    return WebDriverWait(driver, timeout).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def assert_stylesheet_applied(driver) -> None:
    header = wait_for(driver, "#header")
    assert header.value_of_css_property("background-color") == ADMIN_HEADER_BACKGROUND
    # Unstyled, the theme toggle's icons fill the page; styled, they are small.
    icon_heights = driver.execute_script(
        "return [...document.querySelectorAll('.theme-toggle svg')].map(e => e.getBoundingClientRect().height)"
    )
    assert icon_heights and max(icon_heights) < 40, icon_heights


def log_in(driver, base_url: str, prefix: str = "admin") -> None:
    driver.get(f"{base_url}/{prefix}/login/")
    wait_for(driver, "#id_username").send_keys(OPERATOR)
    driver.find_element(By.ID, "id_password").send_keys(OPERATOR_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(driver, "#site-name")
    assert driver.current_url.rstrip("/").endswith(f"/{prefix}"), driver.current_url
    assert "Site administration" in driver.page_source


def field_text(driver, name: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f".field-{name} .readonly").text


def test_operator_journey(console_server: ServerInfo, browser, screenshot, parsec_cli, capsys) -> None:
    base = console_server.http_url
    organization_id = f"Console{re.sub('[^0-9a-f]', '', str(id(browser)))[-6:]}"

    # The login page is styled: the admin CSS is served and applied.
    browser.get(f"{base}/admin/login/")
    assert_stylesheet_applied(browser)
    screenshot("login-page")
    log_in(browser, base)
    screenshot("logged-in")

    # Create an organization and read its bootstrap URL on its page.
    browser.get(f"{base}/admin/organizations/organization/add/")
    wait_for(browser, "#id_organization_id").send_keys(organization_id)
    browser.find_element(By.NAME, "_continue").click()
    message = wait_for(browser, ".messagelist .success").text
    assert f"Bootstrap URL of {organization_id}: parsec://" in message
    url_field = wait_for(browser, "#bootstrap-url")
    bootstrap_url = url_field.get_attribute("value")
    assert bootstrap_url.startswith(f"parsec://127.0.0.1:{console_server.port}/{organization_id}?no_ssl=true&")
    assert "action=bootstrap_organization&token=" in bootstrap_url and bootstrap_url in message
    browser.find_element(By.ID, "copy-bootstrap-url").click()
    assert browser.find_element(By.ID, "copy-bootstrap-url").text == "Copied"
    organization_page = browser.current_url
    screenshot("organization-created")

    # The official client bootstraps it, then syncs a file.
    device = parsec_cli.bootstrap_organization(bootstrap_url, EMAIL, LABEL, "laptop", PASSWORD)
    parsec_cli.create_workspace_synced("docs", device)
    data = b"the console counts these bytes\n" * 100
    assert parsec_cli.write_file("docs", "/report.txt", data, device) == len(data)
    assert parsec_cli.list_workspaces(device)[0]["name"] == "docs"

    # Its page shows one active user and a non-zero data size.
    browser.get(organization_page)
    wait_for(browser, ".field-users_column")
    assert field_text(browser, "users_column") == "1 / ∞"
    assert field_text(browser, "bootstrap_url") == "Already bootstrapped"
    data_size = int(browser.find_element(By.CSS_SELECTOR, ".field-data_size_column .readonly span")
                    .get_attribute("title"))
    assert data_size >= len(data)
    assert int(browser.find_element(By.CSS_SELECTOR, ".field-metadata_size_column .readonly span")
               .get_attribute("title")) > 0
    # The user's own realm (its user manifest) and the workspace's.
    assert field_text(browser, "realm_count_column") == "2"
    assert EMAIL in browser.find_element(By.ID, "organization-users").text
    screenshot("organization-after-sync")

    # The list shows the same figures.
    browser.get(f"{base}/admin/organizations/organization/?q={organization_id}")
    row = wait_for(browser, "#result_list tbody tr")
    assert row.find_element(By.CSS_SELECTOR, ".field-users_column").text == "1 / ∞"
    assert row.find_element(By.CSS_SELECTOR, ".field-device_count_column").text == "1"
    screenshot("organization-list")

    # Freeze the user: the client is refused.
    browser.get(f"{base}/admin/organizations/user/?q={EMAIL}")
    wait_for(browser, "#result_list input.action-select").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("freeze_users")
    browser.find_element(By.NAME, "index").click()
    assert "frozen" in wait_for(browser, ".messagelist li").text
    screenshot("user-frozen")
    refused = parsec_cli.fails(parsec_cli.list_workspaces, device)
    assert refused.returncode != 0

    # Server statistics: the organization's figures, the chart, and the CSV.
    browser.get(f"{base}/admin/stats/")
    table = wait_for(browser, "#stats-organizations")
    assert organization_id in table.text
    assert browser.find_elements(By.CSS_SELECTOR, "#usage-chart svg polyline.series-data_size")
    screenshot("statistics")
    csv_text = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(document.getElementById('csv-download').href).then(r => r.text()).then(done);"
    )
    rows = {row[0]: row for row in csv.reader(io.StringIO(csv_text))}
    assert rows["organization_id"][1] == "data_size"
    assert int(rows[organization_id][1]) == data_size and rows[organization_id][4] == "1"

    # The audit trail lists what the operator did.
    browser.get(f"{base}/admin/organizations/auditentry/?q={organization_id}")
    trail = wait_for(browser, "#result_list").text
    assert "Organization created" in trail and "User frozen" in trail and f"console: {OPERATOR}" in trail
    screenshot("audit-trail")

    # Erase the organization: the confirmation page wants its id typed back; then its blocks are gone.
    assert stored_blocks(console_server.db_url, organization_id) > 0
    browser.get(f"{base}/admin/organizations/organization/?q={organization_id}")
    wait_for(browser, "#result_list input.action-select").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("erase_organization_action")
    browser.find_element(By.NAME, "index").click()
    wait_for(browser, "#id_confirmation").send_keys(organization_id)
    screenshot("erase-confirmation")
    browser.find_element(By.CSS_SELECTOR, "input.deletelink").click()
    assert f"Organization {organization_id} erased" in wait_for(browser, ".messagelist .success").text
    screenshot("organization-erased")
    assert stored_blocks(console_server.db_url, organization_id) == 0
    browser.get(f"{base}/admin/organizations/organization/?q={organization_id}")
    assert not browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    browser.get(f"{base}/admin/organizations/auditentry/?q={organization_id}")
    assert "Organization erased" in wait_for(browser, "#result_list").text
    with capsys.disabled():
        print(f"\nbrowser screenshots: {screenshot.folder}")


def stored_blocks(db_url: str, organization_id: str) -> int:
    """Blocks of the organization in the POSTGRESQL blockstore, read straight from its table."""
    import psycopg

    from blocks.models import BlockData

    with psycopg.connect(db_url) as connection:
        row = connection.execute(
            f"SELECT count(*) FROM {BlockData._meta.db_table} WHERE organization_id = %s", (organization_id,)
        ).fetchone()
    return row[0]


# --- Through nginx, TLS terminated there ---------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def nginx_config(folder: Path, *, upstream_port: int, http_port: int, https_port: int) -> Path:
    """deploy/nginx.conf itself, on test ports and certificates."""
    conf = (REPO_ROOT / "deploy" / "nginx.conf").read_text()
    conf = conf.replace("server 127.0.0.1:6777;", f"server 127.0.0.1:{upstream_port};")
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{http_port};").replace("listen [::]:80;", "")
    conf = conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;").replace("listen [::]:443 ssl;", "")
    conf = conf.replace("/etc/nginx/tls/", f"{folder}/")
    (folder / "parsec.conf").write_text(conf)
    main = folder / "nginx.conf"
    main.write_text(
        f"pid {folder}/nginx.pid; error_log {folder}/error.log; daemon off; events {{}}\n"
        f"http {{ access_log {folder}/access.log; client_body_temp_path {folder}/body; "
        f"proxy_temp_path {folder}/proxy; include {folder}/parsec.conf; }}\n"
    )
    return main


@pytest.fixture
def nginx_tls_front(console_database: str, tmp_path: Path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is needed (scripts/setup.sh --tests installs it)"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost", "-keyout", "parsec-server.key", "-out", "parsec-server.crt",
             cwd=tmp_path)
    upstream_port, http_port, https_port = free_port(), free_port(), free_port()
    # As deploy/nginx.conf says: plain HTTP behind it, the header, and the public address (nginx's port).
    server = start_console_server(
        console_database, tmp_path / "server.log", upstream_port,
        "--forward-proto-enforce-https", "X-Forwarded-Proto:https",
        backend_addr=f"parsec://localhost:{https_port}",
    )
    conf = nginx_config(tmp_path, upstream_port=upstream_port, http_port=http_port, https_port=https_port)
    proxy = subprocess.Popen([nginx, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_listening(https_port, proxy, tmp_path / "error.log", 15)
        yield f"https://localhost:{https_port}", f"http://localhost:{http_port}"
    finally:
        proxy.terminate()
        proxy.wait(10)
        stop_process(server.process)


def test_login_through_nginx_with_tls_terminated_there(nginx_tls_front, browser, screenshot, capsys) -> None:
    https_url, http_url = nginx_tls_front
    # Plain HTTP through the proxy is sent to https:// by the server (to the default port: the example's
    # `Host $host` carries no port, and production listens on 80 and 443).
    plain = http.client.HTTPConnection("127.0.0.1", int(http_url.rsplit(":", 1)[1]), timeout=10)
    plain.request("GET", "/admin/login/", headers={"Host": "localhost"})
    answer = plain.getresponse()
    assert (answer.status, answer.getheader("Location")) == (301, "https://localhost/admin/login/")
    browser.get(f"{https_url}/admin/login/")
    assert_stylesheet_applied(browser)
    screenshot("nginx-login-page")
    # The POST's Origin is https://localhost:<port> while nginx passes `Host: localhost`: it passes the
    # CSRF check only because Django knows the request is HTTPS and trusts --backend-addr's origin.
    log_in(browser, https_url)
    screenshot("nginx-logged-in")
    browser.get(f"{https_url}/admin/stats/")
    wait_for(browser, "#stats-totals")
    screenshot("nginx-statistics")
    with capsys.disabled():
        print(f"\nbrowser screenshots: {screenshot.folder}")


# --- Over the server's own TLS, and on its own port -------------------------------------------------------------------


@pytest.fixture
def tls_server(console_database: str, tmp_path: Path):
    """Our server serving HTTPS itself (`--ssl-*`), the console on its own port (`--admin-port`), TLS too."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost", "-keyout", "server.key", "-out", "server.crt", cwd=tmp_path)
    port, admin_port = free_port(), free_port()
    server = start_console_server(
        console_database, tmp_path / "server.log", port,
        "--ssl-keyfile", str(tmp_path / "server.key"), "--ssl-certfile", str(tmp_path / "server.crt"),
        "--admin-port", str(admin_port), "--admin-host", "127.0.0.1", "--admin-prefix", "ops/console",
        backend_addr=f"parsec://localhost:{port}", tls=True,
    )
    try:
        yield f"https://localhost:{port}", f"https://localhost:{admin_port}"
    finally:
        stop_process(server.process)


def test_console_on_its_own_port_over_our_tls(tls_server, browser, screenshot, capsys) -> None:
    client_url, console_url = tls_server
    # Not on the clients' port...
    browser.get(f"{client_url}/ops/console/login/")
    assert "There is nothing at this address." in browser.page_source
    screenshot("client-port-has-no-console")
    # ...but on its own, styled, and the login passes the CSRF check over HTTPS.
    browser.get(f"{console_url}/ops/console/login/")
    assert_stylesheet_applied(browser)
    log_in(browser, console_url, prefix="ops/console")
    screenshot("own-port-logged-in")
    browser.get(f"{console_url}/ops/console/stats/")
    wait_for(browser, "#stats-totals")
    screenshot("own-port-statistics")
    with capsys.disabled():
        print(f"\nbrowser screenshots: {screenshot.folder}")
