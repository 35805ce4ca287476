"""Shamir recovery setups (docs/protocol.md#shamir-recovery): setup, self info, others list, and the claimer's reveal.

A setup is verified (§10.1) and stored; the SHAMIR_RECOVERY invitations of `invite_new` and their
per-recipient conduits are built on it (invitations.py).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from invites.models import (
    DeletedReason,
    Invitation,
    InvitationType,
    ShamirRecoverySetup,
    ShamirRecoveryShare,
)
from invites.services.invitations import delete_invitation
from invites.outcomes import Refused, ShamirOthersList, ShamirRevealed, ShamirSelfInfo
from organizations.models import User
from organizations.rules import authored_by_session
from protocol.certificates import InvalidCertification, ShamirRecoveryBriefCertificate, ShamirRecoveryShareCertificate
from protocol.session import AuthenticatedSession, InvitedSession


@dataclass(frozen=True)
class _VerifiedSetup:
    brief: ShamirRecoveryBriefCertificate
    shares: dict[str, bytes]  # recipient user id -> its share certificate, as sent


def _verify(session: AuthenticatedSession, setup: dict[str, Any]) -> _VerifiedSetup | None:
    """The checks of §10.1; None when any fails."""
    try:
        brief = ShamirRecoveryBriefCertificate.verify_and_load(setup["brief"], session.verify_key)
    except InvalidCertification:
        return None
    if not authored_by_session(brief.author, session) or session.user_id in brief.per_recipient_shares:
        return None
    shares: dict[str, bytes] = {}
    for raw_share in setup["shares"]:
        try:
            share = ShamirRecoveryShareCertificate.verify_and_load(raw_share, session.verify_key)
        except InvalidCertification:
            return None
        if not authored_by_session(share.author, session) or share.recipient not in brief.per_recipient_shares:
            return None
        if share.recipient in shares:
            return None
        shares[share.recipient] = raw_share
    if set(shares) != set(brief.per_recipient_shares):
        return None
    return _VerifiedSetup(brief=brief, shares=shares)


def _delete_pending_invitation(author: User, now: datetime) -> None:
    pending = Invitation.objects.select_for_update(of=("self",)).filter(
        type=InvitationType.SHAMIR_RECOVERY, shamir_recovery__user=author, deleted_on__isnull=True
    )
    for invitation in pending:
        delete_invitation(invitation, reason=DeletedReason.CANCELLED, now=now)


def shamir_recovery_setup(
    *, session: AuthenticatedSession, setup: dict[str, Any] | None, now: datetime | None = None
) -> Refused | None:
    now = now or timezone.now()
    verified = None
    if setup is not None:
        verified = _verify(session, setup)
        if verified is None:
            return Refused.INVALID_DATA
    try:
        with transaction.atomic():
            # Author row lock: two setups of one user are applied one after the other.
            author = User.objects.select_for_update().get(pk=session.user_pk)
            recipients: dict[str, User] = {}
            if verified is not None:
                recipients = {
                    user.user_id: user
                    for user in User.objects.filter(
                        organization_id=session.organization_pk, user_id__in=list(verified.shares)
                    )
                }
                if len(recipients) != len(verified.shares):
                    return Refused.INVALID_DATA  # a recipient that is not a user of the organization
            ShamirRecoverySetup.objects.filter(user=author, is_active=True).update(is_active=False)
            _delete_pending_invitation(author, now)
            if verified is None:
                return None
            assert setup is not None  # `verified` was read from it
            per_recipient = verified.brief.per_recipient_shares
            new_setup = ShamirRecoverySetup.objects.create(
                organization_id=session.organization_pk,
                user=author,
                brief_certificate=setup["brief"],
                reveal_token=setup["reveal_token"],
                threshold=verified.brief.threshold,
                shares=sum(per_recipient.values()),
                ciphered_data=setup["ciphered_data"],
                created_on=now,
            )
            ShamirRecoveryShare.objects.bulk_create(
                ShamirRecoveryShare(
                    setup=new_setup,
                    recipient=recipients[user_id],
                    share_certificate=certificate,
                    shares=per_recipient[user_id],
                )
                for user_id, certificate in verified.shares.items()
            )
    except IntegrityError:
        return Refused.INVALID_DATA  # reveal token already used in the organization
    return None


def shamir_recovery_self_info(*, session: AuthenticatedSession) -> ShamirSelfInfo:
    setup = ShamirRecoverySetup.objects.filter(user_id=session.user_pk, is_active=True).first()
    return ShamirSelfInfo(bytes(setup.brief_certificate) if setup is not None else None)


def shamir_recovery_others_list(*, session: AuthenticatedSession) -> ShamirOthersList:
    shares = (
        ShamirRecoveryShare.objects.filter(recipient_id=session.user_pk, setup__is_active=True)
        .exclude(setup__user_id=session.user_pk)
        .select_related("setup")
        .order_by("setup_id")
    )
    briefs, share_certificates = [], []
    for share in shares:
        briefs.append(bytes(share.setup.brief_certificate))
        share_certificates.append(bytes(share.share_certificate))
    return ShamirOthersList(brief_certificates=briefs, share_certificates=share_certificates)


def invite_shamir_recovery_reveal(*, session: InvitedSession, reveal_token: uuid.UUID) -> ShamirRevealed | Refused:
    setup = ShamirRecoverySetup.objects.filter(
        organization_id=session.organization_pk, reveal_token=reveal_token
    ).first()
    if setup is None:
        return Refused.NOT_FOUND
    return ShamirRevealed(bytes(setup.ciphered_data))

