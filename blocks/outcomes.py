"""What the block-family services (and `blocks.orchestration` around the store) return, and the one mapping
of those outcomes to wire replies.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol import replies


class BlockOutcome(enum.Enum):
    """Every outcome of the block family; the values are the wire statuses."""

    OK = "ok"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    NOT_ALLOWED = "not_allowed"
    IN_MAINTENANCE = "in_maintenance"
    REALM_ARCHIVED = "realm_archived"
    REALM_DELETED = "realm_deleted"
    # The blockstore failed (or lost a block it should hold): the client retries with the same id and data.
    STORE_UNAVAILABLE = "timeout"


@dataclass(frozen=True)
class BlockReadOk:
    block: bytes


Outcome = BlockOutcome | BlockReadOk


def to_reply(outcome: Outcome) -> replies.Reply:
    """The reply of a block outcome: `block` for a read, else the status alone (no `reason` in this family)."""
    if isinstance(outcome, BlockReadOk):
        return replies.ok(block=outcome.block)
    return replies.reply(outcome.value)
