"""Hand-written SQL of the realms app: whole statements with named parameters, built once at import.

The hot path (every vlob and block command) reads in SQL rather than through querysets: building a
queryset costs far more CPU than running it (protocol/db.py). Values go through `protocol.db.db_param`
and come back through `convert_row`, so they are exactly what the ORM would give.

Locks. Every writer of a realm (vlob writes, role and archiving changes, maintenance) serialises on
the realm row, taken one way: `FOR NO KEY UPDATE OF r` (`lock_realm` / `lock_realm_then_read`), so
concurrent inserts that merely reference the realm (blocks, roles) are not blocked. SQLite has no row
locks: its writers already queue at BEGIN IMMEDIATE (settings), so there the lock is left out.
"""
from __future__ import annotations

from typing import Any

from django.db import connection

from organizations.models import Device
from protocol.db import Prepared, convert_row, fetch_row, statement_text
from realms.models import Realm, RealmUserChange, RealmUserRole, RealmVlobUpdate, VlobAtom
from realms.rules import ACCESS_STATE_FIELDS, current_archiving_sql, current_role_sql
from sequester.models import SequesterService

_REALM = Realm._meta.db_table
_ATOM = VlobAtom._meta.db_table
_REALM_FIELDS = tuple(Realm._meta.concrete_fields)
_REALM_COLUMNS = ", ".join(f'r."{field.column}"' for field in _REALM_FIELDS)
_R_ID, _V_REALM_ID, _D_USER_ID = 'r."id"', 'v."realm_id"', 'd."user_id"'


def _access_state_columns(user: str) -> str:
    return (
        f"{_REALM_COLUMNS},"
        f" {current_archiving_sql('configuration', realm=_R_ID)},"
        f" {current_archiving_sql('deletion_date', realm=_R_ID)},"
        f" {current_role_sql('role', realm=_R_ID, user=user)},"
        f" {current_role_sql('certified_on', realm=_R_ID, user=user)}"
    )


# The select list of an access state (rules.ACCESS_STATE_FIELDS) over a realm aliased `r`, for the
# user `%(user_pk)s`: the realm row, its latest archiving and the user's latest role, in one read.
ACCESS_STATE_COLUMNS = _access_state_columns("%(user_pk)s")

# --- realm lock ---------------------------------------------------------------------------------

_LOCK = " FOR NO KEY UPDATE OF r"
_BY_REALM_ID = 'r."organization_id" = %(organization_pk)s AND r."realm_id" = %(realm_id)s'
# The realm holding the vlob (vlob ids are unique in an organization, across realms and revisions).
_BY_VLOB_ID = (
    f'r."id" = (SELECT v."realm_id" FROM "{_ATOM}" v'
    ' WHERE v."organization_id" = %(organization_pk)s AND v."vlob_id" = %(vlob_id)s LIMIT 1)'
)

# Reads the realm row by its id; the locking form takes its row lock.
REALM_BY_ID = f'SELECT {_REALM_COLUMNS} FROM "{_REALM}" r WHERE {_BY_REALM_ID}'
LOCK_REALM_BY_ID = REALM_BY_ID + _LOCK
# Takes the row lock of the realm by id / of the vlob's realm, reads nothing.
LOCK_REALM_ONLY_BY_ID = Prepared("lock_realm_only_by_id", f'SELECT 1 FROM "{_REALM}" r WHERE {_BY_REALM_ID}{_LOCK}')
LOCK_REALM_ONLY_OF_VLOB = Prepared("lock_realm_only_of_vlob", f'SELECT 1 FROM "{_REALM}" r WHERE {_BY_VLOB_ID}{_LOCK}')


def lock_realm(*, organization_pk: int, realm_id: Any) -> Realm | None:
    """Reads and locks the realm row (`realm_id` as `db_param` gives it); None: no such realm."""
    sql = LOCK_REALM_BY_ID if connection.features.has_select_for_no_key_update else REALM_BY_ID
    row = fetch_row(sql, {"organization_pk": organization_pk, "realm_id": realm_id}, _REALM_FIELDS)
    if row is None:
        return None
    return Realm.from_db(connection.alias, [field.attname for field in _REALM_FIELDS], row)


