"""Vlob rules (docs/protocol.md#vlobs): versioned opaque blobs, the realm checkpoint log, re-encryption batches.

Every function is keyword-only, runs synchronously (the handlers call it through `run_sync`) and
returns the reply. Writers take the realm row lock (`FOR NO KEY UPDATE`, so foreign-key checks of
concurrent block or role inserts are not blocked) for as short a time as the write needs: what
can be read before the lock is read before it, and reported in the order of the protocol.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, Max, OuterRef, Q
from django.utils import timezone

from organizations.models import Device
from protocol import replies
from protocol.events import emit_realm_event_on_commit
from protocol.replies import Reply
from protocol.db import convert_row, db_param, fetch_row
from protocol.session import AuthenticatedSession
from realms.access import (
    ACCESS_STATE_COLUMNS,
    ACCESS_STATE_FIELDS,
    REALM_NOT_FOUND,
    AccessState,
    Granted,
    Operation,
    Refused,
    access_state_from_row,
    check_realm_access,
    evaluate_realm_access,
)
from realms.models import MaintenanceType, Realm, RealmUserChange, RealmUserRole, RealmVlobUpdate, VlobAtom
from sequester import services as sequester
from sequester.models import SequesterService

# `Size` goes up to 2**64 - 1 on the wire; SQL LIMIT takes a signed 64-bit integer.
MAX_REENCRYPTION_BATCH_SIZE = 2**31 - 1

NOT_FOUND: Reply = {"status": "not_found", "reason": None}
NOT_ALLOWED: Reply = {"status": "not_allowed"}
BAD_VERSION: Reply = {"status": "bad_version"}
ALREADY_EXISTS: Reply = {"status": "already_exists", "reason": None}


def _refusal(refused: Refused, *, realm_not_found: Reply) -> Reply:
    """The reply for a failed §6.1 access check; each command words an unknown realm its own way."""
    if refused is REALM_NOT_FOUND:
        return realm_not_found
    if refused.status == "require_greater_timestamp":
        return replies.reply("require_greater_timestamp", strictly_greater_than=refused.strictly_greater_than)
    if refused.status == "not_in_maintenance":
        return replies.reply("not_in_maintenance", reason=None)
    return replies.reply(refused.status)


def _sequester_refusal(
    *, session: AuthenticatedSession, check: sequester.SequesterCheck, services_enabled: bool
) -> Reply | None:
    """The §6.8 outcome, reported after the access checks: a given blob set was checked before the
    transaction; a nil one is refused here if services are enabled (read under the realm lock)."""
    if check.checked:
        return check.refusal
    return sequester.nil_blob_refusal(organization_pk=session.organization_pk) if services_enabled else None


def _post_to_webhooks(
    *,
    session: AuthenticatedSession,
    check: sequester.SequesterCheck,
    realm: Realm | None = None,
    realm_id: uuid.UUID | None = None,
    encryption_revision: int,
    timestamp: datetime,
    now: datetime,
    realm_not_found: Reply,
) -> Reply | None:
    """Webhook services get their blob before anything is stored, outside any transaction (no lock
    held while a service answers). The access checks run first, unlocked, so a write the realm
    refuses is never sent out; the write transaction checks everything again under the lock."""
    if check.refusal is not None or not check.webhooks:
        return None
    access = check_realm_access(
        organization_pk=session.organization_pk,
        realm=realm,
        realm_id=realm_id,
        user_pk=session.user_pk,
        operation=Operation.WRITE,
        now=now,
        encryption_revision=encryption_revision,
        write_timestamp=timestamp,
    )
    if isinstance(access, Refused):
        return _refusal(access, realm_not_found=realm_not_found)
    return sequester.post_to_webhooks(organization_id=session.organization_id, webhooks=check.webhooks)


_REALM_ID = Realm._meta.get_field("realm_id")
_ATOM_VLOB_ID = VlobAtom._meta.get_field("vlob_id")
_ATOM_CREATED_ON = VlobAtom._meta.get_field("created_on")
_ATOM_BLOB = VlobAtom._meta.get_field("blob")


def _realm_of_vlob(*, organization_pk: int, vlob_id: uuid.UUID) -> Realm | None:
    query = Realm.objects.filter(
        organization_id=organization_pk, vlob_atoms__organization_id=organization_pk, vlob_atoms__vlob_id=vlob_id
    )
    return next(iter(query[:1]), None)


# The write path is SQL written once (protocol/db.py says why): per write, one round trip takes the
# realm lock and reads the access state with what the command must know about the vlob, and one
# stores the version (a single statement on PostgreSQL; a few in-process calls on SQLite).

_REALM_TABLE = Realm._meta.db_table
_ATOM_TABLE = VlobAtom._meta.db_table


def _lock_then_read_state(*, where: str, where_params: list, columns: str, params: list, fields: tuple) -> tuple | None:
    """Takes the row lock of the realm `where` selects, then reads `columns` of it; None: no such realm.

    The read is a second statement, so it sees every role change, archiving or write committed
    before the lock was granted (READ COMMITTED takes a snapshot per statement): a write never
    lands after the change that forbids it, and checkpoints stay dense. PostgreSQL gets both
    statements in one round trip. FOR NO KEY UPDATE: concurrent inserts referencing the realm
    (blocks, roles) are not blocked. SQLite has no row locks: its writers already queue at
    BEGIN IMMEDIATE (settings), so there it is the read alone.
    """
    read = f'SELECT {columns} FROM "{_REALM_TABLE}" r WHERE {where}'
    if not connection.features.has_select_for_no_key_update:
        return fetch_row(read, [*params, *where_params], fields)
    lock = f'SELECT 1 FROM "{_REALM_TABLE}" r WHERE {where} FOR NO KEY UPDATE OF r'
    with connection.cursor() as cursor:
        cursor.execute(f"{lock}; {read}", [*where_params, *params, *where_params])
        cursor.nextset()
        row = cursor.fetchone()
    return None if row is None else convert_row(row, fields)


_REALM_BY_ID = 'r."organization_id" = %s AND r."realm_id" = %s'
_REALM_OF_VLOB = (
    f'r."id" = (SELECT v."realm_id" FROM "{_ATOM_TABLE}" v WHERE v."organization_id" = %s AND v."vlob_id" = %s LIMIT 1)'
)
# Whether the organization has enabled sequester services: a nil `sequester_blob` is then refused
# (§6.8). Read with the state, so a write without sequester blob costs no extra round trip.
_ENABLED_SEQUESTER_SERVICES = (
    f' EXISTS(SELECT 1 FROM "{SequesterService._meta.db_table}" s'
    ' WHERE s."organization_id" = r."organization_id" AND s."disabled_on" IS NULL)'
)
# Vlob ids are unique in the organization across every realm and revision.
_VLOB_CREATE_STATE = (
    f"{ACCESS_STATE_COLUMNS},"
    f' EXISTS(SELECT 1 FROM "{_ATOM_TABLE}" v WHERE v."organization_id" = %s AND v."vlob_id" = %s),'
    f"{_ENABLED_SEQUESTER_SERVICES}"
)
# The vlob's last version in the realm's current revision: (version, timestamp).
_VLOB_UPDATE_STATE = f"{ACCESS_STATE_COLUMNS}, " + ", ".join(
    f'(SELECT v."{column}" FROM "{_ATOM_TABLE}" v WHERE v."organization_id" = %s AND v."vlob_id" = %s'
    ' AND v."encryption_revision" = r."encryption_revision" ORDER BY v."version" DESC LIMIT 1)'
    for column in ("version", "created_on")
) + f",{_ENABLED_SEQUESTER_SERVICES}"

_INSERT_ATOM_SQL = (
    f'INSERT INTO "{_ATOM_TABLE}" ("organization_id", "realm_id", "vlob_id", "version", "encryption_revision",'
    ' "blob", "size", "author_id", "created_on") VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)'
)
_ADVANCE_CHECKPOINT_SQL = f'UPDATE "{_REALM_TABLE}" SET "checkpoint" = %s WHERE "id" = %s AND "checkpoint" = %s'
_INSERT_UPDATE_LOG_SQL = (
    f'INSERT INTO "{RealmVlobUpdate._meta.db_table}" ("realm_id", "index", "vlob_id", "version")'
    " VALUES (%s, %s, %s, %s)"
)
# realm_user_change.last_vlob_update = max(previous, timestamp), for `realm_update_roles` causality.
_RECORD_LAST_VLOB_UPDATE_SQL = (
    f'INSERT INTO "{RealmUserChange._meta.db_table}" AS c ("realm_id", "user_id", "last_vlob_update")'
    ' VALUES (%s, %s, %s) ON CONFLICT ("realm_id", "user_id") DO UPDATE SET "last_vlob_update" = CASE'
    ' WHEN c."last_vlob_update" IS NULL OR c."last_vlob_update" < excluded."last_vlob_update"'
    ' THEN excluded."last_vlob_update" ELSE c."last_vlob_update" END'
)


def _store_version(statements: list[tuple[str, list[Any]]]) -> int:
    """Runs the write statements; returns how many realm rows the checkpoint update (the 2nd) changed."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One round trip: every data-modifying WITH member runs, referenced or not.
            members = [f"w{index} AS ({sql} RETURNING 1)" for index, (sql, _) in enumerate(statements)]
            cursor.execute(
                f"WITH {', '.join(members)} SELECT (SELECT count(*) FROM w1)",
                [param for _, params in statements for param in params],
            )
            return cursor.fetchone()[0]
        moved = 0
        for index, (sql, params) in enumerate(statements):
            cursor.execute(sql, params)
            if index == 1:
                moved = cursor.rowcount
        return moved


