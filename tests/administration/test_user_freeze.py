"""POST /administration/organizations/<org>/users/freeze (docs/protocol.md#admin-users)."""
from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.test import AsyncClient
from django.utils import timezone

from organizations.models import User
from protocol.groups import user_group
from tests.administration.conftest import AUTH
from tests.conftest import connect_as
from tests.organizations.factories import add_user, bootstrapped_organization

URL = "/administration/organizations/CoolOrg/users/freeze"
BOTH = {"error": "bad_data", "reason": "Both `user_id` and `user_email` fields are provided"}
NEITHER = {"error": "bad_data", "reason": "Missing either `user_id` or `user_email` field"}


def test_freeze_by_user_id(api, coolorg):
    add_user(coolorg, "bob")
    response = api.post(URL, {"frozen": True, "user_id": "bob"})
    assert response.status_code == 200
    assert response.json() == {"frozen": True, "user_email": "bob@example.com", "user_id": "bob", "user_name": "Bob"}
    assert User.objects.get(user_id="bob").frozen is True


def test_unfreeze_by_user_id(api, coolorg):
    add_user(coolorg, "bob", frozen=True)
    response = api.post(URL, {"frozen": False, "user_id": "bob"})
    assert response.status_code == 200
    assert response.json()["frozen"] is False
    assert User.objects.get(user_id="bob").frozen is False


def test_freeze_by_email_picks_the_active_user(api, coolorg):
    # The e-mail of a revoked user may be reused by a new one: only the active one is meant.
    add_user(coolorg, "bob_old", email="bob@example.com", revoked_on=timezone.now())
    add_user(coolorg, "bob_new", email="bob@example.com")
    response = api.post(URL, {"frozen": True, "user_email": "bob@example.com", "user_id": None})
    assert response.status_code == 200
    assert response.json()["user_id"] == "bob_new"
    assert User.objects.get(user_id="bob_new").frozen is True
    assert User.objects.get(user_id="bob_old").frozen is False


def test_freeze_by_email_is_exact(api, coolorg):
    add_user(coolorg, "bob")
    response = api.post(URL, {"frozen": True, "user_email": "BOB@example.com"})
    assert response.status_code == 404
    assert response.json() == {"error": "user_not_found"}


def test_bad_data_missing_frozen(api, coolorg):
    response = api.post(URL, {"user_id": "alice"})
    assert response.status_code == 400
    assert response.json()["error"] == "bad_data"
    assert "frozen" in response.json()["reason"]


def test_bad_data_invalid_fields(api, coolorg):
    for body in (
        {"frozen": "yes", "user_id": "alice"},
        {"frozen": True, "user_id": "not valid!"},
        {"frozen": True, "user_email": 3},
    ):
        response = api.post(URL, body)
        assert response.status_code == 400, body
        assert response.json()["error"] == "bad_data"
    assert api.post(URL, raw=b"{").json() == {"error": "bad_data", "reason": "Invalid JSON"}


def test_bad_data_neither_user_id_nor_email(api, coolorg):
    response = api.post(URL, {"frozen": True})
    assert response.status_code == 400
    assert response.json() == NEITHER


def test_bad_data_both_user_id_and_email(api, coolorg):
    response = api.post(URL, {"frozen": True, "user_id": "alice", "user_email": "alice@example.com"})
    assert response.status_code == 400
    assert response.json() == BOTH


def test_body_errors_come_before_organization(api):
    unknown = "/administration/organizations/Unknown/users/freeze"
    assert api.post(unknown, {"user_id": "alice"}).json()["error"] == "bad_data"
    assert api.post(unknown, {"frozen": True}).json() == NEITHER
    assert api.post(unknown, {"frozen": True, "user_id": "a", "user_email": "a@b.c"}).json() == BOTH


def test_organization_not_found(api):
    for organization_id in ("Unknown", "not%20valid!"):
        url = f"/administration/organizations/{organization_id}/users/freeze"
        response = api.post(url, {"frozen": True, "user_id": "alice"})
        assert response.status_code == 404
        assert response.json() == {"error": "not_found"}


def test_user_not_found(api, coolorg):
    for body in ({"frozen": True, "user_id": "nobody"}, {"frozen": True, "user_email": "nobody@example.com"}):
        response = api.post(URL, body)
        assert response.status_code == 404
        assert response.json() == {"error": "user_not_found"}


def test_revoked_user_not_found(api, coolorg):
    add_user(coolorg, "mallory", revoked_on=timezone.now())
    for body in ({"frozen": True, "user_id": "mallory"}, {"frozen": True, "user_email": "mallory@example.com"}):
        response = api.post(URL, body)
        assert response.status_code == 404
        assert response.json() == {"error": "user_not_found"}
    assert User.objects.get(user_id="mallory").frozen is False


def test_non_human_user_not_found(api, coolorg):
    add_user(coolorg, "legacy", email=None)
    response = api.post(URL, {"frozen": True, "user_id": "legacy"})
    assert response.status_code == 404
    assert response.json() == {"error": "user_not_found"}


def test_not_allowed(api, coolorg):
    response = api.post(URL, {"frozen": True, "user_id": "alice"}, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 403
    assert response.json() == {"error": "not_allowed"}
    assert User.objects.get(user_id="alice").frozen is False
    # Before the body and the organization.
    response = api.post("/administration/organizations/Unknown/users/freeze", raw=b"{", headers={})
    assert response.status_code == 403


def test_method_not_allowed(api, coolorg):
    assert api.get(URL).status_code == 405


def test_freeze_and_unfreeze_close_sessions(api, coolorg, django_capture_on_commit_callbacks):
    for frozen in (True, False):
        with django_capture_on_commit_callbacks() as callbacks:
            assert api.post(URL, {"frozen": frozen, "user_id": "alice"}).status_code == 200
        assert len(callbacks) == 1, frozen


@pytest.mark.django_db(transaction=True)
async def test_freeze_sends_close_to_user_group():
    _organization, _alice = await sync_to_async(bootstrapped_organization)("CoolOrg")
    alice = await User.objects.aget(user_id="alice")
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(user_group(alice.pk), channel)
    for frozen in (b"true", b"false"):
        body = b'{"frozen": ' + frozen + b', "user_id": "alice"}'
        response = await AsyncClient().post(URL, data=body, content_type="application/json", headers=AUTH)
        assert response.status_code == 200
        assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "session.close"}
    await layer.group_discard(user_group(alice.pk), channel)


@pytest.mark.django_db(transaction=True)
async def test_freeze_closes_live_session():
    _organization, alice = await sync_to_async(bootstrapped_organization)("CoolOrg")
    client = await connect_as(alice)
    response = await AsyncClient().post(
        URL, data=b'{"frozen": true, "user_id": "alice"}', content_type="application/json", headers=AUTH
    )
    assert response.status_code == 200
    await client.receive_close()
