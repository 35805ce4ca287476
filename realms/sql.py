"""Hand-written SQL of the realms app: whole statements with named parameters, built once at import.

The hot path (every vlob and block command) reads in SQL rather than through querysets: building a
queryset costs far more CPU than running it (protocol/db.py). Values go through `protocol.db.db_param`
and come back through `convert_row`, so they are exactly what the ORM would give.

Locks. Every writer of a realm (vlob writes, role and archiving changes, maintenance) serialises on
the realm row, taken one way: `FOR NO KEY UPDATE OF r` (`lock_realm` / `lock_realm_then_read`), so
concurrent inserts that merely reference the realm (blocks, roles) are not blocked. SQLite has no row
locks: its writers already queue at BEGIN IMMEDIATE (settings), so there the lock is left out.
The event loop's vlob writes read first and take the lock only to store, checking under it that the
state they decided on has not changed (STATE_STAMP, STORE_CREATED/UPDATED_IF_UNCHANGED).
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


def _access_state_column_list(user: str) -> list[str]:
    return [
        *(f'r."{field.column}"' for field in _REALM_FIELDS),
        current_archiving_sql("configuration", realm=_R_ID),
        current_archiving_sql("deletion_date", realm=_R_ID),
        current_role_sql("role", realm=_R_ID, user=user),
        current_role_sql("certified_on", realm=_R_ID, user=user),
    ]


# The select list of an access state (rules.ACCESS_STATE_FIELDS) over a realm aliased `r`, for the
# user `%(user_pk)s`: the realm row, its latest archiving and the user's latest role, in one read.
ACCESS_STATE_COLUMNS = ", ".join(_access_state_column_list("%(user_pk)s"))

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
LOCK_REALM_ONLY_BY_PK = Prepared("lock_realm_only_by_pk", f'SELECT 1 FROM "{_REALM}" r WHERE r."id" = %(realm_pk)s{_LOCK}')
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
# The stamp of the state a write is decided on, for the event loop's writes (protocol/loop_db.py),
# which read the state without the lock, decide, then send `BEGIN; lock; store; COMMIT` at once:
# the store (STORE_CREATED/UPDATED_IF_UNCHANGED) takes the stamp again under the lock and writes only if it
# is the same, so the realm lock is held for one statement instead of across a round trip. Stamped:
# the realm row but its checkpoint (every write moves it; the store moves it in SQL), its archiving,
# the user's role, whether sequester services are enabled. Not stamped: whether the vlob id is taken
# and the vlob's last version, which the unique constraints referee under the lock anyway.
# SQLite (no event-loop path) reads NULL.
_STAMPED_COLUMNS = [
    column for column in _access_state_column_list("%(user_pk)s") if column != 'r."checkpoint"'
] + [_ENABLED_SEQUESTER_SERVICES]
_POSTGRESQL = connection.vendor == "postgresql"
STATE_STAMP = f"md5(ROW({', '.join(_STAMPED_COLUMNS)})::text)" if _POSTGRESQL else "NULL"


def _state_read(name: str, vlob_columns: list[str], source: str) -> Prepared:
    """`SELECT <access state>, <vlob_columns>, <sequester services enabled>, <stamp> <source>`.

    On PostgreSQL the stamp is taken over the columns once read, in a subquery that OFFSET 0 keeps
    whole, rather than over STATE_STAMP's expressions: the role and archiving lookups run once. The
    same values give the same text, hence the stamp the store computes under the lock."""
    columns = [*_access_state_column_list("%(user_pk)s"), *vlob_columns, _ENABLED_SEQUESTER_SERVICES]
    if not _POSTGRESQL:
        return Prepared(name, f"SELECT {', '.join(columns)}, {STATE_STAMP} {source}")
    stamped = ", ".join(f"s.c{index}" for index, column in enumerate(columns) if column in _STAMPED_COLUMNS)
    return Prepared(
        name,
        f"SELECT {', '.join(f's.c{index}' for index in range(len(columns)))}, md5(ROW({stamped})::text)"
        f" FROM (SELECT {', '.join(f'{column} AS c{index}' for index, column in enumerate(columns))} {source} OFFSET 0) s",
    )


# Reads, after LOCK_REALM_ONLY_BY_ID: the access state, whether the vlob id is taken, whether
# sequester services are enabled, the state's stamp.
VLOB_CREATE_STATE = _state_read(
    "vlob_create_state",
    [f'EXISTS(SELECT 1 FROM "{_ATOM}" v WHERE v."organization_id" = %(organization_pk)s AND v."vlob_id" = %(vlob_id)s)'],
    f'FROM "{_REALM}" r WHERE {_BY_REALM_ID}',
)
# Reads, after LOCK_REALM_ONLY_OF_VLOB: the access state, the vlob's last (version, timestamp) in the
# realm's current revision, whether sequester services are enabled, the state's stamp.
VLOB_UPDATE_STATE = _state_read(
    "vlob_update_state",
    [
        f'(SELECT v."{column}" FROM "{_ATOM}" v WHERE v."organization_id" = %(organization_pk)s'
        ' AND v."vlob_id" = %(vlob_id)s AND v."encryption_revision" = r."encryption_revision"'
        ' ORDER BY v."version" DESC LIMIT 1)'
        for column in ("version", "created_on")
    ],
    f'FROM "{_REALM}" r WHERE {_BY_VLOB_ID}',
)


def _insert(into: str, columns: str, values: str, *, source: str | None = None, suffix: str = "") -> str:
    """`INSERT INTO <into> (<columns>) VALUES (<values>)<suffix>`; with `source` (a WITH member),
    `SELECT <values> FROM <source>` instead: one row per row of `source`, none when it has none."""
    rows = f"VALUES ({values})" if source is None else f"SELECT {values} FROM {source}"
    return f"INSERT INTO {into} ({columns}) {rows}{suffix}"


# The writes of a vlob version, under the realm lock, all with the same parameters.
# Inserts the version.
_ATOM_ROW = {
    "into": f'"{_ATOM}"',
    "columns": '"organization_id", "realm_id", "vlob_id", "version", "encryption_revision", "blob", "size",'
    ' "author_id", "created_on"',
    "values": "%(organization_pk)s, %(realm_pk)s, %(vlob_id)s, %(version)s, %(encryption_revision)s, %(blob)s,"
    " %(size)s, %(author_pk)s, %(timestamp)s",
}
_INSERT_ATOM = _insert(**_ATOM_ROW)
# Advances the realm checkpoint by one (its row count says whether it moved).
_ADVANCE_CHECKPOINT = (
    f'UPDATE "{_REALM}" SET "checkpoint" = %(checkpoint)s'
    ' WHERE "id" = %(realm_pk)s AND "checkpoint" = %(previous_checkpoint)s'
)
# Appends to the realm's change log, at the new checkpoint.
_LOG_ROW = {
    "into": f'"{RealmVlobUpdate._meta.db_table}"',
    "columns": '"realm_id", "index", "vlob_id", "version"',
    "values": "%(realm_pk)s, {checkpoint}, %(vlob_id)s, %(version)s",
}
_INSERT_UPDATE_LOG = _insert(**{**_LOG_ROW, "values": _LOG_ROW["values"].format(checkpoint="%(checkpoint)s")})
# realm_user_change.last_vlob_update = max(previous, timestamp), for `realm_update_roles` causality.
_LAST_VLOB_UPDATE_ROW = {
    "into": f'"{RealmUserChange._meta.db_table}" AS c',
    "columns": '"realm_id", "user_id", "last_vlob_update"',
    "values": "%(realm_pk)s, %(user_pk)s, %(timestamp)s",
    "suffix": ' ON CONFLICT ("realm_id", "user_id") DO UPDATE SET "last_vlob_update" = CASE'
    ' WHEN c."last_vlob_update" IS NULL OR c."last_vlob_update" < excluded."last_vlob_update"'
    ' THEN excluded."last_vlob_update" ELSE c."last_vlob_update" END',
}
_RECORD_LAST_VLOB_UPDATE = _insert(**_LAST_VLOB_UPDATE_ROW)
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

# The event loop's stores (PostgreSQL only), run after LOCK_REALM_ONLY_BY_PK in the same transaction,
# hence on a snapshot taken once the lock is held: the same four writes, made only if the state's
# stamp is still `%(stamp)s` and the vlob is as the write was decided on (its id free for a creation;
# for an update, version `%(version)s - 1` there and written at or before `%(timestamp)s`), the
# checkpoint moved by one in SQL. Returns the realm's new checkpoint, or no row when anything changed
# (nothing written). The vlob guards let a write be decided on a state read by an earlier command of
# the session (services: one round trip per write); a version already taken is the unique constraint's.
def _store_version_if(vlob_guard: str) -> str:
    unchanged = (
        f'SELECT r."id" FROM "{_REALM}" r WHERE r."id" = %(realm_pk)s AND {STATE_STAMP} = %(stamp)s AND {vlob_guard}'
    )
    log_values = _LOG_ROW["values"].format(checkpoint="moved.checkpoint")
    return (
        f"WITH unchanged AS ({unchanged}),"
        f' moved AS (UPDATE "{_REALM}" SET "checkpoint" = "checkpoint" + 1 WHERE "id" IN (SELECT "id" FROM unchanged)'
        ' RETURNING "checkpoint"),'
        f" atom AS ({_insert(**_ATOM_ROW, source='moved')} RETURNING 1),"
        f" log AS ({_insert(**{**_LOG_ROW, 'values': log_values}, source='moved')} RETURNING 1),"
        f" last AS ({_insert(**_LAST_VLOB_UPDATE_ROW, source='moved')} RETURNING 1)"
        ' SELECT "checkpoint" FROM moved'
    )


_VLOB_ID_FREE = (
    f'NOT EXISTS(SELECT 1 FROM "{_ATOM}" v WHERE v."organization_id" = %(organization_pk)s AND v."vlob_id" = %(vlob_id)s)'
)
_PREVIOUS_VERSION_FITS = (
    f'EXISTS(SELECT 1 FROM "{_ATOM}" v WHERE v."organization_id" = %(organization_pk)s AND v."vlob_id" = %(vlob_id)s'
    ' AND v."encryption_revision" = r."encryption_revision" AND v."version" = %(version)s - 1'
    ' AND v."created_on" <= %(timestamp)s)'
)
STORE_CREATED_IF_UNCHANGED = Prepared("store_created_if_unchanged", _store_version_if(_VLOB_ID_FREE))
STORE_UPDATED_IF_UNCHANGED = Prepared("store_updated_if_unchanged", _store_version_if(_PREVIOUS_VERSION_FITS))

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
