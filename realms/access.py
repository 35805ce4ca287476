"""The realm access check shared by vlob and block commands (docs/protocol.md#vlob-access), and realm state reads."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from django.db import connection

from protocol.db import db_param, fetch_row
from realms.models import ArchivingConfiguration, Realm, RealmArchiving, RealmUserRole, Role


class Operation(Enum):
    READ = "read"
    WRITE = "write"
    MAINTENANCE = "maintenance"


WRITER_ROLES = frozenset({Role.OWNER, Role.MANAGER, Role.CONTRIBUTOR})


def current_role(realm_pk: int, user_pk: int) -> RealmUserRole | None:
    """The user's latest role certificate in the realm (its `role` is None when access was removed)."""
    return RealmUserRole.objects.filter(realm_id=realm_pk, user_id=user_pk).order_by("-certified_on").first()


def current_archiving(realm_pk: int) -> RealmArchiving | None:
    return RealmArchiving.objects.filter(realm_id=realm_pk).order_by("-certified_on").first()


def is_deleted(archiving: RealmArchiving | _ArchivingState | None, now: datetime) -> bool:
    return (
        archiving is not None
        and archiving.configuration == ArchivingConfiguration.DELETION_PLANNED
        and archiving.deletion_date is not None
        and archiving.deletion_date <= now
    )


def is_archived(archiving: RealmArchiving | _ArchivingState | None) -> bool:
    return archiving is not None and archiving.configuration in (
        ArchivingConfiguration.ARCHIVED,
        ArchivingConfiguration.DELETION_PLANNED,
    )


@dataclass(frozen=True)
class Granted:
    realm: Realm
    role: str
    role_certified_on: datetime


@dataclass(frozen=True)
class Refused:
    """Why access is refused: a reply status, plus `strictly_greater_than` for causality."""

    status: str
    strictly_greater_than: datetime | None = None


REALM_NOT_FOUND = Refused("realm_not_found")  # each command words this its own way


def _access_state_columns() -> str:
    """The select list of the access state over a realm aliased `r`; its two `%s` are the user's pk."""
    realm_columns = ", ".join(f'r."{field.column}"' for field in Realm._meta.concrete_fields)
    archiving_table, role_table = RealmArchiving._meta.db_table, RealmUserRole._meta.db_table

    def latest_archiving(column: str) -> str:
        return (
            f'(SELECT a."{column}" FROM "{archiving_table}" a WHERE a."realm_id" = r."id"'
            ' ORDER BY a."certified_on" DESC LIMIT 1)'
        )

    def latest_role(column: str) -> str:
        return (
            f'(SELECT u."{column}" FROM "{role_table}" u WHERE u."realm_id" = r."id" AND u."user_id" = %s'
            ' ORDER BY u."certified_on" DESC LIMIT 1)'
        )

    return (
        f"{realm_columns}, {latest_archiving('configuration')}, {latest_archiving('deletion_date')},"
        f" {latest_role('role')}, {latest_role('certified_on')}"
    )


# Hot path (every vlob and block command): the realm row, its latest archiving and the user's
# latest role come in one round trip, in SQL written once (see protocol/db.py for why not the ORM).
ACCESS_STATE_COLUMNS = _access_state_columns()
_REALM_FIELDS = tuple(Realm._meta.concrete_fields)
ACCESS_STATE_FIELDS = (
    *_REALM_FIELDS,
    RealmArchiving._meta.get_field("configuration"),
    RealmArchiving._meta.get_field("deletion_date"),
    RealmUserRole._meta.get_field("role"),
    RealmUserRole._meta.get_field("certified_on"),
)


@dataclass(frozen=True)
class _ArchivingState:
    configuration: str
    deletion_date: datetime | None


@dataclass(frozen=True)
class AccessState:
    realm: Realm
    archiving: _ArchivingState | None
    role: str | None  # None: no role certificate, or access removed
    role_certified_on: datetime | None


def access_state_from_row(row: tuple) -> AccessState:
    """`row` holds the converted ACCESS_STATE_FIELDS columns, in order."""
    count = len(_REALM_FIELDS)
    realm = Realm.from_db(connection.alias, [field.attname for field in _REALM_FIELDS], row[:count])
    configuration, deletion_date, role, role_certified_on = row[count:]
    archiving = _ArchivingState(configuration, deletion_date) if configuration is not None else None
    return AccessState(realm=realm, archiving=archiving, role=role, role_certified_on=role_certified_on)


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
    """Checks 1-5 of docs/protocol.md#vlob-access in order.

    Writers pass the `realm` they locked in an earlier statement: its row is read again with the
    archiving and role state, in a statement that starts after the lock was granted, so it sees
    every role change or archiving committed before (a statement's snapshot is taken when it starts).
    """
    if realm is not None:
        where, params = 'r."id" = %s', [realm.pk]
    else:
        where = 'r."organization_id" = %s AND r."realm_id" = %s'
        params = [organization_pk, db_param(Realm._meta.get_field("realm_id"), realm_id)]
    row = fetch_row(
        f'SELECT {ACCESS_STATE_COLUMNS} FROM "{Realm._meta.db_table}" r WHERE {where}',
        [user_pk, user_pk, *params],
        ACCESS_STATE_FIELDS,
    )
    if row is None:
        return REALM_NOT_FOUND
    return evaluate_realm_access(
        access_state_from_row(row),
        operation=operation,
        now=now,
        encryption_revision=encryption_revision,
        write_timestamp=write_timestamp,
    )


def evaluate_realm_access(
    state: AccessState,
    *,
    operation: Operation,
    now: datetime,
    encryption_revision: int | None = None,
    write_timestamp: datetime | None = None,
) -> Granted | Refused:
    """Checks 2-5 of docs/protocol.md#vlob-access on an access state read by the caller."""
    realm, role = state.realm, state.role
    if is_deleted(state.archiving, now):
        return Refused("realm_deleted")
    if operation is Operation.WRITE and is_archived(state.archiving):
        return Refused("realm_archived")

    if (
        role is None
        or (operation is Operation.WRITE and role not in WRITER_ROLES)
        or (operation is Operation.MAINTENANCE and role != Role.OWNER)
    ):
        return Refused("not_allowed")
    assert state.role_certified_on is not None  # certified with the role
    if operation is Operation.WRITE and write_timestamp is not None and state.role_certified_on >= write_timestamp:
        return Refused("require_greater_timestamp", strictly_greater_than=state.role_certified_on)

    in_reencryption = realm.maintenance_type == "REENCRYPTION"
    if operation is Operation.READ and in_reencryption:
        if encryption_revision == realm.encryption_revision:
            return Refused("in_maintenance")
        if encryption_revision is not None and encryption_revision != realm.encryption_revision - 1:
            return Refused("bad_encryption_revision")
    else:
        if realm.maintenance_type is not None and operation is not Operation.MAINTENANCE:
            return Refused("in_maintenance")
        if operation is Operation.MAINTENANCE and realm.maintenance_type is None:
            return Refused("not_in_maintenance")
        if encryption_revision is not None and encryption_revision != realm.encryption_revision:
            return Refused("bad_encryption_revision")
    return Granted(realm=realm, role=role, role_certified_on=state.role_certified_on)
