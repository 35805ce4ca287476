"""bench/largeorg.py writes exactly the rows the protocol would write.

Two proofs: one plan loaded by the loader and replayed command by command through the protocol gives the same
rows (pks aside); and a loaded organization reads back through the protocol (handshake, user_get whose
certificates verify, human_find, vlob_read, vlob_poll_changes, the member's realms in its events subscription
and messages) and takes new writes on top of the loaded state. On PostgreSQL (COPY) and SQLite (executemany).
"""
from __future__ import annotations

import dataclasses
import datetime
import uuid

import pytest
from asgiref.sync import sync_to_async

from bench import largeorg
from bench.largeorg import MEMBER_USER_ID, LoadedOrg, Plan, Shape
from organizations.models import Device, Organization, User
from protocol.certificates import DeviceCertificate, RealmRoleCertificate, UserCertificate
from realms.models import Message, Realm, RealmUserChange, RealmUserRole, RealmVlobUpdate, VlobAtom
from tests.conftest import anonymous_rpc, connect_as, create_organization_row
from tests.realms.helpers import events_of
from tests.testkit import certs
from tests.testkit.certs import TestDevice

pytestmark = pytest.mark.django_db(transaction=True)


# --- the same plan, loaded and replayed ---------------------------------------------------------------


def rows_of(organization_id: str) -> dict[str, list[tuple]]:
    """Every row the organization owns, with foreign keys replaced by what they point to (ids, not pks)."""
    organization = Organization.objects.get(organization_id=organization_id)
    users = User.objects.filter(organization=organization)
    realms = Realm.objects.filter(organization=organization)

    def listed(query, *fields) -> list[tuple]:
        return sorted(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                      for row in query.values_list(*fields))

    return {
        "organization": listed(Organization.objects.filter(pk=organization.pk), "bootstrap_token", "root_verify_key",
                               "user_profile_outsider_allowed", "active_users_limit", "minimum_archiving_period",
                               "is_expired", "expired_on", "sequester_authority_certificate"),
        "users": listed(users, "user_id", "human_email", "human_label", "profile", "user_certificate",
                        "redacted_user_certificate", "user_certifier__device_id", "created_on", "revoked_on",
                        "revoked_user_certificate", "revoked_user_certifier__device_id", "frozen"),
        "devices": listed(Device.objects.filter(organization=organization), "user__user_id", "device_id",
                          "device_label", "verify_key", "device_certificate", "redacted_device_certificate",
                          "device_certifier__device_id", "created_on"),
        "realms": listed(realms, "realm_id", "encryption_revision", "maintenance_type", "checkpoint", "created_on"),
        "roles": listed(RealmUserRole.objects.filter(realm__in=realms), "realm__realm_id", "user__user_id", "role",
                        "certificate", "certified_by__device_id", "certified_on"),
        "user_changes": listed(RealmUserChange.objects.filter(realm__in=realms), "realm__realm_id", "user__user_id",
                               "last_role_change", "last_vlob_update", "last_archiving_change"),
        "atoms": listed(VlobAtom.objects.filter(organization=organization), "realm__realm_id", "vlob_id", "version",
                        "encryption_revision", "blob", "size", "author__device_id", "created_on"),
        "vlob_updates": listed(RealmVlobUpdate.objects.filter(realm__in=realms), "realm__realm_id", "index", "vlob_id",
                               "version"),
        "messages": listed(Message.objects.filter(recipient__in=users), "recipient__user_id", "index",
                           "sender__device_id", "timestamp", "body"),
    }


def in_organization(device: TestDevice, organization_id: str) -> TestDevice:
    return dataclasses.replace(device, organization_id=organization_id)


async def replay(plan: Plan, organization_id: str) -> None:
    """Every command of the plan, in its order, through the protocol, into another organization."""
    await create_organization_row(organization_id, plan.bootstrap_token)
    reply = await anonymous_rpc(organization_id, {
        "cmd": "organization_bootstrap", "bootstrap_token": plan.bootstrap_token,
        "root_verify_key": bytes(plan.root_signing_key.verify_key), "sequester_authority_certificate": None,
        **plan.alice.certificates,
    })
    assert reply.status_code == 200 and reply.content == b"\x81\xa6status\xa2ok"
    alice = await connect_as(in_organization(plan.alice.device, organization_id))
    for user in plan.users:
        assert await alice.command("user_create", **user.certificates) == {"status": "ok"}
    assert await alice.command("realm_create", role_certificate=plan.big_realm.owner_certificate) == {"status": "ok"}
    for realm in plan.member_realms:
        assert await alice.command("realm_create", role_certificate=realm.owner_certificate) == {"status": "ok"}
        certificate, message = realm.share_certificate, realm.message
        assert await alice.command("realm_update_roles", role_certificate=certificate,
                                   recipient_message=message) == {"status": "ok"}
    for vlob in plan.vlobs:
        assert await alice.command("vlob_create", realm_id=plan.big_realm.realm_id, encryption_revision=1,
                                   vlob_id=vlob.vlob_id, timestamp=vlob.timestamp, blob=vlob.blob,
                                   sequester_blob=None) == {"status": "ok"}
    await alice.close()


