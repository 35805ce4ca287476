"""`archiving_config` (docs/protocol.md#archiving-config): every realm the user is member of, with its archiving
state."""
from __future__ import annotations

from datetime import timedelta

import pytest

from protocol.types import RealmArchivingConfiguration
from tests.conftest import World, connect_as, create_realm
from tests.realms.helpers import delete_realm, grant, set_minimum_archiving_period, update_archiving
from tests.testkit import certs

pytestmark = pytest.mark.django_db(transaction=True)

AVAILABLE = {"type": "AVAILABLE"}


def never_configured(realm_id) -> dict:
    return {"realm_id": realm_id, "configured_on": None, "configured_by": None, "configuration": AVAILABLE}


async def test_ok_no_realm(world: World, alice_ws):
    assert await alice_ws.command("archiving_config") == {"status": "ok", "archiving_config": []}


async def test_ok_default_available_in_creation_order(world: World, alice_ws):
    first = await create_realm(alice_ws, world.alice)
    second = await create_realm(alice_ws, world.alice)
    assert await alice_ws.command("archiving_config") == {
        "status": "ok",
        "archiving_config": [never_configured(first), never_configured(second)],
    }


async def test_ok_latest_configuration(world: World, alice_ws, realm_id):
    archived_on = certs.now()
    archived = RealmArchivingConfiguration.archived()
    assert await update_archiving(alice_ws, world.alice, realm_id, archived, timestamp=archived_on) == {"status": "ok"}
    await set_minimum_archiving_period(world, 60)
    planned_on = archived_on + timedelta(seconds=1)
    deletion_date = planned_on + timedelta(days=2)
    configuration = RealmArchivingConfiguration.deletion_planned(deletion_date)
    reply = await update_archiving(alice_ws, world.alice, realm_id, configuration, timestamp=planned_on)
    assert reply == {"status": "ok"}
    assert await alice_ws.command("archiving_config") == {
        "status": "ok",
        "archiving_config": [
            {
                "realm_id": realm_id,
                "configured_on": planned_on,
                "configured_by": world.alice.device_id,
                "configuration": {"type": "DELETION_PLANNED", "deletion_date": deletion_date},
            }
        ],
    }


async def test_ok_deleted_realms_included(world: World, alice_ws, realm_id):
    await delete_realm(world, alice_ws, world.alice, realm_id)
    [item] = (await alice_ws.command("archiving_config"))["archiving_config"]
    assert item["realm_id"] == realm_id and item["configuration"]["type"] == "DELETION_PLANNED"


async def test_ok_only_current_memberships(world: World, alice_ws, realm_id, bob):
    bob_ws = await connect_as(bob)
    assert await bob_ws.command("archiving_config") == {"status": "ok", "archiving_config": []}
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    own_realm = await create_realm(bob_ws, bob)
    assert await bob_ws.command("archiving_config") == {
        "status": "ok",
        "archiving_config": [never_configured(realm_id), never_configured(own_realm)],
    }
    await grant(alice_ws, world.alice, realm_id, "bob", None)
    reply = await bob_ws.command("archiving_config")
    assert reply == {"status": "ok", "archiving_config": [never_configured(own_realm)]}