def lock_realm_then_read(*, lock: Prepared, read: Prepared, params: dict[str, Any], fields: tuple) -> tuple | None:
    """Takes the realm row lock (`lock`), then reads `read`'s first row; None: no such realm.

    The read is a second statement, so it sees every role change, archiving or write committed
    before the lock was granted (READ COMMITTED takes a snapshot per statement): a write never
    lands after the change that forbids it, and checkpoints stay dense. PostgreSQL gets both
    statements in one round trip; SQLite (no row locks) gets the read alone.
    """
    if not connection.features.has_select_for_no_key_update:
        return fetch_row(read, params, fields)
    with connection.cursor() as cursor:
        # Two whole statements, one round trip.
        cursor.execute(f"{statement_text(cursor, lock)}; {statement_text(cursor, read)}", params)
        cursor.nextset()
        row = cursor.fetchone()
    return None if row is None else convert_row(row, fields)


# --- access state -------------------------------------------------------------------------------

# Reads the access state of a realm by id (no lock).
ACCESS_STATE_BY_ID = Prepared(
    "access_state_by_id", f'SELECT {ACCESS_STATE_COLUMNS} FROM "{_REALM}" r WHERE {_BY_REALM_ID}'
)
# Reads the access state of the realm of pk `%(realm_pk)s` (no lock).
ACCESS_STATE_BY_PK = Prepared(
    "access_state_by_pk", f'SELECT {ACCESS_STATE_COLUMNS} FROM "{_REALM}" r WHERE r."id" = %(realm_pk)s'
)

# --- vlob writes --------------------------------------------------------------------------------

# Whether the organization has enabled sequester services: a nil `sequester_blob` is then refused
# (§6.8). Read with the state, so a write without sequester blob costs no extra round trip.
_ENABLED_SEQUESTER_SERVICES = (
    f'EXISTS(SELECT 1 FROM "{SequesterService._meta.db_table}" s'
    ' WHERE s."organization_id" = r."organization_id" AND s."disabled_on" IS NULL)'
)
# Reads, after LOCK_REALM_ONLY_BY_ID: the access state, whether the vlob id is taken, whether
# sequester services are enabled.
VLOB_CREATE_STATE = Prepared(
    "vlob_create_state",
    f"SELECT {ACCESS_STATE_COLUMNS},"
    f' EXISTS(SELECT 1 FROM "{_ATOM}" v WHERE v."organization_id" = %(organization_pk)s AND v."vlob_id" = %(vlob_id)s),'
    f" {_ENABLED_SEQUESTER_SERVICES}"
    f' FROM "{_REALM}" r WHERE {_BY_REALM_ID}',
)
# Reads, after LOCK_REALM_ONLY_OF_VLOB: the access state, the vlob's last (version, timestamp) in the
# realm's current revision, whether sequester services are enabled.
VLOB_UPDATE_STATE = Prepared(
    "vlob_update_state",
    f"SELECT {ACCESS_STATE_COLUMNS}, "
    + ", ".join(
        f'(SELECT v."{column}" FROM "{_ATOM}" v WHERE v."organization_id" = %(organization_pk)s'
        ' AND v."vlob_id" = %(vlob_id)s AND v."encryption_revision" = r."encryption_revision"'
        ' ORDER BY v."version" DESC LIMIT 1)'
        for column in ("version", "created_on")
    )
    + f", {_ENABLED_SEQUESTER_SERVICES}"
    f' FROM "{_REALM}" r WHERE {_BY_VLOB_ID}',
)

