"""Vlob rules (docs/protocol.md#vlobs): versioned opaque blobs, the realm checkpoint log, re-encryption batches.

Every function is keyword-only, runs synchronously (the handlers call it through `run_sync`) and
returns an outcome (realms/outcomes.py). Writers take the realm row lock (realms/sql.py) for as
short a time as the write needs: what can be read before the lock is read before it, and reported
in the order of the protocol.
"""
from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from protocol import loop_db, replies
from protocol.db import Prepared, db_param, fetch_row, statement_text
from protocol.events import emit_realm_event_on_commit
from protocol.session import AuthenticatedSession
from realms import selectors, sql
from realms.models import MaintenanceType, Realm, VlobAtom
from realms.outcomes import (
    OK,
    BadTimestamp,
    Outcome,
    RealmRefusal,
    ReencryptionBatchOk,
    ReencryptionBatchSavedOk,
    RequireGreaterTimestamp,
    SequesterRefused,
    VlobChangesOk,
    VlobReadOk,
    VlobVersionsOk,
)
from realms.rules import (
    ACCESS_STATE_FIELDS,
    REALM_NOT_FOUND,
    AccessRefusal,
    AccessState,
    Granted,
    Operation,
    Refused,
    access_state_from_row,
    evaluate_realm_access,
)
from sequester import services as sequester

# `Size` goes up to 2**64 - 1 on the wire; SQL LIMIT takes a signed 64-bit integer.
MAX_REENCRYPTION_BATCH_SIZE = 2**31 - 1
_MAX_STORED_INT = 2**31 - 1  # PositiveIntegerField (version, encryption revision), on both backends

_REALM_ID = Realm._meta.get_field("realm_id")
_ATOM_VLOB_ID = VlobAtom._meta.get_field("vlob_id")
_ATOM_CREATED_ON = VlobAtom._meta.get_field("created_on")
_ATOM_BLOB = VlobAtom._meta.get_field("blob")


def _refusal(refused: Refused, *, realm_not_found: RealmRefusal) -> Outcome:
    """The outcome of a failed §6.1 access check; each command words an unknown realm its own way."""
    if refused is REALM_NOT_FOUND:
        return realm_not_found
    if refused.status is AccessRefusal.REQUIRE_GREATER_TIMESTAMP:
        assert refused.strictly_greater_than is not None
        return RequireGreaterTimestamp(refused.strictly_greater_than)
    return RealmRefusal(refused.status.value)


def check_realm_access(
    *,
    organization_pk: int,
    realm_id: uuid.UUID | None = None,
    realm: Realm | None = None,
    user_pk: int,
    operation: Operation,
    now: datetime,
    encryption_revision: int | None = None,
    write_timestamp: datetime | None = None,
) -> Granted | Refused:
    """Checks 1-5 of docs/protocol.md#vlob-access in order, on the realm `realm` or of id `realm_id`.

    Writers pass the `realm` they locked in an earlier statement: its row is read again with the
    archiving and role state, in a statement that starts after the lock was granted, so it sees
    every role change or archiving committed before (a statement's snapshot is taken when it starts).
    """
    state = selectors.realm_access_state(
        user_pk=user_pk, organization_pk=organization_pk, realm_id=realm_id,
        realm_pk=realm.pk if realm is not None else None,
    )
    if state is None:
        return REALM_NOT_FOUND
    return evaluate_realm_access(
        state, operation=operation, now=now, encryption_revision=encryption_revision, write_timestamp=write_timestamp
    )


def _sequester_refusal(
    *, session: AuthenticatedSession, check: sequester.SequesterCheck, services_enabled: bool
) -> Outcome | None:
    """The §6.8 outcome, reported after the access checks: a given blob set was checked before the
    transaction; a nil one is refused here if services are enabled (read under the realm lock)."""
    if check.checked:
        return SequesterRefused(check.refusal) if check.refusal is not None else None
    if services_enabled:
        return SequesterRefused(sequester.nil_blob_refusal(organization_pk=session.organization_pk))
    return None


def _post_to_webhooks(
    *,
    session: AuthenticatedSession,
    check: sequester.SequesterCheck,
    realm: Realm | None = None,
    realm_id: uuid.UUID | None = None,
    encryption_revision: int,
    timestamp: datetime,
    now: datetime,
    realm_not_found: RealmRefusal,
) -> Outcome | None:
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
    refusal = sequester.post_to_webhooks(organization_id=session.organization_id, webhooks=check.webhooks)
    return SequesterRefused(refusal) if refusal is not None else None


