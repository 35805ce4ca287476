"""`pki_enrollment_info` (docs/protocol.md#pki-enrollment-info): the state-specific reply of every state, and
`not_found`."""
from __future__ import annotations

import uuid

import pytest

from pki.models import PkiEnrollment
from tests.conftest import World, bootstrap_organization, connect_as
from tests.pki.conftest import accept_request, anonymous, submit
from tests.users.conftest import new_user_device

pytestmark = pytest.mark.django_db(transaction=True)


async def test_not_found(world: World):
    reply = await anonymous(world, "pki_enrollment_info", enrollment_id=uuid.uuid4())
    assert reply == {"status": "not_found", "reason": ""}


async def test_not_found_in_another_organization(world: World):
    other = await bootstrap_organization("OtherOrg")
    enrollment_id, _, _ = await submit(other, new_user_device(other, "bob"))
    reply = await anonymous(world, "pki_enrollment_info", enrollment_id=enrollment_id)
    assert reply == {"status": "not_found", "reason": ""}


async def test_submitted(world: World):
    enrollment_id, _, submitted = await submit(world, new_user_device(world, "bob"))
    reply = await anonymous(world, "pki_enrollment_info", enrollment_id=enrollment_id)
    assert reply == {"status": "ok", "enrollment_status": "SUBMITTED", "submitted_on": submitted["submitted_on"]}


async def test_accepted(world: World):
    bob = new_user_device(world, "bob")
    enrollment_id, _, submitted = await submit(world, bob)
    request = accept_request(world, world.alice, bob, enrollment_id)
    alice = await connect_as(world.alice)
    assert await alice.command("pki_enrollment_accept", **request) == {"status": "ok"}
    accepted_on = (await PkiEnrollment.objects.aget(enrollment_id=enrollment_id)).accepted_on
    reply = await anonymous(world, "pki_enrollment_info", enrollment_id=enrollment_id)
    assert reply == {
        "status": "ok",
        "enrollment_status": "ACCEPTED",
        "submitted_on": submitted["submitted_on"],
        "accepted_on": accepted_on,
        "accepter_der_x509_certificate": request["accepter_der_x509_certificate"],
        "accept_payload_signature": request["accept_payload_signature"],
        "accept_payload": request["accept_payload"],
    }


async def test_rejected(world: World):
    enrollment_id, _, submitted = await submit(world, new_user_device(world, "bob"))
    alice = await connect_as(world.alice)
    assert await alice.command("pki_enrollment_reject", enrollment_id=enrollment_id) == {"status": "ok"}
    rejected_on = (await PkiEnrollment.objects.aget(enrollment_id=enrollment_id)).rejected_on
    reply = await anonymous(world, "pki_enrollment_info", enrollment_id=enrollment_id)
    assert reply == {
        "status": "ok", "enrollment_status": "REJECTED",
        "submitted_on": submitted["submitted_on"], "rejected_on": rejected_on,
    }


async def test_cancelled(world: World):
    bob = new_user_device(world, "bob")
    enrollment_id, certificate, submitted = await submit(world, bob)
    _, _, resubmitted = await submit(world, bob, certificate=certificate, force=True)
    reply = await anonymous(world, "pki_enrollment_info", enrollment_id=enrollment_id)
    assert reply == {
        "status": "ok", "enrollment_status": "CANCELLED",
        "submitted_on": submitted["submitted_on"], "cancelled_on": resubmitted["submitted_on"],
    }