def _write_version(
    *, session: AuthenticatedSession, realm: Realm, vlob_id: uuid.UUID, version: int, timestamp: datetime, blob: bytes
) -> bool:
    """Store one version and its checkpoint; the realm row must be locked by the caller's transaction.

    False when the version already exists: the transaction is then marked for rollback.
    """
    checkpoint = realm.checkpoint + 1
    db_vlob_id, db_timestamp = db_param(_ATOM_VLOB_ID, vlob_id), db_param(_ATOM_CREATED_ON, timestamp)
    try:
        moved = _store_version(
            [
                (
                    _INSERT_ATOM_SQL,
                    [
                        session.organization_pk, realm.pk, db_vlob_id, version, realm.encryption_revision,
                        db_param(_ATOM_BLOB, blob), len(blob), session.device_pk, db_timestamp,
                    ],
                ),
                (_ADVANCE_CHECKPOINT_SQL, [checkpoint, realm.pk, realm.checkpoint]),
                (_INSERT_UPDATE_LOG_SQL, [realm.pk, checkpoint, db_vlob_id, version]),
                (_RECORD_LAST_VLOB_UPDATE_SQL, [realm.pk, session.user_pk, db_timestamp]),
            ]
        )
    except IntegrityError:
        # Another writer stored this version first: the unique constraint is the referee.
        transaction.set_rollback(True)
        return False
    # The realm row is locked, so nobody moved the checkpoint since we read it; a miss is a bug.
    if moved != 1:
        raise RuntimeError(f"checkpoint of realm {realm.realm_id.hex} moved under its lock")
    emit_realm_event_on_commit(
        organization_pk=session.organization_pk,
        realm_id=realm.realm_id,
        event={
            "event": "realm.vlobs_updated",
            "realm_id": realm.realm_id,
            "checkpoint": checkpoint,
            "src_id": vlob_id,
            "src_version": version,
        },
        exclude_device_pk=session.device_pk,
    )
    return True


