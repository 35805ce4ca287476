"""What the organization and user services answer: refusals as values, successes as small dataclasses.

The services never build a reply; `organizations.handlers.to_reply` maps these to the wire, in one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


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
