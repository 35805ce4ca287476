"""Invitation rules (docs/protocol.md#invitations): create, delete, list, describe, claimer presence.

Plain functions run in worker threads; they return outcomes (`invites.outcomes`) that its `to_reply`
turns into replies. Events and session closures leave after commit.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Callable

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from invites.models import (
    ClaimerSession,
    DeletedReason,
    Invitation,
    InvitationType,
    ShamirRecoveryConduit,
    ShamirRecoverySetup,
    ShamirRecoveryShare,
)
from invites.services import emails
from invites.services.conduit import notify_conduit_updated_on_commit
from invites.outcomes import (
    GreeterInfo,
    InvitationItem,
    InvitationList,
    NewInvitation,
    Refused,
    ShamirRecoveryInfo,
    ShamirRecoveryRecipient,
)
from organizations.models import Profile, User
from organizations.rules import active_at_q
from protocol.events import emit_user_event_on_commit
from protocol.session import AuthenticatedSession, InvitedSession
from protocol.groups import close_invitation_sessions_on_commit
from protocol.types import InvitationStatus


def human_handle_wire(user: User) -> list[str] | None:
    if user.human_email is None:
        return None
    assert user.human_label is not None  # the user_human_handle_complete constraint: both or neither
    return [user.human_email, user.human_label]


def greeter_user_pks(invitation: Invitation) -> list[int]:
    """Who greets, hence who hears of status changes: the greeter, or every recipient of the setup."""
    if invitation.type == InvitationType.SHAMIR_RECOVERY:
        return list(
            ShamirRecoveryShare.objects.filter(setup_id=invitation.shamir_recovery_id)
            .order_by("pk")
            .values_list("recipient_id", flat=True)
        )
    return [invitation.greeter_id]


def emit_status_changed_on_commit(invitation: Invitation, status: InvitationStatus) -> None:
    for user_pk in greeter_user_pks(invitation):
        emit_user_event_on_commit(
            user_pk=user_pk,
            event={"event": "invite.status_changed", "invitation_status": status.value, "token": invitation.token},
        )


def delete_invitation(invitation: Invitation, *, reason: str, now: datetime) -> None:
    """Mark deleted (caller holds the row lock), tell the greeters, end claimers and waiting steps."""
    invitation.deleted_on = now
    invitation.deleted_reason = reason
    invitation.save(update_fields=["deleted_on", "deleted_reason"])
    emit_status_changed_on_commit(invitation, InvitationStatus.DELETED)
    close_invitation_sessions_on_commit(invitation.pk)
    # Greeter steps waiting on the conduit wake up and answer `already_deleted`.
    notify_conduit_updated_on_commit(invitation.pk)


def _find_or_create(find: Callable[[], Invitation | None], create: Callable[[], Invitation]) -> tuple[Invitation, bool]:
    existing = find()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            return create(), True
    except IntegrityError:
        # A concurrent `invite_new` inserted the same pending invitation first (unique constraints).
        found = find()
        if found is None:
            raise
        return found, False


# invite_new ---------------------------------------------------------------------------------


def _greeter_email_fields(author: User) -> dict[str, Any]:
    return {
        "greeter_name": author.human_label or author.user_id,
        "greeter_label": author.human_label,
        "greeter_email": author.human_email,
    }


def _new_user_invitation(
    session: AuthenticatedSession, author: User, claimer_email: str, now: datetime
) -> Refused | NewInvitation:
    if author.profile != Profile.ADMIN:
        return Refused.NOT_ALLOWED
    already_member = (
        User.objects.filter(organization_id=session.organization_pk, human_email=claimer_email)
        .filter(active_at_q(now))
        .exists()
    )
    if already_member:
        return Refused.ALREADY_MEMBER

    def find() -> Invitation | None:
        return Invitation.objects.filter(
            greeter=author, type=InvitationType.USER, claimer_email=claimer_email, deleted_on__isnull=True
        ).first()

    def create() -> Invitation:
        return Invitation.objects.create(
            organization_id=session.organization_pk, token=uuid.uuid4(), type=InvitationType.USER,
            greeter=author, claimer_email=claimer_email, created_on=now,
        )

    invitation, created = _find_or_create(find, create)
    if created:
        emit_status_changed_on_commit(invitation, InvitationStatus.IDLE)
    return NewInvitation(
        token=invitation.token,
        email=emails.InvitationEmail(
            invitation_type=InvitationType.USER, organization_id=session.organization_id, token=invitation.token,
            recipient=claimer_email, **_greeter_email_fields(author),
        ),
    )


def _new_device_invitation(
    session: AuthenticatedSession, author: User, send_email: bool, now: datetime
) -> Refused | NewInvitation:
    if send_email and author.human_email is None:
        # Quirk of the reference, kept for wire compatibility.
        return Refused.SHAMIR_RECOVERY_NOT_SETUP

    def find() -> Invitation | None:
        return Invitation.objects.filter(greeter=author, type=InvitationType.DEVICE, deleted_on__isnull=True).first()

    def create() -> Invitation:
        return Invitation.objects.create(
            organization_id=session.organization_pk, token=uuid.uuid4(), type=InvitationType.DEVICE,
            greeter=author, created_on=now,
        )

    invitation, created = _find_or_create(find, create)
    if created:
        emit_status_changed_on_commit(invitation, InvitationStatus.IDLE)
    return NewInvitation(
        token=invitation.token,
        email=emails.InvitationEmail(
            invitation_type=InvitationType.DEVICE, organization_id=session.organization_id, token=invitation.token,
            recipient=author.human_email, greeter_name=author.human_label or author.user_id,
        ),
    )


def _new_shamir_invitation(
    session: AuthenticatedSession, author: User, claimer_user_id: str, now: datetime
) -> Refused | NewInvitation:
    setup = (
        ShamirRecoverySetup.objects.select_related("user")
        .filter(organization_id=session.organization_pk, user__user_id=claimer_user_id, is_active=True)
        .first()
    )
    if setup is None:
        return Refused.SHAMIR_RECOVERY_NOT_SETUP
    claimer = setup.user

    def find() -> Invitation | None:
        return Invitation.objects.filter(
            type=InvitationType.SHAMIR_RECOVERY, shamir_recovery__user=claimer, deleted_on__isnull=True
        ).first()

    invitation = find()
    if invitation is None:
        recipients = list(setup.recipient_shares.order_by("pk").values_list("recipient_id", flat=True))
        if author.pk not in recipients:
            return Refused.NOT_ALLOWED

        def create() -> Invitation:
            created = Invitation.objects.create(
                organization_id=session.organization_pk, token=uuid.uuid4(), type=InvitationType.SHAMIR_RECOVERY,
                greeter=author, shamir_recovery=setup, created_on=now,
            )
            ShamirRecoveryConduit.objects.bulk_create(
                ShamirRecoveryConduit(invitation=created, greeter_id=recipient) for recipient in recipients
            )
            return created

        invitation, created = _find_or_create(find, create)
        if created:
            emit_status_changed_on_commit(invitation, InvitationStatus.IDLE)
    return NewInvitation(
        token=invitation.token,
        email=emails.InvitationEmail(
            invitation_type=InvitationType.SHAMIR_RECOVERY, organization_id=session.organization_id,
            token=invitation.token, recipient=claimer.human_email, **_greeter_email_fields(author),
        ),
    )


def invite_new(
    *,
    session: AuthenticatedSession,
    invitation_type: str,
    send_email: bool,
    claimer_email: str | None = None,
    claimer_user_id: str | None = None,
    now: datetime | None = None,
) -> Refused | NewInvitation:
    """Create the invitation or find the pending one; the caller sends the e-mail once this returns."""
    now = now or timezone.now()
    with transaction.atomic():
        author = User.objects.get(pk=session.user_pk)
        if invitation_type == InvitationType.USER:
            assert claimer_email is not None  # the USER variant of the request requires it
            return _new_user_invitation(session, author, claimer_email, now)
        if invitation_type == InvitationType.DEVICE:
            return _new_device_invitation(session, author, send_email, now)
        assert claimer_user_id is not None  # the SHAMIR_RECOVERY variant of the request requires it
        return _new_shamir_invitation(session, author, claimer_user_id, now)


# invite_delete ------------------------------------------------------------------------------


def _may_greet(invitation: Invitation, user_pk: int) -> bool:
    if invitation.type == InvitationType.SHAMIR_RECOVERY:
        return ShamirRecoveryShare.objects.filter(setup_id=invitation.shamir_recovery_id, recipient_id=user_pk).exists()
    return invitation.greeter_id == user_pk


def invite_delete(
    *, session: AuthenticatedSession, token: uuid.UUID, reason: str, now: datetime | None = None
) -> Refused | None:
    now = now or timezone.now()
    with transaction.atomic():
        # Row lock: a conduit step or another deletion of this invitation waits for us.
        invitation = (
            Invitation.objects.select_for_update().filter(organization_id=session.organization_pk, token=token).first()
        )
        if invitation is None:
            return Refused.NOT_FOUND
        # After recovering, the claimer deletes its own SHAMIR_RECOVERY invitation with its new device.
        is_shamir_claimer = (
            invitation.type == InvitationType.SHAMIR_RECOVERY
            and invitation.shamir_recovery is not None
            and invitation.shamir_recovery.user_id == session.user_pk
        )
        if not (is_shamir_claimer or _may_greet(invitation, session.user_pk)):
            return Refused.NOT_FOUND
        if invitation.deleted_on is not None:
            return Refused.ALREADY_DELETED
        delete_invitation(invitation, reason=reason, now=now)
    return None


# invite_list --------------------------------------------------------------------------------


def invite_list(*, session: AuthenticatedSession) -> InvitationList:
    pending = Invitation.objects.filter(organization_id=session.organization_pk, deleted_on__isnull=True)
    invitations = list(
        pending.filter(
            Q(type__in=[InvitationType.USER, InvitationType.DEVICE], greeter_id=session.user_pk)
            | Q(type=InvitationType.SHAMIR_RECOVERY, shamir_recovery__recipient_shares__recipient_id=session.user_pk)
        )
        .select_related("shamir_recovery__user")
        .order_by("created_on", "pk")
        .distinct()
    )
    ready = set(
        ClaimerSession.objects.filter(invitation__in=[invitation.pk for invitation in invitations])
        .values_list("invitation_id", flat=True)
    )
    return InvitationList(
        [
            InvitationItem(
                type=invitation.type,
                token=invitation.token,
                created_on=invitation.created_on,
                status=(InvitationStatus.READY if invitation.pk in ready else InvitationStatus.IDLE).value,
                claimer_email=invitation.claimer_email if invitation.type == InvitationType.USER else None,
                claimer_user_id=_claimer_user_id(invitation),
            )
            for invitation in invitations
        ]
    )


def _claimer_user_id(invitation: Invitation) -> str | None:
    if invitation.type != InvitationType.SHAMIR_RECOVERY:
        return None
    assert invitation.shamir_recovery is not None  # the invitation_shamir_has_setup constraint
    return invitation.shamir_recovery.user.user_id


# invite_info (claimer side) -------------------------------------------------------------------


def invite_info(*, session: InvitedSession) -> GreeterInfo | ShamirRecoveryInfo | Refused:
    """The invitation of the handshake; ALREADY_DELETED when it has been deleted since (the connection closes)."""
    invitation = (
        Invitation.objects.select_related("greeter", "shamir_recovery").filter(pk=session.invitation_pk).first()
    )
    if invitation is None or invitation.deleted_on is not None:
        return Refused.ALREADY_DELETED
    if invitation.type == InvitationType.SHAMIR_RECOVERY:
        setup = invitation.shamir_recovery
        assert setup is not None  # a SHAMIR_RECOVERY invitation has its setup
        shares = setup.recipient_shares.select_related("recipient").order_by("pk")
        recipients = [
            ShamirRecoveryRecipient(
                user_id=share.recipient.user_id,
                human_handle=human_handle_wire(share.recipient),
                shares=share.shares,
            )
            for share in shares
        ]
        return ShamirRecoveryInfo(type=invitation.type, threshold=setup.threshold, recipients=recipients)
    greeter = invitation.greeter
    return GreeterInfo(
        type=invitation.type,
        claimer_email=invitation.claimer_email if invitation.type == InvitationType.USER else None,
        greeter_user_id=greeter.user_id,
        greeter_human_handle=human_handle_wire(greeter),
    )


# Claimer presence (READY / IDLE) -----------------------------------------------------------------


def claimer_connected(*, invitation_pk: int, channel_name: str, now: datetime | None = None) -> None:
    now = now or timezone.now()
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().filter(pk=invitation_pk).first()
        if invitation is None or invitation.deleted_on is not None:
            return  # deleted since the handshake: the deletion is closing this session
        ClaimerSession.objects.get_or_create(
            channel_name=channel_name, defaults={"invitation": invitation, "opened_on": now}
        )
        emit_status_changed_on_commit(invitation, InvitationStatus.READY)


def claimer_disconnected(*, invitation_pk: int, channel_name: str) -> None:
    with transaction.atomic():
        # Row lock: of two claimer sessions closing together, exactly one sees itself last.
        invitation = Invitation.objects.select_for_update().filter(pk=invitation_pk).first()
        if invitation is None:
            return
        removed, _ = ClaimerSession.objects.filter(channel_name=channel_name).delete()
        if removed and not ClaimerSession.objects.filter(invitation=invitation).exists():
            # Also after a deletion: greeters then get DELETED followed by IDLE, as from the reference.
            emit_status_changed_on_commit(invitation, InvitationStatus.IDLE)



# Operators (web console) -------------------------------------------------------------------


def invitation_cancel(*, invitation_pk: int, now: datetime | None = None) -> Invitation | None:
    """Cancel a pending invitation as its greeter would (reason CANCELLED); None if it was already deleted."""
    now = now or timezone.now()
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().filter(pk=invitation_pk).first()
        if invitation is None or invitation.deleted_on is not None:
            return None
        delete_invitation(invitation, reason=DeletedReason.CANCELLED.value, now=now)
    return invitation
