"""GET /administration/organizations/<org>/users (docs/protocol.md#admin-users)."""
from __future__ import annotations

from django.utils import timezone

from tests.organizations.factories import add_user


def test_ok(api, coolorg):
    add_user(coolorg, "bob", frozen=True)
    add_user(coolorg, "mallory", label="Mallory M.", revoked_on=timezone.now())
    add_user(coolorg, "legacy", email=None)
    response = api.get("/administration/organizations/CoolOrg/users")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "users": [
            {"user_id": "alice", "user_email": "alice@example.com", "user_name": "Alice", "frozen": False},
            {"user_id": "bob", "user_email": "bob@example.com", "user_name": "Bob", "frozen": True},
            {"user_id": "mallory", "user_email": "mallory@example.com", "user_name": "Mallory M.", "frozen": False},
        ]
    }


def test_not_bootstrapped_is_empty(api):
    api.post("/administration/organizations", {"organization_id": "NewOrg"})
    assert api.get("/administration/organizations/NewOrg/users").json() == {"users": []}


def test_not_found(api):
    for organization_id in ("Unknown", "not%20valid!"):
        response = api.get(f"/administration/organizations/{organization_id}/users")
        assert response.status_code == 404
        assert response.json() == {"error": "not_found"}


def test_not_allowed(api, coolorg):
    response = api.get("/administration/organizations/CoolOrg/users", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 403
    assert response.json() == {"error": "not_allowed"}
    assert api.get("/administration/organizations/Unknown/users", headers={}).status_code == 403


def test_method_not_allowed(api, coolorg):
    assert api.post("/administration/organizations/CoolOrg/users", {}).status_code == 405
