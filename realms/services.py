"""Realm rules: creation, roles, archiving, maintenance, messages. Plain functions returning replies."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.db import IntegrityError, models, transaction
from django.db.models import Exists, F, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from organizations.models import Organization, Profile, User
from protocol import replies
from protocol.certificates import InvalidCertification, RealmArchivingCertificate, RealmRoleCertificate
from protocol.events import emit_realm_event_on_commit, emit_user_event_on_commit
from protocol.replies import Reply
from protocol.session import AuthenticatedSession
from protocol.types import RealmArchivingConfiguration, RealmArchivingConfigurationType
from realms.access import current_archiving, current_role, is_deleted
from realms.models import (
    ArchivingConfiguration,
    MaintenanceType,
    Message,
    Realm,
    RealmArchiving,
    RealmUserChange,
    RealmUserRole,
    Role,
    VlobAtom,
)

OWNER_OR_MANAGER = frozenset({Role.OWNER, Role.MANAGER})
# New roles that lose write rights, then management rights (causality checks 14 and 15 of §5.5).
NON_WRITER_ROLES = frozenset({Role.READER, None})
NON_MANAGER_ROLES = frozenset({Role.CONTRIBUTOR, Role.READER, None})


# Helpers ---------------------------------------------------------------------------------------


def _current_realms(user_pk: int) -> models.QuerySet[Realm]:
    """Realms where the user's latest role certificate grants a role, in creation order."""
    latest_role = (
        RealmUserRole.objects.filter(realm=OuterRef("pk"), user_id=user_pk).order_by("-certified_on").values("role")[:1]
    )
    return (
        Realm.objects.filter(roles__user_id=user_pk)
        .annotate(current=Subquery(latest_role))
        .filter(current__isnull=False)
        .distinct()
        .order_by("pk")
    )


def user_current_realm_ids(user_pk: int) -> list[uuid.UUID]:
    """Realms where the user currently has a role: the realm set of a new events subscription."""
    return list(_current_realms(user_pk).values_list("realm_id", flat=True))


def _find_realm(*, organization_pk: int, realm_id: uuid.UUID, lock: bool = False) -> Realm | None:
    query = Realm.objects.filter(organization_id=organization_pk, realm_id=realm_id)
    if lock:
        # NO KEY UPDATE: serialises the realm's writers without blocking inserts that merely reference it.
        query = query.select_for_update(no_key=True)
    return query.first()


def _role_of(realm_pk: int, user_pk: int) -> str | None:
    row = current_role(realm_pk, user_pk)
    return row.role if row is not None else None


def _is_revoked(user_revoked_on: datetime | None, now: datetime) -> bool:
    # A revocation certificate may be dated slightly in the future: it applies from its timestamp.
    return user_revoked_on is not None and user_revoked_on <= now


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


def _send_messages(*, sender_device_pk: int, timestamp: datetime, bodies: dict[int, bytes]) -> None:
    """Append one message per recipient user (pk -> body), in the given order; events after commit."""
    # Lock the recipients (in pk order, against deadlocks): two senders must not take the same index.
    recipients = User.objects.select_for_update(no_key=True).filter(pk__in=bodies).order_by("pk")
    list(recipients.values_list("pk", flat=True))
    for recipient_pk, body in bodies.items():
        index = Message.objects.filter(recipient_id=recipient_pk).count() + 1
        Message.objects.create(
            recipient_id=recipient_pk, index=index, sender_id=sender_device_pk, timestamp=timestamp, body=body
        )
        emit_user_event_on_commit(user_pk=recipient_pk, event={"event": "message.received", "index": index})


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


def _archiving_wire(configuration: str, deletion_date: datetime | None) -> dict[str, Any]:
    return RealmArchivingConfiguration(RealmArchivingConfigurationType(configuration), deletion_date).to_wire()


def _member_realm(*, session: AuthenticatedSession, realm_id: uuid.UUID, now: datetime) -> Realm | Reply:
    """Checks shared by realm_status and realm_stats: realm exists, not deleted, author has a role."""
    realm = (
        Realm.objects.select_related("maintenance_started_by")
        .filter(organization_id=session.organization_pk, realm_id=realm_id)
        .first()
    )
    if realm is None:
        return replies.reply("not_found", reason=None)
    if is_deleted(current_archiving(realm.pk), now):
        return replies.reply("realm_deleted")
    if _role_of(realm.pk, session.user_pk) is None:
        return replies.reply("not_allowed")
    return realm


# Commands --------------------------------------------------------------------------------------