async def test_loaded_rows_are_the_rows_the_protocol_writes(transactional_db):
    # Dated now: the replay's certificates must be in the server's ballpark.
    plan = largeorg.make_plan("Loaded", Shape(users=4, vlobs=5, member_realms=3, blob_size=64), end=certs.now())
    await sync_to_async(largeorg.load)(plan)
    await replay(plan, "Replayed")

    loaded, replayed = await sync_to_async(rows_of)("Loaded"), await sync_to_async(rows_of)("Replayed")
    assert {table: len(rows) for table, rows in loaded.items()} == {
        "organization": 1, "users": 4, "devices": 4, "realms": 4, "roles": 7, "user_changes": 4, "atoms": 5,
        "vlob_updates": 5, "messages": 3,
    }
    for table in loaded:
        assert loaded[table] == replayed[table], table


# --- a loaded organization, read back through the protocol -----------------------------------------------


SHAPE = Shape(users=50, vlobs=300, member_realms=20, blob_size=256)


@pytest.fixture
async def loaded(transactional_db) -> tuple[LoadedOrg, Plan]:
    plan = largeorg.make_plan("LargeOrg", SHAPE)
    timings = await sync_to_async(largeorg.load)(plan)
    assert timings["rows"] > SHAPE.users * 2 + SHAPE.vlobs * 2
    # What the bench gets: the handles, through their JSON form.
    return LoadedOrg.from_json(LoadedOrg.of(plan).to_json()), plan


async def test_user_get_returns_verifiable_certificates(loaded):
    org, plan = loaded
    target = next(user for user in plan.users if user.device.user_id == org.sample_user_id)
    client = await connect_as(org.alice)
    reply = await client.command("user_get", user_id=org.sample_user_id)
    assert reply["status"] == "ok"
    assert reply["user_certificate"] == target.certificates["user_certificate"]
    assert reply["device_certificates"] == [target.certificates["device_certificate"]]
    user = UserCertificate.verify_and_load(reply["user_certificate"], org.alice.verify_key)
    device = DeviceCertificate.verify_and_load(reply["device_certificates"][0], org.alice.verify_key)
    assert (user.author, user.user_id, user.public_key) == ("alice@dev1", org.sample_user_id, target.device.public_key)
    assert (device.device_id, device.verify_key) == (f"{org.sample_user_id}@dev1", target.device.verify_key)
    # The trustchain is alice, certified by the root key.
    assert reply["trustchain"]["revoked_users"] == []
    [alice_user] = reply["trustchain"]["users"]
    [alice_device] = reply["trustchain"]["devices"]
    assert UserCertificate.verify_and_load(alice_user, org.alice.root_verify_key).author is None
    assert DeviceCertificate.verify_and_load(alice_device, org.alice.root_verify_key).device_id == "alice@dev1"
    await client.close()


async def test_a_loaded_user_connects_and_is_found(loaded):
    org, plan = loaded
    sample = next(user.device for user in plan.users if user.device.user_id == org.sample_user_id)
    client = await connect_as(sample)  # its verify key, as loaded, checks the handshake's signature
    email, label = sample.human_handle
    reply = await client.command("human_find", query=label, omit_revoked=True, omit_non_human=False, page=1,
                                 per_page=20)
    assert reply == {"status": "ok", "results": [{"user_id": org.sample_user_id, "human_handle": [email, label],
                                                  "revoked": False}], "page": 1, "per_page": 20, "total": 1}
    first_page = await client.command("human_find", query=None, omit_revoked=True, omit_non_human=False, page=1,
                                      per_page=100)
    assert first_page["total"] == SHAPE.users
    # Sorted by label: Alice, then User 00001... (the member), User 00002...
    assert [r["user_id"] for r in first_page["results"][:3]] == ["alice", MEMBER_USER_ID, "u00002"]
    await client.close()


