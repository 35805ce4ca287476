"""`organization_config` and `organization_stats` (docs/protocol.md#organization-config,
docs/protocol.md#organization-stats), over a real websocket session."""
from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from organizations.models import Organization
from tests.conftest import connect_as
from tests.organizations.factories import add_device_user, add_user, bootstrapped_organization

pytestmark = pytest.mark.django_db(transaction=True)


async def test_organization_config_ok():
    _organization, alice = await sync_to_async(bootstrapped_organization)("CoolOrg")
    client = await connect_as(alice)
    reply = await client.command("organization_config")
    assert reply == {
        "status": "ok",
        "active_users_limit": None,
        "minimum_archiving_period": 2592000,
        "sequester_authority_certificate": None,
        "sequester_services_certificates": None,
        "user_profile_outsider_allowed": True,
    }
    assert list(reply) == [
        "status",
        "active_users_limit",
        "minimum_archiving_period",
        "sequester_authority_certificate",
        "sequester_services_certificates",
        "user_profile_outsider_allowed",
    ]
    await client.close()


async def test_organization_config_reflects_settings_for_any_profile():
    _organization, alice = await sync_to_async(bootstrapped_organization)("CoolOrg")
    outsider = await sync_to_async(add_device_user)(alice, "olivia", profile="OUTSIDER")
    await Organization.objects.filter(organization_id="CoolOrg").aupdate(
        active_users_limit=12, user_profile_outsider_allowed=False, minimum_archiving_period=60
    )
    client = await connect_as(outsider)
    reply = await client.command("organization_config")
    assert reply["status"] == "ok"
    assert (reply["active_users_limit"], reply["user_profile_outsider_allowed"], reply["minimum_archiving_period"]) == (
        12,
        False,
        60,
    )
    await client.close()


async def test_organization_config_sequestered():
    _organization, alice = await sync_to_async(bootstrapped_organization)("CoolOrg")
    await Organization.objects.filter(organization_id="CoolOrg").aupdate(
        sequester_authority_certificate=b"authority certificate", sequester_authority_verify_key_der=b"der"
    )
    client = await connect_as(alice)
    reply = await client.command("organization_config")
    assert reply["sequester_authority_certificate"] == b"authority certificate"
    assert reply["sequester_services_certificates"] == []
    await client.close()


async def test_organization_stats_ok():
    organization, alice = await sync_to_async(bootstrapped_organization)("CoolOrg")
    await sync_to_async(add_user)(organization, "bob")
    await sync_to_async(add_user)(organization, "olivia", profile="OUTSIDER")
    await sync_to_async(add_user)(organization, "mallory", revoked_on=timezone.now())
    client = await connect_as(alice)
    reply = await client.command("organization_stats")
    assert reply == {
        "status": "ok",
        "active_users": 3,
        "data_size": 0,
        "metadata_size": 0,
        "realms": 0,
        "users": 4,
        "users_per_profile_detail": [
            {"profile": "ADMIN", "active": 1, "revoked": 0},
            {"profile": "STANDARD", "active": 1, "revoked": 1},
            {"profile": "OUTSIDER", "active": 1, "revoked": 0},
        ],
    }
    assert list(reply) == [
        "status",
        "active_users",
        "data_size",
        "metadata_size",
        "realms",
        "users",
        "users_per_profile_detail",
    ]
    await client.close()


@pytest.mark.parametrize("profile", ["STANDARD", "OUTSIDER"])
async def test_organization_stats_not_allowed(profile):
    _organization, alice = await sync_to_async(bootstrapped_organization)("CoolOrg")
    bob = await sync_to_async(add_device_user)(alice, "bob", profile=profile)
    client = await connect_as(bob)
    assert await client.command("organization_stats") == {"status": "not_allowed", "reason": None}
    await client.close()


async def test_not_found_when_the_organization_vanished():
    _organization, alice = await sync_to_async(bootstrapped_organization)("CoolOrg")
    client = await connect_as(alice)
    await Organization.objects.filter(organization_id="CoolOrg").adelete()
    assert await client.command("organization_config") == {"status": "not_found"}
    assert await client.command("organization_stats") == {"status": "not_found"}
    await client.close()
