"""What the sequester checks of a vlob write refuse with, and the one mapping of those refusals to wire replies.

They are reported by the vlob commands (realms), whose reply schemas carry these statuses (docs/protocol.md#sequester).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from protocol import replies
from protocol.replies import Reply


class SequesterRefusal(StrEnum):
    """Refusals without data; the values are the reply statuses."""

    NOT_A_SEQUESTERED_ORGANIZATION = "not_a_sequestered_organization"
    # A webhook service unreachable or failing: the client retries the write later.
    SERVICE_UNAVAILABLE = "timeout"


@dataclass(frozen=True)
class SequesterInconsistency:
    """The blob set does not match the enabled services: the client gets them to encrypt for them all."""

    authority_certificate: bytes
    services_certificates: list[bytes]


@dataclass(frozen=True)
class RejectedBySequesterService:
    service_id: uuid.UUID
    service_label: str
    reason: str


SequesterOutcome = SequesterRefusal | SequesterInconsistency | RejectedBySequesterService


def to_reply(outcome: SequesterOutcome) -> Reply:
    if isinstance(outcome, SequesterRefusal):
        return replies.reply(outcome.value)
    if isinstance(outcome, SequesterInconsistency):
        return replies.reply(
            "sequester_inconsistency",
            sequester_authority_certificate=outcome.authority_certificate,
            sequester_services_certificates=outcome.services_certificates,
        )
    return replies.reply(
        "rejected_by_sequester_service",
        service_id=outcome.service_id,
        service_label=outcome.service_label,
        reason=outcome.reason,
    )
