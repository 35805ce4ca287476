"""What the PKI enrollment services return, and the one mapping of those outcomes to wire replies.

Reasons follow the 2.17 reference: `not_allowed` names the user, the store's refusals carry an empty
text, and some refusals have no `reason` key at all.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pki.models import EnrollmentState
from protocol import replies
from protocol.replies import Reply


class Refused(StrEnum):
    """Refusals of the PKI enrollment commands; the value is the reply status. Alone, a refusal is
    answered with the status only; `Explained` adds the `reason`."""

    NOT_FOUND = "not_found"
    NO_LONGER_AVAILABLE = "no_longer_available"
    ALREADY_EXISTS = "already_exists"
    ID_ALREADY_USED = "id_already_used"
    EMAIL_ALREADY_USED = "email_already_used"
    ALREADY_ENROLLED = "already_enrolled"
    INVALID_PAYLOAD_DATA = "invalid_payload_data"
    INVALID_CERTIFICATION = "invalid_certification"
    ACTIVE_USERS_LIMIT_REACHED = "active_users_limit_reached"


@dataclass(frozen=True)
class Explained:
    """A refusal whose reply carries a `reason` text (possibly empty)."""

    status: Refused
    reason: str


@dataclass(frozen=True)
class NotAdmin:
    """The author is not ADMIN: `not_allowed`, with the reference's text naming the user."""

    user_id: str


@dataclass(frozen=True)
class Submitted:
    """`pki_enrollment_submit` accepted the submission (`ok`) or found it already there (`already_submitted`)."""

    already: bool
    submitted_on: datetime


@dataclass(frozen=True)
class EnrollmentInfo:
    state: EnrollmentState
    submitted_on: datetime
    cancelled_on: datetime | None
    rejected_on: datetime | None
    accepted_on: datetime | None
    accepter_der_x509_certificate: bytes | None
    accept_payload_signature: bytes | None
    accept_payload: bytes | None


@dataclass(frozen=True)
class SubmittedEnrollment:
    enrollment_id: uuid.UUID
    submit_payload: bytes
    submit_payload_signature: bytes
    submitted_on: datetime
    submitter_der_x509_certificate: bytes


@dataclass(frozen=True)
class EnrollmentList:
    enrollments: list[SubmittedEnrollment]


Outcome = Refused | Explained | NotAdmin | Submitted | EnrollmentInfo | EnrollmentList | None

# --- the mapping to the wire --------------------------------------------------------------------


def to_reply(outcome: Outcome) -> Reply:
    """The reply of a service outcome of this family (None: done, nothing to say)."""
    if outcome is None:
        return replies.ok()
    if isinstance(outcome, Refused):
        return replies.reply(outcome.value)
    if isinstance(outcome, Explained):
        return replies.reply(outcome.status.value, reason=outcome.reason)
    if isinstance(outcome, NotAdmin):
        return replies.reply("not_allowed", reason=f"User `{outcome.user_id}` is not admin")
    if isinstance(outcome, Submitted):
        return replies.reply("already_submitted" if outcome.already else "ok", submitted_on=outcome.submitted_on)
    if isinstance(outcome, EnrollmentInfo):
        fields: dict[str, Any] = {"enrollment_status": outcome.state.value, "submitted_on": outcome.submitted_on}
        match outcome.state:
            case EnrollmentState.ACCEPTED:
                fields.update(
                    accepted_on=outcome.accepted_on,
                    accepter_der_x509_certificate=outcome.accepter_der_x509_certificate,
                    accept_payload_signature=outcome.accept_payload_signature,
                    accept_payload=outcome.accept_payload,
                )
            case EnrollmentState.REJECTED:
                fields["rejected_on"] = outcome.rejected_on
            case EnrollmentState.CANCELLED:
                fields["cancelled_on"] = outcome.cancelled_on
        return replies.ok(**fields)
    return replies.ok(
        enrollments=[
            {
                "enrollment_id": item.enrollment_id,
                "submit_payload": item.submit_payload,
                "submit_payload_signature": item.submit_payload_signature,
                "submitted_on": item.submitted_on,
                "submitter_der_x509_certificate": item.submitter_der_x509_certificate,
            }
            for item in outcome.enrollments
        ]
    )
