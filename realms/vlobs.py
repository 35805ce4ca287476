"""Vlob rules (commands.md §6): versioned opaque blobs, the realm checkpoint log, re-encryption batches.

Every function is keyword-only, runs synchronously (the handlers call it through `run_sync`) and
returns the reply. Writers take the realm row lock (`FOR NO KEY UPDATE`, so foreign-key checks of
concurrent block or role inserts are not blocked) for as short a time as the write needs: what
can be read before the lock is read before it, and reported in the order of the protocol.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Case, Count, Exists, F, Max, OuterRef, Q, Subquery, Value, When
from django.utils import timezone

from organizations.models import Organization
from protocol import replies
from protocol.events import emit_realm_event_on_commit
from protocol.replies import Reply
from protocol.session import AuthenticatedSession
from realms.access import REALM_NOT_FOUND, Operation, Refused, check_realm_access
from realms.models import MaintenanceType, Realm, RealmUserChange, RealmUserRole, RealmVlobUpdate, VlobAtom

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


def _sequester_refusal(*, organization_pk: int, sequester_blob: dict[uuid.UUID, bytes] | None) -> Reply | None:
    """commands.md §6.8, with no sequester service registrable yet: the enabled service set is empty."""
    if sequester_blob is None:
        # Nil is right for a plain organization, and for a sequestered one without enabled service.
        return None
    authority = (
        Organization.objects.filter(pk=organization_pk)
        .values_list("sequester_authority_certificate", flat=True)
        .first()
    )
    if authority is None:
        return replies.reply("not_a_sequestered_organization")
    if sequester_blob:
        return replies.reply(
            "sequester_inconsistency",
            sequester_authority_certificate=bytes(authority),
            sequester_services_certificates=[],
        )
    return None


def _lock_realm(*, organization_pk: int, realm_id: uuid.UUID) -> Realm | None:
    return (
        Realm.objects.select_for_update(no_key=True)
        .filter(organization_id=organization_pk, realm_id=realm_id)
        .first()
    )


def _realm_of_vlob(*, organization_pk: int, vlob_id: uuid.UUID, lock: bool = False) -> Realm | None:
    query = Realm.objects.filter(
        organization_id=organization_pk, vlob_atoms__organization_id=organization_pk, vlob_atoms__vlob_id=vlob_id
    )
    if lock:
        query = query.select_for_update(no_key=True, of=("self",))
    return next(iter(query[:1]), None)


def _vlob_exists(*, organization_pk: int, vlob_id: uuid.UUID) -> bool:
    # Vlob ids are unique in the organization across every realm and revision.
    return VlobAtom.objects.filter(organization_id=organization_pk, vlob_id=vlob_id).exists()


def _latest_version(
    *, organization_pk: int, vlob_id: uuid.UUID, encryption_revision: int
) -> tuple[int, datetime] | None:
    """(version, timestamp) of the vlob's last version in the revision."""
    return (
        VlobAtom.objects.filter(
            organization_id=organization_pk, vlob_id=vlob_id, encryption_revision=encryption_revision
        )
        .order_by("-version")
        .values_list("version", "created_on")
        .first()
    )


def _record_last_vlob_update(*, realm_pk: int, user_pk: int, timestamp: datetime) -> None:
    """realm_user_change.last_vlob_update = max(previous, timestamp), for `realm_update_roles` causality."""
    greatest = Case(When(last_vlob_update__gte=timestamp, then=F("last_vlob_update")), default=Value(timestamp))
    if RealmUserChange.objects.filter(realm_id=realm_pk, user_id=user_pk).update(last_vlob_update=greatest):
        return
    try:
        # First write of this user in this realm. Savepoint: every writer of the row holds the realm
        # lock today, but an insert racing ours must not abort the whole vlob write.
        with transaction.atomic():
            RealmUserChange.objects.create(realm_id=realm_pk, user_id=user_pk, last_vlob_update=timestamp)
    except IntegrityError:
        RealmUserChange.objects.filter(realm_id=realm_pk, user_id=user_pk).update(last_vlob_update=greatest)


