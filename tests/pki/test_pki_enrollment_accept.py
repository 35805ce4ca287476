"""`pki_enrollment_accept` (docs/protocol.md#pki-enrollment-accept): one test per reply status, then atomicity with
`user_create`'s rules."""
from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from organizations.models import Device, Organization, User
from pki.models import EnrollmentState, PkiEnrollment
from tests.conftest import World, add_user, connect_as
from tests.pki.conftest import (
    PKI_ENROLLMENT_UPDATED, accept_request, next_event, no_more_events, submit, subscribed,
)
from tests.testkit import certs
from tests.users.conftest import new_user_device

pytestmark = pytest.mark.django_db(transaction=True)


async def nothing_created(enrollment_id) -> bool:
    enrollment = await PkiEnrollment.objects.aget(enrollment_id=enrollment_id)
    return enrollment.state == EnrollmentState.SUBMITTED and not await User.objects.filter(user_id="bob").aexists()


async def test_ok(world: World):
    bob = new_user_device(world, "bob", email="bob@example.com", label="Bob")
    enrollment_id, _, _ = await submit(world, bob)
    listener = await subscribed(world.alice)
    alice = await connect_as(world.alice)
    request = accept_request(world, world.alice, bob, enrollment_id)
    assert await alice.command("pki_enrollment_accept", **request) == {"status": "ok"}

    enrollment = await PkiEnrollment.objects.select_related("accepter", "accepted_device").aget(
        enrollment_id=enrollment_id
    )
    assert enrollment.state == EnrollmentState.ACCEPTED and enrollment.accepted_on is not None
    assert enrollment.accepter.device_id == "alice@dev1" and enrollment.accepted_device.device_id == "bob@dev1"
    assert bytes(enrollment.accept_payload) == request["accept_payload"]
    # Created exactly as `user_create` creates a user.
    user = await User.objects.select_related("user_certifier").aget(user_id="bob")
    assert (user.human_email, user.human_label, user.profile) == ("bob@example.com", "Bob", "STANDARD")
    assert bytes(user.user_certificate) == request["user_certificate"]
    assert user.user_certifier.device_id == "alice@dev1"
    device = await Device.objects.aget(user=user)
    assert bytes(device.redacted_device_certificate) == request["redacted_device_certificate"]
    assert await next_event(listener) == PKI_ENROLLMENT_UPDATED
    assert await no_more_events(listener)
    # The enrolled device connects.
    bob_client = await connect_as(bob)
    assert (await bob_client.command("user_get", user_id="bob"))["status"] == "ok"
    await bob_client.close()


async def test_not_allowed(world: World):
    bob = new_user_device(world, "bob")
    enrollment_id, _, _ = await submit(world, bob)
    mallory_device = await add_user(world, "mallory")
    mallory = await connect_as(mallory_device)
    reply = await mallory.command("pki_enrollment_accept", **accept_request(world, mallory_device, bob, enrollment_id))
    assert reply == {"status": "not_allowed", "reason": "User `mallory` is not admin"}
    assert await nothing_created(enrollment_id)


async def test_invalid_payload_data(world: World):
    bob = new_user_device(world, "bob")
    enrollment_id, _, _ = await submit(world, bob)
    alice = await connect_as(world.alice)
    request = accept_request(world, world.alice, bob, enrollment_id, accept_payload=b"garbage")
    reply = await alice.command("pki_enrollment_accept", **request)
    assert reply["status"] == "invalid_payload_data" and reply["reason"]
    assert await nothing_created(enrollment_id)


@pytest.mark.parametrize("flaw", ["signature", "timestamp", "mismatched-timestamps", "redacted-not-redacted"])
async def test_invalid_certification(world: World, flaw: str):
    """Every `user_create` check 2-6 failing is `invalid_certification`, with a reason."""
    bob = new_user_device(world, "bob")
    enrollment_id, _, _ = await submit(world, bob)
    alice = await connect_as(world.alice)
    if flaw == "signature":
        material = certs.user_creation_certificates(world.alice, bob)
        # Signed by someone else than the connected device.
        material["user_certificate"] = certs.user_creation_certificates(bob, bob)["user_certificate"]
    elif flaw == "timestamp":
        material = certs.user_creation_certificates(world.alice, bob, certs.now() - timedelta(hours=1))
    elif flaw == "mismatched-timestamps":
        material = certs.user_creation_certificates(world.alice, bob)
        material.update(
            {key: value for key, value in certs.user_creation_certificates(
                world.alice, bob, certs.now() + timedelta(seconds=1)
            ).items() if "device" in key}
        )
    else:
        material = certs.user_creation_certificates(world.alice, bob)
        material["redacted_user_certificate"] = material["user_certificate"]
    reply = await alice.command("pki_enrollment_accept", **accept_request(world, world.alice, bob, enrollment_id,
                                                                            **material))
    assert reply["status"] == "invalid_certification" and reply["reason"]
    assert await nothing_created(enrollment_id)