def vlob_create(
    *,
    session: AuthenticatedSession,
    realm_id: uuid.UUID,
    encryption_revision: int,
    vlob_id: uuid.UUID,
    timestamp: datetime,
    blob: bytes,
    sequester_blob: dict[uuid.UUID, bytes] | None,
    now: datetime | None = None,
) -> Reply:
    now = now or timezone.now()
    if not replies.timestamp_in_ballpark(timestamp, now):
        return replies.bad_timestamp(now=now, client_timestamp=timestamp)
    check = sequester.check_sequester_blob(organization_pk=session.organization_pk, sequester_blob=sequester_blob)
    webhook_refusal = _post_to_webhooks(
        session=session, check=check, realm_id=realm_id, encryption_revision=encryption_revision,
        timestamp=timestamp, now=now, realm_not_found=NOT_ALLOWED,
    )
    if webhook_refusal is not None:
        return webhook_refusal
    db_vlob_id = db_param(_ATOM_VLOB_ID, vlob_id)
    with transaction.atomic():
        row = _lock_then_read_state(
            where=_REALM_BY_ID,
            where_params=[session.organization_pk, db_param(_REALM_ID, realm_id)],
            columns=_VLOB_CREATE_STATE,
            params=[session.user_pk, session.user_pk, session.organization_pk, db_vlob_id],
            fields=(*ACCESS_STATE_FIELDS, None, None),
        )
        if row is None:
            return NOT_ALLOWED
        state = access_state_from_row(row[:-2])
        access = _write_access(state, now=now, encryption_revision=encryption_revision, timestamp=timestamp)
        if isinstance(access, Refused):
            return _refusal(access, realm_not_found=NOT_ALLOWED)
        sequester_refusal = _sequester_refusal(session=session, check=check, services_enabled=row[-1])
        if sequester_refusal is not None:
            return sequester_refusal
        if row[-2]:
            return ALREADY_EXISTS
        written = _write_version(
            session=session, realm=state.realm, vlob_id=vlob_id, version=1, timestamp=timestamp, blob=blob
        )
        if written:
            sequester.store_blobs(
                organization_pk=session.organization_pk, vlob_id=vlob_id,
                encryption_revision=state.realm.encryption_revision, version=1, storage=check.storage,
            )
    return replies.ok() if written else ALREADY_EXISTS


