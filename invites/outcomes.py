"""What the invitation, conduit and shamir services return, and the one mapping of those outcomes to wire replies.

Refusals are values, successes small dataclasses; the services never build a reply. `to_reply` turns an
outcome into the exact reply the reference server sends (no `reason` on this family's refusals).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from protocol import replies
from protocol.replies import Reply

if TYPE_CHECKING:
    from invites.services.emails import InvitationEmail


class Refused(StrEnum):
    """Refusals of the invitation family (invite_*, shamir_*); the value is the reply status."""

    NOT_FOUND = "not_found"
    NOT_ALLOWED = "not_allowed"
    ALREADY_MEMBER = "already_member"
    ALREADY_DELETED = "already_deleted"
    INVALID_STATE = "invalid_state"
    INVALID_DATA = "invalid_data"
    SHAMIR_RECOVERY_NOT_SETUP = "shamir_recovery_not_setup"


@dataclass(frozen=True)
class NewInvitation:
    """`invite_new`'s service: the invitation is committed; the handler sends the e-mail, then replies."""

    token: uuid.UUID
    email: InvitationEmail


@dataclass(frozen=True)
class InvitationCreated:
    """`invite_new` once the e-mail step is over: the token and how the e-mail went (a wire value)."""

    token: uuid.UUID
    email_sent: str


@dataclass(frozen=True)
class InvitationItem:
    """One pending invitation of `invite_list`; `claimer_email` for USER, `claimer_user_id` for SHAMIR_RECOVERY."""

    type: str
    token: uuid.UUID
    created_on: datetime
    status: str
    claimer_email: str | None = None
    claimer_user_id: str | None = None


@dataclass(frozen=True)
class InvitationList:
    invitations: list[InvitationItem]


@dataclass(frozen=True)
class GreeterInfo:
    """`invite_info` of a USER (with `claimer_email`) or DEVICE invitation."""

    type: str
    claimer_email: str | None
    greeter_user_id: str
    greeter_human_handle: list[str] | None


@dataclass(frozen=True)
class ShamirRecoveryRecipient:
    user_id: str
    human_handle: list[str] | None
    shares: int


@dataclass(frozen=True)
class ShamirRecoveryInfo:
    """`invite_info` of a SHAMIR_RECOVERY invitation."""

    type: str
    threshold: int
    recipients: list[ShamirRecoveryRecipient]


@dataclass(frozen=True)
class ShamirSelfInfo:
    brief_certificate: bytes | None


@dataclass(frozen=True)
class ShamirOthersList:
    brief_certificates: list[bytes]
    share_certificates: list[bytes]


@dataclass(frozen=True)
class ShamirRevealed:
    ciphered_data: bytes


Outcome = (
    Refused
    | InvitationCreated
    | InvitationList
    | GreeterInfo
    | ShamirRecoveryInfo
    | ShamirSelfInfo
    | ShamirOthersList
    | ShamirRevealed
    | None
)

# --- the mapping to the wire --------------------------------------------------------------------


def to_reply(outcome: Outcome) -> Reply:
    """The reply of a service outcome of this family (None: done, nothing to say)."""
    if outcome is None:
        return replies.ok()
    if isinstance(outcome, Refused):
        # The reference explains none of this family's refusals: the status alone, no `reason` key.
        return replies.reply(outcome.value)
    if isinstance(outcome, InvitationCreated):
        return replies.ok(token=outcome.token, email_sent=outcome.email_sent)
    if isinstance(outcome, InvitationList):
        items = []
        for invitation in outcome.invitations:
            item: dict[str, Any] = {"type": invitation.type, "token": invitation.token, "created_on": invitation.created_on}
            if invitation.claimer_email is not None:
                item["claimer_email"] = invitation.claimer_email
            if invitation.claimer_user_id is not None:
                item["claimer_user_id"] = invitation.claimer_user_id
            item["status"] = invitation.status
            items.append(item)
        return replies.ok(invitations=items)
    if isinstance(outcome, GreeterInfo):
        fields: dict[str, Any] = {"type": outcome.type}
        if outcome.claimer_email is not None:
            fields["claimer_email"] = outcome.claimer_email
        fields["greeter_user_id"] = outcome.greeter_user_id
        fields["greeter_human_handle"] = outcome.greeter_human_handle
        return replies.ok(**fields)
    if isinstance(outcome, ShamirRecoveryInfo):
        recipients = [
            {"user_id": recipient.user_id, "human_handle": recipient.human_handle, "shares": recipient.shares}
            for recipient in outcome.recipients
        ]
        return replies.ok(type=outcome.type, threshold=outcome.threshold, recipients=recipients)
    if isinstance(outcome, ShamirSelfInfo):
        return replies.ok(self_info=outcome.brief_certificate)
    if isinstance(outcome, ShamirOthersList):
        return replies.ok(brief_certificates=outcome.brief_certificates, share_certificates=outcome.share_certificates)
    return replies.ok(ciphered_data=outcome.ciphered_data)
