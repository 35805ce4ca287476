"""Realm rules (docs/protocol.md#realms): creation, status and statistics, roles, archiving."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.apps import apps
from django.db import IntegrityError, models, transaction
from django.db.models import Exists, F, OuterRef, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from organizations.models import Organization, Profile, User
from organizations.rules import INVALID_AUTHOR_REASON, authored_by_session, revoked_at
from protocol import certificates, replies
from protocol.certificates import RealmArchivingCertificate, RealmRoleCertificate
from protocol.db import db_param
from protocol.events import emit_realm_event_on_commit, emit_user_event_on_commit
from protocol.session import AuthenticatedSession
from protocol.types import RealmArchivingConfiguration, RealmArchivingConfigurationType
from realms import selectors, sql
from realms.models import (
    ArchivingConfiguration,
    Realm,
    RealmArchiving,
    RealmUserChange,
    RealmUserRole,
    Role,
    VlobAtom,
)
from realms.outcomes import (
    OK,
    ArchivingConfigOk,
    BadTimestamp,
    InvalidCertification,
    InvalidData,
    Outcome,
    RealmRefusal,
    RealmStatsOk,
    RealmStatusOk,
    RequireGreaterTimestamp,
    RoleCertificatesOk,
)
from realms.rules import current_archiving, current_role, is_deleted
from realms.services.messages import send_messages

OWNER_OR_MANAGER = frozenset({Role.OWNER, Role.MANAGER})
# New roles that lose write rights, then management rights (causality checks 14 and 15 of §5.5).
NON_WRITER_ROLES = frozenset({Role.READER, None})
NON_MANAGER_ROLES = frozenset({Role.CONTRIBUTOR, Role.READER, None})

_REALM_ID = Realm._meta.get_field("realm_id")


# Helpers ---------------------------------------------------------------------------------------


def _role_of(realm_pk: int, user_pk: int) -> str | None:
    row = current_role(realm_pk, user_pk)
    return row.role if row is not None else None


def _lock_realm(*, organization_pk: int, realm_id: uuid.UUID) -> Realm | None:
    return sql.lock_realm(organization_pk=organization_pk, realm_id=db_param(_REALM_ID, realm_id))


def _record_user_change(*, realm_pk: int, user_pk: int, field: str, timestamp: datetime) -> None:
    """Upsert `field` of the user's RealmUserChange row to max(previous, timestamp)."""
    value = Value(timestamp, output_field=models.DateTimeField())
    # Coalesce: SQLite's MAX() is NULL as soon as one argument is.
    update = {field: Greatest(Coalesce(F(field), value), value)}
    if RealmUserChange.objects.filter(realm_id=realm_pk, user_id=user_pk).update(**update):
        return
    try:
        # Savepoint: a vlob write of the same user may create the row first.
        with transaction.atomic():
            RealmUserChange.objects.create(realm_id=realm_pk, user_id=user_pk, **{field: timestamp})
    except IntegrityError:
        RealmUserChange.objects.filter(realm_id=realm_pk, user_id=user_pk).update(**update)


def _block_model() -> type[models.Model] | None:
    # Looked up lazily (blocks.models imports realms.models); without the blocks app, sizes are 0.
    try:
        return apps.get_model("blocks", "Block")
    except LookupError:
        return None


def _sum(query: models.QuerySet, field: str = "size") -> int:
    return query.aggregate(total=Coalesce(Sum(field), 0))["total"]


def _realm_vlobs_size(realm_pk: int) -> int:
    # Each version counts once, as first written: re-encrypted copies live in later revisions.
    earlier_copy = VlobAtom.objects.filter(
        realm_id=realm_pk,
        vlob_id=OuterRef("vlob_id"),
        version=OuterRef("version"),
        encryption_revision__lt=OuterRef("encryption_revision"),
    )
    return _sum(VlobAtom.objects.filter(realm_id=realm_pk).exclude(Exists(earlier_copy)))


