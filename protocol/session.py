"""What a command handler knows about the connection it serves."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from protocol.events import Subscription


@dataclass(eq=False)
class ConnectionState:
    """What command families keep on one connection, for as long as it lives.

    Typed fields rather than a dict keyed by strings: the apps and the consumers agree on them here.
    """

    # `events_subscribe`'s subscription (protocol.events); None until the session subscribes.
    subscription: Subscription | None = None
    # The realm groups joined for the subscription: a user may hold thousands, hence a set beside the list.
    realm_groups: set[str] = field(default_factory=set)
    # Wake-up events of commands waiting for a peer's channel message, by what they wait on (invites'
    # conduit: the invitation). Not empty means the running command only waits for someone else, which
    # a draining server need not wait for (parsec_site.lifecycle).
    waiters: dict[Any, asyncio.Event] = field(default_factory=dict)
    # The task closing the connection on behalf of its own running command (`close_soon`): kept referenced.
    closer: asyncio.Future[None] | None = None


class Connection(Protocol):
    """The connection serving a session, as command handlers and apps see it (the /ws consumer, an HTTP
    RPC request, an SSE stream): its channel, its groups, its state, and a way to end it."""

    channel_layer: Any
    channel_name: str
    # Groups the connection has joined; it leaves them all when it ends.
    groups_joined: list[str]
    state: ConnectionState

    @property
    def is_closing(self) -> bool:
        """Closing or closed: nothing more will be answered on it."""

    async def close_session(self, code: int = 1000, reason: str | None = None) -> None: ...


def close_soon(connection: Connection) -> None:
    """Closes the connection from another task: closing cancels the running command, which may be the caller."""
    if not connection.is_closing:
        connection.state.closer = asyncio.ensure_future(connection.close_session())


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
    # The connection serving the session, for per-connection state (events queue, subscriptions); None
    # only for sessions built outside a connection (tests calling services directly).
    connection: Connection | None = field(default=None, repr=False)
    # What an app remembers between the session's commands, by key, each kept bounded by its app
    # (realms/services/vlobs.py: the last states its writes were decided on).
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class InvitedSession:
    organization_pk: int
    organization_id: str
    invitation_pk: int
    token: uuid.UUID
    invitation_type: str
    greeter_user_pk: int
    api_version: tuple[int, int]
    connection: Connection | None = field(default=None, repr=False)


@dataclass
class AdministrationSession:
    """API v1 `administration` websocket session (the 2.0 CLI's `create_organization`)."""

    api_version: tuple[int, int]
