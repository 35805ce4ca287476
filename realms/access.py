"""The realm access check shared by vlob and block commands (commands.md §6.1), and realm state reads."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

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


def is_deleted(archiving: RealmArchiving | None, now: datetime) -> bool:
    return (
        archiving is not None
        and archiving.configuration == ArchivingConfiguration.DELETION_PLANNED
        and archiving.deletion_date is not None
        and archiving.deletion_date <= now
    )


def is_archived(archiving: RealmArchiving | None) -> bool:
    return archiving is not None and archiving.configuration in (
        ArchivingConfiguration.ARCHIVED,
        ArchivingConfiguration.DELETION_PLANNED,
    )


@dataclass(frozen=True)
class Granted:
    realm: Realm
    role: RealmUserRole


@dataclass(frozen=True)
class Refused:
    """Why access is refused: a reply status, plus `strictly_greater_than` for causality."""

    status: str
    strictly_greater_than: datetime | None = None


REALM_NOT_FOUND = Refused("realm_not_found")  # each command words this its own way


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
    lock: bool = False,
) -> Granted | Refused:
    """Checks 1-5 of commands.md §6.1 in order. `lock` takes the realm row lock (writers)."""
    if realm is None:
        query = Realm.objects.filter(organization_id=organization_pk, realm_id=realm_id)
        if lock:
            query = query.select_for_update()
        realm = query.first()
        if realm is None:
            return REALM_NOT_FOUND
    archiving = current_archiving(realm.pk)
    if is_deleted(archiving, now):
        return Refused("realm_deleted")
    if operation is Operation.WRITE and is_archived(archiving):
        return Refused("realm_archived")

    role = current_role(realm.pk, user_pk)
    role_value = role.role if role is not None else None
    if (
        role_value is None
        or (operation is Operation.WRITE and role_value not in WRITER_ROLES)
        or (operation is Operation.MAINTENANCE and role_value != Role.OWNER)
    ):
        return Refused("not_allowed")
    if operation is Operation.WRITE and write_timestamp is not None and role.certified_on >= write_timestamp:
        return Refused("require_greater_timestamp", strictly_greater_than=role.certified_on)

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
    return Granted(realm=realm, role=role)
