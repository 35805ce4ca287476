"""What a command handler knows about the connection it serves."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AnonymousSession:
    organization_id: str
    organization_pk: int | None
    api_version: tuple[int, int]


@dataclass
class AuthenticatedSession:
    organization_pk: int
    organization_id: str
    user_pk: int
    user_id: str
    device_pk: int
    device_id: str
    profile: str
    api_version: tuple[int, int]
    # The device's Ed25519 key, to verify the certificates it signs without a query.
    verify_key: bytes = field(default=b"", repr=False)
    # The websocket consumer, for per-connection state (events queue, subscriptions).
    connection: Any = field(default=None, repr=False)


@dataclass
class InvitedSession:
    organization_pk: int
    organization_id: str
    invitation_pk: int
    token: uuid.UUID
    invitation_type: str
    greeter_user_pk: int
    api_version: tuple[int, int]
    connection: Any = field(default=None, repr=False)


@dataclass
class AdministrationSession:
    """API v1 `administration` websocket session (the 2.0 CLI's `create_organization`)."""

    api_version: tuple[int, int]
