"""Re-encryption maintenance of a realm (docs/protocol.md#realm-maintenance): start and finish. The
batches in between are vlob commands (realms/services/vlobs.py)."""
from __future__ import annotations

import uuid
from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from organizations.models import User
from organizations.rules import active_at_q
from protocol import replies
from protocol.db import db_param
from protocol.events import emit_realm_event_on_commit
from protocol.session import AuthenticatedSession
from realms import sql
from realms.models import MaintenanceType, Realm, RealmUserRole, Role, VlobAtom
from realms.outcomes import OK, BadTimestamp, Outcome, RealmRefusal
from realms.rules import current_archiving, current_role, is_deleted
from realms.services.messages import send_messages

_REALM_ID = Realm._meta.get_field("realm_id")


def realm_start_reencryption_maintenance(
    *,
    session: AuthenticatedSession,
    realm_id: uuid.UUID,
    encryption_revision: int,
    timestamp: datetime,
    per_participant_message: dict[str, bytes],
    now: datetime | None = None,
) -> Outcome:
    now = now or timezone.now()
    if not replies.timestamp_in_ballpark(timestamp, now):
        return BadTimestamp(now=now, client_timestamp=timestamp)
    with transaction.atomic():
        # Row lock: one maintenance start per revision, and no role change while participants are checked.
        realm = sql.lock_realm(organization_pk=session.organization_pk, realm_id=db_param(_REALM_ID, realm_id))
        if realm is None:
            return RealmRefusal.NOT_FOUND
        if is_deleted(current_archiving(realm.pk), now):
            return RealmRefusal.REALM_DELETED
        author = current_role(realm.pk, session.user_pk)
        if author is None or author.role != Role.OWNER:
            return RealmRefusal.NOT_ALLOWED
        if realm.maintenance_type is not None:
            return RealmRefusal.IN_MAINTENANCE
        if encryption_revision != realm.encryption_revision + 1:
            return RealmRefusal.BAD_ENCRYPTION_REVISION

        roles: dict[int, str | None] = dict(
            RealmUserRole.objects.filter(realm=realm).order_by("certified_on", "pk").values_list("user_id", "role")
        )
        members = [user_pk for user_pk, role in roles.items() if role is not None]
        # Revoked members take no part (a revocation applies from its certificate's timestamp).
        participants = dict(User.objects.filter(active_at_q(now), pk__in=members).values_list("user_id", "pk"))
        if set(per_participant_message) != set(participants):
            return RealmRefusal.PARTICIPANT_MISMATCH

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
        send_messages(
            sender_device_pk=session.device_pk,
            timestamp=timestamp,
            bodies={participants[user_id]: body for user_id, body in per_participant_message.items()},
        )
    return OK


def realm_finish_reencryption_maintenance(
    *, session: AuthenticatedSession, realm_id: uuid.UUID, encryption_revision: int, now: datetime | None = None
) -> Outcome:
    now = now or timezone.now()
    with transaction.atomic():
        # Row lock: a concurrent finish (or start) must see this one's outcome.
        realm = sql.lock_realm(organization_pk=session.organization_pk, realm_id=db_param(_REALM_ID, realm_id))
        if realm is None:
            return RealmRefusal.NOT_FOUND
        if is_deleted(current_archiving(realm.pk), now):
            return RealmRefusal.REALM_DELETED
        author = current_role(realm.pk, session.user_pk)
        if author is None or author.role != Role.OWNER:
            return RealmRefusal.NOT_ALLOWED
        if realm.maintenance_type is None:
            return RealmRefusal.NOT_IN_MAINTENANCE
        if encryption_revision != realm.encryption_revision:
            return RealmRefusal.BAD_ENCRYPTION_REVISION
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
            return RealmRefusal.MAINTENANCE_ERROR

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
    return OK