def _write_version(
    *, session: AuthenticatedSession, realm: Realm, vlob_id: uuid.UUID, version: int, timestamp: datetime, blob: bytes
) -> bool:
    """Store one version and its checkpoint; the realm row must be locked by the caller's transaction.

    False when the version already exists: the transaction is then marked for rollback.
    """
    try:
        VlobAtom.objects.create(
            organization_id=session.organization_pk,
            realm_id=realm.pk,
            vlob_id=vlob_id,
            version=version,
            encryption_revision=realm.encryption_revision,
            blob=blob,
            size=len(blob),
            author_id=session.device_pk,
            created_on=timestamp,
        )
    except IntegrityError:
        # Another writer stored this version first: the unique constraint is the referee.
        transaction.set_rollback(True)
        return False
    checkpoint = realm.checkpoint + 1
    # The realm row is locked, so nobody moved the checkpoint since we read it; a miss is a bug.
    if Realm.objects.filter(pk=realm.pk, checkpoint=realm.checkpoint).update(checkpoint=checkpoint) != 1:
        raise RuntimeError(f"checkpoint of realm {realm.realm_id.hex} moved under its lock")
    RealmVlobUpdate.objects.create(realm_id=realm.pk, index=checkpoint, vlob_id=vlob_id, version=version)
    _record_last_vlob_update(realm_pk=realm.pk, user_pk=session.user_pk, timestamp=timestamp)
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
    # Read before the lock, reported after the access check as §6.2 orders them. A vlob created
    # meanwhile in the same revision is caught by the unique constraint below.
    sequester_refusal = _sequester_refusal(organization_pk=session.organization_pk, sequester_blob=sequester_blob)
    vlob_id_taken = _vlob_exists(organization_pk=session.organization_pk, vlob_id=vlob_id)
    with transaction.atomic():
        # Serialises the realm's writers with role changes and maintenance: a write never lands
        # after the role change or maintenance start that forbids it, and checkpoints stay dense.
        realm = _lock_realm(organization_pk=session.organization_pk, realm_id=realm_id)
        if realm is None:
            return NOT_ALLOWED
        access = check_realm_access(
            organization_pk=session.organization_pk,
            realm=realm,
            user_pk=session.user_pk,
            operation=Operation.WRITE,
            now=now,
            encryption_revision=encryption_revision,
            write_timestamp=timestamp,
        )
        if isinstance(access, Refused):
            return _refusal(access, realm_not_found=NOT_ALLOWED)
        if sequester_refusal is not None:
            return sequester_refusal
        if vlob_id_taken:
            return ALREADY_EXISTS
        written = _write_version(
            session=session, realm=realm, vlob_id=vlob_id, version=1, timestamp=timestamp, blob=blob
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
    sequester_refusal = _sequester_refusal(organization_pk=session.organization_pk, sequester_blob=sequester_blob)
    with transaction.atomic():
        # Same lock as vlob_create; it also makes the previous version read below the latest one.
        realm = _realm_of_vlob(organization_pk=session.organization_pk, vlob_id=vlob_id, lock=True)
        if realm is None:
            return NOT_FOUND
        access = check_realm_access(
            organization_pk=session.organization_pk,
            realm=realm,
            user_pk=session.user_pk,
            operation=Operation.WRITE,
            now=now,
            encryption_revision=encryption_revision,
            write_timestamp=timestamp,
        )
        if isinstance(access, Refused):
            return _refusal(access, realm_not_found=NOT_FOUND)
        if sequester_refusal is not None:
            return sequester_refusal
        previous = _latest_version(
            organization_pk=session.organization_pk, vlob_id=vlob_id, encryption_revision=realm.encryption_revision
        )
        if previous is None or version != previous[0] + 1:
            return BAD_VERSION
        if timestamp < previous[1]:
            # Equal is accepted (commands.md §6.3), yet the reply names the previous timestamp.
            return replies.reply("require_greater_timestamp", strictly_greater_than=previous[1])
        written = _write_version(
            session=session, realm=realm, vlob_id=vlob_id, version=version, timestamp=timestamp, blob=blob
        )
    return replies.ok() if written else BAD_VERSION


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
    # Hot path in one query: the wanted atom with its realm, author and the author's latest role
    # certificate. Only when it is missing do we look for the vlob itself (not_found vs bad_version).
    atoms = VlobAtom.objects.filter(
        organization_id=session.organization_pk, vlob_id=vlob_id, encryption_revision=encryption_revision
    )
    if version is not None:
        atoms = atoms.filter(version=version)
    elif timestamp is not None:
        atoms = atoms.filter(created_on__lte=timestamp)
    author_last_role = (
        RealmUserRole.objects.filter(realm_id=OuterRef("realm_id"), user_id=OuterRef("author__user_id"))
        .order_by("-certified_on")
        .values("certified_on")[:1]
    )
    atom = (
        atoms.select_related("realm", "author")
        .only(
            "version", "blob", "created_on", "realm", "author__device_id", "author__user_id",
            *(f"realm__{field.name}" for field in Realm._meta.concrete_fields),
        )
        .annotate(author_last_role_granted_on=Subquery(author_last_role))
        .order_by("-version")
        .first()
    )
    realm = atom.realm if atom is not None else _realm_of_vlob(organization_pk=session.organization_pk, vlob_id=vlob_id)
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
    if isinstance(access, Refused):
        return _refusal(access, realm_not_found=NOT_FOUND)
    if atom is None:
        return BAD_VERSION
    return replies.ok(
        version=atom.version,
        blob=bytes(atom.blob),
        author=atom.author.device_id,
        timestamp=atom.created_on,
        # The author wrote in the realm, so it has a role certificate there.
        author_last_role_granted_on=atom.author_last_role_granted_on,
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
