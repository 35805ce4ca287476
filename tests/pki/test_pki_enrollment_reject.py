"""`pki_enrollment_reject` (docs/protocol.md#pki-enrollment-reject): one test per reply status."""
from __future__ import annotations

import uuid

import pytest

from pki.models import EnrollmentState, PkiEnrollment
from tests.conftest import World, add_user, bootstrap_organization, connect_as
from tests.pki.conftest import PKI_ENROLLMENT_UPDATED, next_event, no_more_events, submit, subscribed
from tests.users.conftest import new_user_device

pytestmark = pytest.mark.django_db(transaction=True)


async def test_ok(world: World):
    enrollment_id, _, _ = await submit(world, new_user_device(world, "bob"))
    listener = await subscribed(await add_user(world, "carl"))  # any profile of the organization hears it
    alice = await connect_as(world.alice)
    assert await alice.command("pki_enrollment_reject", enrollment_id=enrollment_id) == {"status": "ok"}
    enrollment = await PkiEnrollment.objects.aget(enrollment_id=enrollment_id)
    assert enrollment.state == EnrollmentState.REJECTED and enrollment.rejected_on is not None
    assert await next_event(listener) == PKI_ENROLLMENT_UPDATED
    assert await no_more_events(listener)


async def test_not_allowed(world: World):
    enrollment_id, _, _ = await submit(world, new_user_device(world, "bob"))
    mallory = await connect_as(await add_user(world, "mallory"))
    assert await mallory.command("pki_enrollment_reject", enrollment_id=enrollment_id) == {
        "status": "not_allowed", "reason": "User `mallory` is not admin",
    }
    assert (await PkiEnrollment.objects.aget(enrollment_id=enrollment_id)).state == EnrollmentState.SUBMITTED


async def test_not_found(world: World):
    other = await bootstrap_organization("OtherOrg")
    foreign_id, _, _ = await submit(other, new_user_device(other, "bob"))
    alice = await connect_as(world.alice)
    for enrollment_id in (uuid.uuid4(), foreign_id):
        assert await alice.command("pki_enrollment_reject", enrollment_id=enrollment_id) == {
            "status": "not_found", "reason": "",
        }
    assert (await PkiEnrollment.objects.aget(enrollment_id=foreign_id)).state == EnrollmentState.SUBMITTED


async def test_no_longer_available(world: World):
    enrollment_id, _, _ = await submit(world, new_user_device(world, "bob"))
    alice = await connect_as(world.alice)
    assert await alice.command("pki_enrollment_reject", enrollment_id=enrollment_id) == {"status": "ok"}
    listener = await subscribed(world.alice)
    assert await alice.command("pki_enrollment_reject", enrollment_id=enrollment_id) == {
        "status": "no_longer_available", "reason": "",
    }
    assert await no_more_events(listener)
