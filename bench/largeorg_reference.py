"""The same large organization as bench/largeorg.py, for the parsec-cloud 2.17.0 reference server's PostgreSQL
schema (its `datamodel.sql`: serial `_id` keys, a `human` table, vlob atoms under a `vlob_encryption_revision`,
the change log pointing at atoms, no checkpoint column).

The rows follow what its commands insert (read in its `parsec/backend/postgresql/` queries, for the facts only):
organization create then bootstrap, `human` + `user_` + `device` per user_create, `realm` + its OWNER
`realm_user_role` + `vlob_encryption_revision` 1 per realm_create, `realm_user_role` + the author's
`realm_user_change.last_role_change` + a `message` per realm_update_roles, `vlob_atom` + `realm_vlob_update` + the
writer's `realm_user_change.last_vlob_update` per vlob_create. Checked by bench/sizes.py through the reference's
protocol right after loading (`check_loaded`); there is no pytest for it, as the tests do not run the reference
server on PostgreSQL.
"""
from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

import psycopg

from bench.largeorg import MEMBER_USER_ID, NewUser, Plan

DEFAULT_MINIMUM_ARCHIVING_PERIOD = 2_592_000


def _copy(cursor: psycopg.Cursor, table: str, columns: list[str], rows: Iterable[tuple]) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _one(cursor: psycopg.Cursor) -> Any:
    row = cursor.fetchone()
    assert row is not None
    return row[0]


def _human_handle(user: NewUser) -> tuple[str, str]:
    assert user.device.human_handle is not None  # every planned user has one
    return user.device.human_handle


def _pairs(cursor: psycopg.Cursor) -> dict[Any, int]:
    return {key: value for key, value in cursor.fetchall()}


def load_reference(plan: Plan, db_url: str) -> None:
    """Write the plan's rows into the reference's (migrated) database, in one transaction."""
    alice, shape = plan.alice, plan.shape
    with psycopg.connect(db_url) as connection, connection.cursor() as cursor:
        created_on = alice.timestamp - datetime.timedelta(seconds=1)  # created, then bootstrapped
        cursor.execute(
            "INSERT INTO organization (organization_id, bootstrap_token, active_users_limit,"
            " user_profile_outsider_allowed, _created_on, _bootstrapped_on, is_expired, _expired_on,"
            " minimum_archiving_period, root_verify_key)"
            " VALUES (%s, %s, NULL, TRUE, %s, %s, FALSE, NULL, %s, %s) RETURNING _id",
            [plan.organization_id, plan.bootstrap_token, created_on, alice.timestamp,
             DEFAULT_MINIMUM_ARCHIVING_PERIOD, bytes(plan.root_signing_key.verify_key)],
        )
        org = _one(cursor)
        everyone = [alice, *plan.users]
        _copy(cursor, "human", ["organization", "email", "label"],
              ((org, *_human_handle(user)) for user in everyone))
        cursor.execute("SELECT email, _id FROM human WHERE organization = %s", [org])
        humans = _pairs(cursor)
        user_columns = ["organization", "user_id", "profile", "user_certificate", "redacted_user_certificate",
                        "user_certifier", "created_on", "human"]
        device_columns = ["organization", "user_", "device_id", "device_label", "device_certificate",
                          "redacted_device_certificate", "device_certifier", "created_on"]

        def user_row(user, certifier):
            return (org, user.device.user_id, user.device.profile, user.certificates["user_certificate"],
                    user.certificates["redacted_user_certificate"], certifier, user.timestamp,
                    humans[_human_handle(user)[0]])

        def device_row(user, user_pk, certifier):
            return (org, user_pk, user.device.device_id, user.device.device_label,
                    user.certificates["device_certificate"], user.certificates["redacted_device_certificate"],
                    certifier, user.timestamp)

        _copy(cursor, "user_", user_columns, [user_row(alice, None)])
        cursor.execute("SELECT _id FROM user_ WHERE organization = %s AND user_id = 'alice'", [org])
        alice_user = _one(cursor)
        _copy(cursor, "device", device_columns, [device_row(alice, alice_user, None)])
        cursor.execute("SELECT _id FROM device WHERE organization = %s", [org])
        alice_device = _one(cursor)
        _copy(cursor, "user_", user_columns, (user_row(user, alice_device) for user in plan.users))
        cursor.execute("SELECT user_id, _id FROM user_ WHERE organization = %s", [org])
        user_pks = _pairs(cursor)
        _copy(cursor, "device", device_columns,
              (device_row(user, user_pks[user.device.user_id], alice_device) for user in plan.users))

        realms = [plan.big_realm, *plan.member_realms]
        _copy(cursor, "realm", ["organization", "realm_id", "encryption_revision"],
              ((org, realm.realm_id, 1) for realm in realms))
        cursor.execute("SELECT realm_id, _id FROM realm WHERE organization = %s", [org])
        realm_pks = _pairs(cursor)
        _copy(cursor, "vlob_encryption_revision", ["realm", "encryption_revision"],
              ((realm_pks[realm.realm_id], 1) for realm in realms))
        member = user_pks[MEMBER_USER_ID]
        _copy(cursor, "realm_user_role", ["realm", "user_", "role", "certificate", "certified_by", "certified_on"],
              [(realm_pks[r.realm_id], alice_user, "OWNER", r.owner_certificate, alice_device, r.created_on)
               for r in realms]
              + [(realm_pks[r.realm_id], member, "CONTRIBUTOR", r.share_certificate, alice_device, r.shared_on)
                 for r in plan.member_realms])
        _copy(cursor, "realm_user_change", ["realm", "user_", "last_role_change", "last_vlob_update"],
              [(realm_pks[plan.big_realm.realm_id], alice_user, None, plan.vlobs[-1].timestamp)]
              + [(realm_pks[r.realm_id], alice_user, r.shared_on, None) for r in plan.member_realms])
        _copy(cursor, "message", ["organization", "recipient", "timestamp", "index", "sender", "body"],
              ((org, member, r.shared_on, index, alice_device, r.message)
               for index, r in enumerate(plan.member_realms, start=1)))

        big = realm_pks[plan.big_realm.realm_id]
        cursor.execute("SELECT _id FROM vlob_encryption_revision WHERE realm = %s AND encryption_revision = 1", [big])
        revision = _one(cursor)
        _copy(cursor, "vlob_atom", ["organization", "vlob_encryption_revision", "vlob_id", "version", "blob", "size",
                                    "author", "created_on"],
              ((org, revision, v.vlob_id, 1, v.blob, len(v.blob), alice_device, v.timestamp) for v in plan.vlobs))
        cursor.execute("SELECT vlob_id, _id FROM vlob_atom WHERE vlob_encryption_revision = %s", [revision])
        atoms = _pairs(cursor)
        _copy(cursor, "realm_vlob_update", ["realm", "index", "vlob_atom"],
              ((big, index, atoms[v.vlob_id]) for index, v in enumerate(plan.vlobs, start=1)))
        assert len(atoms) == shape.vlobs
    # As for ours: what autovacuum would have done to tables grown over months.
    with psycopg.connect(db_url, autocommit=True) as connection:
        for table in ("human", "user_", "device", "realm", "vlob_encryption_revision", "realm_user_role",
                      "realm_user_change", "message", "vlob_atom", "realm_vlob_update"):
            connection.execute(f"ANALYZE {table}")
