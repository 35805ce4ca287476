"""Realm rules: creation, roles, archiving, maintenance, messages. Plain functions returning replies."""
from __future__ import annotations

import uuid
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from protocol import replies
from protocol.certificates import InvalidCertification, RealmRoleCertificate
from protocol.events import emit_user_event_on_commit
from protocol.replies import Reply
from protocol.session import AuthenticatedSession
from realms.models import Realm, RealmUserRole, Role


def user_current_realm_ids(user_pk: int) -> list[uuid.UUID]:
    """Realms where the user currently has a role: the realm set of a new events subscription."""
    latest_role = (
        RealmUserRole.objects.filter(realm=OuterRef("pk"), user_id=user_pk).order_by("-certified_on").values("role")[:1]
    )
    return list(
        Realm.objects.filter(roles__user_id=user_pk)
        .annotate(current=Subquery(latest_role))
        .filter(current__isnull=False)
        .values_list("realm_id", flat=True)
        .distinct()
    )


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
