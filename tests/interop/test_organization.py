"""Organization lifecycle driven by the official `parsec core` 2.17.0 CLI.

Routes hit: create/status/stats/list_users -> /administration/... (JSON, bearer
token); bootstrap_organization -> POST /anonymous/<org> (msgpack
`organization_bootstrap`); list_workspaces/create_workspace/human_find -> GET /ws
(authenticated WebSocket handshake + commands).
"""

from __future__ import annotations

import re

import pytest

from .refclient import ParsecCli

pytestmark = pytest.mark.interop

EMAIL = "alice@example.com"
LABEL = "Alice Liddell"
DEVICE_LABEL = "laptop"
PASSWORD = "P@ssw0rd-interop"


def _create_and_bootstrap(cli: ParsecCli, server, org_id: str):
    url = cli.create_organization(server.addr, org_id, server.admin_token)
    device = cli.bootstrap_organization(url, EMAIL, LABEL, DEVICE_LABEL, PASSWORD)
    return url, device


def test_create_organization_prints_bootstrap_url(parsec_cli: ParsecCli, server, org_id: str):
    url = parsec_cli.create_organization(server.addr, org_id, server.admin_token)

    m = re.fullmatch(
        rf"parsec://{re.escape(server.host)}:{server.port}/{org_id}"
        r"\?no_ssl=true&action=bootstrap_organization&token=([0-9a-f]{64})",
        url,
    )
    assert m, url

    status = parsec_cli.status_organization(server.addr, org_id, server.admin_token)
    assert status == {
        "active_users_limit": None,
        "is_bootstrapped": False,
        "is_expired": False,
        "minimum_archiving_period": 2592000,
        "user_profile_outsider_allowed": True,
    }


def test_bootstrap_organization(parsec_cli: ParsecCli, server, org_id: str):
    url = parsec_cli.create_organization(server.addr, org_id, server.admin_token)
    device = parsec_cli.bootstrap_organization(url, EMAIL, LABEL, DEVICE_LABEL, PASSWORD)

    assert re.fullmatch(r"[0-9a-f]{64}", device.slughash)
    key_files = list((parsec_cli.config_dir / "devices").glob("*.keys"))
    assert [p.stem for p in key_files] == [device.slughash]

    # `list_devices` is purely local: it reads the saved key file.
    devices = parsec_cli.list_devices()
    assert len(devices) == 1
    assert devices[0]["organization_id"] == org_id
    assert devices[0]["user"] == f"{LABEL} <{EMAIL}>"
    assert devices[0]["device"] == DEVICE_LABEL
    assert device.slughash.startswith(devices[0]["slughash_prefix"])

    status = parsec_cli.status_organization(server.addr, org_id, server.admin_token)
    assert status["is_bootstrapped"] is True

    if server.db_url:  # our server: the bootstrap is recorded as the protocol says
        import psycopg

        with psycopg.connect(server.db_url) as conn:
            org = conn.execute(
                "SELECT id, root_verify_key IS NOT NULL, bootstrapped_on IS NOT NULL"
                " FROM organizations_organization WHERE organization_id = %s", (org_id,)
            ).fetchone()
            assert org[1:] == (True, True)
            users = conn.execute(
                "SELECT profile, human_email, human_label, user_certifier_id FROM organizations_user"
                " WHERE organization_id = %s", (org[0],)
            ).fetchall()
            assert users == [("ADMIN", EMAIL, LABEL, None)]
            devices = conn.execute(
                "SELECT device_label, device_certifier_id FROM organizations_device WHERE organization_id = %s",
                (org[0],),
            ).fetchall()
            assert devices == [(DEVICE_LABEL, None)]


def test_logged_in_commands(parsec_cli: ParsecCli, server, org_id: str):
    _, device = _create_and_bootstrap(parsec_cli, server, org_id)

    # administration API
    stats = parsec_cli.stats_organization(server.addr, org_id, server.admin_token)
    assert stats["users"] == 1
    assert stats["active_users"] == 1
    assert stats["realms"] == 0
    per_profile = {d["profile"]: (d["active"], d["revoked"]) for d in stats["users_per_profile_detail"]}
    assert per_profile == {"ADMIN": (1, 0), "STANDARD": (0, 0), "OUTSIDER": (0, 0)}

    users = parsec_cli.list_users(server.addr, org_id, server.admin_token)
    assert [(u["user_name"], u["user_email"], u["frozen"]) for u in users] == [(LABEL, EMAIL, False)]

    # authenticated WebSocket session (device key file decrypted with the password)
    assert parsec_cli.list_workspaces(device) == []
    found = parsec_cli.human_find("alice", device=device)
    assert [(f["human"], f["revoked"]) for f in found] == [(f"{LABEL} <{EMAIL}>", False)]
    assert found[0]["user_id"] == users[0]["user_id"]

    parsec_cli.create_workspace("Documents", device=device)
    workspaces = parsec_cli.list_workspaces(device)
    assert len(workspaces) == 1
    ws = workspaces[0]
    assert ws["name"] == "Documents"
    assert ws["current_role"] == "OWNER"
    assert ws["status"] == "available"
    assert re.fullmatch(r"[0-9a-f]{32}", ws["internal_id"])
    assert ws["other_users"] == {}


def test_wrong_administration_token(parsec_cli: ParsecCli, server, org_id: str):
    res = parsec_cli.fails(parsec_cli.create_organization, server.addr, org_id, "not-the-token")
    assert res.returncode == 1
    assert "Error: HTTP Error 403" in res.stdout
    assert "Bootstrap organization url" not in res.stdout

    res = parsec_cli.fails(parsec_cli.status_organization, server.addr, org_id, "not-the-token")
    assert res.returncode == 1
    assert "Error: HTTP Error 403" in res.stdout

    # nothing was created
    res = parsec_cli.fails(parsec_cli.status_organization, server.addr, org_id, server.admin_token)
    assert res.returncode == 1
    assert "Error: HTTP Error 404" in res.stdout


def test_bootstrap_twice_fails(parsec_cli: ParsecCli, make_parsec_cli, server, org_id: str):
    url, _ = _create_and_bootstrap(parsec_cli, server, org_id)

    other = make_parsec_cli("second")
    res = other.fails(other.bootstrap_organization, url, "eve@example.com", "Eve", "pc", PASSWORD)
    assert res.returncode == 1
    # server answered `already_bootstrapped`
    assert "Error: InviteAlreadyUsedError()" in res.stdout
    assert other.list_devices() == []

    # recreating a bootstrapped organization is refused as well
    res = parsec_cli.fails(parsec_cli.create_organization, server.addr, org_id, server.admin_token)
    assert res.returncode == 1
    assert "Error: HTTP Error 400" in res.stdout


def test_bootstrap_with_stale_token_fails(parsec_cli: ParsecCli, server, org_id: str):
    # re-creating a not-yet-bootstrapped organization replaces its bootstrap token
    old_url = parsec_cli.create_organization(server.addr, org_id, server.admin_token)
    new_url = parsec_cli.create_organization(server.addr, org_id, server.admin_token)
    assert old_url != new_url

    res = parsec_cli.fails(parsec_cli.bootstrap_organization, old_url, EMAIL, LABEL, DEVICE_LABEL, PASSWORD)
    assert res.returncode == 1
    # server answered `not_found`
    assert "Error: InviteNotFoundError()" in res.stdout

    parsec_cli.bootstrap_organization(new_url, EMAIL, LABEL, DEVICE_LABEL, PASSWORD)
