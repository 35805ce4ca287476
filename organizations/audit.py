"""The audit trail: every change an operator makes, through the web console, the administration API or a
management command, is recorded as one `AuditEntry` (who, what, when) and listed in the console.

Callers record after the service reported success; the entry names the organization by its id (no foreign
key), so the trail of an erased organization survives it.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from organizations.models import AuditEntry

Action = AuditEntry.Action

# The administration API's bearer token stands for no one in particular.
API_ACTOR = "administration token"


def console_actor(request: HttpRequest) -> str:
    return f"console: {request.user.get_username()}"


def command_actor(command: str) -> str:
    """Management commands, e.g. `command_actor("erase_organization")`."""
    return f"manage.py {command}"


def record(
    *,
    actor: str,
    action: Action | str,
    organization_id: str,
    target: str = "",
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Record one change. `action` is an `AuditEntry.Action` (its value, e.g. "organization_erased", works too)."""
    return AuditEntry.objects.create(
        timestamp=now or timezone.now(),
        actor=actor[:200],
        action=Action(action),
        organization_id=organization_id,
        target=target[:300],
        details=details or {},
    )


def organization_patch_action(changes: dict[str, Any]) -> Action:
    """Expiring an organization is its own action; any other change of its settings is a patch."""
    return Action.ORGANIZATION_EXPIRED if changes.get("is_expired") is True else Action.ORGANIZATION_PATCHED