def realm_create(*, session: AuthenticatedSession, role_certificate: bytes, now: datetime | None = None) -> Reply:
    now = now or timezone.now()
    try:
        certificate = RealmRoleCertificate.verify_and_load(role_certificate, session.verify_key)
    except InvalidCertification as exc:
        return replies.reply("invalid_certification", reason=exc.reason)
    if certificate.author != session.device_id:
        return replies.reply("invalid_certification", reason="Invalid author: expected the connected device.")
    if not replies.timestamp_in_ballpark(certificate.timestamp, now):
        return replies.bad_timestamp(now=now, client_timestamp=certificate.timestamp)
    if certificate.user_id != session.user_id or certificate.role != Role.OWNER:
        return replies.reply("invalid_data", reason="The realm creator must give itself the OWNER role.")
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
        return replies.reply("already_exists")
    return replies.ok()


def realm_status(*, session: AuthenticatedSession, realm_id: uuid.UUID, now: datetime | None = None) -> Reply:
    realm = _member_realm(session=session, realm_id=realm_id, now=now or timezone.now())
    if not isinstance(realm, Realm):
        return realm
    started_by = realm.maintenance_started_by
    return replies.ok(
        in_maintenance=realm.maintenance_type is not None,
        maintenance_type=realm.maintenance_type,
        maintenance_started_on=realm.maintenance_started_on,
        maintenance_started_by=started_by.device_id if started_by is not None else None,
        encryption_revision=realm.encryption_revision,
    )


def realm_stats(*, session: AuthenticatedSession, realm_id: uuid.UUID, now: datetime | None = None) -> Reply:
    realm = _member_realm(session=session, realm_id=realm_id, now=now or timezone.now())
    if not isinstance(realm, Realm):
        return realm
    block_model = _block_model()
    blocks_size = _sum(block_model._default_manager.filter(realm_id=realm.pk)) if block_model is not None else 0
    return replies.ok(blocks_size=blocks_size, vlobs_size=_realm_vlobs_size(realm.pk))


def realm_get_role_certificates(*, session: AuthenticatedSession, realm_id: uuid.UUID) -> Reply:
    # One query: the client calls this very often. Deleted realms still answer (docs/protocol.md#realm-states).
    rows = list(
        RealmUserRole.objects.filter(realm__organization_id=session.organization_pk, realm__realm_id=realm_id)
        .order_by("certified_on", "pk")
        .values_list("user_id", "role", "certificate")
    )
    if not rows:
        # A realm always holds its creator's certificate.
        return replies.reply("not_found", reason=None)
    author_role = None
    for user_pk, role, _ in rows:
        if user_pk == session.user_pk:
            author_role = role
    if author_role is None:
        return replies.reply("not_allowed")
    return replies.ok(certificates=[bytes(certificate) for _, _, certificate in rows])


def realm_update_roles(
    *,
    session: AuthenticatedSession,
    role_certificate: bytes,
    recipient_message: bytes | None,
    now: datetime | None = None,
) -> Reply:
    """Every check of docs/protocol.md#realm-update-roles, in order, then store the certificate."""
    now = now or timezone.now()
    # An OUTSIDER only ever owns the realms it creates, alone.
    if session.profile == Profile.OUTSIDER:
        return replies.reply("not_allowed", reason=None)
    try:
        certificate = RealmRoleCertificate.verify_and_load(role_certificate, session.verify_key)
    except InvalidCertification as exc:
        return replies.reply("invalid_certification", reason=exc.reason)
    if certificate.author != session.device_id:
        return replies.reply("invalid_certification", reason="Invalid author: expected the connected device.")
    timestamp = certificate.timestamp
    if not replies.timestamp_in_ballpark(timestamp, now):
        return replies.bad_timestamp(now=now, client_timestamp=timestamp)
    if certificate.user_id == session.user_id:
        return replies.reply("invalid_data", reason="A user cannot change its own role.")
    new_role = certificate.role

    with transaction.atomic():
        target = (
            User.objects.filter(organization_id=session.organization_pk, user_id=certificate.user_id)
            .only("pk", "profile", "revoked_on")
            .first()
        )
        if target is None:
            return replies.reply("not_found", reason=None)
        if _is_revoked(target.revoked_on, now):
            return replies.reply("user_revoked")
        if target.profile == Profile.OUTSIDER and new_role in OWNER_OR_MANAGER:
            return replies.reply("incompatible_profile", reason=None)
        # Row lock: concurrent role changes of one realm would all pass the causality checks below.
        realm = _find_realm(organization_pk=session.organization_pk, realm_id=certificate.realm_id, lock=True)
        if realm is None:
            return replies.reply("not_found", reason=None)
        if is_deleted(current_archiving(realm.pk), now):
            return replies.reply("realm_deleted")
        if realm.maintenance_type is not None:
            return replies.reply("in_maintenance")

        target_latest = current_role(realm.pk, target.pk)
        target_role = target_latest.role if target_latest is not None else None
        author_role = _role_of(realm.pk, session.user_pk)
        if target_role in OWNER_OR_MANAGER or new_role in OWNER_OR_MANAGER:
            allowed = author_role == Role.OWNER
        else:
            allowed = author_role in OWNER_OR_MANAGER
        if not allowed:
            return replies.reply("not_allowed", reason=None)
        if target_role == new_role:
            return replies.reply("already_granted")

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
                return replies.reply("require_greater_timestamp", strictly_greater_than=previous)

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
            _send_messages(
                sender_device_pk=session.device_pk, timestamp=timestamp, bodies={target.pk: recipient_message}
            )
    return replies.ok()


