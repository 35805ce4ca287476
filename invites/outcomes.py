"""What the invitation, conduit and shamir services answer: refusals as values, successes as small dataclasses.

The services never build a reply; `invites.handlers.to_reply` maps these to the wire, in one place.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


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
