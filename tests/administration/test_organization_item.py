"""GET and PATCH /administration/organizations/<org> (docs/protocol.md#admin-organizations)."""
from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.test import AsyncClient

from organizations.models import Organization
from protocol.groups import organization_group
from tests.administration.conftest import AUTH
from tests.conftest import connect_as
from tests.organizations.factories import bootstrapped_organization

URL = "/administration/organizations/CoolOrg"


def test_get_ok(api, coolorg):
    response = api.get(URL)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "active_users_limit": None,
        "is_bootstrapped": True,
        "is_expired": False,
        "minimum_archiving_period": 2592000,
        "user_profile_outsider_allowed": True,
    }


def test_get_not_bootstrapped(api):
    api.post("/administration/organizations", {"organization_id": "NewOrg", "active_users_limit": 4})
    response = api.get("/administration/organizations/NewOrg")
    assert response.status_code == 200
    assert response.json()["is_bootstrapped"] is False
    assert response.json()["active_users_limit"] == 4


def test_get_not_found(api):
    response = api.get("/administration/organizations/Unknown")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found"}


def test_get_invalid_organization_id_is_not_found(api):
    response = api.get("/administration/organizations/not%20valid!")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found"}


def test_get_not_allowed_before_not_found(api):
    response = api.get("/administration/organizations/Unknown", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 403
    assert response.json() == {"error": "not_allowed"}
    assert api.get("/administration/organizations/Unknown", headers={}).status_code == 403


def test_patch_ok_updates_only_given_keys(api, coolorg):
    response = api.patch(URL, {"active_users_limit": 10, "unknown": 1})
    assert response.status_code == 200
    assert response.json() == {}
    coolorg.refresh_from_db()
    assert coolorg.active_users_limit == 10
    assert coolorg.user_profile_outsider_allowed is True

    assert api.patch(URL, {"user_profile_outsider_allowed": False, "minimum_archiving_period": 5}).status_code == 200
    coolorg.refresh_from_db()
    assert (coolorg.active_users_limit, coolorg.user_profile_outsider_allowed, coolorg.minimum_archiving_period) == (
        10,
        False,
        5,
    )

    assert api.patch(URL, {"active_users_limit": None}).status_code == 200
    coolorg.refresh_from_db()
    assert coolorg.active_users_limit is None


def test_patch_empty_body_checks_existence(api, coolorg):
    assert api.patch(URL, {}).json() == {}
    assert api.patch("/administration/organizations/Unknown", {}).status_code == 404


def test_patch_is_expired_records_and_clears_date(api, coolorg, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        assert api.patch(URL, {"is_expired": True}).status_code == 200
    assert len(callbacks) == 1  # the session-closing message
    coolorg.refresh_from_db()
    assert coolorg.is_expired is True
    assert coolorg.expired_on is not None
    assert api.get(URL).json()["is_expired"] is True

    assert api.patch(URL, {"is_expired": False}).status_code == 200
    coolorg.refresh_from_db()
    assert coolorg.is_expired is False
    assert coolorg.expired_on is None


def test_patch_bad_data(api, coolorg):
    for body in ({"is_expired": "yes"}, {"active_users_limit": -2}, {"minimum_archiving_period": 1.5}, []):
        response = api.patch(URL, body)
        assert response.status_code == 400, body
        assert response.json()["error"] == "bad_data"
    response = api.patch(URL, raw=b"nope")
    assert response.json() == {"error": "bad_data", "reason": "Invalid JSON"}


def test_patch_not_found(api):
    response = api.patch("/administration/organizations/Unknown", {"is_expired": True})
    assert response.status_code == 404
    assert response.json() == {"error": "not_found"}


def test_patch_not_allowed(api, coolorg):
    response = api.patch(URL, {"is_expired": True}, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 403
    assert response.json() == {"error": "not_allowed"}
    coolorg.refresh_from_db()
    assert coolorg.is_expired is False


def test_method_not_allowed(api, coolorg):
    assert api.post(URL, {}).status_code == 405
    assert api.request("DELETE", URL).status_code == 405


@pytest.mark.django_db(transaction=True)
async def test_patch_is_expired_sends_close_to_organization_group():
    organization, _alice = await sync_to_async(bootstrapped_organization)("CoolOrg")
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(organization_group(organization.pk), channel)

    response = await AsyncClient().patch(
        URL, data=b'{"is_expired": true}', content_type="application/json", headers=AUTH
    )
    assert response.status_code == 200
    assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "session.close"}
    await layer.group_discard(organization_group(organization.pk), channel)


@pytest.mark.django_db(transaction=True)
async def test_patch_is_expired_closes_live_session():
    _organization, alice = await sync_to_async(bootstrapped_organization)("CoolOrg")
    client = await connect_as(alice)
    response = await AsyncClient().patch(
        URL, data=b'{"is_expired": true}', content_type="application/json", headers=AUTH
    )
    assert response.status_code == 200
    await client.receive_close()
    assert await Organization.objects.filter(organization_id="CoolOrg", is_expired=True).aexists()
