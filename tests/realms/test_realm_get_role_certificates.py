"""`realm_get_role_certificates` (docs/protocol.md#realm-get-role-certificates): one test per reply status."""
from __future__ import annotations

import uuid

import pytest

from realms.models import RealmUserRole
from tests.conftest import World, add_user, connect_as
from tests.realms.helpers import delete_realm, grant, later

pytestmark = pytest.mark.django_db(transaction=True)


async def stored_certificates(realm_id) -> list[bytes]:
    return [
        bytes(certificate)
        async for certificate in RealmUserRole.objects.filter(realm__realm_id=realm_id)
        .order_by("certified_on")
        .values_list("certificate", flat=True)
    ]


async def test_ok(world: World, alice_ws, realm_id):
    reply = await alice_ws.command("realm_get_role_certificates", realm_id=realm_id)
    assert reply == {"status": "ok", "certificates": await stored_certificates(realm_id)}
    assert len(reply["certificates"]) == 1


async def test_ok_every_certificate_in_timestamp_order(world: World, alice_ws, realm_id, bob):
    carol = await add_user(world, "carol")
    # Accepted out of timestamp order across users: the reply is sorted by timestamp.
    await grant(alice_ws, world.alice, realm_id, carol.user_id, "READER", timestamp=later(10))
    await grant(alice_ws, world.alice, realm_id, "bob", "CONTRIBUTOR", timestamp=later(5))
    await grant(alice_ws, world.alice, realm_id, "bob", None, timestamp=later(6))
    bob_removed = await stored_certificates(realm_id)
    reply = await alice_ws.command("realm_get_role_certificates", realm_id=realm_id)
    assert reply == {"status": "ok", "certificates": bob_removed}
    # Creator, bob CONTRIBUTOR, bob removed, carol READER.
    assert len(reply["certificates"]) == 4
    history = RealmUserRole.objects.filter(realm__realm_id=realm_id).order_by("certified_on")
    roles = [role async for role in history.values_list("role", flat=True)]
    assert roles == ["OWNER", "CONTRIBUTOR", None, "READER"]


async def test_ok_any_member(world: World, alice_ws, realm_id, bob):
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    bob_ws = await connect_as(bob)
    assert (await bob_ws.command("realm_get_role_certificates", realm_id=realm_id))["status"] == "ok"


async def test_ok_on_deleted_realm(world: World, alice_ws, realm_id):
    await delete_realm(world, alice_ws, world.alice, realm_id)
    reply = await alice_ws.command("realm_get_role_certificates", realm_id=realm_id)
    assert reply == {"status": "ok", "certificates": await stored_certificates(realm_id)}


async def test_not_allowed_never_member(world: World, realm_id, bob):
    bob_ws = await connect_as(bob)
    assert await bob_ws.command("realm_get_role_certificates", realm_id=realm_id) == {"status": "not_allowed"}


async def test_not_allowed_after_removal(world: World, alice_ws, realm_id, bob):
    await grant(alice_ws, world.alice, realm_id, "bob", "READER")
    await grant(alice_ws, world.alice, realm_id, "bob", None)
    bob_ws = await connect_as(bob)
    assert await bob_ws.command("realm_get_role_certificates", realm_id=realm_id) == {"status": "not_allowed"}


async def test_not_found(world: World, alice_ws):
    reply = await alice_ws.command("realm_get_role_certificates", realm_id=uuid.uuid4())
    assert reply == {"status": "not_found", "reason": None}