# The four writes of a vlob version, under the realm lock, all with the same parameters.
# Inserts the version.
_INSERT_ATOM = (
    f'INSERT INTO "{_ATOM}" ("organization_id", "realm_id", "vlob_id", "version", "encryption_revision",'
    ' "blob", "size", "author_id", "created_on") VALUES (%(organization_pk)s, %(realm_pk)s, %(vlob_id)s,'
    " %(version)s, %(encryption_revision)s, %(blob)s, %(size)s, %(author_pk)s, %(timestamp)s)"
)
# Advances the realm checkpoint by one (its row count says whether it moved).
_ADVANCE_CHECKPOINT = (
    f'UPDATE "{_REALM}" SET "checkpoint" = %(checkpoint)s'
    ' WHERE "id" = %(realm_pk)s AND "checkpoint" = %(previous_checkpoint)s'
)
# Appends to the realm's change log.
_INSERT_UPDATE_LOG = (
    f'INSERT INTO "{RealmVlobUpdate._meta.db_table}" ("realm_id", "index", "vlob_id", "version")'
    " VALUES (%(realm_pk)s, %(checkpoint)s, %(vlob_id)s, %(version)s)"
)
# realm_user_change.last_vlob_update = max(previous, timestamp), for `realm_update_roles` causality.
_RECORD_LAST_VLOB_UPDATE = (
    f'INSERT INTO "{RealmUserChange._meta.db_table}" AS c ("realm_id", "user_id", "last_vlob_update")'
    ' VALUES (%(realm_pk)s, %(user_pk)s, %(timestamp)s) ON CONFLICT ("realm_id", "user_id") DO UPDATE SET'
    ' "last_vlob_update" = CASE WHEN c."last_vlob_update" IS NULL OR c."last_vlob_update" < excluded."last_vlob_update"'
    ' THEN excluded."last_vlob_update" ELSE c."last_vlob_update" END'
)
# SQLite: the four, one by one; the second one's row count is the checkpoint move.
STORE_VERSION_STATEMENTS = (_INSERT_ATOM, _ADVANCE_CHECKPOINT, _INSERT_UPDATE_LOG, _RECORD_LAST_VLOB_UPDATE)
# PostgreSQL: the four in one round trip (every data-modifying WITH member runs, referenced or not);
# returns how many realm rows the checkpoint update changed.
STORE_VERSION = Prepared(
    "store_version",
    "WITH "
    + ", ".join(f"w{index} AS ({sql} RETURNING 1)" for index, sql in enumerate(STORE_VERSION_STATEMENTS))
    + " SELECT (SELECT count(*) FROM w1)",
)

# --- vlob reads ---------------------------------------------------------------------------------

# Reads the wanted atom of a vlob in a revision (the latest, or of `%(version)s`, or the latest
# written at or before `%(timestamp)s`), its author, the author's latest role in the realm and the
# realm's access state for the session's user. No lock.
_VLOB_READ = (
    'SELECT v."version", v."blob", v."created_on", d."device_id",'
    f" {current_role_sql('certified_on', realm=_V_REALM_ID, user=_D_USER_ID)},"
    f" {ACCESS_STATE_COLUMNS}"
    f' FROM "{_ATOM}" v'
    f' JOIN "{_REALM}" r ON r."id" = v."realm_id"'
    f' JOIN "{Device._meta.db_table}" d ON d."id" = v."author_id"'
    ' WHERE v."organization_id" = %(organization_pk)s AND v."vlob_id" = %(vlob_id)s'
    ' AND v."encryption_revision" = %(encryption_revision)s{selector}'
    ' ORDER BY v."version" DESC LIMIT 1'
)
VLOB_READ_LATEST = Prepared("vlob_read_latest", _VLOB_READ.replace("{selector}", ""))
VLOB_READ_VERSION = Prepared("vlob_read_version", _VLOB_READ.replace("{selector}", ' AND v."version" = %(version)s'))
VLOB_READ_AT = Prepared("vlob_read_at", _VLOB_READ.replace("{selector}", ' AND v."created_on" <= %(timestamp)s'))
VLOB_READ_FIELDS = (
    VlobAtom._meta.get_field("version"),
    VlobAtom._meta.get_field("blob"),
    VlobAtom._meta.get_field("created_on"),
    Device._meta.get_field("device_id"),
    RealmUserRole._meta.get_field("certified_on"),
    *ACCESS_STATE_FIELDS,
)
