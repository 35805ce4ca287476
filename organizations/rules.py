"""The rules about authors and users that every app checks, written once.

The ORM path uses the Q / function forms, the hand-written SQL path embeds the SQL fragments in whole
statements (named parameters); both say the same thing.
"""

from datetime import datetime
from typing import Protocol

from django.db.models import Q

# Reason of the `invalid_certification` reply when a certificate names another device than the session's.
INVALID_AUTHOR_REASON = "Invalid author: expected the connected device."


class _SignedBySession(Protocol):
    device_id: str


def authored_by_session(author: str | None, session: _SignedBySession) -> bool:
    """A certificate the connected device sends must name that device as its author."""
    return author == session.device_id


def revoked_at(revoked_on: datetime | None, at: datetime) -> bool:
    """A revocation applies from its certificate's timestamp, which may be a little in the future."""
    return revoked_on is not None and revoked_on <= at


def active_at(revoked_on: datetime | None, at: datetime) -> bool:
    return not revoked_at(revoked_on, at)


def active_at_q(at: datetime, *, prefix: str = "") -> Q:
    """Users (or, with prefix="user__", rows of a user) not revoked at `at`; the ORM form of `active_at`."""
    return Q(**{f"{prefix}revoked_on__isnull": True}) | Q(**{f"{prefix}revoked_on__gt": at})


def active_at_sql(column: str, at_param: str = "at") -> str:
    """The SQL form of `active_at` on `column` against the named parameter `at_param`."""
    return f"({column} IS NULL OR {column} > %({at_param})s)"