def realm_update_archiving(
    *, session: AuthenticatedSession, archiving_certificate: bytes, now: datetime | None = None
) -> Reply:
    """docs/protocol.md#realm-update-archiving. Its error statuses carry no `reason`, unlike the other realm
    commands."""
    now = now or timezone.now()
    try:
        certificate = RealmArchivingCertificate.verify_and_load(archiving_certificate, session.verify_key)
    except InvalidCertification:
        return replies.reply("invalid_certification")
    if certificate.author != session.device_id:
        return replies.reply("invalid_certification")
    timestamp = certificate.timestamp
    if not replies.timestamp_in_ballpark(timestamp, now):
        return replies.bad_timestamp(now=now, client_timestamp=timestamp, with_reason=False)
    configuration = certificate.configuration

    with transaction.atomic():
        # Row lock: archiving certificates of a realm must have strictly increasing timestamps.
        realm = _find_realm(organization_pk=session.organization_pk, realm_id=certificate.realm_id, lock=True)
        if realm is None:
            return replies.reply("not_found")
        archiving = current_archiving(realm.pk)
        if is_deleted(archiving, now):
            return replies.reply("realm_deleted")
        author_latest = current_role(realm.pk, session.user_pk)
        if author_latest is None or author_latest.role != Role.OWNER:
            return replies.reply("not_allowed")
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
                return replies.reply("archiving_period_too_short")
        if author_latest.certified_on >= timestamp:
            return replies.reply("require_greater_timestamp", strictly_greater_than=author_latest.certified_on)
        if archiving is not None and archiving.certified_on >= timestamp:
            return replies.reply("require_greater_timestamp", strictly_greater_than=archiving.certified_on)

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
    return replies.ok()


def archiving_config(*, session: AuthenticatedSession) -> Reply:
    """The latest archiving configuration of every realm the author user is member of, deleted ones included."""
    realms = list(_current_realms(session.user_pk).values_list("pk", "realm_id"))
    latest: dict[int, tuple[str, datetime | None, datetime, str]] = {}
    for realm_pk, configuration, deletion_date, certified_on, certified_by in (
        RealmArchiving.objects.filter(realm_id__in=[pk for pk, _ in realms])
        .order_by("realm_id", "certified_on")
        .values_list("realm_id", "configuration", "deletion_date", "certified_on", "certified_by__device_id")
    ):
        latest[realm_pk] = (configuration, deletion_date, certified_on, certified_by)
    items = []
    for realm_pk, realm_id in realms:
        if realm_pk in latest:
            configuration, deletion_date, configured_on, configured_by = latest[realm_pk]
            items.append(
                {
                    "realm_id": realm_id,
                    "configured_on": configured_on,
                    "configured_by": configured_by,
                    "configuration": _archiving_wire(configuration, deletion_date),
                }
            )
        else:
            items.append(
                {
                    "realm_id": realm_id,
                    "configured_on": None,
                    "configured_by": None,
                    "configuration": _archiving_wire(ArchivingConfiguration.AVAILABLE, None),
                }
            )
    return replies.ok(archiving_config=items)


def message_get(*, session: AuthenticatedSession, offset: int) -> Reply:
    # Indexes are dense from 1, so the rank of a message is its index.
    rows = (
        Message.objects.filter(recipient_id=session.user_pk, index__gt=offset)
        .order_by("index")
        .values_list("index", "sender__device_id", "timestamp", "body")
    )
    return replies.ok(
        messages=[
            {"count": index, "sender": sender, "timestamp": timestamp, "body": bytes(body)}
            for index, sender, timestamp, body in rows
        ]
    )


