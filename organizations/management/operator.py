"""What the operator commands share: argument checks and messages (the commands, here and in server/, are
thin shells over `organizations.services` and `organizations.selectors`, the same functions as the
administration API and the console)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from django.core.management.base import CommandError, OutputWrapper

from organizations.administration import parse_rfc3339
from protocol import types


def organization_id_argument(raw: str) -> str:
    """A syntactically valid organization id; an invalid one is unknown (no such organization can exist)."""
    try:
        return types.validate_organization_id(raw)
    except types.FieldError:
        raise unknown_organization(raw) from None


def unknown_organization(organization_id: str) -> CommandError:
    return CommandError(f"Unknown organization `{organization_id}` (see the organizations with `server_stats`).")


def date_argument(raw: str) -> datetime:
    """`--at`: an RFC 3339 date-time, as the API's `at=`, or a bare `YYYY-MM-DD` meaning 00:00 UTC that day."""
    at = parse_rfc3339(raw)
    if at is None:
        try:
            at = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError:
            raise CommandError(
                f"Invalid date `{raw}` for --at: expected YYYY-MM-DD or an RFC 3339 date-time "
                "such as 2026-01-31T23:59:59Z."
            ) from None
    return at


def write_json(stdout: OutputWrapper, document: Any) -> None:
    stdout.write(json.dumps(document, indent=2))
