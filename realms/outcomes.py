"""What the realm-family services (realms, roles, archiving, maintenance, vlobs, messages) return, and
the one mapping of those outcomes to wire replies.

Services return an `Outcome`: `OK` or an `Ok` subclass carrying the reply's fields, a `RealmRefusal`,
or one of the refusals that carry data. `to_reply` turns it into the exact reply the reference
server sends, `reason: None` quirks included.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

# One `bad_timestamp` outcome for every family, re-exported for the realm services.
from organizations.outcomes import BadTimestamp as BadTimestamp
from protocol import replies
from sequester import outcomes as sequester_outcomes
from sequester.outcomes import SequesterOutcome
from protocol.replies import Reply


class RealmRefusal(StrEnum):
    """Refusals without data; the values are the reply statuses."""

    NOT_FOUND = "not_found"
    NOT_ALLOWED = "not_allowed"
    ALREADY_EXISTS = "already_exists"
    ALREADY_GRANTED = "already_granted"
    REALM_DELETED = "realm_deleted"
    REALM_ARCHIVED = "realm_archived"
    IN_MAINTENANCE = "in_maintenance"
    NOT_IN_MAINTENANCE = "not_in_maintenance"
    BAD_ENCRYPTION_REVISION = "bad_encryption_revision"
    BAD_VERSION = "bad_version"
    USER_REVOKED = "user_revoked"
    INCOMPATIBLE_PROFILE = "incompatible_profile"
    PARTICIPANT_MISMATCH = "participant_mismatch"
    MAINTENANCE_ERROR = "maintenance_error"
    ARCHIVING_PERIOD_TOO_SHORT = "archiving_period_too_short"


@dataclass(frozen=True)
class InvalidCertification:
    reason: str | None


@dataclass(frozen=True)
class InvalidData:
    reason: str


@dataclass(frozen=True)
class RequireGreaterTimestamp:
    strictly_greater_than: datetime


@dataclass(frozen=True)
class SequesterRefused:
    """A refusal of the sequester checks of a vlob write (sequester.services), worded by sequester.outcomes."""

    refusal: SequesterOutcome


@dataclass(frozen=True)
class Ok:
    """`ok`; subclasses carry the reply's fields, in the reply's order."""


OK = Ok()


@dataclass(frozen=True)
class RealmStatusOk(Ok):
    in_maintenance: bool
    maintenance_type: str | None
    maintenance_started_on: datetime | None
    maintenance_started_by: str | None
    encryption_revision: int


@dataclass(frozen=True)
class RealmStatsOk(Ok):
    blocks_size: int
    vlobs_size: int


@dataclass(frozen=True)
class RoleCertificatesOk(Ok):
    certificates: list[bytes]


@dataclass(frozen=True)
class ArchivingConfigOk(Ok):
    archiving_config: list[dict[str, Any]]


@dataclass(frozen=True)
class MessagesOk(Ok):
    messages: list[dict[str, Any]]


@dataclass(frozen=True)
class VlobReadOk(Ok):
    version: int
    blob: bytes
    author: str
    timestamp: datetime
    author_last_role_granted_on: datetime


@dataclass(frozen=True)
class VlobChangesOk(Ok):
    changes: dict[Any, int]
    current_checkpoint: int


@dataclass(frozen=True)
class VlobVersionsOk(Ok):
    versions: dict[int, tuple[datetime, str]]


@dataclass(frozen=True)
class ReencryptionBatchOk(Ok):
    batch: list[dict[str, Any]]


@dataclass(frozen=True)
class ReencryptionBatchSavedOk(Ok):
    total: int
    done: int


Outcome = (
    Ok | RealmRefusal | InvalidCertification | InvalidData | BadTimestamp | RequireGreaterTimestamp | SequesterRefused
)

# --- the mapping to the wire --------------------------------------------------------------------

# Refusals the reference sends with `reason: None`, whatever the command...
_NULL_REASON = frozenset(
    {
        RealmRefusal.NOT_FOUND,
        RealmRefusal.INCOMPATIBLE_PROFILE,
        RealmRefusal.PARTICIPANT_MISMATCH,
        RealmRefusal.MAINTENANCE_ERROR,
        RealmRefusal.NOT_IN_MAINTENANCE,
    }
)
# ... and those it sends with `reason: None` for one command only.
_NULL_REASON_OF_COMMAND = {
    "realm_update_roles": frozenset({RealmRefusal.NOT_ALLOWED}),
    "vlob_create": frozenset({RealmRefusal.ALREADY_EXISTS}),
}
# Commands whose replies never carry a `reason` (not even with invalid_certification, bad_timestamp).
_WITHOUT_REASON = frozenset({"realm_update_archiving"})


def to_reply(command: str, outcome: Outcome) -> Reply:
    """The reply of `command` for `outcome`."""
    if isinstance(outcome, Ok):
        # vars(): the dataclass fields in declaration order, which is the reply's order.
        return replies.ok(**vars(outcome))
    with_reason = command not in _WITHOUT_REASON
    if isinstance(outcome, RealmRefusal):
        if with_reason and (outcome in _NULL_REASON or outcome in _NULL_REASON_OF_COMMAND.get(command, ())):
            return replies.reply(outcome.value, reason=None)
        return replies.reply(outcome.value)
    if isinstance(outcome, RequireGreaterTimestamp):
        return replies.reply("require_greater_timestamp", strictly_greater_than=outcome.strictly_greater_than)
    if isinstance(outcome, BadTimestamp):
        return replies.bad_timestamp(
            now=outcome.now, client_timestamp=outcome.client_timestamp, with_reason=with_reason
        )
    if isinstance(outcome, InvalidCertification):
        if with_reason:
            return replies.reply("invalid_certification", reason=outcome.reason)
        return replies.reply("invalid_certification")
    if isinstance(outcome, InvalidData):
        return replies.reply("invalid_data", reason=outcome.reason)
    if isinstance(outcome, SequesterRefused):
        return sequester_outcomes.to_reply(outcome.refusal)
    raise TypeError(f"{command} returned {outcome!r}, not an outcome")