def _member_realm(*, session: AuthenticatedSession, realm_id: uuid.UUID, now: datetime) -> Realm | RealmRefusal:
    """Checks shared by realm_status and realm_stats: realm exists, not deleted, author has a role."""
    realm = selectors.realm_with_maintenance_author(organization_pk=session.organization_pk, realm_id=realm_id)
    if realm is None:
        return RealmRefusal.NOT_FOUND
    if is_deleted(current_archiving(realm.pk), now):
        return RealmRefusal.REALM_DELETED
    if _role_of(realm.pk, session.user_pk) is None:
        return RealmRefusal.NOT_ALLOWED
    return realm


# Commands --------------------------------------------------------------------------------------


def realm_create(*, session: AuthenticatedSession, role_certificate: bytes, now: datetime | None = None) -> Outcome:
    now = now or timezone.now()
    try:
        certificate = RealmRoleCertificate.verify_and_load(role_certificate, session.verify_key)
    except certificates.InvalidCertification as exc:
        return InvalidCertification(exc.reason)
    if not authored_by_session(certificate.author, session):
        return InvalidCertification(INVALID_AUTHOR_REASON)
    if not replies.timestamp_in_ballpark(certificate.timestamp, now):
        return BadTimestamp(now=now, client_timestamp=certificate.timestamp)
    if certificate.user_id != session.user_id or certificate.role != Role.OWNER:
        return InvalidData("The realm creator must give itself the OWNER role.")
    try:
        with transaction.atomic():
            realm = Realm.objects.create(
                organization_id=session.organization_pk, realm_id=certificate.realm_id, created_on=certificate.timestamp
            )
            RealmUserRole.objects.create(
                realm=realm,
                user_id=session.user_pk,
                role=Role.OWNER,
                certificate=role_certificate,
                certified_by_id=session.device_pk,
                certified_on=certificate.timestamp,
            )
            emit_user_event_on_commit(
                user_pk=session.user_pk,
                realm_id=certificate.realm_id,
                event={"event": "realm.roles_updated", "realm_id": certificate.realm_id, "role": Role.OWNER.value},
            )
    except IntegrityError:
        return RealmRefusal.ALREADY_EXISTS
    return OK


def realm_status(*, session: AuthenticatedSession, realm_id: uuid.UUID, now: datetime | None = None) -> Outcome:
    realm = _member_realm(session=session, realm_id=realm_id, now=now or timezone.now())
    if not isinstance(realm, Realm):
        return realm
    started_by = realm.maintenance_started_by
    return RealmStatusOk(
        in_maintenance=realm.maintenance_type is not None,
        maintenance_type=realm.maintenance_type,
        maintenance_started_on=realm.maintenance_started_on,
        maintenance_started_by=started_by.device_id if started_by is not None else None,
        encryption_revision=realm.encryption_revision,
    )


def realm_stats(*, session: AuthenticatedSession, realm_id: uuid.UUID, now: datetime | None = None) -> Outcome:
    realm = _member_realm(session=session, realm_id=realm_id, now=now or timezone.now())
    if not isinstance(realm, Realm):
        return realm
    block_model = _block_model()
    blocks_size = _sum(block_model._default_manager.filter(realm_id=realm.pk)) if block_model is not None else 0
    return RealmStatsOk(blocks_size=blocks_size, vlobs_size=_realm_vlobs_size(realm.pk))


def realm_get_role_certificates(*, session: AuthenticatedSession, realm_id: uuid.UUID) -> Outcome:
    # One query: the client calls this very often. Deleted realms still answer (docs/protocol.md#realm-states).
    rows = selectors.role_certificates(organization_pk=session.organization_pk, realm_id=realm_id)
    if not rows:
        # A realm always holds its creator's certificate.
        return RealmRefusal.NOT_FOUND
    author_role = None
    for user_pk, role, _ in rows:
        if user_pk == session.user_pk:
            author_role = role
    if author_role is None:
        return RealmRefusal.NOT_ALLOWED
    return RoleCertificatesOk(certificates=[bytes(certificate) for _, _, certificate in rows])