def _store_version(params: dict[str, Any]) -> int:
    """Runs the write statements; returns how many realm rows the checkpoint update changed."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(statement_text(cursor, sql.STORE_VERSION), params)
            return cursor.fetchone()[0]
        moved = 0
        for index, statement in enumerate(sql.STORE_VERSION_STATEMENTS):
            cursor.execute(statement, params)
            if index == 1:
                moved = cursor.rowcount
        return moved


def _version_params(
    *, session: AuthenticatedSession, realm: Realm, vlob_id: uuid.UUID, version: int, timestamp: datetime, blob: bytes
) -> dict[str, Any]:
    """The parameters of sql.STORE_VERSION: the version, and the realm checkpoint moved by one."""
    return {
        "organization_pk": session.organization_pk,
        "realm_pk": realm.pk,
        "vlob_id": db_param(_ATOM_VLOB_ID, vlob_id),
        "version": version,
        "encryption_revision": realm.encryption_revision,
        "blob": db_param(_ATOM_BLOB, blob),
        "size": len(blob),
        "author_pk": session.device_pk,
        "timestamp": db_param(_ATOM_CREATED_ON, timestamp),
        "checkpoint": realm.checkpoint + 1,
        "previous_checkpoint": realm.checkpoint,
        "user_pk": session.user_pk,
    }


def _check_moved(moved: int, realm: Realm) -> None:
    # The realm row is locked, so nobody moved the checkpoint since we read it; a miss is a bug.
    if moved != 1:
        raise RuntimeError(f"checkpoint of realm {realm.realm_id.hex} moved under its lock")


def _emit_vlobs_updated(
    *, session: AuthenticatedSession, realm: Realm, vlob_id: uuid.UUID, version: int, checkpoint: int
) -> None:
    """After the commit (from a worker thread) or right away (called once committed, on the event loop)."""
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


def _write_version(
    *, session: AuthenticatedSession, realm: Realm, vlob_id: uuid.UUID, version: int, timestamp: datetime, blob: bytes
) -> bool:
    """Store one version and its checkpoint; the realm row must be locked by the caller's transaction.

    False when the version already exists: the transaction is then marked for rollback.
    """
    try:
        moved = _store_version(
            _version_params(
                session=session, realm=realm, vlob_id=vlob_id, version=version, timestamp=timestamp, blob=blob
            )
        )
    except IntegrityError:
        # Another writer stored this version first: the unique constraint is the referee.
        transaction.set_rollback(True)
        return False
    _check_moved(moved, realm)
    _emit_vlobs_updated(session=session, realm=realm, vlob_id=vlob_id, version=version, checkpoint=realm.checkpoint + 1)
    return True


def _write_access(
    state: AccessState, *, now: datetime, encryption_revision: int, timestamp: datetime
) -> Granted | Refused:
    return evaluate_realm_access(
        state, operation=Operation.WRITE, now=now, encryption_revision=encryption_revision, write_timestamp=timestamp
    )


# The state reads of the writes (realms/sql.py), for the worker-thread services and their event-loop forms.
# + whether the id is taken, sequester services enabled, the state's stamp (sql.STATE_STAMP)
_CREATE_STATE_FIELDS = (*ACCESS_STATE_FIELDS, None, None, None)
# + last version, its timestamp, sequester services enabled, the state's stamp
_UPDATE_STATE_FIELDS = (*ACCESS_STATE_FIELDS, None, _ATOM_CREATED_ON, None, None)


def _create_state_params(*, session: AuthenticatedSession, realm_id: uuid.UUID, vlob_id: uuid.UUID) -> dict[str, Any]:
    return {
        "organization_pk": session.organization_pk,
        "realm_id": db_param(_REALM_ID, realm_id),
        "user_pk": session.user_pk,
        "vlob_id": db_param(_ATOM_VLOB_ID, vlob_id),
    }


def _update_state_params(*, session: AuthenticatedSession, vlob_id: uuid.UUID) -> dict[str, Any]:
    return {
        "organization_pk": session.organization_pk,
        "user_pk": session.user_pk,
        "vlob_id": db_param(_ATOM_VLOB_ID, vlob_id),
    }


def _access_refusal(
    state: AccessState, *, now: datetime, encryption_revision: int, timestamp: datetime, realm_not_found: RealmRefusal
) -> Outcome | None:
    """The §6.1 checks of a write on the state read under the lock; None: granted."""
    access = _write_access(state, now=now, encryption_revision=encryption_revision, timestamp=timestamp)
    return _refusal(access, realm_not_found=realm_not_found) if isinstance(access, Refused) else None


def _version_refusal(previous_version: int | None, previous_timestamp: datetime, *, version: int, timestamp: datetime) -> Outcome | None:
    """vlob_update's checks against the vlob's last version (after the access and sequester ones)."""
    if previous_version is None or version != previous_version + 1:
        return RealmRefusal.BAD_VERSION
    if timestamp < previous_timestamp:
        # Equal is accepted (docs/protocol.md#vlob-update), yet the reply names the previous timestamp.
        return RequireGreaterTimestamp(previous_timestamp)
    return None


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
) -> Outcome:
    now = now or timezone.now()
    if not replies.timestamp_in_ballpark(timestamp, now):
        return BadTimestamp(now=now, client_timestamp=timestamp)
    check = sequester.check_sequester_blob(organization_pk=session.organization_pk, sequester_blob=sequester_blob)
    webhook_refusal = _post_to_webhooks(
        session=session, check=check, realm_id=realm_id, encryption_revision=encryption_revision,
        timestamp=timestamp, now=now, realm_not_found=RealmRefusal.NOT_ALLOWED,
    )
    if webhook_refusal is not None:
        return webhook_refusal
    with transaction.atomic():
        row = sql.lock_realm_then_read(
            lock=sql.LOCK_REALM_ONLY_BY_ID,
            read=sql.VLOB_CREATE_STATE,
            params=_create_state_params(session=session, realm_id=realm_id, vlob_id=vlob_id),
            fields=_CREATE_STATE_FIELDS,
        )
        if row is None:
            return RealmRefusal.NOT_ALLOWED
        state = access_state_from_row(row[:-3])
        taken, services_enabled, _stamp = row[-3:]
        refusal = _access_refusal(
            state, now=now, encryption_revision=encryption_revision, timestamp=timestamp,
            realm_not_found=RealmRefusal.NOT_ALLOWED,
        ) or _sequester_refusal(session=session, check=check, services_enabled=services_enabled)
        if refusal is not None:
            return refusal
        if taken:
            return RealmRefusal.ALREADY_EXISTS
        written = _write_version(
            session=session, realm=state.realm, vlob_id=vlob_id, version=1, timestamp=timestamp, blob=blob
        )
        if written:
            sequester.store_blobs(
                organization_pk=session.organization_pk, vlob_id=vlob_id,
                encryption_revision=state.realm.encryption_revision, version=1, storage=check.storage,
            )
    return OK if written else RealmRefusal.ALREADY_EXISTS


async def vlob_create_on_loop(
    *,
    session: AuthenticatedSession,
    realm_id: uuid.UUID,
    encryption_revision: int,
    vlob_id: uuid.UUID,
    timestamp: datetime,
    blob: bytes,
    sequester_blob: dict[uuid.UUID, bytes] | None,
    now: datetime | None = None,
) -> Outcome | None:
    """`vlob_create`'s common case from the event loop (protocol/loop_db.py), same checks in the same
    order on a state read before the lock (or remembered from the session's last creation in the
    realm), stored only if that state is unchanged under it; None: a case it leaves to `vlob_create`
    (sequester services involved, the state changed before the lock)."""
    if sequester_blob is not None:
        return None
    now = now or timezone.now()
    if not replies.timestamp_in_ballpark(timestamp, now):
        return BadTimestamp(now=now, client_timestamp=timestamp)
    realm_key = ("realm", realm_id)
    async with loop_db.write() as write:
        remembered = _remembered(session, realm_key)
        if remembered is not None and _access_refusal(
            remembered.state, now=now, encryption_revision=encryption_revision, timestamp=timestamp,
            realm_not_found=RealmRefusal.NOT_ALLOWED,
        ) is None:
            outcome = await _store_on_loop(
                write, sql.STORE_CREATED_IF_UNCHANGED, RealmRefusal.ALREADY_EXISTS, session=session, decided_on=remembered,
                vlob_id=vlob_id, version=1, timestamp=timestamp, blob=blob,
            )
            if outcome is not None:
                return outcome
            _forget(session, realm_key)  # changed since: read it again
        row = await write.read(
            sql.VLOB_CREATE_STATE,
            _create_state_params(session=session, realm_id=realm_id, vlob_id=vlob_id),
            _CREATE_STATE_FIELDS,
        )
        if row is None:
            return RealmRefusal.NOT_ALLOWED
        state = access_state_from_row(row[:-3])
        refusal = _access_refusal(
            state, now=now, encryption_revision=encryption_revision, timestamp=timestamp,
            realm_not_found=RealmRefusal.NOT_ALLOWED,
        )
        if refusal is not None:
            return refusal
        taken, services_enabled, stamp = row[-3:]
        if services_enabled:
            return None  # sequester services enabled: the nil blob set is refused in `vlob_create`
        if taken:
            return RealmRefusal.ALREADY_EXISTS
        decided_on = _WriteState(state=state, stamp=stamp)
        _remember(session, realm_key, decided_on)
        # None: the state changed before the lock; decided again under it, in `vlob_create`.
        return await _store_on_loop(
            write, sql.STORE_CREATED_IF_UNCHANGED, RealmRefusal.ALREADY_EXISTS, session=session, decided_on=decided_on,
            vlob_id=vlob_id, version=1, timestamp=timestamp, blob=blob,
        )


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
) -> Outcome:
    now = now or timezone.now()
    if not replies.timestamp_in_ballpark(timestamp, now):
        return BadTimestamp(now=now, client_timestamp=timestamp)
    check = sequester.check_sequester_blob(organization_pk=session.organization_pk, sequester_blob=sequester_blob)
    if check.webhooks and check.refusal is None:
        realm = selectors.realm_of_vlob(organization_pk=session.organization_pk, vlob_id=vlob_id)
        if realm is None:
            return RealmRefusal.NOT_FOUND
        webhook_refusal = _post_to_webhooks(
            session=session, check=check, realm=realm, encryption_revision=encryption_revision,
            timestamp=timestamp, now=now, realm_not_found=RealmRefusal.NOT_FOUND,
        )
        if webhook_refusal is not None:
            return webhook_refusal
    with transaction.atomic():
        # Same lock as vlob_create; it also makes the previous version read the latest one.
        row = sql.lock_realm_then_read(
            lock=sql.LOCK_REALM_ONLY_OF_VLOB,
            read=sql.VLOB_UPDATE_STATE,
            params=_update_state_params(session=session, vlob_id=vlob_id),
            fields=_UPDATE_STATE_FIELDS,
        )
        if row is None:
            return RealmRefusal.NOT_FOUND
        state = access_state_from_row(row[:-4])
        previous_version, previous_timestamp, services_enabled, _stamp = row[-4:]
        refusal = (
            _access_refusal(
                state, now=now, encryption_revision=encryption_revision, timestamp=timestamp,
                realm_not_found=RealmRefusal.NOT_FOUND,
            )
            or _sequester_refusal(session=session, check=check, services_enabled=services_enabled)
            or _version_refusal(previous_version, previous_timestamp, version=version, timestamp=timestamp)
        )
        if refusal is not None:
            return refusal
        written = _write_version(
            session=session, realm=state.realm, vlob_id=vlob_id, version=version, timestamp=timestamp, blob=blob
        )
        if written:
            sequester.store_blobs(
                organization_pk=session.organization_pk, vlob_id=vlob_id,
                encryption_revision=state.realm.encryption_revision, version=version, storage=check.storage,
            )
    return OK if written else RealmRefusal.BAD_VERSION


async def vlob_update_on_loop(
    *,
    session: AuthenticatedSession,
    encryption_revision: int,
    vlob_id: uuid.UUID,
    timestamp: datetime,
    version: int,
    blob: bytes,
    sequester_blob: dict[uuid.UUID, bytes] | None,
    now: datetime | None = None,
) -> Outcome | None:
    """`vlob_update`'s common case from the event loop (protocol/loop_db.py), same checks in the same
    order on a state read before the lock (or remembered from the session's last write of the vlob),
    stored only if that state is unchanged under it; None: a case it leaves to `vlob_update`
    (sequester services involved, the state changed before the lock)."""
    if sequester_blob is not None:
        return None
    now = now or timezone.now()
    if not replies.timestamp_in_ballpark(timestamp, now):
        return BadTimestamp(now=now, client_timestamp=timestamp)
    vlob_key = ("vlob", vlob_id)
    async with loop_db.write() as write:
        remembered = _remembered(session, vlob_key)
        if remembered is not None and remembered.timestamp is not None and (
            _access_refusal(
                remembered.state, now=now, encryption_revision=encryption_revision, timestamp=timestamp,
                realm_not_found=RealmRefusal.NOT_FOUND,
            )
            or _version_refusal(remembered.version, remembered.timestamp, version=version, timestamp=timestamp)
        ) is None:
            outcome = await _store_on_loop(
                write, sql.STORE_UPDATED_IF_UNCHANGED, RealmRefusal.BAD_VERSION, session=session, decided_on=remembered,
                vlob_id=vlob_id, version=version, timestamp=timestamp, blob=blob,
            )
            if outcome is not None:
                return outcome
            _forget(session, vlob_key)  # changed since: read it again
        row = await write.read(
            sql.VLOB_UPDATE_STATE, _update_state_params(session=session, vlob_id=vlob_id), _UPDATE_STATE_FIELDS
        )
        if row is None:
            return RealmRefusal.NOT_FOUND
        state = access_state_from_row(row[:-4])
        refusal = _access_refusal(
            state, now=now, encryption_revision=encryption_revision, timestamp=timestamp,
            realm_not_found=RealmRefusal.NOT_FOUND,
        )
        if refusal is not None:
            return refusal
        previous_version, previous_timestamp, services_enabled, stamp = row[-4:]
        if services_enabled:
            return None  # sequester services enabled: the nil blob set is refused in `vlob_update`
        refusal = _version_refusal(previous_version, previous_timestamp, version=version, timestamp=timestamp)
        if refusal is not None:
            return refusal
        decided_on = _WriteState(state=state, stamp=stamp, version=previous_version, timestamp=previous_timestamp)
        # None: the state changed before the lock; decided again under it, in `vlob_update`.
        return await _store_on_loop(
            write, sql.STORE_UPDATED_IF_UNCHANGED, RealmRefusal.BAD_VERSION, session=session, decided_on=decided_on,
            vlob_id=vlob_id, version=version, timestamp=timestamp, blob=blob,
        )


async def _store_on_loop(
    write: loop_db.Write, store: Prepared, taken: Outcome, *, session: AuthenticatedSession, decided_on: _WriteState,
    vlob_id: uuid.UUID, version: int, timestamp: datetime, blob: bytes,
) -> Outcome | None:
    """`version` of a write granted on `decided_on`, stored by `store` (sql.STORE_CREATED_IF_UNCHANGED,
    STORE_UPDATED_IF_UNCHANGED) if that state and the vlob are as decided under the lock; None: they
    changed, nothing was written. `taken`: the refusal when the stamp held but a racing writer took
    the id or the version first (the unique constraints)."""
    realm = decided_on.state.realm
    params = _version_params(session=session, realm=realm, vlob_id=vlob_id, version=version, timestamp=timestamp, blob=blob)
    stored = await write.lock_then_store(sql.LOCK_REALM_ONLY_BY_PK, store, params | {"stamp": decided_on.stamp})
    if stored is loop_db.Stale.STATE_CHANGED:
        return None
    if stored is loop_db.Stale.DUPLICATE:
        return taken
    _remember(session, ("vlob", vlob_id), replace(decided_on, version=version, timestamp=timestamp))
    _emit_vlobs_updated(session=session, realm=realm, vlob_id=vlob_id, version=version, checkpoint=stored[0])
    return OK


# --- One round trip per write on the event loop -------------------------------------------------
# A write decided on the event loop is stored only if the state it was decided on is still the state
# under the lock (sql.STATE_STAMP and the vlob guards of sql.STORE_*_IF_UNCHANGED), so that state may
# as well come from an earlier command of the same session: a realm's from the session's last
# creation in it, a vlob's from its last write. The write then costs one round trip. Only a write the
# remembered state grants skips the read: a refusal, or a store finding the state changed, is decided
# again on a fresh read (and past that, in the worker thread under the lock), so nothing is ever
# refused on a remembered state.

_WRITE_STATES = "realms.vlob_write_states"
_WRITE_STATES_KEPT = 16  # per session, the most recently used (~1 KB each)


@dataclass(frozen=True)
class _WriteState:
    state: AccessState
    stamp: str
    version: int = 0  # the vlob's last version, and its timestamp (None: a realm's state, for creations)
    timestamp: datetime | None = None


def _remembered(session: AuthenticatedSession, key: tuple[str, uuid.UUID]) -> _WriteState | None:
    states = session.memo.get(_WRITE_STATES)
    return None if states is None else states.get(key)


def _remember(session: AuthenticatedSession, key: tuple[str, uuid.UUID], write_state: _WriteState) -> None:
    states: OrderedDict[tuple[str, uuid.UUID], _WriteState] = session.memo.setdefault(_WRITE_STATES, OrderedDict())
    states[key] = write_state
    states.move_to_end(key)
    while len(states) > _WRITE_STATES_KEPT:
        states.popitem(last=False)


def _forget(session: AuthenticatedSession, key: tuple[str, uuid.UUID]) -> None:
    states = session.memo.get(_WRITE_STATES)
    if states is not None:
        states.pop(key, None)


def _vlob_read_query(
    *, session: AuthenticatedSession, encryption_revision: int, vlob_id: uuid.UUID, version: int | None,
    timestamp: datetime | None,
) -> tuple[Prepared, dict[str, Any]] | None:
    """The hot-path read: the wanted atom, its author, the author's latest role certificate and the
    realm's access state, in one statement; None: nothing can match (numbers beyond the columns' range,
    which the SQLite driver would also refuse)."""
    if encryption_revision > _MAX_STORED_INT or (version is not None and version > _MAX_STORED_INT):
        return None
    params: dict[str, Any] = {
        "user_pk": session.user_pk,
        "organization_pk": session.organization_pk,
        "vlob_id": db_param(_ATOM_VLOB_ID, vlob_id),
        "encryption_revision": encryption_revision,
    }
    if version is not None:
        params["version"] = version
        return sql.VLOB_READ_VERSION, params
    if timestamp is not None:
        params["timestamp"] = db_param(_ATOM_CREATED_ON, timestamp)
        return sql.VLOB_READ_AT, params
    return sql.VLOB_READ_LATEST, params


def _vlob_read_found(row: tuple[Any, ...], *, encryption_revision: int, now: datetime) -> Outcome:
    atom_version, blob, created_on, author, author_last_role_granted_on = row[:5]
    access = evaluate_realm_access(
        access_state_from_row(row[5:]), operation=Operation.READ, now=now, encryption_revision=encryption_revision
    )
    if isinstance(access, Refused):
        return _refusal(access, realm_not_found=RealmRefusal.NOT_FOUND)
    return VlobReadOk(
        version=atom_version,
        blob=bytes(blob),
        author=author,
        timestamp=created_on,
        # The author wrote in the realm, so it has a role certificate there.
        author_last_role_granted_on=author_last_role_granted_on,
    )


def vlob_read(
    *,
    session: AuthenticatedSession,
    encryption_revision: int,
    vlob_id: uuid.UUID,
    version: int | None,
    timestamp: datetime | None,
    now: datetime | None = None,
) -> Outcome:
    now = now or timezone.now()
    query = _vlob_read_query(
        session=session, encryption_revision=encryption_revision, vlob_id=vlob_id, version=version, timestamp=timestamp
    )
    row = fetch_row(*query, sql.VLOB_READ_FIELDS) if query is not None else None
    if row is not None:
        return _vlob_read_found(row, encryption_revision=encryption_revision, now=now)
    # Only when no atom matches do we look for the vlob itself (not_found vs bad_version).
    realm = selectors.realm_of_vlob(organization_pk=session.organization_pk, vlob_id=vlob_id)
    if realm is None:
        return RealmRefusal.NOT_FOUND
    access = check_realm_access(
        organization_pk=session.organization_pk,
        realm=realm,
        user_pk=session.user_pk,
        operation=Operation.READ,
        now=now,
        encryption_revision=encryption_revision,
    )
    if isinstance(access, Refused):
        return _refusal(access, realm_not_found=RealmRefusal.NOT_FOUND)
    return RealmRefusal.BAD_VERSION


async def vlob_read_on_loop(
    *,
    session: AuthenticatedSession,
    encryption_revision: int,
    vlob_id: uuid.UUID,
    version: int | None,
    timestamp: datetime | None,
    now: datetime | None = None,
) -> Outcome | None:
    """`vlob_read` from the event loop (protocol/loop_db.py) when the atom exists; None: `vlob_read`
    tells `not_found` from `bad_version`."""
    query = _vlob_read_query(
        session=session, encryption_revision=encryption_revision, vlob_id=vlob_id, version=version, timestamp=timestamp
    )
    if query is None:
        return None
    row = await loop_db.fetch_row(*query, sql.VLOB_READ_FIELDS)
    if row is None:
        return None
    return _vlob_read_found(row, encryption_revision=encryption_revision, now=now or timezone.now())


def vlob_poll_changes(
    *, session: AuthenticatedSession, realm_id: uuid.UUID, last_checkpoint: int, now: datetime | None = None
) -> Outcome:
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
        return _refusal(access, realm_not_found=RealmRefusal.NOT_FOUND)
    realm = access.realm
    changes: dict[uuid.UUID, int] = {}
    current_checkpoint = realm.checkpoint
    # The checkpoint was read first, so changes committed since may show up too, never the reverse.
    if last_checkpoint < realm.checkpoint:
        for changed_vlob_id, latest_version, latest_index in selectors.vlob_changes_since(
            realm_pk=realm.pk, last_checkpoint=last_checkpoint
        ):
            changes[changed_vlob_id] = latest_version
            current_checkpoint = max(current_checkpoint, latest_index)
    return VlobChangesOk(changes=changes, current_checkpoint=current_checkpoint)


def vlob_list_versions(*, session: AuthenticatedSession, vlob_id: uuid.UUID, now: datetime | None = None) -> Outcome:
    now = now or timezone.now()
    realm = selectors.realm_of_vlob(organization_pk=session.organization_pk, vlob_id=vlob_id)
    if realm is None:
        return RealmRefusal.NOT_FOUND
    access = check_realm_access(
        organization_pk=session.organization_pk,
        realm=realm,
        user_pk=session.user_pk,
        operation=Operation.READ,
        now=now,
    )
    if isinstance(access, Refused):
        return _refusal(access, realm_not_found=RealmRefusal.NOT_FOUND)
    # During re-encryption only the previous revision holds every version.
    revision = realm.encryption_revision
    if realm.maintenance_type == MaintenanceType.REENCRYPTION:
        revision -= 1
    rows = selectors.vlob_versions(
        organization_pk=session.organization_pk, vlob_id=vlob_id, encryption_revision=revision
    )
    return VlobVersionsOk(versions={row_version: (created_on, author) for row_version, created_on, author in rows})


def _maintenance_access(
    *, session: AuthenticatedSession, realm_id: uuid.UUID, encryption_revision: int, now: datetime
) -> Realm | Outcome:
    access = check_realm_access(
        organization_pk=session.organization_pk,
        realm_id=realm_id,
        user_pk=session.user_pk,
        operation=Operation.MAINTENANCE,
        now=now,
        encryption_revision=encryption_revision,
    )
    if isinstance(access, Refused):
        return _refusal(access, realm_not_found=RealmRefusal.NOT_FOUND)
    return access.realm


def vlob_maintenance_get_reencryption_batch(
    *,
    session: AuthenticatedSession,
    realm_id: uuid.UUID,
    encryption_revision: int,
    size: int,
    now: datetime | None = None,
) -> Outcome:
    now = now or timezone.now()
    realm = _maintenance_access(session=session, realm_id=realm_id, encryption_revision=encryption_revision, now=now)
    if not isinstance(realm, Realm):
        return realm
    rows = selectors.versions_to_reencrypt(
        realm=realm, encryption_revision=encryption_revision, limit=min(size, MAX_REENCRYPTION_BATCH_SIZE)
    )
    return ReencryptionBatchOk(
        batch=[{"vlob_id": row_vlob_id, "version": version, "blob": bytes(blob)} for row_vlob_id, version, blob in rows]
    )


def vlob_maintenance_save_reencryption_batch(
    *,
    session: AuthenticatedSession,
    realm_id: uuid.UUID,
    encryption_revision: int,
    batch: list[dict[str, Any]],
    now: datetime | None = None,
) -> Outcome:
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
    return ReencryptionBatchSavedOk(total=counts["total"], done=counts["done"])