async def test_not_found(world: World):
    bob = new_user_device(world, "bob")
    alice = await connect_as(world.alice)
    reply = await alice.command("pki_enrollment_accept", **accept_request(world, world.alice, bob, uuid.uuid4()))
    assert reply == {"status": "not_found", "reason": ""}
    assert not await User.objects.filter(user_id="bob").aexists()


async def test_no_longer_available(world: World):
    bob = new_user_device(world, "bob")
    enrollment_id, _, _ = await submit(world, bob)
    alice = await connect_as(world.alice)
    assert await alice.command("pki_enrollment_reject", enrollment_id=enrollment_id) == {"status": "ok"}
    reply = await alice.command("pki_enrollment_accept", **accept_request(world, world.alice, bob, enrollment_id))
    assert reply == {"status": "no_longer_available", "reason": ""}
    assert not await User.objects.filter(user_id="bob").aexists()


async def test_no_longer_available_once_accepted(world: World):
    bob = new_user_device(world, "bob")
    enrollment_id, _, _ = await submit(world, bob)
    alice = await connect_as(world.alice)
    assert await alice.command("pki_enrollment_accept", **accept_request(world, world.alice, bob, enrollment_id)) == {
        "status": "ok"
    }
    carl = new_user_device(world, "carl")
    reply = await alice.command("pki_enrollment_accept", **accept_request(world, world.alice, carl, enrollment_id))
    assert reply == {"status": "no_longer_available", "reason": ""}
    assert not await User.objects.filter(user_id="carl").aexists()


@pytest.mark.parametrize("clash", ["user_id", "email"])
async def test_already_exists(world: World, clash: str):
    await add_user(world, "bob")
    if clash == "user_id":
        bob = new_user_device(world, "bob")
    else:
        # Another active user (alice) has this e-mail.
        bob = new_user_device(world, "bob2", email="alice@example.com")
    enrollment_id, _, _ = await submit(world, bob)
    alice = await connect_as(world.alice)
    reply = await alice.command("pki_enrollment_accept", **accept_request(world, world.alice, bob, enrollment_id))
    assert reply == {"status": "already_exists", "reason": ""}
    # Atomic: the enrollment stays SUBMITTED, no device was left behind.
    assert (await PkiEnrollment.objects.aget(enrollment_id=enrollment_id)).state == EnrollmentState.SUBMITTED
    assert not await Device.objects.filter(device_id=bob.device_id, user__user_id="bob2").aexists()


async def test_active_users_limit_reached(world: World):
    await Organization.objects.filter(organization_id=world.organization_id).aupdate(active_users_limit=1)
    bob = new_user_device(world, "bob")
    enrollment_id, _, _ = await submit(world, bob)
    alice = await connect_as(world.alice)
    reply = await alice.command("pki_enrollment_accept", **accept_request(world, world.alice, bob, enrollment_id))
    assert reply == {"status": "active_users_limit_reached"}
    assert await nothing_created(enrollment_id)


async def test_concurrent_acceptances(world: World, concurrent_writers):
    """Two admins accept the same request at once: one user is created, the other admin is told it is gone."""
    bob = new_user_device(world, "bob")
    enrollment_id, _, _ = await submit(world, bob)
    admin2 = await add_user(world, "zoe", profile="ADMIN")
    clients = [await connect_as(world.alice), await connect_as(admin2)]
    bob_by_zoe = new_user_device(world, "bob2")
    requests = [
        accept_request(world, world.alice, bob, enrollment_id),
        accept_request(world, admin2, bob_by_zoe, enrollment_id),
    ]
    replies = await asyncio.gather(
        *(client.command("pki_enrollment_accept", **request) for client, request in zip(clients, requests))
    )
    assert sorted(reply["status"] for reply in replies) == ["no_longer_available", "ok"]
    assert await User.objects.filter(user_id__in=["bob", "bob2"]).acount() == 1