def vlob_update(
    *,
    session: AuthenticatedSession,
    encryption_revision: int,
    vlob_id: uuid.UUID,
    timestamp: datetime,
    version: int,
    blob: bytes,
    sequester_blob: dict[uuid.UUID, bytes] | None,
    now: datetime | None = None,
) -> Reply:
    now = now or timezone.now()
    if not replies.timestamp_in_ballpark(timestamp, now):
        return replies.bad_timestamp(now=now, client_timestamp=timestamp)
    check = sequester.check_sequester_blob(organization_pk=session.organization_pk, sequester_blob=sequester_blob)
    if check.webhooks and check.refusal is None:
        realm = _realm_of_vlob(organization_pk=session.organization_pk, vlob_id=vlob_id)
        if realm is None:
            return NOT_FOUND
        webhook_refusal = _post_to_webhooks(
            session=session, check=check, realm=realm, encryption_revision=encryption_revision,
            timestamp=timestamp, now=now, realm_not_found=NOT_FOUND,
        )
        if webhook_refusal is not None:
            return webhook_refusal
    db_vlob_id = db_param(_ATOM_VLOB_ID, vlob_id)
    with transaction.atomic():
        # Same lock as vlob_create; it also makes the previous version read the latest one.
        row = _lock_then_read_state(
            where=_REALM_OF_VLOB,
            where_params=[session.organization_pk, db_vlob_id],
            columns=_VLOB_UPDATE_STATE,
            params=[
                session.user_pk, session.user_pk,
                session.organization_pk, db_vlob_id, session.organization_pk, db_vlob_id,
            ],
            fields=(*ACCESS_STATE_FIELDS, None, _ATOM_CREATED_ON, None),
        )
        if row is None:
            return NOT_FOUND
        state = access_state_from_row(row[:-3])
        access = _write_access(state, now=now, encryption_revision=encryption_revision, timestamp=timestamp)
        if isinstance(access, Refused):
            return _refusal(access, realm_not_found=NOT_FOUND)
        sequester_refusal = _sequester_refusal(session=session, check=check, services_enabled=row[-1])
        if sequester_refusal is not None:
            return sequester_refusal
        previous_version, previous_timestamp = row[-3:-1]
        if previous_version is None or version != previous_version + 1:
            return BAD_VERSION
        if timestamp < previous_timestamp:
            # Equal is accepted (docs/protocol.md#vlob-update), yet the reply names the previous timestamp.
            return replies.reply("require_greater_timestamp", strictly_greater_than=previous_timestamp)
        written = _write_version(
            session=session, realm=state.realm, vlob_id=vlob_id, version=version, timestamp=timestamp, blob=blob
        )
        if written:
            sequester.store_blobs(
                organization_pk=session.organization_pk, vlob_id=vlob_id,
                encryption_revision=state.realm.encryption_revision, version=version, storage=check.storage,
            )
    return replies.ok() if written else BAD_VERSION