def realm_update_roles(
    *,
    session: AuthenticatedSession,
    role_certificate: bytes,
    recipient_message: bytes | None,
    now: datetime | None = None,
) -> Outcome:
    """Every check of docs/protocol.md#realm-update-roles, in order, then store the certificate."""
    now = now or timezone.now()
    # An OUTSIDER only ever owns the realms it creates, alone.
    if session.profile == Profile.OUTSIDER:
        return RealmRefusal.NOT_ALLOWED
    try:
        certificate = RealmRoleCertificate.verify_and_load(role_certificate, session.verify_key)
    except certificates.InvalidCertification as exc:
        return InvalidCertification(exc.reason)
    if not authored_by_session(certificate.author, session):
        return InvalidCertification(INVALID_AUTHOR_REASON)
    timestamp = certificate.timestamp
    if not replies.timestamp_in_ballpark(timestamp, now):
        return BadTimestamp(now=now, client_timestamp=timestamp)
    if certificate.user_id == session.user_id:
        return InvalidData("A user cannot change its own role.")
    new_role = certificate.role

    with transaction.atomic():
        target = (
            User.objects.filter(organization_id=session.organization_pk, user_id=certificate.user_id)
            .only("pk", "profile", "revoked_on")
            .first()
        )
        if target is None:
            return RealmRefusal.NOT_FOUND
        if revoked_at(target.revoked_on, now):
            return RealmRefusal.USER_REVOKED
        if target.profile == Profile.OUTSIDER and new_role in OWNER_OR_MANAGER:
            return RealmRefusal.INCOMPATIBLE_PROFILE
        # Row lock: concurrent role changes of one realm would all pass the causality checks below.
        realm = _lock_realm(organization_pk=session.organization_pk, realm_id=certificate.realm_id)
        if realm is None:
            return RealmRefusal.NOT_FOUND
        if is_deleted(current_archiving(realm.pk), now):
            return RealmRefusal.REALM_DELETED
        if realm.maintenance_type is not None:
            return RealmRefusal.IN_MAINTENANCE

        target_latest = current_role(realm.pk, target.pk)
        target_role = target_latest.role if target_latest is not None else None
        author_role = _role_of(realm.pk, session.user_pk)
        if target_role in OWNER_OR_MANAGER or new_role in OWNER_OR_MANAGER:
            allowed = author_role == Role.OWNER
        else:
            allowed = author_role in OWNER_OR_MANAGER
        if not allowed:
            return RealmRefusal.NOT_ALLOWED
        if target_role == new_role:
            return RealmRefusal.ALREADY_GRANTED

        changes = RealmUserChange.objects.filter(realm=realm, user=target).first()
        last_archiving = changes.last_archiving_change if changes is not None else None
        last_vlob = changes.last_vlob_update if changes is not None else None
        last_role_change = changes.last_role_change if changes is not None else None
        for applies, previous in (
            (target_role == Role.OWNER, last_archiving),
            (True, target_latest.certified_on if target_latest is not None else None),
            (new_role in NON_WRITER_ROLES, last_vlob),
            (new_role in NON_MANAGER_ROLES, last_role_change),
        ):
            if applies and previous is not None and previous >= timestamp:
                return RequireGreaterTimestamp(previous)

        RealmUserRole.objects.create(
            realm=realm,
            user=target,
            role=new_role.value if new_role is not None else None,
            certificate=role_certificate,
            certified_by_id=session.device_pk,
            certified_on=timestamp,
        )
        _record_user_change(realm_pk=realm.pk, user_pk=session.user_pk, field="last_role_change", timestamp=timestamp)
        # Also updates the realm sets of the target's event connections (docs/protocol.md#events-subscribe).
        emit_user_event_on_commit(
            user_pk=target.pk,
            realm_id=realm.realm_id,
            event={
                "event": "realm.roles_updated",
                "realm_id": realm.realm_id,
                "role": new_role.value if new_role is not None else None,
            },
        )
        if recipient_message is not None:
            send_messages(
                sender_device_pk=session.device_pk, timestamp=timestamp, bodies={target.pk: recipient_message}
            )
    return OK


