"""`realm_stats` (docs/protocol.md#realm-stats): one test per reply status."""
from __future__ import annotations

import uuid

import pytest

from tests.conftest import World, connect_as, create_realm
from tests.realms.helpers import delete_realm, grant, store_block, store_vlob_atom

pytestmark = pytest.mark.django_db(transaction=True)


def ok(*, blocks_size: int, vlobs_size: int) -> dict:
    return {"status": "ok", "blocks_size": blocks_size, "vlobs_size": vlobs_size}


async def test_ok_empty(world: World, alice_ws, realm_id):
    assert await alice_ws.command("realm_stats", realm_id=realm_id) == ok(blocks_size=0, vlobs_size=0)


async def test_ok_counts_every_version_once(world: World, alice_ws, realm_id):
    vlob_id = await store_vlob_atom(realm_id, world.alice, version=1, blob=b"x" * 10)
    await store_vlob_atom(realm_id, world.alice, vlob_id=vlob_id, version=2, blob=b"x" * 20)
    await store_vlob_atom(realm_id, world.alice, blob=b"x" * 5)
    # A re-encrypted copy is the same version: not counted twice.
    await store_vlob_atom(realm_id, world.alice, vlob_id=vlob_id, version=1, encryption_revision=2, blob=b"y" * 10)
    # Another realm's data is not counted.
    other_realm = await create_realm(alice_ws, world.alice)
    await store_vlob_atom(other_realm, world.alice, blob=b"z" * 100)
    assert await alice_ws.command("realm_stats", realm_id=realm_id) == ok(blocks_size=0, vlobs_size=35)


async def test_ok_blocks(world: World, alice_ws, realm_id):
    await store_block(realm_id, world.alice, size=100)
    await store_block(realm_id, world.alice, size=23)
    other_realm = await create_realm(alice_ws, world.alice)
    await store_block(other_realm, world.alice, size=1000)
    assert await alice_ws.command("realm_stats", realm_id=realm_id) == ok(blocks_size=123, vlobs_size=0)


async def test_ok_any_member(world: World, alice_ws, realm_id, bob):
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    bob_ws = await connect_as(bob)
    assert (await bob_ws.command("realm_stats", realm_id=realm_id))["status"] == "ok"


async def test_not_allowed(world: World, realm_id, bob):
    bob_ws = await connect_as(bob)
    assert await bob_ws.command("realm_stats", realm_id=realm_id) == {"status": "not_allowed"}


async def test_not_found(world: World, alice_ws):
    assert await alice_ws.command("realm_stats", realm_id=uuid.uuid4()) == {"status": "not_found", "reason": None}


async def test_realm_deleted(world: World, alice_ws, realm_id):
    await delete_realm(world, alice_ws, world.alice, realm_id)
    assert await alice_ws.command("realm_stats", realm_id=realm_id) == {"status": "realm_deleted"}