def _write_access(
    state: AccessState, *, now: datetime, encryption_revision: int, timestamp: datetime
) -> Granted | Refused:
    return evaluate_realm_access(
        state, operation=Operation.WRITE, now=now, encryption_revision=encryption_revision, write_timestamp=timestamp
    )


def vlob_read(
    *,
    session: AuthenticatedSession,
    encryption_revision: int,
    vlob_id: uuid.UUID,
    version: int | None,
    timestamp: datetime | None,
    now: datetime | None = None,
) -> Reply:
    now = now or timezone.now()
    # Hot path in one query: the wanted atom, its author, the author's latest role certificate and
    # the realm's access state. Only when no atom matches do we look for the vlob itself
    # (not_found vs bad_version).
    if version is not None:
        selector, selector_param = ' AND v."version" = %s', version
    elif timestamp is not None:
        selector, selector_param = ' AND v."created_on" <= %s', db_param(_ATOM_CREATED_ON, timestamp)
    else:
        selector, selector_param = "", None
    # Numbers beyond the columns' range match no row (and the SQLite driver would refuse them).
    searchable = encryption_revision <= _MAX_STORED_INT and (version is None or version <= _MAX_STORED_INT)
    row = None if not searchable else fetch_row(
        _VLOB_READ_SQL.format(selector=selector),
        [
            session.user_pk,
            session.user_pk,
            session.organization_pk,
            db_param(_ATOM_VLOB_ID, vlob_id),
            encryption_revision,
            *([] if selector_param is None else [selector_param]),
        ],
        _VLOB_READ_FIELDS,
    )
    if row is None:
        realm = _realm_of_vlob(organization_pk=session.organization_pk, vlob_id=vlob_id)
        if realm is None:
            return NOT_FOUND
        access = check_realm_access(
            organization_pk=session.organization_pk,
            realm=realm,
            user_pk=session.user_pk,
            operation=Operation.READ,
            now=now,
            encryption_revision=encryption_revision,
        )
        return _refusal(access, realm_not_found=NOT_FOUND) if isinstance(access, Refused) else BAD_VERSION
    atom_version, blob, created_on, author, author_last_role_granted_on = row[:5]
    access = evaluate_realm_access(
        access_state_from_row(row[5:]), operation=Operation.READ, now=now, encryption_revision=encryption_revision
    )
    if isinstance(access, Refused):
        return _refusal(access, realm_not_found=NOT_FOUND)
    return replies.ok(
        version=atom_version,
        blob=bytes(blob),
        author=author,
        timestamp=created_on,
        # The author wrote in the realm, so it has a role certificate there.
        author_last_role_granted_on=author_last_role_granted_on,
    )


