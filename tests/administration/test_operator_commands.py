"""The operator commands: `organization_stats`, `server_stats`, `list_users`, `freeze_user`, `expire_organization`.

They print what the administration API answers (the same services): each test compares with the API where
there is a document, then checks the text output, the exit status and the messages for bad input.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone as dj_timezone

from blocks.models import Block
from organizations.models import Device, Organization, User
from realms.models import Realm, VlobAtom
from tests.organizations.factories import add_user

T0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
MANAGE_PY = Path(__file__).resolve().parents[2] / "manage.py"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def fails(*args: str, match: str) -> CommandError:
    with pytest.raises(CommandError, match=match) as raised:
        run(*args)
    assert raised.value.returncode == 1
    return raised.value


@pytest.fixture
def populated(coolorg):
    """CoolOrg: alice (ADMIN), bob, a revoked user, an outsider, a legacy user without e-mail; a realm, a vlob,
    a block (rows written directly: only the figures matter here)."""
    add_user(coolorg, "bob", label="Bob")
    add_user(coolorg, "mallory", revoked_on=dj_timezone.now())
    add_user(coolorg, "olivia", profile="OUTSIDER")
    add_user(coolorg, "legacy", email=None)
    alice_device = Device.objects.get(organization=coolorg, device_id="alice@dev1")
    realm = Realm.objects.create(organization=coolorg, realm_id=uuid.uuid4(), created_on=T0)
    VlobAtom.objects.create(
        organization=coolorg, realm=realm, vlob_id=uuid.uuid4(), version=1, encryption_revision=1, blob=b"x" * 7,
        size=7, author=alice_device, created_on=T0,
    )
    Block.objects.create(
        organization=coolorg, realm=realm, block_id=uuid.uuid4(), author=alice_device, size=1000, created_on=T0
    )
    return coolorg


# --- organization_stats ------------------------------------------------------------------------------------


def test_organization_stats_json_is_the_api_document(api, populated) -> None:
    assert json.loads(run("organization_stats", "CoolOrg", "--format", "json")) == (
        api.get("/administration/organizations/CoolOrg/stats").json()
    )


def test_organization_stats_text(populated) -> None:
    assert run("organization_stats", "CoolOrg").splitlines() == [
        "Organization CoolOrg",
        "  users: 5 (4 active)",
        "    ADMIN: 1 active, 0 revoked",
        "    STANDARD: 2 active, 1 revoked",
        "    OUTSIDER: 1 active, 0 revoked",
        "  realms: 1",
        "  data size: 1000 bytes",
        "  metadata size: 7 bytes",
    ]


@pytest.mark.parametrize("organization_id", ["Unknown", "not valid!"])
def test_organization_stats_unknown_organization(db, organization_id: str) -> None:
    fails("organization_stats", organization_id, match=f"Unknown organization `{organization_id}`")


def test_organization_stats_bad_format(db) -> None:
    fails("organization_stats", "CoolOrg", "--format", "xml", match="invalid choice: 'xml'")


# --- server_stats ------------------------------------------------------------------------------------------


def test_server_stats_csv_is_the_api_document(api, populated) -> None:
    Organization.objects.create(organization_id="EmptyOrg", bootstrap_token="", created_on=dj_timezone.now())
    out = run("server_stats")
    assert out == api.get("/administration/stats?format=csv").content.decode()
    assert out.splitlines()[1] == "CoolOrg,1000,7,1,4,1,0,2,1,1,0"
    assert out.splitlines()[2] == "EmptyOrg,0,0,0,0,0,0,0,0,0,0"
    assert json.loads(run("server_stats", "--format", "json")) == api.get("/administration/stats?format=json").json()


def test_server_stats_at(api, db) -> None:
    Organization.objects.create(organization_id="OldOrg", bootstrap_token="", created_on=T0)
    Organization.objects.create(organization_id="YoungOrg", bootstrap_token="", created_on=T0 + timedelta(days=10))
    old = Organization.objects.get(organization_id="OldOrg")
    add_user(old, "early", profile="ADMIN", created_on=T0 + timedelta(days=1))
    add_user(old, "late", created_on=T0 + timedelta(days=15))

    def organizations(*args: str) -> dict[str, dict]:
        document = json.loads(run("server_stats", "--format", "json", *args))
        return {item["organization_id"]: item for item in document["stats"]}

    assert organizations("--at", "2019-12-31") == {}
    day5 = organizations("--at", "2020-01-05")  # a bare date: 00:00 UTC
    assert list(day5) == ["OldOrg"] and day5["OldOrg"]["active_users"] == 1
    day30 = organizations("--at", "2020-01-31T12:00:00+01:00")
    assert list(day30) == ["OldOrg", "YoungOrg"] and day30["OldOrg"]["active_users"] == 2
    assert day30 == {
        item["organization_id"]: item
        for item in api.get("/administration/stats?format=json&at=2020-01-31T12:00:00%2B01:00").json()["stats"]
    }
    assert list(organizations("--at", "2020-01-11T00:00:00Z")) == ["OldOrg", "YoungOrg"]


@pytest.mark.parametrize("value", ["yesterday", "2020-13-01", "2020-01-31T12:00:00", "31/01/2020", ""])
def test_server_stats_bad_date(db, value: str) -> None:
    fails("server_stats", "--at", value, match=f"Invalid date `{value}` for --at: expected YYYY-MM-DD or an RFC 3339")


def test_server_stats_bad_format(db) -> None:
    fails("server_stats", "--format", "xml", match="invalid choice: 'xml' \\(choose from 'csv', 'json'\\)")


# --- list_users --------------------------------------------------------------------------------------------


def test_list_users_json_is_the_api_document(api, populated) -> None:
    assert json.loads(run("list_users", "CoolOrg", "--format", "json")) == (
        api.get("/administration/organizations/CoolOrg/users").json()
    )


def test_list_users_text(populated) -> None:
    User.objects.filter(user_id="bob").update(frozen=True)
    lines = run("list_users", "CoolOrg").splitlines()
    assert lines[0].split() == ["USER", "ID", "E-MAIL", "NAME", "FROZEN"]
    assert [line.split() for line in lines[1:-1]] == [
        ["alice", "alice@example.com", "Alice", "no"],
        ["bob", "bob@example.com", "Bob", "yes"],
        ["mallory", "mallory@example.com", "Mallory", "no"],
        ["olivia", "olivia@example.com", "Olivia", "no"],
    ]
    assert lines[-1] == "4 user(s)"
    # Columns are aligned.
    assert lines[1].index("alice@") == lines[2].index("bob@") == lines[0].index("E-MAIL")


def test_list_users_unknown_organization(db) -> None:
    fails("list_users", "Unknown", match="Unknown organization `Unknown`")


# --- freeze_user -------------------------------------------------------------------------------------------


def test_freeze_then_unfreeze_by_id_and_by_email(populated) -> None:
    out = run("freeze_user", "CoolOrg", "bob", "--freeze")
    assert out.strip() == "User bob (Bob <bob@example.com>) is frozen."
    assert User.objects.get(user_id="bob").frozen
    out = run("freeze_user", "CoolOrg", "bob@example.com", "--unfreeze")
    assert out.strip() == "User bob (Bob <bob@example.com>) is unfrozen."
    assert not User.objects.get(user_id="bob").frozen


@pytest.mark.parametrize("user", ["nobody", "nobody@example.com", "mallory", "legacy"])
def test_freeze_user_not_found(populated, user: str) -> None:
    # Unknown, revoked, and without e-mail: the API's `user_not_found`.
    fails("freeze_user", "CoolOrg", user, "--freeze", match=f"No user `{user}` in organization CoolOrg")
    assert not User.objects.filter(frozen=True).exists()


def test_freeze_user_unknown_organization(db) -> None:
    fails("freeze_user", "Unknown", "bob", "--freeze", match="Unknown organization `Unknown`")


def test_freeze_user_needs_freeze_or_unfreeze(populated) -> None:
    fails("freeze_user", "CoolOrg", "bob", match="one of the arguments --freeze --unfreeze is required")
    fails("freeze_user", "CoolOrg", "bob", "--freeze", "--unfreeze", match="not allowed with argument")


# --- expire_organization -----------------------------------------------------------------------------------


def test_expire_organization(api, populated) -> None:
    out = run("expire_organization", "CoolOrg")
    organization = Organization.objects.get(organization_id="CoolOrg")
    assert organization.is_expired
    assert out.strip() == f"Organization CoolOrg expired on {organization.expired_on:%Y-%m-%d %H:%M:%S %Z}."
    assert api.get("/administration/organizations/CoolOrg").json()["is_expired"] is True
    # Again: nothing changes, the first expiry date stays.
    assert run("expire_organization", "CoolOrg").strip().startswith("Organization CoolOrg is already expired (since")
    assert Organization.objects.get(organization_id="CoolOrg").expired_on == organization.expired_on


def test_expire_organization_unknown(db) -> None:
    fails("expire_organization", "Unknown", match="Unknown organization `Unknown`")


# --- As an operator runs them: a process, its exit status, stderr ------------------------------------------


def test_exit_status_and_messages_of_a_real_process(tmp_path: Path) -> None:
    from tests.config.test_run_command import clean_environment

    environment = clean_environment(PARSEC_DB=f"sqlite:///{tmp_path / 'parsec.sqlite3'}", PARSEC_DATA_DIR=str(tmp_path))

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(MANAGE_PY), *args], cwd=tmp_path, env=environment, capture_output=True, text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )

    assert manage("migrate", "-v", "0").returncode == 0
    created = manage("create_organization", "CliOrg", "--backend-addr", "parsec://localhost:6777?no_ssl=true")
    assert created.returncode == 0, created.stderr

    ok = manage("server_stats")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[1] == "CliOrg,0,0,0,0,0,0,0,0,0,0"
    for args, message in [
        (("organization_stats", "Nobody"), "CommandError: Unknown organization `Nobody`"),
        (("list_users", "Nobody"), "CommandError: Unknown organization `Nobody`"),
        (("freeze_user", "CliOrg", "bob", "--freeze"), "CommandError: No user `bob` in organization CliOrg"),
        (("expire_organization", "Nobody"), "CommandError: Unknown organization `Nobody`"),
        (("server_stats", "--at", "tomorrow"), "CommandError: Invalid date `tomorrow` for --at"),
        (("server_stats", "--format", "xml"), "invalid choice: 'xml'"),
        (("erase_organization", "Nobody", "--yes"), "CommandError: Unknown organization `Nobody`: nothing to erase."),
    ]:
        failed = manage(*args)
        assert failed.returncode != 0, args
        assert message in failed.stderr, (args, failed.stderr)
        assert "Traceback" not in failed.stderr
    # erase without --yes and no terminal: refused, nothing erased.
    refused = manage("erase_organization", "CliOrg")
    assert refused.returncode == 1 and "Not confirmed: nothing was erased." in refused.stderr
    erased = manage("erase_organization", "CliOrg", "--yes")
    assert erased.returncode == 0, erased.stderr
    assert "Organization CliOrg erased:" in erased.stdout
    assert manage("organization_stats", "CliOrg").returncode == 1
