"""`realm_status` (docs/protocol.md#realm-status): one test per reply status."""
from __future__ import annotations

import uuid

import pytest

from tests.conftest import World, connect_as
from tests.realms.helpers import delete_realm, grant
from tests.testkit import certs

pytestmark = pytest.mark.django_db(transaction=True)


async def test_ok(world: World, alice_ws, realm_id):
    assert await alice_ws.command("realm_status", realm_id=realm_id) == {
        "status": "ok",
        "in_maintenance": False,
        "maintenance_type": None,
        "maintenance_started_on": None,
        "maintenance_started_by": None,
        "encryption_revision": 1,
    }


async def test_ok_in_maintenance(world: World, alice_ws, realm_id, bob):
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    started_on = certs.now()
    reply = await alice_ws.command(
        "realm_start_reencryption_maintenance", realm_id=realm_id, encryption_revision=2, timestamp=started_on,
        per_participant_message={"alice": b"a", "bob": b"b"},
    )
    assert reply == {"status": "ok"}
    # Any member sees it, with the new revision already.
    bob_ws = await connect_as(bob)
    assert await bob_ws.command("realm_status", realm_id=realm_id) == {
        "status": "ok",
        "in_maintenance": True,
        "maintenance_type": "REENCRYPTION",
        "maintenance_started_on": started_on,
        "maintenance_started_by": world.alice.device_id,
        "encryption_revision": 2,
    }


async def test_not_allowed(world: World, realm_id, bob):
    bob_ws = await connect_as(bob)
    assert await bob_ws.command("realm_status", realm_id=realm_id) == {"status": "not_allowed"}


async def test_not_allowed_after_removal(world: World, alice_ws, realm_id, bob):
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    bob_ws = await connect_as(bob)
    assert (await bob_ws.command("realm_status", realm_id=realm_id))["status"] == "ok"
    await grant(alice_ws, world.alice, realm_id, "bob", None)
    assert await bob_ws.command("realm_status", realm_id=realm_id) == {"status": "not_allowed"}


async def test_not_found(world: World, alice_ws):
    assert await alice_ws.command("realm_status", realm_id=uuid.uuid4()) == {"status": "not_found", "reason": None}


async def test_realm_deleted(world: World, alice_ws, realm_id):
    await delete_realm(world, alice_ws, world.alice, realm_id)
    assert await alice_ws.command("realm_status", realm_id=realm_id) == {"status": "realm_deleted"}


async def test_bad_message(world: World, alice_ws):
    reply = await alice_ws.command("realm_status", realm_id="not a uuid")
    assert reply["status"] == "bad_message"
