"""The Django admin console: organizations through the services, users and devices read-only."""
from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User as DjangoUser
from django.core.management import call_command

from organizations.models import Device, Organization, User
from tests.organizations.factories import add_user, bootstrapped_organization

# As rendered in HTML (`&` escaped).
BOOTSTRAP_URL_RE = (
    r"parsec://parsec\.example\.com:6777/{org}\?no_ssl=true&amp;action=bootstrap_organization"
    r"&amp;token=([0-9a-f]{{64}})"
)


@pytest.fixture
def coolorg(db):
    organization, _alice = bootstrapped_organization("CoolOrg")
    add_user(organization, "bob", frozen=True)
    return organization


def test_createsuperuser_works(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "s3cret-passw0rd")
    call_command("createsuperuser", "--noinput", "--username", "operator", "--email", "op@example.com", verbosity=0)
    assert DjangoUser.objects.get(username="operator").is_superuser


def test_login_required(client, db):
    response = client.get("/admin/organizations/organization/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_list_pages_render(admin_client, coolorg):
    response = admin_client.get("/admin/organizations/organization/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "CoolOrg" in content
    assert "Bootstrapped?" in content and "Users" in content

    response = admin_client.get("/admin/organizations/user/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "alice" in content and "bob" in content and "STANDARD" in content

    response = admin_client.get("/admin/organizations/device/")
    assert response.status_code == 200
    assert "alice@dev1" in response.content.decode()


def test_create_organization_shows_bootstrap_url(admin_client, db):
    response = admin_client.get("/admin/organizations/organization/add/")
    assert response.status_code == 200

    response = admin_client.post(
        "/admin/organizations/organization/add/",
        {
            "organization_id": "AdminOrg",
            "user_profile_outsider_allowed": "on",
            "active_users_limit": "4",
            "minimum_archiving_period": "2592000",
        },
        follow=True,
    )
    assert response.status_code == 200
    organization = Organization.objects.get(organization_id="AdminOrg")
    assert organization.active_users_limit == 4
    assert not organization.is_bootstrapped
    match = re.search(BOOTSTRAP_URL_RE.format(org="AdminOrg"), response.content.decode())
    assert match, response.content.decode()
    assert match[1] == organization.bootstrap_token

    # And on the change page while it is not bootstrapped.
    response = admin_client.get(f"/admin/organizations/organization/{organization.pk}/change/")
    assert re.search(BOOTSTRAP_URL_RE.format(org="AdminOrg"), response.content.decode())


def test_recreate_not_bootstrapped_organization(admin_client, db):
    data = {"organization_id": "AdminOrg", "active_users_limit": "", "minimum_archiving_period": "60"}
    admin_client.post("/admin/organizations/organization/add/", data)
    first = Organization.objects.get(organization_id="AdminOrg").bootstrap_token
    admin_client.post("/admin/organizations/organization/add/", data)
    assert Organization.objects.get(organization_id="AdminOrg").bootstrap_token != first
    assert Organization.objects.count() == 1


def test_create_bootstrapped_organization_refused(admin_client, coolorg):
    response = admin_client.post(
        "/admin/organizations/organization/add/",
        {"organization_id": "CoolOrg", "active_users_limit": "", "minimum_archiving_period": "60"},
    )
    assert response.status_code == 200  # the form again, with its error
    assert "already exists and is bootstrapped" in response.content.decode()


def test_create_invalid_organization_id(admin_client, db):
    response = admin_client.post(
        "/admin/organizations/organization/add/",
        {"organization_id": "not valid!", "active_users_limit": "", "minimum_archiving_period": "60"},
    )
    assert response.status_code == 200
    assert not Organization.objects.exists()


def test_change_page_edits_settings_only(admin_client, coolorg, django_capture_on_commit_callbacks):
    url = f"/admin/organizations/organization/{coolorg.pk}/change/"
    response = admin_client.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    for editable in ("is_expired", "active_users_limit", "user_profile_outsider_allowed", "minimum_archiving_period"):
        assert f'name="{editable}"' in content
    for never in ("organization_id", "root_verify_key", "bootstrap_token", "sequester_authority_certificate"):
        assert f'name="{never}"' not in content
    assert "Already bootstrapped" in content

    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(
            url,
            {
                "is_expired": "on",
                "user_profile_outsider_allowed": "on",
                "active_users_limit": "9",
                "minimum_archiving_period": "2592000",
                "organization_id": "Hijacked",
                "root_verify_key": "x",
            },
        )
    assert response.status_code == 302
    assert len(callbacks) == 1  # expiring closes the organization's sessions
    coolorg.refresh_from_db()
    assert coolorg.organization_id == "CoolOrg"
    assert coolorg.is_expired and coolorg.expired_on is not None
    assert coolorg.active_users_limit == 9


def test_organizations_cannot_be_deleted(admin_client, coolorg):
    assert admin_client.get(f"/admin/organizations/organization/{coolorg.pk}/delete/").status_code == 403


def test_user_pages_are_read_only(admin_client, coolorg):
    bob = User.objects.get(user_id="bob")
    url = f"/admin/organizations/user/{bob.pk}/change/"
    response = admin_client.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    assert "bob@example.com" in content
    assert 'name="frozen"' not in content and 'name="profile"' not in content
    assert admin_client.post(url, {"frozen": ""}).status_code == 403
    assert User.objects.get(user_id="bob").frozen is True
    assert admin_client.get("/admin/organizations/user/add/").status_code == 403
    assert admin_client.get(f"/admin/organizations/user/{bob.pk}/delete/").status_code == 403


def test_device_pages_are_read_only(admin_client, coolorg):
    device = Device.objects.get(device_id="alice@dev1")
    url = f"/admin/organizations/device/{device.pk}/change/"
    response = admin_client.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    assert "alice@dev1" in content
    assert 'name="device_label"' not in content
    assert admin_client.post(url, {"device_label": "x"}).status_code == 403
    assert admin_client.get("/admin/organizations/device/add/").status_code == 403
    assert admin_client.get(f"/admin/organizations/device/{device.pk}/delete/").status_code == 403


def test_freeze_and_unfreeze_actions(admin_client, coolorg, django_capture_on_commit_callbacks):
    alice = User.objects.get(organization=coolorg, user_id="alice")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/organizations/user/", {"action": "freeze_users", "_selected_action": [alice.pk]}, follow=True
        )
    assert response.status_code == 200
    alice.refresh_from_db()
    assert alice.frozen is True
    admin_client.post("/admin/organizations/user/", {"action": "unfreeze_users", "_selected_action": [alice.pk]})
    alice.refresh_from_db()
    assert alice.frozen is False


def test_freeze_action_refuses_users_without_human_handle(admin_client, coolorg):
    legacy = add_user(coolorg, "legacy", email=None)
    response = admin_client.post(
        "/admin/organizations/user/", {"action": "freeze_users", "_selected_action": [legacy.pk]}, follow=True
    )
    assert b"cannot be frozen" in response.content
    legacy.refresh_from_db()
    assert legacy.frozen is False