def realm_update_archiving(
    *, session: AuthenticatedSession, archiving_certificate: bytes, now: datetime | None = None
) -> Outcome:
    """docs/protocol.md#realm-update-archiving. Its error statuses carry no `reason`, unlike the other realm
    commands."""
    now = now or timezone.now()
    try:
        certificate = RealmArchivingCertificate.verify_and_load(archiving_certificate, session.verify_key)
    except certificates.InvalidCertification as exc:
        return InvalidCertification(exc.reason)
    if not authored_by_session(certificate.author, session):
        return InvalidCertification(INVALID_AUTHOR_REASON)
    timestamp = certificate.timestamp
    if not replies.timestamp_in_ballpark(timestamp, now):
        return BadTimestamp(now=now, client_timestamp=timestamp)
    configuration = certificate.configuration

    with transaction.atomic():
        # Row lock: archiving certificates of a realm must have strictly increasing timestamps.
        realm = _lock_realm(organization_pk=session.organization_pk, realm_id=certificate.realm_id)
        if realm is None:
            return RealmRefusal.NOT_FOUND
        archiving = current_archiving(realm.pk)
        if is_deleted(archiving, now):
            return RealmRefusal.REALM_DELETED
        author_latest = current_role(realm.pk, session.user_pk)
        if author_latest is None or author_latest.role != Role.OWNER:
            return RealmRefusal.NOT_ALLOWED
        if configuration.deletion_date is not None:
            minimum_period = (
                Organization.objects.filter(pk=session.organization_pk)
                .values_list("minimum_archiving_period", flat=True)
                .get()
            )
            # Compared with the certificate timestamp, not with the server clock (reference behaviour).
            try:
                too_short = configuration.deletion_date < timestamp + timedelta(seconds=minimum_period)
            except OverflowError:
                too_short = True
            if too_short:
                return RealmRefusal.ARCHIVING_PERIOD_TOO_SHORT
        if author_latest.certified_on >= timestamp:
            return RequireGreaterTimestamp(author_latest.certified_on)
        if archiving is not None and archiving.certified_on >= timestamp:
            return RequireGreaterTimestamp(archiving.certified_on)

        RealmArchiving.objects.create(
            realm=realm,
            configuration=ArchivingConfiguration(configuration.type.value),
            deletion_date=configuration.deletion_date,
            certificate=archiving_certificate,
            certified_by_id=session.device_pk,
            certified_on=timestamp,
        )
        _record_user_change(
            realm_pk=realm.pk, user_pk=session.user_pk, field="last_archiving_change", timestamp=timestamp
        )
        emit_realm_event_on_commit(
            organization_pk=session.organization_pk,
            realm_id=realm.realm_id,
            event={
                "event": "realm.archiving_updated",
                "realm_id": realm.realm_id,
                "configuration": configuration.to_wire(),
            },
            exclude_device_pk=session.device_pk,
        )
    return OK


def archiving_config(*, session: AuthenticatedSession) -> ArchivingConfigOk:
    """The latest archiving configuration of every realm the author user is member of, deleted ones included."""
    realms = selectors.user_current_realms(session.user_pk)
    latest = selectors.latest_archivings([pk for pk, _ in realms])
    items = []
    for realm_pk, realm_id in realms:
        if realm_pk in latest:
            configuration, deletion_date, configured_on, configured_by = latest[realm_pk]
        else:
            configuration, deletion_date, configured_on, configured_by = (
                ArchivingConfiguration.AVAILABLE, None, None, None
            )
        items.append(
            {
                "realm_id": realm_id,
                "configured_on": configured_on,
                "configured_by": configured_by,
                "configuration": RealmArchivingConfiguration(
                    RealmArchivingConfigurationType(configuration), deletion_date
                ).to_wire(),
            }
        )
    return ArchivingConfigOk(archiving_config=items)
