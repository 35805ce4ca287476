"""`manage.py human_accesses ORG [--filter WORDS]`: the reference's layout, on a world built through the protocol."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command

from organizations.models import User
from realms.management.commands.human_accesses import format_datetime
from tests.conftest import World, add_user, connect_as, create_realm
from tests.testkit import certs
from tests.users.conftest import create_user, revoke_user
from tests.realms.helpers import grant

pytestmark = pytest.mark.django_db(transaction=True)


async def human_accesses(*args: str) -> str:
    out = io.StringIO()
    await sync_to_async(call_command)("human_accesses", *args, stdout=out, no_color=True)
    return out.getvalue()


async def created_on(user_id: str) -> str:
    return format_datetime((await User.objects.aget(user_id=user_id)).created_on)


async def test_every_user_with_role_history(world: World):
    alice = await connect_as(world.alice)
    bob = await add_user(world, "bob")
    robot = await create_user(alice, world.alice, world, "robot", human=False)
    carl = await add_user(world, "carl")
    await revoke_user(alice, world.alice, "carl")
    realm = await create_realm(alice, world.alice)
    other_realm = await create_realm(alice, world.alice)
    start = certs.now()
    steps = [start + timedelta(seconds=n) for n in range(1, 5)]
    await grant(alice, world.alice, realm, "bob", "READER", timestamp=steps[0])
    await grant(alice, world.alice, realm, "bob", None, timestamp=steps[1])
    await grant(alice, world.alice, realm, "bob", "CONTRIBUTOR", timestamp=steps[2])
    await grant(alice, world.alice, other_realm, "robot", "MANAGER", timestamp=steps[3])
    alice_grants = {
        realm_id: format_datetime(on)
        async for realm_id, on in User.objects.filter(user_id="alice").values_list(
            "realm_roles__realm__realm_id", "realm_roles__certified_on"
        )
    }
    carl_row = await User.objects.aget(user_id="carl")

    assert await human_accesses(world.organization_id) == "\n".join([
        "Found 3 result(s)",
        "Human Alice <alice@example.com>",
        f"\tUser alice (ADMIN, created on {await created_on('alice')})",
        f"\t\tRealm {realm.hex}",
        f"\t\t\t{alice_grants[realm]}: Access OWNER granted",
        f"\t\tRealm {other_realm.hex}",
        f"\t\t\t{alice_grants[other_realm]}: Access OWNER granted",
        "",
        f"Human {bob.human_handle[1]} <{bob.human_handle[0]}>",
        f"\tUser bob (STANDARD, created on {await created_on('bob')})",
        f"\t\tRealm {realm.hex}",
        f"\t\t\t{format_datetime(steps[0])}: Access READER granted",
        f"\t\t\t{format_datetime(steps[1])}: Access removed",
        f"\t\t\t{format_datetime(steps[2])}: Access CONTRIBUTOR granted",
        "",
        f"Human {carl.human_handle[1]} <{carl.human_handle[0]}>",
        f"\tUser carl (STANDARD, created on {await created_on('carl')}, "
        f"revoked on {format_datetime(carl_row.revoked_on)})",
        "",
        f"User robot (STANDARD, created on {await created_on('robot')})",
        f"\tRealm {other_realm.hex}",
        f"\t\t{format_datetime(steps[3])}: Access MANAGER granted",
        "",
    ])
    assert robot.human_handle is None


async def test_filter(world: World):
    bob = await add_user(world, "bob")
    await add_user(world, "bobby")
    out = await human_accesses(world.organization_id, "--filter", "BOB")
    assert out.startswith("Found 2 result(s)\n") and "User alice" not in out
    # Every word must match: the user id and (part of) the e-mail.
    out = await human_accesses("--organization", world.organization_id, "--filter", f"bob {bob.human_handle[0]}")
    assert out.startswith("Found 1 result(s)\n") and "\tUser bob (" in out and "bobby" not in out
    assert await human_accesses(world.organization_id, "--filter", "nobody") == "Found 0 result(s)\n"


async def test_unknown_organization(world: World):
    with pytest.raises(CommandError, match="Organization 'Nope' not found"):
        await human_accesses("Nope")


async def test_organization_required(world: World):
    with pytest.raises(CommandError, match="Give the organization"):
        await human_accesses()
