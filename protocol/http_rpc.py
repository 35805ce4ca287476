"""`POST /invited/<org>`, `POST /authenticated/<org>` and `GET /authenticated/<org>/events`
(docs/protocol.md#session-routes).

Channels HTTP consumers rather than Django views: like a `/ws` session, a request has a channel, so that an
invitation step waiting for its peer is woken through the channel layer and a request of a user revoked (an
invitation deleted) while it waits is ended; the SSE stream lives as long as its client. Each request does
the websocket handshake's checks again, from its headers; refusals are HTTP statuses with an empty body.
The commands themselves go through `protocol.http.run_command`, the anonymous route's.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
import uuid
from typing import Any

import structlog
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from protocol import events, hooks, limits, sse, types
from protocol.db import database_unavailable, run_sync
from protocol.groups import invitation_group, leave_groups, organization_group, user_group
from protocol.http import (
    HTTP_BAD_AUTHENTICATION,
    HTTP_ORGANIZATION_EXPIRED,
    MAX_BODY_SIZE,
    SUPPORTED_HTTP_API_VERSIONS,
    parse_api_version,
    run_command,
)
from protocol.registry import DatabaseUnavailable, Family
from protocol.session import AuthenticatedSession, ConnectionState, InvitedSession

log = structlog.get_logger("parsec.protocol")
access_log = structlog.get_logger("parsec.access")

MSGPACK = "application/msgpack"
# Old clients send their msgpack body with the form content type (as on /anonymous).
ACCEPTED_CONTENT_TYPES = (MSGPACK, "application/x-www-form-urlencoded")
EVENT_STREAM = "text/event-stream"
AUTHORIZATION_SCHEME = "PARSEC-SIGN-ED25519"
INVITATION_TOKEN = re.compile(r"[0-9a-fA-F]{32}")


class HttpSessionConsumer(AsyncHttpConsumer):
    """One request of the invited or authenticated family (`kind`), or one SSE stream (`kind="events"`)."""

    def __init__(self, *args: Any, kind: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.received = 0
        self.phase = "reading"
        self.session: AuthenticatedSession | InvitedSession | None = None
        self.api_version: tuple[int, int] | None = None
        # What `protocol.events` and `invites.conduit` keep on a connection (subscription, conduit waiters).
        self.state = ConnectionState()
        self.groups_joined: list[str] = []
        self.worker: asyncio.Task | None = None
        self.responded = False
        self.done = asyncio.Event()
        self.started = time.monotonic()
        # A request (or an event stream) is a connection of the --max-connections* caps for as long as it runs.
        self.slot = limits.ConnectionSlot()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Channels' loop dispatches the request and the channel messages until the client leaves; the
        # response being complete ends it too.
        loop = asyncio.ensure_future(super().__call__(scope, receive, send))
        finished = asyncio.ensure_future(self.done.wait())
        try:
            await asyncio.wait([loop, finished], return_when=asyncio.FIRST_COMPLETED)
        finally:
            finished.cancel()
            loop.cancel()
            if self.worker is not None:
                self.worker.cancel()
                await asyncio.gather(self.worker, return_exceptions=True)
            await asyncio.gather(loop, return_exceptions=True)
            self.phase = "closed"
            self.slot.release()
            await leave_groups(self.channel_layer, self.groups_joined, self.channel_name)

    async def http_request(self, message: dict[str, Any]) -> None:
        self.received += len(message.get("body", b""))
        if self.received > MAX_BODY_SIZE:
            await self.respond(413)
            return
        self.body.append(message.get("body", b""))
        if not message.get("more_body") and self.worker is None:
            # In a task: the consumer keeps dispatching channel messages (a peer's conduit update) meanwhile.
            self.worker = asyncio.create_task(self.serve(b"".join(self.body)))

    @property
    def is_closing(self) -> bool:
        return self.phase in ("closing", "closed")

    async def dispatch(self, message: dict[str, Any]) -> None:
        await hooks.dispatch_channel_message(self, message)

    async def parsec_event(self, message: dict[str, Any]) -> None:
        await events.deliver(self, message)  # after an `events_subscribe` in this very request only

    async def session_close(self, message: dict[str, Any]) -> None:
        await self.close_session()

    async def http_disconnect(self, message: dict[str, Any]) -> None:
        raise StopConsumer()  # the client left: `__call__` cancels what runs

    # Responses -----------------------------------------------------------------------------

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.scope["headers"]:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    def _version_header(self) -> list[tuple[bytes, bytes]]:
        if self.api_version is None:
            return []
        return [(b"api-version", b"3.4" if self.api_version[0] == 3 else b"2.10")]

    async def respond(self, status: int, body: bytes = b"", extra: list[tuple[bytes, bytes]] | None = None) -> None:
        if self.responded:
            return
        self.responded = True
        headers = self._version_header() + (extra or []) + [(b"content-length", str(len(body)).encode())]
        if body:
            headers.append((b"content-type", MSGPACK.encode()))
        await self.send_response(status, body, headers=headers)
        self.access_log(status, len(body))
        self.done.set()

    def access_log(self, status: int, size: int | None) -> None:
        """The line and metrics Django's `RequestLogMiddleware` gives its own routes."""
        from parsec_site import metrics

        duration = time.monotonic() - self.started
        route = {"invited": "invited/<str:organization_id>", "authenticated": "authenticated/<str:organization_id>",
                 "events": "authenticated/<str:organization_id>/events"}[self.kind]
        metrics.record_http_request(method=self.scope["method"], route=route, status=status, duration=duration)
        client = self.scope.get("client")
        author = self.session.device_id if isinstance(self.session, AuthenticatedSession) else "-"
        access_log.info(
            "HTTP request", client=f"{client[0]}:{client[1]}" if client else "-", method=self.scope["method"],
            path=self.scope["path"], http_version=f"HTTP/{self.scope.get('http_version', '1.1')}", status=status,
            size=size, duration_ms=round(duration * 1000, 1), author=author,
            organization_id=self.scope["url_route"]["kwargs"].get("organization_id"),
        )

    async def close_session(self, code: int = 1000, reason: str | None = None) -> None:
        """What closes a websocket session ends the request: the invitation deleted (410), the user
        revoked or frozen, the organization expired (the status its next request would get)."""
        if self.phase in ("closing", "closed"):
            return
        self.phase = "closing"
        if isinstance(self.session, InvitedSession):
            await self.respond(410)
            return
        status = await self.recheck() if self.session is not None else 503
        if status is None and self.kind != "events":
            self.phase = "ready"  # an unfreeze also closes sessions: nothing to end here
            return
        await self.respond(status or 503)

    async def recheck(self) -> int | None:
        session = self.session
        # close_session answers an invited session 410 and a missing one 503 before asking.
        assert isinstance(session, AuthenticatedSession)
        organization = await run_sync(hooks.find_organization, session.organization_id)
        if organization is None:
            return 404
        if organization.is_expired:
            return HTTP_ORGANIZATION_EXPIRED
        identity = await run_sync(hooks.identify_http_device, organization.pk, session.device_id)
        return identity if isinstance(identity, int) else None

    # The request ------------------------------------------------------------------------------

    async def serve(self, body: bytes) -> None:
        try:
            if self.scope["method"] != ("GET" if self.kind == "events" else "POST"):
                await self.respond(405)
                return
            if not self.slot.acquire(settings.PARSEC.max_connections):
                await self.refuse_over_limit("server_full")
                return
            status = await self.handshake(body)
            if status is not None:
                await self.respond(status)
                return
            assert self.session is not None  # identified: the handshake answered None
            if not self.slot.join_organization(
                self.session.organization_pk, settings.PARSEC.max_connections_per_organization
            ):
                await self.refuse_over_limit("organization_full")
                return
            if self.kind == "events":
                await self.stream_events()
            else:
                family = Family.INVITED if self.kind == "invited" else Family.AUTHENTICATED
                # Each request is its own connection: the rate of --max-commands-per-second is the client's.
                client = (
                    ("device", self.session.device_pk)
                    if isinstance(self.session, AuthenticatedSession)
                    else ("invitation", self.session.invitation_pk)
                )
                delay = limits.http_command_delay(client, settings.PARSEC.max_commands_per_second)
                if delay:
                    await asyncio.sleep(delay)  # over the rate: slowed down to it, as on the websocket
                outcome = await run_command(family, self.session, body)
                await self.respond(outcome) if isinstance(outcome, int) else await self.respond(200, outcome)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, DatabaseUnavailable) or database_unavailable(exc):
                await self.respond(503, extra=[(b"retry-after", b"5")])
            else:
                log.exception("HTTP request crashed", route=self.kind)
                await self.respond(500)
        finally:
            self.done.set()

    async def refuse_over_limit(self, reason: str) -> None:
        """A cap reached: 503 with Retry-After, which the client takes as the server being busy (the HTTP
        form of the websocket's 1013 close)."""
        from parsec_site import metrics

        metrics.CONNECTIONS_CLOSED_BY_LIMIT.labels(reason).inc()
        log.warning("Request refused: connection limit reached", limit=reason, route=self.kind)
        await self.respond(503, extra=[(b"retry-after", b"5")])

    async def handshake(self, body: bytes) -> int | None:
        """docs/protocol.md#http-common and docs/protocol.md#session-routes, in the reference's order; None when the
        request may run. Organizations, devices and invitations are the apps' data: they register how to find them
        (protocol.hooks)."""
        self.api_version = parse_api_version(self.header("Api-Version"))
        if self.api_version is None:
            await self.respond(422, extra=[(b"supported-api-versions", SUPPORTED_HTTP_API_VERSIONS.encode())])
            return 422
        try:
            organization_id = types.validate_organization_id(self.scope["url_route"]["kwargs"]["organization_id"])
        except types.FieldError:
            return 404
        organization = await run_sync(hooks.find_organization, organization_id)
        if organization is None:
            return 404
        if organization.is_expired:
            return HTTP_ORGANIZATION_EXPIRED
        if self.kind == "events":
            if EVENT_STREAM not in _media_types(self.header("Accept")):
                return 406
        elif (_media_types(self.header("Content-Type")) or [""])[0] not in ACCEPTED_CONTENT_TYPES:
            return 415
        if self.kind == "invited":
            return await self.identify_invitation(organization.pk)
        return await self.identify_device(organization.pk, body)

    async def identify_device(self, organization_pk: int, body: bytes) -> int | None:
        author, signature = self.header("Author"), self.header("Signature")
        if self.header("Authorization") != AUTHORIZATION_SCHEME or author is None or signature is None:
            return HTTP_BAD_AUTHENTICATION
        try:
            signature_bytes = base64.b64decode(signature, validate=True)
            device_id = types.validate_device_id(base64.b64decode(author, validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError, types.FieldError):
            return HTTP_BAD_AUTHENTICATION
        identity = await run_sync(hooks.identify_http_device, organization_pk, device_id)
        if isinstance(identity, int):
            return identity
        assert self.api_version is not None  # checked before identifying
        try:
            VerifyKey(identity.verify_key).verify(body, signature_bytes)
        except (BadSignatureError, ValueError, TypeError):
            return HTTP_BAD_AUTHENTICATION
        self.session = AuthenticatedSession(
            organization_pk=identity.organization_pk,
            organization_id=identity.organization_id,
            user_pk=identity.user_pk,
            user_id=identity.user_id,
            device_pk=identity.device_pk,
            device_id=identity.device_id,
            profile=identity.profile,
            api_version=self.api_version,
            verify_key=identity.verify_key,
            connection=self,
        )
        structlog.contextvars.bind_contextvars(organization_id=identity.organization_id, device_id=identity.device_id)
        if self.kind != "events":
            await self.join(organization_group(identity.organization_pk), user_group(identity.user_pk))
        self.phase = "ready"
        return None

    async def identify_invitation(self, organization_pk: int) -> int | None:
        raw = self.header("Invitation-Token") or ""
        if not INVITATION_TOKEN.fullmatch(raw.strip()):
            return 415
        identity = await run_sync(hooks.identify_http_invitation, organization_pk, uuid.UUID(hex=raw.strip()))
        if isinstance(identity, int):
            return identity
        assert self.api_version is not None  # checked before identifying
        self.session = InvitedSession(
            organization_pk=identity.organization_pk,
            organization_id=identity.organization_id,
            invitation_pk=identity.invitation_pk,
            token=identity.token,
            invitation_type=identity.invitation_type,
            greeter_user_pk=identity.greeter_user_pk,
            api_version=self.api_version,
            connection=self,
        )
        structlog.contextvars.bind_contextvars(
            organization_id=identity.organization_id, invitation_id=identity.invitation_pk
        )
        await self.join(invitation_group(identity.invitation_pk))
        self.phase = "ready"
        return None

    async def join(self, *groups: str) -> None:
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)

    # SSE ------------------------------------------------------------------------------------------

    async def stream_events(self) -> None:
        assert isinstance(self.session, AuthenticatedSession)
        resumed = sse.resumable(self.header("Last-Event-ID"), self.session)
        if resumed is not None:
            stream, replay = resumed
        else:
            stream, replay = sse.EventStream(self.session, self.channel_layer), []
            await stream.open()
        self.responded = True
        await self.send_headers(
            status=200,
            headers=[*self._version_header(), (b"content-type", EVENT_STREAM.encode()), (b"cache-control", b"no-cache")],
        )

        async def write(chunk: bytes) -> None:
            await self.send_body(chunk, more_body=True)

        # Right away: the client knows it is connected without waiting for an event or a keepalive.
        await write(sse.KEEPALIVE)
        if resumed is None and self.header("Last-Event-ID"):
            await write(sse.MISSED_EVENTS)
        log.info("Event stream", resumed=resumed is not None, replayed=len(replay))
        await stream.follow(write, settings.PARSEC.sse_keepalive, replay)
        # The stream ended (user revoked, organization expired, queue overflow): so does the response.
        await self.send_body(b"", more_body=False)
        self.access_log(200, None)


def _media_types(header: str | None) -> list[str]:
    """`a/b; q=1, c/d` -> ["a/b", "c/d"]."""
    if not header:
        return []
    return [part.split(";")[0].strip().lower() for part in header.split(",")]