def realm_start_reencryption_maintenance(
    *,
    session: AuthenticatedSession,
    realm_id: uuid.UUID,
    encryption_revision: int,
    timestamp: datetime,
    per_participant_message: dict[str, bytes],
    now: datetime | None = None,
) -> Reply:
    now = now or timezone.now()
    if not replies.timestamp_in_ballpark(timestamp, now):
        return replies.bad_timestamp(now=now, client_timestamp=timestamp)
    with transaction.atomic():
        # Row lock: one maintenance start per revision, and no role change while participants are checked.
        realm = _find_realm(organization_pk=session.organization_pk, realm_id=realm_id, lock=True)
        if realm is None:
            return replies.reply("not_found", reason=None)
        if is_deleted(current_archiving(realm.pk), now):
            return replies.reply("realm_deleted")
        if _role_of(realm.pk, session.user_pk) != Role.OWNER:
            return replies.reply("not_allowed")
        if realm.maintenance_type is not None:
            return replies.reply("in_maintenance")
        if encryption_revision != realm.encryption_revision + 1:
            return replies.reply("bad_encryption_revision")

        roles: dict[int, str | None] = dict(
            RealmUserRole.objects.filter(realm=realm).order_by("certified_on", "pk").values_list("user_id", "role")
        )
        participants = {
            user_id: user_pk
            for user_pk, user_id, revoked_on in User.objects.filter(
                pk__in=[user_pk for user_pk, role in roles.items() if role is not None]
            ).values_list("pk", "user_id", "revoked_on")
            if not _is_revoked(revoked_on, now)
        }
        if set(per_participant_message) != set(participants):
            return replies.reply("participant_mismatch", reason=None)

        Realm.objects.filter(pk=realm.pk).update(
            maintenance_type=MaintenanceType.REENCRYPTION,
            maintenance_started_on=timestamp,
            maintenance_started_by_id=session.device_pk,
            encryption_revision=encryption_revision,
        )
        emit_realm_event_on_commit(
            organization_pk=session.organization_pk,
            realm_id=realm.realm_id,
            event={
                "event": "realm.maintenance_started",
                "realm_id": realm.realm_id,
                "encryption_revision": encryption_revision,
            },
            exclude_device_pk=session.device_pk,
        )
        _send_messages(
            sender_device_pk=session.device_pk,
            timestamp=timestamp,
            bodies={participants[user_id]: body for user_id, body in per_participant_message.items()},
        )
    return replies.ok()


def realm_finish_reencryption_maintenance(
    *, session: AuthenticatedSession, realm_id: uuid.UUID, encryption_revision: int, now: datetime | None = None
) -> Reply:
    now = now or timezone.now()
    with transaction.atomic():
        # Row lock: a concurrent finish (or start) must see this one's outcome.
        realm = _find_realm(organization_pk=session.organization_pk, realm_id=realm_id, lock=True)
        if realm is None:
            return replies.reply("not_found", reason=None)
        if is_deleted(current_archiving(realm.pk), now):
            return replies.reply("realm_deleted")
        if _role_of(realm.pk, session.user_pk) != Role.OWNER:
            return replies.reply("not_allowed")
        if realm.maintenance_type is None:
            return replies.reply("not_in_maintenance", reason=None)
        if encryption_revision != realm.encryption_revision:
            return replies.reply("bad_encryption_revision")
        reencrypted = VlobAtom.objects.filter(
            realm=realm,
            encryption_revision=encryption_revision,
            vlob_id=OuterRef("vlob_id"),
            version=OuterRef("version"),
        )
        not_done = VlobAtom.objects.filter(realm=realm, encryption_revision=encryption_revision - 1).exclude(
            Exists(reencrypted)
        )
        if not_done.exists():
            return replies.reply("maintenance_error", reason=None)

        Realm.objects.filter(pk=realm.pk).update(
            maintenance_type=None, maintenance_started_on=None, maintenance_started_by=None
        )
        emit_realm_event_on_commit(
            organization_pk=session.organization_pk,
            realm_id=realm.realm_id,
            event={
                "event": "realm.maintenance_finished",
                "realm_id": realm.realm_id,
                "encryption_revision": encryption_revision,
            },
            exclude_device_pk=session.device_pk,
        )
    return replies.ok()


# Statistics ------------------------------------------------------------------------------------


def realm_data_stats(organization_pk: int, at: datetime | None = None) -> dict[str, int]:
    """Organization stats from the realm tables: block sizes, vlob version sizes, realm count, as of `at`."""
    vlobs = VlobAtom.objects.filter(organization_id=organization_pk)
    realms = Realm.objects.filter(organization_id=organization_pk)
    block_model = _block_model()
    blocks = block_model._default_manager.filter(organization_id=organization_pk) if block_model is not None else None
    if at is not None:
        vlobs = vlobs.filter(created_on__lte=at)
        realms = realms.filter(created_on__lte=at)
        if blocks is not None:
            blocks = blocks.filter(created_on__lte=at)
    return {
        "data_size": _sum(blocks) if blocks is not None else 0,
        "metadata_size": _sum(vlobs),
        "realms": realms.count(),
    }
