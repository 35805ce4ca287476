"""Registration points: what the wire needs from the apps, given by the apps from their `AppConfig.ready()`.

`protocol/` is the framework the apps are written against: it must not import them (an import of an app
from here would make the wire depend on the domain it carries, and the apps already import the wire).
What only an app knows — who a handshake's device or invitation is, which realms a user holds, what to do
when an invited session starts or ends, how to handle an app's own channel-layer messages — is registered
here by that app, and looked up here by the consumers. `tests/architecture/test_imports.py` keeps it so.

A required identifier left unregistered fails the start (`check_registered`, run by the ASGI module and as
a Django system check), not the first handshake that needs it.
"""
from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar

from channels.consumer import get_handler_name
from django.core.exceptions import ImproperlyConfigured

from protocol.handshake import AuthenticatedAnswer, InvitedAnswer, LegacyAdministrationAnswer, LegacyAnonymousAnswer
from protocol.registry import Family
from protocol.session import AdministrationSession, AnonymousSession

if TYPE_CHECKING:
    from protocol.session import Connection

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class DeviceIdentity:
    """Who an authenticated handshake (or HTTP request) is: what its session is built from."""

    organization_pk: int
    organization_id: str
    user_pk: int
    user_id: str
    device_pk: int
    device_id: str
    profile: str
    verify_key: bytes


@dataclass(frozen=True)
class InvitationIdentity:
    """Which invitation an invited handshake (or HTTP request) claims: what its session is built from."""

    organization_pk: int
    organization_id: str
    invitation_pk: int
    token: uuid.UUID
    invitation_type: str
    greeter_user_pk: int


class OrganizationStatus(Protocol):
    """What the HTTP routes check of the organization named in the URL before anything else."""

    pk: int
    is_expired: bool


class Slot(Generic[P, R]):
    """One function the wire calls and an app provides; registered once."""

    def __init__(self, name: str, provider: str) -> None:
        self.name = name
        self.provider = provider  # the app expected to register it, for the startup error
        self.function: Callable[P, R] | None = None

    def register(self, function: Callable[P, R]) -> Callable[P, R]:
        if self.function is not None and self.function is not function:
            raise ImproperlyConfigured(f"{self.name} registered twice ({self.function!r}, then {function!r})")
        self.function = function
        return function

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.function is None:
            raise ImproperlyConfigured(f"no {self.name} registered (by the {self.provider} app's ready())")
        return self.function(*args, **kwargs)


# Handshake identifiers. Sync (database) functions, called through `run_sync`. The websocket ones raise
# `protocol.handshake.HandshakeFailed`; the HTTP ones return the refusal's HTTP status instead.
identify_device: Slot[[AuthenticatedAnswer], DeviceIdentity] = Slot("identify_device", "organizations")
identify_invitation: Slot[[InvitedAnswer], InvitationIdentity] = Slot("identify_invitation", "invites")
identify_legacy_anonymous: Slot[[LegacyAnonymousAnswer], AnonymousSession] = Slot(
    "identify_legacy_anonymous", "organizations"
)
identify_legacy_administration: Slot[[LegacyAdministrationAnswer], AdministrationSession] = Slot(
    "identify_legacy_administration", "organizations"
)
# (organization pk, device id) of a request whose organization was found not expired.
identify_http_device: Slot[[int, str], DeviceIdentity | int] = Slot("identify_http_device", "organizations")
# (organization pk, invitation token) of a request whose organization was found not expired.
identify_http_invitation: Slot[[int, uuid.UUID], InvitationIdentity | int] = Slot(
    "identify_http_invitation", "invites"
)
# The organization of an HTTP route's URL, None when it does not exist.
find_organization: Slot[[str], OrganizationStatus | None] = Slot("find_organization", "organizations")

# The realms a user currently has a role in (by user pk), as hex ids (`UUID.hex`, the realm groups' form):
# where the events of a new subscription come from.
user_realm_ids: Slot[[int], set[str]] = Slot("user_realm_ids", "realms")

REQUIRED: tuple[Slot[Any, Any], ...] = (
    identify_device,
    identify_invitation,
    identify_legacy_anonymous,
    identify_legacy_administration,
    identify_http_device,
    identify_http_invitation,
    find_organization,
    user_realm_ids,
)


def missing() -> list[str]:
    return [f"{slot.name} (from the {slot.provider} app)" for slot in REQUIRED if slot.function is None]


def check_registered() -> None:
    """Raises at startup when an app that provides a required identifier is not installed or did not register."""
    absent = missing()
    if absent:
        raise ImproperlyConfigured("The wire lacks registered functions: " + ", ".join(absent))


# Session hooks: coroutines given the session, run by the websocket consumer right after a successful
# handshake (start) and once the connection is gone, for sessions whose start hooks ran (close). A /ws
# session is a presence (e.g. an invitation's claimer is online while connected); an HTTP request is not.
SessionHook = Callable[[Any], Awaitable[None]]
_session_start: dict[Family, list[SessionHook]] = {family: [] for family in Family}
_session_close: dict[Family, list[SessionHook]] = {family: [] for family in Family}


def on_session_start(family: Family, hook: SessionHook) -> None:
    if hook not in _session_start[family]:  # ready() may run twice in tests: registering stays idempotent
        _session_start[family].append(hook)


def on_session_close(family: Family, hook: SessionHook) -> None:
    if hook not in _session_close[family]:
        _session_close[family].append(hook)


def session_start_hooks(family: Family) -> tuple[SessionHook, ...]:
    return tuple(_session_start[family])


def session_close_hooks(family: Family) -> tuple[SessionHook, ...]:
    return tuple(_session_close[family])


# Channel-layer messages of the apps' own types (`type` -> coroutine(connection, message)), handled by every
# consumer while its command runs in its own task (e.g. a conduit step woken by its peer in another process).
ChannelMessageHandler = Callable[["Connection", dict[str, Any]], Awaitable[None]]
_channel_message_handlers: dict[str, ChannelMessageHandler] = {}


def on_channel_message(message_type: str, handler: ChannelMessageHandler) -> None:
    registered = _channel_message_handlers.get(message_type)
    if registered is not None and registered is not handler:
        raise ImproperlyConfigured(f"channel message {message_type!r} handled twice")
    _channel_message_handlers[message_type] = handler


def channel_message_handler(message_type: str) -> ChannelMessageHandler | None:
    return _channel_message_handlers.get(message_type)


async def dispatch_channel_message(consumer: Any, message: dict[str, Any]) -> None:
    """A channel-layer message for one of the wire's Channels consumers (/ws, the HTTP RPC routes): an app's
    registered handler, else the consumer's own method named after the type (`parsec.event` -> `parsec_event`)."""
    handler = _channel_message_handlers.get(message["type"])
    if handler is not None:
        # Runs while a command is waiting in its own task (e.g. a conduit step woken by its peer).
        await handler(consumer, message)
        return
    # Channels' own dispatch first hops to a thread to close stale database connections, for
    # every frame and event. Our database work already releases its connection after each call
    # (protocol/db.py), so that hop is pure overhead on the hot path.
    method = getattr(consumer, get_handler_name(message), None)
    if method is None:
        raise ValueError(f"No handler for message type {message['type']}")
    await method(message)
