"""Reply builders. A reply is a map whose first key is `status`, as the reference emits it."""
from __future__ import annotations

from datetime import datetime
from typing import Any

BALLPARK_CLIENT_EARLY_OFFSET = 300.0  # seconds a client clock may run ahead of ours
BALLPARK_CLIENT_LATE_OFFSET = 320.0  # seconds a client clock may run behind ours

Reply = dict[str, Any]


def reply(status: str, **fields: Any) -> Reply:
    return {"status": status, **fields}


def ok(**fields: Any) -> Reply:
    return reply("ok", **fields)


def timestamp_in_ballpark(client_timestamp: datetime, now: datetime) -> bool:
    delta = (now - client_timestamp).total_seconds()
    return -BALLPARK_CLIENT_EARLY_OFFSET < delta < BALLPARK_CLIENT_LATE_OFFSET


def bad_timestamp(*, now: datetime, client_timestamp: datetime, with_reason: bool = True) -> Reply:
    fields: dict[str, Any] = {}
    if with_reason:
        fields["reason"] = None
    return reply(
        "bad_timestamp",
        **fields,
        backend_timestamp=now,
        ballpark_client_early_offset=BALLPARK_CLIENT_EARLY_OFFSET,
        ballpark_client_late_offset=BALLPARK_CLIENT_LATE_OFFSET,
        client_timestamp=client_timestamp,
    )


# Generic replies of the command loop (docs/protocol.md#common-errors), exact texts.
INVALID_MSG_FORMAT: Reply = {"status": "invalid_msg_format", "reason": "Invalid message format"}
UNKNOWN_COMMAND: Reply = {"status": "unknown_command", "reason": "Unknown command"}


def bad_message(reason: str) -> Reply:
    return {"status": "bad_message", "reason": reason}


# A command failed on our side (a bug, a statement timeout...): the client's decoder takes any
# unknown status with a string `reason` as an error, and the session stays usable.
INTERNAL_ERROR: Reply = {"status": "internal_error", "reason": "Internal server error"}


def well_formed(reply: Any) -> Reply:
    """`reply` itself when it is a `{status: str, ...}` map; a handler returning anything else is a bug."""
    if isinstance(reply, dict) and isinstance(reply.get("status"), str):
        return reply
    raise TypeError(f"a command returned {type(reply).__name__}, not a reply map")
