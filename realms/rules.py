"""The realm rules, written once: a user's role in a realm, the realm's archiving state, and the access
check shared by vlob and block commands (docs/protocol.md#vlob-access).

Each rule has its ORM form (a query or a function over model rows) and, where the hot path reads in
hand-written SQL, its SQL form (a subquery over named columns, embedded whole by realms/sql.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from realms.models import ArchivingConfiguration, Realm, RealmArchiving, RealmUserRole, Role


class Operation(Enum):
    READ = "read"
    WRITE = "write"
    MAINTENANCE = "maintenance"


WRITER_ROLES = frozenset({Role.OWNER, Role.MANAGER, Role.CONTRIBUTOR})

# --- role of a user in a realm ------------------------------------------------------------------
# A user's role in a realm is the one of its latest role certificate there (None: access removed,
# or never granted).

_ROLE_TABLE = RealmUserRole._meta.db_table
_ARCHIVING_TABLE = RealmArchiving._meta.db_table


def role_certificates_newest_first(*, realm: Any, user: Any) -> QuerySet[RealmUserRole]:
    """The user's role certificates in the realm, newest first: the first one is its current role.
    `realm` and `user` are pks, or expressions such as OuterRef("pk") in a subquery."""
    return RealmUserRole.objects.filter(realm_id=realm, user_id=user).order_by("-certified_on")


def current_role(realm_pk: int, user_pk: int) -> RealmUserRole | None:
    """The user's latest role certificate in the realm (its `role` is None when access was removed)."""
    return role_certificates_newest_first(realm=realm_pk, user=user_pk).first()


def current_role_sql(column: str, *, realm: str, user: str) -> str:
    """The SQL form of `current_role`: `column` of the latest role certificate of user `user` in realm
    `realm` (both SQL expressions: a column or a named parameter)."""
    return (
        f'(SELECT u."{column}" FROM "{_ROLE_TABLE}" u WHERE u."realm_id" = {realm} AND u."user_id" = {user}'
        ' ORDER BY u."certified_on" DESC LIMIT 1)'
    )


# --- archiving state ----------------------------------------------------------------------------


def current_archiving(realm_pk: int) -> RealmArchiving | None:
    return RealmArchiving.objects.filter(realm_id=realm_pk).order_by("-certified_on").first()


def current_archiving_sql(column: str, *, realm: str) -> str:
    """The SQL form of `current_archiving`: `column` of the realm's latest archiving certificate."""
    return (
        f'(SELECT a."{column}" FROM "{_ARCHIVING_TABLE}" a WHERE a."realm_id" = {realm}'
        ' ORDER BY a."certified_on" DESC LIMIT 1)'
    )


def is_deleted(archiving: RealmArchiving | ArchivingState | None, now: datetime) -> bool:
    return (
        archiving is not None
        and archiving.configuration == ArchivingConfiguration.DELETION_PLANNED
        and archiving.deletion_date is not None
        and archiving.deletion_date <= now
    )


def is_archived(archiving: RealmArchiving | ArchivingState | None) -> bool:
    return archiving is not None and archiving.configuration in (
        ArchivingConfiguration.ARCHIVED,
        ArchivingConfiguration.DELETION_PLANNED,
    )


# --- the access check ---------------------------------------------------------------------------


class AccessRefusal(StrEnum):
    """Why access is refused; the values are the reply statuses."""

    REALM_NOT_FOUND = "realm_not_found"  # each command words this its own way
    REALM_DELETED = "realm_deleted"
    REALM_ARCHIVED = "realm_archived"
    NOT_ALLOWED = "not_allowed"
    REQUIRE_GREATER_TIMESTAMP = "require_greater_timestamp"
    IN_MAINTENANCE = "in_maintenance"
    NOT_IN_MAINTENANCE = "not_in_maintenance"
    BAD_ENCRYPTION_REVISION = "bad_encryption_revision"


@dataclass(frozen=True)
class Granted:
    realm: Realm
    role: str
    role_certified_on: datetime


@dataclass(frozen=True)
class Refused:
    """Why access is refused, plus `strictly_greater_than` for causality."""

    status: AccessRefusal
    strictly_greater_than: datetime | None = None


REALM_NOT_FOUND = Refused(AccessRefusal.REALM_NOT_FOUND)

_REALM_FIELDS = tuple(Realm._meta.concrete_fields)
# The columns realms/sql.py reads for an access state (ACCESS_STATE_COLUMNS), in order.
ACCESS_STATE_FIELDS = (
    *_REALM_FIELDS,
    RealmArchiving._meta.get_field("configuration"),
    RealmArchiving._meta.get_field("deletion_date"),
    RealmUserRole._meta.get_field("role"),
    RealmUserRole._meta.get_field("certified_on"),
)


@dataclass(frozen=True)
class ArchivingState:
    configuration: str
    deletion_date: datetime | None


@dataclass(frozen=True)
class AccessState:
    realm: Realm
    archiving: ArchivingState | None
    role: str | None  # None: no role certificate, or access removed
    role_certified_on: datetime | None


def access_state_from_row(row: tuple) -> AccessState:
    """`row` holds the converted ACCESS_STATE_FIELDS columns, in order."""
    count = len(_REALM_FIELDS)
    realm = Realm.from_db(connection.alias, [field.attname for field in _REALM_FIELDS], row[:count])
    configuration, deletion_date, role, role_certified_on = row[count:]
    archiving = ArchivingState(configuration, deletion_date) if configuration is not None else None
    return AccessState(realm=realm, archiving=archiving, role=role, role_certified_on=role_certified_on)


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
        return Refused(AccessRefusal.REALM_DELETED)
    if operation is Operation.WRITE and is_archived(state.archiving):
        return Refused(AccessRefusal.REALM_ARCHIVED)

    if (
        role is None
        or (operation is Operation.WRITE and role not in WRITER_ROLES)
        or (operation is Operation.MAINTENANCE and role != Role.OWNER)
    ):
        return Refused(AccessRefusal.NOT_ALLOWED)
    # A role comes from a role certificate row, whose certified_on is NOT NULL.
    assert state.role_certified_on is not None
    if operation is Operation.WRITE and write_timestamp is not None and state.role_certified_on >= write_timestamp:
        return Refused(AccessRefusal.REQUIRE_GREATER_TIMESTAMP, strictly_greater_than=state.role_certified_on)

    in_reencryption = realm.maintenance_type == "REENCRYPTION"
    if operation is Operation.READ and in_reencryption:
        if encryption_revision == realm.encryption_revision:
            return Refused(AccessRefusal.IN_MAINTENANCE)
        if encryption_revision is not None and encryption_revision != realm.encryption_revision - 1:
            return Refused(AccessRefusal.BAD_ENCRYPTION_REVISION)
    else:
        if realm.maintenance_type is not None and operation is not Operation.MAINTENANCE:
            return Refused(AccessRefusal.IN_MAINTENANCE)
        if operation is Operation.MAINTENANCE and realm.maintenance_type is None:
            return Refused(AccessRefusal.NOT_IN_MAINTENANCE)
        if encryption_revision is not None and encryption_revision != realm.encryption_revision:
            return Refused(AccessRefusal.BAD_ENCRYPTION_REVISION)
    return Granted(realm=realm, role=role, role_certified_on=state.role_certified_on)
