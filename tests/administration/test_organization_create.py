"""POST /administration/organizations (docs/protocol.md#admin-organizations)."""
from __future__ import annotations

import re

from organizations.models import Organization
from tests.administration.conftest import AUTH

URL = "/administration/organizations"


def test_ok(api):
    response = api.post(URL, {"organization_id": "NewOrg"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    token = response.json()["bootstrap_token"]
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    organization = Organization.objects.get(organization_id="NewOrg")
    assert organization.bootstrap_token == token
    assert not organization.is_bootstrapped
    assert not organization.is_expired


def test_absent_keys_use_server_defaults(api, parsec_settings):
    parsec_settings(organization_initial_active_users_limit=7, organization_initial_user_profile_outsider_allowed=False)
    assert api.post(URL, {"organization_id": "NewOrg"}).status_code == 200
    organization = Organization.objects.get(organization_id="NewOrg")
    assert organization.active_users_limit == 7
    assert organization.user_profile_outsider_allowed is False
    assert organization.minimum_archiving_period == 2592000


def test_explicit_settings_and_null_limit(api, parsec_settings):
    parsec_settings(organization_initial_active_users_limit=7)
    response = api.post(
        URL,
        {
            "organization_id": "NewOrg",
            "active_users_limit": None,
            "user_profile_outsider_allowed": False,
            "minimum_archiving_period": 10,
            "unknown_key": "ignored",
        },
    )
    assert response.status_code == 200
    organization = Organization.objects.get(organization_id="NewOrg")
    assert organization.active_users_limit is None
    assert organization.user_profile_outsider_allowed is False
    assert organization.minimum_archiving_period == 10


def test_recreate_not_bootstrapped_replaces_token_and_settings(api):
    first = api.post(URL, {"organization_id": "NewOrg", "active_users_limit": 3}).json()["bootstrap_token"]
    second = api.post(URL, {"organization_id": "NewOrg"}).json()["bootstrap_token"]
    assert first != second
    organization = Organization.objects.get(organization_id="NewOrg")
    assert organization.bootstrap_token == second
    assert organization.active_users_limit is None


def test_already_exists(api, coolorg):
    response = api.post(URL, {"organization_id": "CoolOrg"})
    assert response.status_code == 400
    assert response.json() == {"error": "already_exists"}


def test_body_parsed_as_json_whatever_the_content_type(api):
    # The 2.17 CLI sends its JSON with the form content type.
    response = api.post(URL, {"organization_id": "NewOrg"}, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert Organization.objects.filter(organization_id="NewOrg").exists()


def test_bad_data_invalid_json(api):
    response = api.post(URL, raw=b"{not json")
    assert response.status_code == 400
    assert response.json() == {"error": "bad_data", "reason": "Invalid JSON"}


def test_bad_data_missing_organization_id(api):
    response = api.post(URL, {})
    assert response.status_code == 400
    assert response.json()["error"] == "bad_data"
    assert "organization_id" in response.json()["reason"]


def test_bad_data_invalid_organization_id(api):
    response = api.post(URL, {"organization_id": "not valid!"})
    assert response.status_code == 400
    assert response.json()["error"] == "bad_data"


def test_bad_data_invalid_fields(api):
    for body in (
        {"organization_id": "NewOrg", "active_users_limit": -1},
        {"organization_id": "NewOrg", "active_users_limit": "3"},
        {"organization_id": "NewOrg", "user_profile_outsider_allowed": None},
        {"organization_id": "NewOrg", "minimum_archiving_period": None},
        ["NewOrg"],
    ):
        response = api.post(URL, body)
        assert response.status_code == 400, body
        assert response.json()["error"] == "bad_data", body
    assert not Organization.objects.exists()


def test_not_allowed_without_token(api):
    response = api.post(URL, {"organization_id": "NewOrg"}, headers={})
    assert response.status_code == 403
    assert response.json() == {"error": "not_allowed"}
    assert not Organization.objects.exists()


def test_not_allowed_with_wrong_token(api):
    for header in ("Bearer wrong-token", "test-admin-token", "Bearer test-admin-token ", "bearer test-admin-token"):
        response = api.post(URL, {"organization_id": "NewOrg"}, headers={"Authorization": header})
        assert response.status_code == 403, header
        assert response.json() == {"error": "not_allowed"}


def test_token_checked_before_body(api):
    response = api.post(URL, raw=b"{not json", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 403


def test_header_name_is_case_insensitive(api):
    response = api.post(URL, {"organization_id": "NewOrg"}, headers={"authorization": AUTH["Authorization"]})
    assert response.status_code == 200


def test_method_not_allowed(api):
    assert api.get(URL).status_code == 405
    assert api.patch(URL, {}).status_code == 405


def test_csrf_exempt(api):
    api.client = type(api.client)(enforce_csrf_checks=True)
    assert api.post(URL, {"organization_id": "NewOrg"}).status_code == 200