_MAX_STORED_INT = 2**31 - 1  # PositiveIntegerField (version, encryption revision), on both backends
_VLOB_READ_SQL = (
    'SELECT v."version", v."blob", v."created_on", d."device_id",'
    f' (SELECT u."certified_on" FROM "{RealmUserRole._meta.db_table}" u'
    '   WHERE u."realm_id" = v."realm_id" AND u."user_id" = d."user_id" ORDER BY u."certified_on" DESC LIMIT 1),'
    f" {ACCESS_STATE_COLUMNS}"
    f' FROM "{VlobAtom._meta.db_table}" v'
    f' JOIN "{Realm._meta.db_table}" r ON r."id" = v."realm_id"'
    f' JOIN "{Device._meta.db_table}" d ON d."id" = v."author_id"'
    ' WHERE v."organization_id" = %s AND v."vlob_id" = %s AND v."encryption_revision" = %s{selector}'
    ' ORDER BY v."version" DESC LIMIT 1'
)
_VLOB_READ_FIELDS = (
    VlobAtom._meta.get_field("version"),
    VlobAtom._meta.get_field("blob"),
    _ATOM_CREATED_ON,
    Device._meta.get_field("device_id"),
    RealmUserRole._meta.get_field("certified_on"),
    *ACCESS_STATE_FIELDS,
)


def vlob_poll_changes(
    *, session: AuthenticatedSession, realm_id: uuid.UUID, last_checkpoint: int, now: datetime | None = None
) -> Reply:
    now = now or timezone.now()
    access = check_realm_access(
        organization_pk=session.organization_pk,
        realm_id=realm_id,
        user_pk=session.user_pk,
        operation=Operation.READ,
        now=now,
    )
    if isinstance(access, Refused):
        # The client creates its user manifest realm when it gets this `not_found`.
        return _refusal(access, realm_not_found=NOT_FOUND)
    realm = access.realm
    changes: dict[uuid.UUID, int] = {}
    current_checkpoint = realm.checkpoint
    # The checkpoint was read first, so changes committed since may show up too, never the reverse.
    if last_checkpoint < realm.checkpoint:
        rows = (
            RealmVlobUpdate.objects.filter(realm_id=realm.pk, index__gt=last_checkpoint)
            .values("vlob_id")
            .annotate(latest_version=Max("version"), latest_index=Max("index"))
            .values_list("vlob_id", "latest_version", "latest_index")
            .order_by()
        )
        for changed_vlob_id, latest_version, latest_index in rows:
            changes[changed_vlob_id] = latest_version
            current_checkpoint = max(current_checkpoint, latest_index)
    return replies.ok(changes=changes, current_checkpoint=current_checkpoint)


def vlob_list_versions(*, session: AuthenticatedSession, vlob_id: uuid.UUID, now: datetime | None = None) -> Reply:
    now = now or timezone.now()
    realm = _realm_of_vlob(organization_pk=session.organization_pk, vlob_id=vlob_id)
    if realm is None:
        return NOT_FOUND
    access = check_realm_access(
        organization_pk=session.organization_pk,
        realm=realm,
        user_pk=session.user_pk,
        operation=Operation.READ,
        now=now,
    )
    if isinstance(access, Refused):
        return _refusal(access, realm_not_found=NOT_FOUND)
    # During re-encryption only the previous revision holds every version.
    revision = realm.encryption_revision
    if realm.maintenance_type == MaintenanceType.REENCRYPTION:
        revision -= 1
    rows = (
        VlobAtom.objects.filter(organization_id=session.organization_pk, vlob_id=vlob_id, encryption_revision=revision)
        .order_by("version")
        .values_list("version", "created_on", "author__device_id")
    )
    return replies.ok(versions={row_version: (created_on, author) for row_version, created_on, author in rows})


