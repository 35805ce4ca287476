"""`pki_enrollment_submit` (docs/protocol.md#pki-enrollment-submit): one test per reply status, then the rules around
them."""
from __future__ import annotations

import asyncio
import uuid
import zlib

import pytest
from django.utils import timezone

from organizations.models import User
from pki.models import EnrollmentState, PkiEnrollment
from protocol import codec
from tests.conftest import World, add_user, anonymous_rpc, bootstrap_organization, connect_as
from tests.pki.conftest import (
    PKI_ENROLLMENT_UPDATED, accept_request, anonymous, next_event, no_more_events, submit, submit_payload, subscribed,
)
from tests.testkit.certs import TestDevice
from tests.users.conftest import new_user_device, revoke_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bob(world: World) -> TestDevice:
    return new_user_device(world, "bob", email="bob@example.com", label="Bob")


async def test_ok(world: World, bob: TestDevice):
    listener = await subscribed(world.alice)
    before = timezone.now()
    enrollment_id, certificate, reply = await submit(world, bob, email="bob@example.com")
    assert reply["status"] == "ok" and set(reply) == {"status", "submitted_on"}
    assert before <= reply["submitted_on"] <= timezone.now()
    stored = await PkiEnrollment.objects.aget(enrollment_id=enrollment_id)
    assert stored.state == EnrollmentState.SUBMITTED and stored.submitted_on == reply["submitted_on"]
    assert bytes(stored.submitter_der_x509_certificate) == certificate
    assert bytes(stored.submit_payload) == submit_payload(bob)
    assert await next_event(listener) == PKI_ENROLLMENT_UPDATED
    assert await no_more_events(listener)


async def test_already_submitted(world: World, bob: TestDevice):
    _, certificate, first = await submit(world, bob)
    enrollment_id, _, reply = await submit(world, bob, certificate=certificate)
    assert reply == {"status": "already_submitted", "submitted_on": first["submitted_on"]}
    assert not await PkiEnrollment.objects.filter(enrollment_id=enrollment_id).aexists()


async def test_force_cancels_the_pending_submission(world: World, bob: TestDevice):
    first_id, certificate, _ = await submit(world, bob)
    listener = await subscribed(world.alice)
    second_id, _, reply = await submit(world, bob, certificate=certificate, force=True)
    assert reply["status"] == "ok"
    first = await PkiEnrollment.objects.aget(enrollment_id=first_id)
    assert first.state == EnrollmentState.CANCELLED and first.cancelled_on == reply["submitted_on"]
    assert (await PkiEnrollment.objects.aget(enrollment_id=second_id)).state == EnrollmentState.SUBMITTED
    # One event for the cancellation, one for the new submission.
    assert await next_event(listener) == PKI_ENROLLMENT_UPDATED
    assert await next_event(listener) == PKI_ENROLLMENT_UPDATED


async def test_id_already_used(world: World, bob: TestDevice):
    enrollment_id, _, _ = await submit(world, bob)
    _, _, reply = await submit(world, bob, enrollment_id=enrollment_id, force=True)
    assert reply == {"status": "id_already_used"}
    assert await PkiEnrollment.objects.acount() == 1


async def test_email_already_used(world: World, bob: TestDevice):
    _, _, reply = await submit(world, bob, email="alice@example.com")
    assert reply == {"status": "email_already_used"}
    assert not await PkiEnrollment.objects.aexists()


async def test_email_of_a_revoked_user_is_free(world: World, bob: TestDevice):
    await add_user(world, "carl", revoked=True)
    carl_email = (await User.objects.aget(user_id="carl")).human_email
    _, _, reply = await submit(world, bob, email=carl_email)
    assert reply["status"] == "ok"