async def test_vlobs_read_poll_and_take_new_writes(loaded):
    org, plan = loaded
    client = await connect_as(org.alice)
    for vlob in (plan.vlobs[0], plan.vlobs[len(plan.vlobs) // 2], plan.vlobs[-1]):
        assert vlob.vlob_id in org.sample_vlobs or vlob is plan.vlobs[-1]
        reply = await client.command("vlob_read", encryption_revision=1, vlob_id=vlob.vlob_id, version=None,
                                     timestamp=None)
        assert reply["status"] == "ok", reply
        assert (reply["version"], reply["blob"], reply["author"], reply["timestamp"]) == (
            1, vlob.blob, "alice@dev1", vlob.timestamp)
        assert reply["author_last_role_granted_on"] == plan.big_realm.created_on

    reply = await client.command("vlob_poll_changes", realm_id=org.big_realm, last_checkpoint=SHAPE.vlobs - 3)
    assert reply == {"status": "ok", "current_checkpoint": SHAPE.vlobs,
                     "changes": {vlob.vlob_id: 1 for vlob in plan.vlobs[-3:]}}

    # On top of the loaded state: the next checkpoint, the next version, a new vlob.
    updated = org.sample_vlobs[7]
    assert await client.command("vlob_update", encryption_revision=1, vlob_id=updated, timestamp=certs.now(),
                                version=2, blob=b"v2", sequester_blob=None) == {"status": "ok"}
    created = uuid.uuid4()
    assert await client.command("vlob_create", realm_id=org.big_realm, encryption_revision=1, vlob_id=created,
                                timestamp=certs.now(), blob=b"new", sequester_blob=None) == {"status": "ok"}
    reply = await client.command("vlob_poll_changes", realm_id=org.big_realm, last_checkpoint=SHAPE.vlobs)
    assert reply == {"status": "ok", "current_checkpoint": SHAPE.vlobs + 2, "changes": {updated: 2, created: 1}}
    # A version that already exists is refused, as for any vlob written through the protocol.
    assert (await client.command("vlob_create", realm_id=org.big_realm, encryption_revision=1,
                                 vlob_id=org.sample_vlobs[0], timestamp=certs.now(), blob=b"x",
                                 sequester_blob=None))["status"] == "already_exists"
    await client.close()


async def test_the_member_holds_its_realms(loaded):
    org, plan = loaded
    member = await connect_as(org.member)
    assert await member.command("events_subscribe") == {"status": "ok"}
    # Its subscription covers every shared realm: a write in any of them reaches it.
    alice = await connect_as(org.alice)
    for realm_id in (org.member_realms[0], org.member_realms[-1]):
        vlob_id = uuid.uuid4()
        assert await alice.command("vlob_create", realm_id=realm_id, encryption_revision=1, vlob_id=vlob_id,
                                   timestamp=certs.now(), blob=b"x", sequester_blob=None) == {"status": "ok"}
        assert await events_of(member) == [{"status": "ok", "event": "realm.vlobs_updated", "realm_id": realm_id,
                                            "checkpoint": 1, "src_id": vlob_id, "src_version": 1}]
    # A write in alice's big realm, which the member does not hold, does not.
    assert await alice.command("vlob_create", realm_id=org.big_realm, encryption_revision=1, vlob_id=uuid.uuid4(),
                               timestamp=certs.now(), blob=b"x", sequester_blob=None) == {"status": "ok"}
    assert await events_of(member) == []

    realm = plan.member_realms[5]
    reply = await member.command("realm_get_role_certificates", realm_id=realm.realm_id)
    assert reply == {"status": "ok", "certificates": [realm.owner_certificate, realm.share_certificate]}
    shared = RealmRoleCertificate.verify_and_load(reply["certificates"][1], org.alice.verify_key)
    assert (shared.user_id, shared.role) == (MEMBER_USER_ID, "CONTRIBUTOR")
    messages = (await member.command("message_get", offset=0))["messages"]
    assert [(m["count"], m["sender"], m["timestamp"], m["body"]) for m in messages] == [
        (index, "alice@dev1", r.shared_on, r.message) for index, r in enumerate(plan.member_realms, start=1)]
    # The loaded causality state lets alice change the member's role again, later than her last change.
    certificate = certs.realm_role_certificate(
        org.alice.signing_key, author="alice@dev1", timestamp=certs.now(), realm_id=realm.realm_id,
        user_id=MEMBER_USER_ID, role="READER")
    assert await alice.command("realm_update_roles", role_certificate=certificate,
                               recipient_message=None) == {"status": "ok"}
    too_early = certs.realm_role_certificate(
        org.alice.signing_key, author="alice@dev1", timestamp=realm.shared_on - datetime.timedelta(seconds=1),
        realm_id=plan.member_realms[6].realm_id, user_id=MEMBER_USER_ID, role="READER")
    assert (await alice.command("realm_update_roles", role_certificate=too_early,
                                recipient_message=None))["status"] == "require_greater_timestamp"
    await member.close()
    await alice.close()
