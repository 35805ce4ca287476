"""bench/largeorg_reference.py writes the rows the 2.17 reference server's own commands write.

The same plan is loaded by the loader into one organization and replayed command by command through the
reference's protocol into another, both in the reference's PostgreSQL database; the rows must be the same
(serial keys replaced by what they point to). Then the loaded organization is read back through the reference's
protocol (bench/sizes.py's check). Marked `interop`: it runs the reference server (`parsec backend run`).
"""
from __future__ import annotations

import asyncio
import dataclasses

import psycopg
import pytest

from bench.client import Conn, http_json, http_msgpack
from bench.largeorg import LoadedOrg, Plan, Shape, make_plan
from bench.largeorg_reference import load_reference
from bench.servers import Lab, Server
from bench.sizes import check_loaded
from tests.testkit import certs

pytestmark = pytest.mark.interop

# Each table of the organization, its serial keys replaced by natural ids; %(org)s is the organization's id.
ORG = "(SELECT _id FROM organization WHERE organization_id = %(org)s)"
DEVICE_ID = "(SELECT device_id FROM device WHERE _id = {})"
USER_ID = "(SELECT user_id FROM user_ WHERE _id = {})"
REALM_ID = "(SELECT realm_id FROM realm WHERE _id = {})"
QUERIES = {
    "organization": "SELECT root_verify_key, user_profile_outsider_allowed, active_users_limit, is_expired,"
                    " _expired_on, minimum_archiving_period, sequester_authority_certificate"
                    " FROM organization WHERE organization_id = %(org)s",
    "human": f"SELECT email, label FROM human WHERE organization = {ORG}",
    "users": f"SELECT user_id, profile::text, user_certificate, redacted_user_certificate,"
             f" {DEVICE_ID.format('user_certifier')}, created_on, revoked_on, revoked_user_certificate,"
             f" (SELECT email FROM human WHERE _id = human), frozen FROM user_ WHERE organization = {ORG}",
    "devices": f"SELECT {USER_ID.format('user_')}, device_id, device_label, device_certificate,"
               f" redacted_device_certificate, {DEVICE_ID.format('d.device_certifier')}, created_on"
               f" FROM device d WHERE organization = {ORG}",
    "realms": f"SELECT realm_id, encryption_revision, maintenance_type::text FROM realm WHERE organization = {ORG}",
    "revisions": f"SELECT {REALM_ID.format('realm')}, encryption_revision FROM vlob_encryption_revision"
                 f" WHERE realm IN (SELECT _id FROM realm WHERE organization = {ORG})",
    "roles": f"SELECT {REALM_ID.format('realm')}, {USER_ID.format('user_')}, role::text, certificate,"
             f" {DEVICE_ID.format('certified_by')}, certified_on FROM realm_user_role"
             f" WHERE realm IN (SELECT _id FROM realm WHERE organization = {ORG})",
    "user_changes": f"SELECT {REALM_ID.format('realm')}, {USER_ID.format('user_')}, last_role_change,"
                    f" last_vlob_update, last_archiving_change FROM realm_user_change"
                    f" WHERE realm IN (SELECT _id FROM realm WHERE organization = {ORG})",
    "messages": f"SELECT {USER_ID.format('recipient')}, timestamp, index, {DEVICE_ID.format('sender')}, body"
                f" FROM message WHERE organization = {ORG}",
    "atoms": f"SELECT (SELECT {REALM_ID.format('r.realm')} FROM vlob_encryption_revision r"
             f" WHERE r._id = vlob_encryption_revision), vlob_id, version, blob, size, {DEVICE_ID.format('author')},"
             f" created_on, deleted_on FROM vlob_atom WHERE organization = {ORG}",
    "vlob_updates": f"SELECT {REALM_ID.format('u.realm')}, index, a.vlob_id, a.version FROM realm_vlob_update u"
                    f" JOIN vlob_atom a ON a._id = u.vlob_atom WHERE a.organization = {ORG}",
}


def rows_of(db_url: str, organization_id: str) -> dict[str, list[tuple]]:
    with psycopg.connect(db_url) as connection:
        return {table: sorted(connection.execute(query, {"org": organization_id}).fetchall(), key=repr)
                for table, query in QUERIES.items()}


async def replay(server: Server, plan: Plan, organization_id: str) -> None:
    """Every command of the plan, in order, through the reference's administration API and protocol."""
    created = http_json(f"{server.base_url}/administration/organizations", {"organization_id": organization_id},
                        server.token)
    reply = http_msgpack(f"{server.base_url}/anonymous/{organization_id}", {
        "cmd": "organization_bootstrap", "bootstrap_token": created["bootstrap_token"],
        "root_verify_key": bytes(plan.root_signing_key.verify_key), "sequester_authority_certificate": None,
        **plan.alice.certificates,
    })
    assert reply == {"status": "ok"}
    alice = await Conn.open(server.ws_url, dataclasses.replace(plan.alice.device, organization_id=organization_id))
    try:
        for user in plan.users:
            await alice.call_ok("user_create", **user.certificates)
        await alice.call_ok("realm_create", role_certificate=plan.big_realm.owner_certificate)
        for realm in plan.member_realms:
            await alice.call_ok("realm_create", role_certificate=realm.owner_certificate)
            certificate, message = realm.share_certificate, realm.message
            await alice.call_ok("realm_update_roles", role_certificate=certificate, recipient_message=message)
        for vlob in plan.vlobs:
            await alice.call_ok("vlob_create", realm_id=plan.big_realm.realm_id, encryption_revision=1,
                                vlob_id=vlob.vlob_id, timestamp=vlob.timestamp, blob=vlob.blob, sequester_blob=None)
    finally:
        await alice.close()


def test_reference_loader_writes_the_rows_the_reference_writes(tmp_path):
    lab = Lab(db_min=2, db_max=4, log_level=None, workdir=tmp_path)
    try:
        lab.start_cluster()
        server = lab.start("reference")
        # Dated now: the replay's certificates must be in the server's ballpark.
        plan = make_plan("Loaded", Shape(users=4, vlobs=5, member_realms=3, blob_size=64), end=certs.now())
        load_reference(plan, server.db_url)
        asyncio.run(replay(server, plan, "Replayed"))
        loaded, replayed = rows_of(server.db_url, "Loaded"), rows_of(server.db_url, "Replayed")
        assert {table: len(rows) for table, rows in loaded.items()} == {
            "organization": 1, "human": 4, "users": 4, "devices": 4, "realms": 4, "revisions": 4, "roles": 7,
            "user_changes": 4, "messages": 3, "atoms": 5, "vlob_updates": 5,
        }
        for table in loaded:
            assert loaded[table] == replayed[table], table
        asyncio.run(check_loaded(server.ws_url, LoadedOrg.of(plan)))
    finally:
        lab.stop()