async def test_already_enrolled(world: World, bob: TestDevice):
    enrollment_id, certificate, _ = await submit(world, bob)
    alice = await connect_as(world.alice)
    assert await alice.command("pki_enrollment_accept", **accept_request(world, world.alice, bob, enrollment_id)) == {
        "status": "ok"
    }
    _, _, reply = await submit(world, bob, certificate=certificate, force=True)
    assert reply == {"status": "already_enrolled"}
    # Once the enrolled user is revoked, the same certificate may enroll again.
    await revoke_user(alice, world.alice, "bob")
    _, _, reply = await submit(world, bob, certificate=certificate)
    assert reply["status"] == "ok"


async def test_after_rejection_the_certificate_may_submit_again(world: World, bob: TestDevice):
    enrollment_id, certificate, _ = await submit(world, bob)
    alice = await connect_as(world.alice)
    assert await alice.command("pki_enrollment_reject", enrollment_id=enrollment_id) == {"status": "ok"}
    _, _, reply = await submit(world, bob, certificate=certificate)
    assert reply["status"] == "ok"


@pytest.mark.parametrize(
    "payload",
    [
        b"not zlib",
        zlib.compress(b"\xc1"),
        zlib.compress(codec.packb({"type": "pki_enrollment_answer_payload"})),
        "missing_label",
    ],
    ids=["not-zlib", "not-msgpack", "wrong-type", "missing-field"],
)
async def test_invalid_payload_data(world: World, bob: TestDevice, payload):
    if payload == "missing_label":
        payload = zlib.compress(codec.packb({"type": "pki_enrollment_submit_payload", "verify_key": bob.verify_key}))
    _, _, reply = await submit(world, bob, payload=payload)
    assert reply["status"] == "invalid_payload_data"
    assert isinstance(reply["reason"], str) and reply["reason"]
    assert not await PkiEnrollment.objects.aexists()


async def test_bad_message(world: World, bob: TestDevice):
    reply = await anonymous(world, "pki_enrollment_submit", enrollment_id="not a uuid")
    assert reply["status"] == "bad_message"


async def test_event_stays_in_the_organization(world: World, bob: TestDevice):
    other = await bootstrap_organization("OtherOrg")
    outsider_listener = await subscribed(other.alice)  # an ADMIN of another organization
    await submit(world, bob)
    assert await no_more_events(outsider_listener)


async def test_unknown_organization(world: World, bob: TestDevice, parsec_settings):
    response = await anonymous_rpc("NoSuchOrg", {"cmd": "pki_enrollment_info", "enrollment_id": uuid.uuid4()})
    assert response.status_code == 404
    # With spontaneous bootstrap the route lets any POST through: the command says what is wrong.
    parsec_settings(spontaneous_organization_bootstrap=True)
    ghost = World(organization_id="NoSuchOrg", alice=world.alice)
    _, _, reply = await submit(ghost, bob)
    assert reply == {"status": "not_found", "reason": "Organization not found"}
    assert await anonymous(ghost, "pki_enrollment_info", enrollment_id=uuid.uuid4()) == {
        "status": "not_found", "reason": "",
    }
    assert not await PkiEnrollment.objects.aexists()


async def test_concurrent_submissions_of_one_certificate(world: World, bob: TestDevice, concurrent_writers):
    """Serialised by the organization lock: one is stored, the other sees it."""
    certificate = b"0\x82 one smartcard"
    replies = await asyncio.gather(*(submit(world, bob, certificate=certificate) for _ in range(2)))
    statuses = sorted(reply["status"] for _, _, reply in replies)
    assert statuses == ["already_submitted", "ok"]
    assert await PkiEnrollment.objects.acount() == 1


async def test_refused_forced_submission_cancels_nothing(world: World, bob: TestDevice):
    first_id, certificate, _ = await submit(world, bob)
    listener = await subscribed(world.alice)
    _, _, reply = await submit(world, bob, certificate=certificate, force=True, email="alice@example.com")
    assert reply == {"status": "email_already_used"}
    assert (await PkiEnrollment.objects.aget(enrollment_id=first_id)).state == EnrollmentState.SUBMITTED
    assert await no_more_events(listener)
