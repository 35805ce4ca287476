"""GET /administration/organizations/<org>/stats and GET /administration/stats (docs/protocol.md#admin-stats)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from django.utils import timezone as dj_timezone

from blocks.models import Block
from organizations.models import Device, Organization
from realms.models import Realm, VlobAtom
from tests.organizations.factories import add_user

CSV_HEADER = (
    "organization_id,data_size,metadata_size,realms,active_users,admin_users_active,admin_users_revoked,"
    "standard_users_active,standard_users_revoked,outsider_users_active,outsider_users_revoked"
)
T0 = datetime(2020, 1, 1, tzinfo=timezone.utc)


def detail(admin=(0, 0), standard=(0, 0), outsider=(0, 0)) -> list[dict]:
    return [
        {"profile": "ADMIN", "active": admin[0], "revoked": admin[1]},
        {"profile": "STANDARD", "active": standard[0], "revoked": standard[1]},
        {"profile": "OUTSIDER", "active": outsider[0], "revoked": outsider[1]},
    ]


@pytest.fixture
def populated(coolorg):
    """CoolOrg: alice (ADMIN), bob (STANDARD), a revoked STANDARD, an outsider, a legacy non-human user."""
    add_user(coolorg, "bob")
    add_user(coolorg, "mallory", revoked_on=dj_timezone.now())
    add_user(coolorg, "olivia", profile="OUTSIDER")
    add_user(coolorg, "legacy", email=None)
    return coolorg


def test_organization_stats_ok(api, populated):
    response = api.get("/administration/organizations/CoolOrg/stats")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "active_users": 4,
        "data_size": 0,
        "metadata_size": 0,
        "realms": 0,
        "users": 5,
        "users_per_profile_detail": detail(admin=(1, 0), standard=(2, 1), outsider=(1, 0)),
    }


def test_organization_stats_not_bootstrapped(api):
    api.post("/administration/organizations", {"organization_id": "NewOrg"})
    response = api.get("/administration/organizations/NewOrg/stats")
    assert response.status_code == 200
    assert response.json()["users"] == 0
    assert response.json()["users_per_profile_detail"] == detail()


def test_organization_stats_not_found(api):
    for organization_id in ("Unknown", "not%20valid!"):
        response = api.get(f"/administration/organizations/{organization_id}/stats")
        assert response.status_code == 404
        assert response.json() == {"error": "not_found"}


def test_organization_stats_not_allowed(api, coolorg):
    response = api.get("/administration/organizations/CoolOrg/stats", headers={"Authorization": "Bearer x"})
    assert response.status_code == 403
    assert response.json() == {"error": "not_allowed"}
    assert api.get("/administration/organizations/Unknown/stats", headers={}).status_code == 403


def test_organization_stats_method_not_allowed(api, coolorg):
    assert api.post("/administration/organizations/CoolOrg/stats", {}).status_code == 405


def test_server_stats_json(api, populated):
    api.post("/administration/organizations", {"organization_id": "AnotherOrg"})
    response = api.get("/administration/stats?format=json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "stats": [
            {
                "organization_id": "AnotherOrg",
                "data_size": 0,
                "metadata_size": 0,
                "realms": 0,
                "active_users": 0,
                "users_per_profile_detail": detail(),
            },
            {
                "organization_id": "CoolOrg",
                "data_size": 0,
                "metadata_size": 0,
                "realms": 0,
                "active_users": 4,
                "users_per_profile_detail": detail(admin=(1, 0), standard=(2, 1), outsider=(1, 0)),
            },
        ]
    }


def test_server_stats_csv(api, populated):
    api.post("/administration/organizations", {"organization_id": "AnotherOrg"})
    response = api.get("/administration/stats?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response.content.decode() == (
        f"{CSV_HEADER}\r\n" "AnotherOrg,0,0,0,0,0,0,0,0,0,0\r\n" "CoolOrg,0,0,0,4,1,0,2,1,1,0\r\n"
    )


def test_server_stats_csv_empty(api):
    response = api.get("/administration/stats?format=csv")
    assert response.content.decode() == f"{CSV_HEADER}\r\n"


def test_server_stats_at(api):
    Organization.objects.create(organization_id="OldOrg", bootstrap_token="", created_on=T0)
    Organization.objects.create(organization_id="YoungOrg", bootstrap_token="", created_on=T0 + timedelta(days=10))
    old = Organization.objects.get(organization_id="OldOrg")
    add_user(old, "early", profile="ADMIN", created_on=T0 + timedelta(days=1))
    add_user(old, "revoked_early", created_on=T0 + timedelta(days=1), revoked_on=T0 + timedelta(days=2))
    add_user(old, "revoked_late", created_on=T0 + timedelta(days=1), revoked_on=T0 + timedelta(days=20))
    add_user(old, "late", profile="OUTSIDER", created_on=T0 + timedelta(days=15))

    def stats_at(at: str) -> dict:
        response = api.get(f"/administration/stats?format=json&at={at}")
        assert response.status_code == 200, response.content
        return {item["organization_id"]: item for item in response.json()["stats"]}

    before_all = stats_at("2019-12-31T00:00:00Z")
    assert before_all == {}

    day5 = stats_at("2020-01-05T00:00:00%2B00:00")  # `+` percent-encoded, as in a real query string
    assert list(day5) == ["OldOrg"]
    assert day5["OldOrg"]["active_users"] == 2
    assert day5["OldOrg"]["users_per_profile_detail"] == detail(admin=(1, 0), standard=(1, 1))

    day30 = stats_at("2020-01-31T12:00:00.123456Z")
    assert list(day30) == ["OldOrg", "YoungOrg"]
    assert day30["OldOrg"]["active_users"] == 2
    assert day30["OldOrg"]["users_per_profile_detail"] == detail(admin=(1, 0), standard=(0, 2), outsider=(1, 0))

    # Exactly at a creation date: included.
    assert list(stats_at("2020-01-11T00:00:00Z")) == ["OldOrg", "YoungOrg"]


@pytest.mark.parametrize("query", ["", "?format=xml", "?format=", "?at=2020-01-01T00:00:00Z"])
def test_server_stats_bad_format(api, query):
    response = api.get(f"/administration/stats{query}")
    assert response.status_code == 400
    assert response.json() == {
        "error": "bad_data",
        "reason": "Missing/invalid mandatory query argument `format` (expected `csv` or `json`)",
    }


@pytest.mark.parametrize("at", ["yesterday", "2020-01-01", "2020-01-01T00:00:00", "2020-13-01T00:00:00Z"])
def test_server_stats_bad_at(api, at):
    response = api.get(f"/administration/stats?format=json&at={at}")
    assert response.status_code == 400
    assert response.json() == {"error": "bad_data", "reason": "Invalid `at` query argument (expected RFC3339 datetime)"}


def test_server_stats_not_allowed(api):
    response = api.get("/administration/stats?format=json", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 403
    assert response.json() == {"error": "not_allowed"}
    # Before the query checks too.
    assert api.get("/administration/stats", headers={}).status_code == 403


def test_server_stats_method_not_allowed(api):
    assert api.post("/administration/stats?format=json", {}).status_code == 405


def test_stats_include_realm_data(api, coolorg):
    """Realms, vlob versions and blocks (rows written directly) count, as of `at` for the server stats."""
    author = Device.objects.get(organization=coolorg, device_id="alice@dev1")
    realm = Realm.objects.create(organization=coolorg, realm_id=uuid.uuid4(), created_on=T0)
    for version, (size, day) in enumerate([(100, 1), (50, 20)], start=1):
        VlobAtom.objects.create(
            organization=coolorg,
            realm=realm,
            vlob_id=realm.realm_id,
            version=version,
            encryption_revision=1,
            blob=b"x" * size,
            size=size,
            author=author,
            created_on=T0 + timedelta(days=day),
        )
    Block.objects.create(
        organization=coolorg,
        block_id=uuid.uuid4(),
        realm=realm,
        author=author,
        size=7,
        created_on=T0 + timedelta(days=1),
    )
    Organization.objects.filter(pk=coolorg.pk).update(created_on=T0)

    stats = api.get("/administration/organizations/CoolOrg/stats").json()
    assert (stats["realms"], stats["metadata_size"], stats["data_size"]) == (1, 150, 7)

    [at_day5] = api.get("/administration/stats?format=json&at=2020-01-05T00:00:00Z").json()["stats"]
    assert (at_day5["realms"], at_day5["metadata_size"], at_day5["data_size"]) == (1, 100, 7)
    csv_rows = api.get("/administration/stats?format=csv&at=2020-01-05T00:00:00Z").content.decode().split("\r\n")
    assert csv_rows[1] == "CoolOrg,7,100,1,0,0,0,0,0,0,0"  # alice was created after day 5
