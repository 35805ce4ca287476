"""What the organization and user services return, and the one mapping of those outcomes to wire replies.

Refusals are values, successes small dataclasses; the services never build a reply. `to_reply` turns an
outcome into the exact reply the reference server sends (`reason` present or absent as it does).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from protocol import replies

if TYPE_CHECKING:
    from organizations.models import Organization


class Refused(StrEnum):
    """Refusals of the organization and user commands; the value is the reply status."""

    NOT_FOUND = "not_found"
    NOT_ALLOWED = "not_allowed"
    INVALID_CERTIFICATION = "invalid_certification"
    INVALID_DATA = "invalid_data"
    BAD_USER_ID = "bad_user_id"
    ALREADY_EXISTS = "already_exists"
    ALREADY_REVOKED = "already_revoked"
    ALREADY_BOOTSTRAPPED = "already_bootstrapped"
    ACTIVE_USERS_LIMIT_REACHED = "active_users_limit_reached"


@dataclass(frozen=True)
class Explained:
    """A refusal whose reply carries a `reason` text (organization_bootstrap's, and pki's reuse of user_create)."""

    status: Refused
    reason: str


@dataclass(frozen=True)
class BadTimestamp:
    """A certificate dated outside the ballpark, answered `bad_timestamp` with both clocks."""

    now: datetime
    client_timestamp: datetime


@dataclass(frozen=True)
class UserCertificates:
    """`user_get`: the user's certificates, its devices' and the certifier closure (redacted for outsiders)."""

    user_certificate: bytes
    revoked_user_certificate: bytes | None
    device_certificates: list[bytes]
    trustchain_devices: list[bytes]
    trustchain_users: list[bytes]
    trustchain_revoked_users: list[bytes]


@dataclass(frozen=True)
class HumanFindPage:
    """`human_find`: one page of matches and the total count."""

    results: list[dict[str, Any]]
    page: int
    per_page: int
    total: int


@dataclass(frozen=True)
class BootstrapWebhookPayload:
    organization_id: str
    device_id: str
    device_label: str | None
    human_email: str | None
    human_label: str | None


@dataclass(frozen=True)
class Bootstrapped:
    """The organization is bootstrapped; the handler posts the payload to the bootstrap webhook."""

    webhook_payload: BootstrapWebhookPayload


@dataclass(frozen=True)
class OrganizationConfig:
    user_profile_outsider_allowed: bool
    active_users_limit: int | None
    minimum_archiving_period: int
    # Both None for a non-sequestered organization; the list may be empty for a sequestered one.
    sequester_authority_certificate: bytes | None
    sequester_services_certificates: list[bytes] | None


class AdministrationError(StrEnum):
    """Administration outcomes that are not successes; the value is the API's `error` (or a tag for `bad_data`)."""

    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    USER_NOT_FOUND = "user_not_found"
    NO_USER_ID_NOR_EMAIL = "no_user_id_nor_email"
    BOTH_USER_ID_AND_EMAIL = "both_user_id_and_email"


# The outcome of the functions whose only failure is an unknown organization: `is NOT_FOUND` narrows it.
NotFound = Literal[AdministrationError.NOT_FOUND]


@dataclass(frozen=True)
class OrganizationCreated:
    organization: Organization
    bootstrap_token: str


@dataclass(frozen=True)
class UsersPerProfileDetail:
    profile: str
    active: int
    revoked: int

    def as_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "active": self.active, "revoked": self.revoked}


@dataclass(frozen=True)
class OrganizationStats:
    organization_id: str
    data_size: int
    metadata_size: int
    realms: int
    users: int
    active_users: int
    # Always ADMIN, STANDARD, OUTSIDER, in this order (docs/protocol.md#organization-stats).
    users_per_profile_detail: tuple[UsersPerProfileDetail, ...]


Outcome = (
    Refused
    | Explained
    | BadTimestamp
    | AdministrationError
    | Bootstrapped
    | OrganizationCreated
    | OrganizationConfig
    | OrganizationStats
    | UserCertificates
    | HumanFindPage
    | None
)

# --- the mapping to the wire --------------------------------------------------------------------

# Refusals the reference sends with no `reason` key at all; every other one has `reason`, nil unless explained.
_WITHOUT_REASON = frozenset({Refused.NOT_FOUND, Refused.ALREADY_BOOTSTRAPPED})


def to_reply(outcome: Outcome) -> replies.Reply:
    """The reply of a service outcome of this family (None: done, nothing to say)."""
    if outcome is None or isinstance(outcome, Bootstrapped):
        return replies.ok()
    if isinstance(outcome, Refused):
        if outcome in _WITHOUT_REASON:
            return replies.reply(outcome.value)
        return replies.reply(outcome.value, reason=None)
    if isinstance(outcome, AdministrationError):
        # The API v1 administration commands answer the administration outcome as the status, unexplained.
        return replies.reply(outcome.value)
    if isinstance(outcome, Explained):
        return replies.reply(outcome.status.value, reason=outcome.reason)
    if isinstance(outcome, BadTimestamp):
        return replies.bad_timestamp(now=outcome.now, client_timestamp=outcome.client_timestamp)
    if isinstance(outcome, OrganizationCreated):
        return replies.ok(bootstrap_token=outcome.bootstrap_token)
    if isinstance(outcome, OrganizationConfig):
        return replies.ok(
            active_users_limit=outcome.active_users_limit,
            minimum_archiving_period=outcome.minimum_archiving_period,
            sequester_authority_certificate=outcome.sequester_authority_certificate,
            sequester_services_certificates=outcome.sequester_services_certificates,
            user_profile_outsider_allowed=outcome.user_profile_outsider_allowed,
        )
    if isinstance(outcome, OrganizationStats):
        return replies.ok(
            active_users=outcome.active_users,
            data_size=outcome.data_size,
            metadata_size=outcome.metadata_size,
            realms=outcome.realms,
            users=outcome.users,
            users_per_profile_detail=[item.as_dict() for item in outcome.users_per_profile_detail],
        )
    if isinstance(outcome, UserCertificates):
        return replies.ok(
            user_certificate=outcome.user_certificate,
            revoked_user_certificate=outcome.revoked_user_certificate,
            device_certificates=outcome.device_certificates,
            trustchain={
                "devices": outcome.trustchain_devices,
                "users": outcome.trustchain_users,
                "revoked_users": outcome.trustchain_revoked_users,
            },
        )
    return replies.ok(results=outcome.results, page=outcome.page, per_page=outcome.per_page, total=outcome.total)