def _maintenance_access(
    *, session: AuthenticatedSession, realm_id: uuid.UUID, encryption_revision: int, now: datetime
) -> Realm | Reply:
    access = check_realm_access(
        organization_pk=session.organization_pk,
        realm_id=realm_id,
        user_pk=session.user_pk,
        operation=Operation.MAINTENANCE,
        now=now,
        encryption_revision=encryption_revision,
    )
    if isinstance(access, Refused):
        return _refusal(access, realm_not_found=NOT_FOUND)
    return access.realm


def vlob_maintenance_get_reencryption_batch(
    *,
    session: AuthenticatedSession,
    realm_id: uuid.UUID,
    encryption_revision: int,
    size: int,
    now: datetime | None = None,
) -> Reply:
    now = now or timezone.now()
    realm = _maintenance_access(session=session, realm_id=realm_id, encryption_revision=encryption_revision, now=now)
    if not isinstance(realm, Realm):
        return realm
    reencrypted = VlobAtom.objects.filter(
        organization_id=realm.organization_id,
        vlob_id=OuterRef("vlob_id"),
        encryption_revision=encryption_revision,
        version=OuterRef("version"),
    )
    rows = (
        VlobAtom.objects.filter(realm_id=realm.pk, encryption_revision=encryption_revision - 1)
        .exclude(Exists(reencrypted))
        .values_list("vlob_id", "version", "blob")[: min(size, MAX_REENCRYPTION_BATCH_SIZE)]
    )
    return replies.ok(
        batch=[{"vlob_id": row_vlob_id, "version": version, "blob": bytes(blob)} for row_vlob_id, version, blob in rows]
    )


def vlob_maintenance_save_reencryption_batch(
    *,
    session: AuthenticatedSession,
    realm_id: uuid.UUID,
    encryption_revision: int,
    batch: list[dict[str, Any]],
    now: datetime | None = None,
) -> Reply:
    now = now or timezone.now()
    realm = _maintenance_access(session=session, realm_id=realm_id, encryption_revision=encryption_revision, now=now)
    if not isinstance(realm, Realm):
        return realm
    blobs: dict[tuple[uuid.UUID, int], bytes] = {}
    for entry in batch:
        # A repeated entry keeps its first blob, as a first insert wins.
        blobs.setdefault((entry["vlob_id"], entry["version"]), entry["blob"])
    if blobs:
        # Only versions of this realm's previous revision are copied; anything else is ignored.
        originals = VlobAtom.objects.filter(
            realm_id=realm.pk,
            encryption_revision=encryption_revision - 1,
            vlob_id__in={entry_vlob_id for entry_vlob_id, _ in blobs},
        ).values_list("vlob_id", "version", "author_id", "created_on")
        copies = [
            VlobAtom(
                organization_id=realm.organization_id,
                realm_id=realm.pk,
                vlob_id=original_vlob_id,
                version=version,
                encryption_revision=encryption_revision,
                blob=blobs[(original_vlob_id, version)],
                size=len(blobs[(original_vlob_id, version)]),
                author_id=author_pk,
                created_on=created_on,
            )
            for original_vlob_id, version, author_pk, created_on in originals
            if (original_vlob_id, version) in blobs
        ]
        # Already saved versions stay as they are (insert-if-absent).
        VlobAtom.objects.bulk_create(copies, ignore_conflicts=True)
    counts = VlobAtom.objects.filter(
        realm_id=realm.pk, encryption_revision__in=(encryption_revision - 1, encryption_revision)
    ).aggregate(
        total=Count("pk", filter=Q(encryption_revision=encryption_revision - 1)),
        done=Count("pk", filter=Q(encryption_revision=encryption_revision)),
    )
    return replies.ok(total=counts["total"], done=counts["done"])
