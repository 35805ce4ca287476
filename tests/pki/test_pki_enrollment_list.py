"""`pki_enrollment_list` (docs/protocol.md#pki-enrollment-list): the SUBMITTED enrollments, for admins only."""
from __future__ import annotations

import pytest

from tests.conftest import World, add_user, bootstrap_organization, connect_as
from tests.pki.conftest import submit, submit_payload
from tests.users.conftest import new_user_device

pytestmark = pytest.mark.django_db(transaction=True)


async def test_ok(world: World):
    bob, carl, dave = (new_user_device(world, name) for name in ("bob", "carl", "dave"))
    bob_id, bob_certificate, bob_reply = await submit(world, bob)
    carl_id, _, _ = await submit(world, carl)
    dave_id, dave_certificate, dave_reply = await submit(world, dave)
    other = await bootstrap_organization("OtherOrg")
    await submit(other, new_user_device(other, "eve"))
    alice = await connect_as(world.alice)
    assert await alice.command("pki_enrollment_reject", enrollment_id=carl_id) == {"status": "ok"}

    reply = await alice.command("pki_enrollment_list")
    assert reply == {
        "status": "ok",
        "enrollments": [
            {
                "enrollment_id": enrollment_id,
                "submit_payload": submit_payload(device),
                "submit_payload_signature": b"signature of " + certificate[:8],
                "submitted_on": submitted["submitted_on"],
                "submitter_der_x509_certificate": certificate,
            }
            for enrollment_id, device, certificate, submitted in (
                (bob_id, bob, bob_certificate, bob_reply), (dave_id, dave, dave_certificate, dave_reply)
            )
        ],
    }


async def test_ok_empty(world: World):
    alice = await connect_as(world.alice)
    assert await alice.command("pki_enrollment_list") == {"status": "ok", "enrollments": []}


@pytest.mark.parametrize("profile", ["STANDARD", "OUTSIDER"])
async def test_not_allowed(world: World, profile: str):
    await submit(world, new_user_device(world, "bob"))
    mallory = await connect_as(await add_user(world, "mallory", profile=profile))
    assert await mallory.command("pki_enrollment_list") == {
        "status": "not_allowed", "reason": "User `mallory` is not admin",
    }
