"""`manage.py create_organization`, on the local database and against a server's administration API."""
from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import Client

from organizations.models import Organization
from tests.organizations.factories import bootstrapped_organization
from tests.pgcluster import free_port

URL_RE = r"parsec://{netloc}/{org}\?no_ssl=true&action=bootstrap_organization&token=(?P<token>[0-9a-f]{{64}})"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("create_organization", *args, stdout=out)
    return out.getvalue()


def bootstrap_token_in(output: str, organization_id: str, netloc: str) -> str:
    match = re.search(URL_RE.format(netloc=re.escape(netloc), org=organization_id), output)
    assert match, output
    return match["token"]


# --- local mode -------------------------------------------------------------------------------------------------


def test_local_ok(db):
    output = run("NewOrg")
    assert "Organization NewOrg created" in output
    token = bootstrap_token_in(output, "NewOrg", "parsec.example.com:6777")
    organization = Organization.objects.get(organization_id="NewOrg")
    assert organization.bootstrap_token == token
    assert organization.active_users_limit is None
    assert organization.user_profile_outsider_allowed is True


def test_local_settings(db):
    run("NewOrg", "--active-users-limit", "3", "--no-outsiders")
    organization = Organization.objects.get(organization_id="NewOrg")
    assert organization.active_users_limit == 3
    assert organization.user_profile_outsider_allowed is False


def test_local_creation_is_audited(db):
    from organizations.models import AuditEntry

    run("NewOrg", "--active-users-limit", "3")
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.action, entry.organization_id, entry.details) == (
        "manage.py create_organization", "organization_created", "NewOrg", {"active_users_limit": 3})


def test_local_recreate_not_bootstrapped(db):
    first = bootstrap_token_in(run("NewOrg"), "NewOrg", "parsec.example.com:6777")
    second = bootstrap_token_in(run("NewOrg"), "NewOrg", "parsec.example.com:6777")
    assert first != second
    assert Organization.objects.get(organization_id="NewOrg").bootstrap_token == second


def test_local_already_bootstrapped(db):
    bootstrapped_organization("CoolOrg")
    with pytest.raises(CommandError, match="already bootstrapped"):
        run("CoolOrg")


def test_local_without_backend_addr(db, parsec_settings):
    parsec_settings(backend_addr=None)
    with pytest.raises(CommandError, match=r"--backend-addr .*PARSEC_BACKEND_ADDR"):
        run("NewOrg")
    assert not Organization.objects.exists()


def test_local_backend_addr_option(db, parsec_settings):
    parsec_settings(backend_addr=None)
    output = run("NewOrg", "--backend-addr", "parsec://parsec.example.org")
    assert re.search(r"parsec://parsec\.example\.org/NewOrg\?action=bootstrap_organization&token=[0-9a-f]{64}", output)
    with pytest.raises(CommandError, match="Invalid --backend-addr"):
        run("NewOrg", "--backend-addr", "https://parsec.example.org")


def test_invalid_organization_id(db):
    with pytest.raises(CommandError, match="Invalid organization name"):
        run("not valid!")


def test_local_rejects_administration_token(db):
    with pytest.raises(CommandError, match="--addr"):
        run("NewOrg", "--administration-token", "test-admin-token")


# --- remote mode -------------------------------------------------------------------------------------------------


class _ProxyToDjango(BaseHTTPRequestHandler):
    """Hands each request to the Django test client: a real HTTP hop in front of the real views."""

    requests: list[dict] = []

    def do_POST(self) -> None:  # http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        headers = {"Authorization": self.headers["Authorization"]} if "Authorization" in self.headers else {}
        try:
            response = Client().generic(
                "POST", self.path, data=body, content_type=self.headers.get("Content-Type", ""), headers=headers
            )
        finally:
            connections.close_all()
        self.send_response(response.status_code)
        self.send_header("Content-Type", response["Content-Type"])
        self.send_header("Content-Length", str(len(response.content)))
        self.end_headers()
        self.wfile.write(response.content)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def remote_server(transactional_db) -> Iterator[str]:
    """`parsec://127.0.0.1:<port>?no_ssl=true` of a stdlib HTTP server proxying to the Django views."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyToDjango)
    _ProxyToDjango.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"parsec://127.0.0.1:{server.server_address[1]}?no_ssl=true"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_remote_ok(remote_server):
    port = remote_server.split(":")[2].split("?")[0]
    output = run(
        "RemoteOrg", "--addr", remote_server, "--administration-token", "test-admin-token", "--active-users-limit", "5"
    )
    token = bootstrap_token_in(output, "RemoteOrg", f"127.0.0.1:{port}")
    organization = Organization.objects.get(organization_id="RemoteOrg")
    assert organization.bootstrap_token == token
    assert organization.active_users_limit == 5
    [request] = _ProxyToDjango.requests
    assert request["path"] == "/administration/organizations"
    assert request["headers"]["Authorization"] == "Bearer test-admin-token"


def test_remote_wrong_token(remote_server):
    with pytest.raises(CommandError, match="Wrong administration token"):
        run("RemoteOrg", "--addr", remote_server, "--administration-token", "wrong")
    assert not Organization.objects.exists()


def test_remote_already_bootstrapped(remote_server):
    bootstrapped_organization("CoolOrg")
    with pytest.raises(CommandError, match="already bootstrapped"):
        run("CoolOrg", "--addr", remote_server, "--administration-token", "test-admin-token")


def test_remote_needs_token(remote_server):
    with pytest.raises(CommandError, match="--administration-token"):
        run("RemoteOrg", "--addr", remote_server)


def test_remote_invalid_addr(db):
    with pytest.raises(CommandError, match="Invalid --addr"):
        run("RemoteOrg", "--addr", "http://127.0.0.1:1", "--administration-token", "t")


def test_remote_unreachable(db):
    port = free_port()  # nothing listens there
    with pytest.raises(CommandError, match="Cannot reach server"):
        run("RemoteOrg", "--addr", f"parsec://127.0.0.1:{port}?no_ssl=true", "--administration-token", "t")
