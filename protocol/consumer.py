"""The `/ws` endpoint: handshake, then a strict request/reply loop over binary msgpack frames.

The consumer stays thin: it decodes, checks sizes, looks the command up in the registry and hands
the decoded request to the command's handler. It never touches the ORM itself.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
import weakref
from typing import Any

import structlog
from autobahn.exception import Disconnected
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from protocol import codec, events, handshake, hooks, limits, replies, types
from protocol.db import database_unavailable, run_sync
from protocol.registry import CommandSpec, DatabaseUnavailable, Family, lookup
from protocol.session import (
    AdministrationSession,
    AnonymousSession,
    AuthenticatedSession,
    ConnectionState,
    InvitedSession,
)
from protocol.groups import invitation_group, leave_groups, organization_group, user_group
from parsec_site import lifecycle, metrics

logger = logging.getLogger("parsec.protocol")
# One structured line per connection outcome and per command (docs/configuration.md#options), with the
# connection's context bound once: conn_id, organization_id, device_id or invitation_id.
log = structlog.get_logger("parsec.protocol")

# The reference drops connections sending messages above 16 MiB.
MAX_FRAME_SIZE = 16 * 1024 * 1024
# Megabytes of tiny msgpack items take a second or more of Python to decode and validate: frames
# above this are decoded in a worker thread, so the event loop every session shares keeps serving.
# Below it (a 512 KiB block is one bin) the thread hop would cost more than the decoding.
DECODE_IN_THREAD_ABOVE = 1024 * 1024


class ParsecConsumer(AsyncWebsocketConsumer):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # The server may cancel the application without a disconnect first (daphne after its
            # close timeout, shutdown): its tasks go with it instead of being left pending forever.
            for task in (self.__dict__.get("current_command"), self.__dict__.get("worker")):
                if task is not None:
                    task.cancel()

    async def connect(self) -> None:
        self.phase = "handshake"
        self.session: AuthenticatedSession | InvitedSession | AnonymousSession | AdministrationSession | None = None
        self.family: Family | None = None
        self.groups_joined: list[str] = []
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.worker: asyncio.Task | None = None
        self.current_command: asyncio.Task | None = None
        self.current_spec: CommandSpec | None = None
        # Per-connection state owned by command families (e.g. the events queue): `protocol.session.Connection`.
        self.state = ConnectionState()
        self.session_started = False  # the session start hooks ran: its close hooks will
        self.challenge = secrets.token_bytes(48)
        self.counted = False  # in the open sessions gauge
        self.handshake_deadline: asyncio.Task | None = None
        self.slot = limits.ConnectionSlot()
        # Given back at `disconnect`, or when the consumer is dropped without one (its task cancelled
        # by an event loop that stops): the slot never references the consumer.
        weakref.finalize(self, self.slot.release)
        self.rate = limits.CommandRate(settings.PARSEC.max_commands_per_second)
        # Bound in this connection's task: its command tasks and worker threads inherit the context.
        structlog.contextvars.bind_contextvars(conn_id=secrets.token_hex(6))
        if not self.slot.acquire(settings.PARSEC.max_connections):
            log.warning("Connection refused: server at its connection limit", limit=settings.PARSEC.max_connections)
            metrics.CONNECTIONS_CLOSED_BY_LIMIT.labels("server_full").inc()
            await self.accept()
            self.phase = "closing"
            await self.close(code=limits.CLOSE_TRY_AGAIN_LATER, reason=limits.SERVER_FULL)
            return
        lifecycle.CONNECTIONS.add(self)
        await self.accept()
        await self.send(bytes_data=handshake.challenge_message(self.challenge, timezone.now()))
        self.handshake_deadline = asyncio.create_task(self.expire_handshake(settings.PARSEC.handshake_timeout))

    async def disconnect(self, code: int) -> None:
        self.slot.release()
        if self.handshake_deadline is not None:
            self.handshake_deadline.cancel()
        if self.counted and self.family is not None:
            self.counted = False
            metrics.WEBSOCKET_SESSIONS.labels(self.family.value).dec()
        self.phase = "closed"
        if self.worker is not None:
            self.worker.cancel()
        if self.current_command is not None:
            self.current_command.cancel()
        await leave_groups(self.channel_layer, self.groups_joined, self.channel_name)
        if self.session_started and self.family is not None:
            self.session_started = False
            for hook in hooks.session_close_hooks(self.family):
                try:
                    await hook(self.session)
                except Exception:
                    logger.exception("session close hook failed")

    @property
    def is_closing(self) -> bool:
        return self.phase in ("closing", "closed")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if bytes_data is not None and len(bytes_data) > MAX_FRAME_SIZE:
            await self.close_session()
            return
        if self.phase == "handshake":
            await self.do_handshake(bytes_data)
        elif self.phase == "ready":
            # A new request abandons a waiting cancellable command, without reply (docs/protocol.md#command-loop).
            if self.current_spec is not None and self.current_spec.cancellable and self.current_command:
                self.current_command.cancel()
            if self.inbox.qsize() >= limits.MAX_QUEUED_REQUESTS:
                log.warning("Connection dropped: too many queued requests", queued=self.inbox.qsize())
                metrics.CONNECTIONS_CLOSED_BY_LIMIT.labels("too_many_queued").inc()
                await self.close_session(code=limits.CLOSE_POLICY_VIOLATION, reason=limits.TOO_MANY_QUEUED)
                return
            self.inbox.put_nowait(bytes_data)

    # Handshake -----------------------------------------------------------------------------

    async def expire_handshake(self, timeout: float) -> None:
        """A connection that never answers the challenge holds a socket and memory for nothing: close it.
        Once the answer came, the rest is ours to do (database reads bounded by the pool's timeout)."""
        await asyncio.sleep(timeout)
        if self.phase == "handshake":
            metrics.HANDSHAKE_FAILURES.labels("timeout").inc()
            log.info("Connection dropped: handshake not completed in time", timeout_s=timeout)
            await self.close_session()

    async def do_handshake(self, frame: bytes | None) -> None:
        # Who is connecting is the apps' data: they register the identifiers (protocol.hooks).
        self.phase = "handshaking"
        answer = None
        try:
            answer = handshake.parse_answer(frame)
            if isinstance(answer, handshake.AuthenticatedAnswer):
                identity = await run_sync(hooks.identify_device, answer)
                handshake.check_signed_answer(answer, identity.verify_key, self.challenge)
                self.family = Family.AUTHENTICATED
                self.session = AuthenticatedSession(
                    organization_pk=identity.organization_pk,
                    organization_id=identity.organization_id,
                    user_pk=identity.user_pk,
                    user_id=identity.user_id,
                    device_pk=identity.device_pk,
                    device_id=identity.device_id,
                    profile=identity.profile,
                    api_version=answer.api_version,
                    verify_key=identity.verify_key,
                    connection=self,
                )
                groups = [organization_group(identity.organization_pk), user_group(identity.user_pk)]
            elif isinstance(answer, handshake.LegacyAnonymousAnswer):
                self.family = Family.APIV1_ANONYMOUS
                self.session = await run_sync(hooks.identify_legacy_anonymous, answer)
                groups = []
            elif isinstance(answer, handshake.LegacyAdministrationAnswer):
                self.family = Family.APIV1_ADMINISTRATION
                self.session = await run_sync(hooks.identify_legacy_administration, answer)
                groups = []
            else:
                invitation = await run_sync(hooks.identify_invitation, answer)
                self.family = Family.INVITED
                self.session = InvitedSession(
                    organization_pk=invitation.organization_pk,
                    organization_id=invitation.organization_id,
                    invitation_pk=invitation.invitation_pk,
                    token=invitation.token,
                    invitation_type=invitation.invitation_type,
                    greeter_user_pk=invitation.greeter_user_pk,
                    api_version=answer.api_version,
                    connection=self,
                )
                groups = [invitation_group(invitation.invitation_pk)]
        except handshake.HandshakeFailed as failure:
            metrics.HANDSHAKE_FAILURES.labels(failure.result).inc()
            log.info(
                "Connection dropped: bad handshake", result=failure.result, reason=failure.help,
                **_answer_identity(answer),
            )
            await self.send(bytes_data=handshake.result_message(failure.result, failure.help))
            await self.close_session()
            return
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            log.warning("Connection dropped: database unavailable during the handshake", error=str(exc))
            metrics.CONNECTIONS_CLOSED_BY_LIMIT.labels("database_unavailable").inc()
            await self.close_session(code=limits.CLOSE_TRY_AGAIN_LATER, reason=limits.DATABASE_UNAVAILABLE)
            return
        if self.phase != "handshaking":
            return  # closed meanwhile (handshake timeout, shutdown)
        # API v1 administration sessions (and bootstraps of not-yet-created organizations) have no organization.
        organization_pk = getattr(self.session, "organization_pk", None)
        if organization_pk is not None and not self.slot.join_organization(
            organization_pk, settings.PARSEC.max_connections_per_organization
        ):
            # Closed without a result: the client takes it as the server being unavailable and retries.
            log.warning(
                "Connection refused: organization at its connection limit",
                organization_id=getattr(self.session, "organization_id", None), limit=settings.PARSEC.max_connections_per_organization,
            )
            metrics.CONNECTIONS_CLOSED_BY_LIMIT.labels("organization_full").inc()
            await self.close_session(code=limits.CLOSE_TRY_AGAIN_LATER, reason=limits.ORGANIZATION_FULL)
            return
        if self.handshake_deadline is not None:
            self.handshake_deadline.cancel()
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        await self.send(bytes_data=handshake.OK_RESULT)
        structlog.contextvars.bind_contextvars(**_session_identity(self.session))
        log.info(
            "Connection established (client/server API version: %s.%s/%s)",
            *answer.api_version,
            handshake.server_api_version(answer.api_version),
        )
        metrics.WEBSOCKET_SESSIONS.labels(self.family.value).inc()
        self.counted = True
        # Set first: a start hook failing half-way still gets its close hooks (they are safe either way).
        self.session_started = True
        for hook in hooks.session_start_hooks(self.family):
            await hook(self.session)
        self.phase = "ready"
        self.worker = asyncio.create_task(self.command_loop())

    # Command loop ---------------------------------------------------------------------------

    async def command_loop(self) -> None:
        while True:
            frame = await self.inbox.get()
            delay = self.rate.delay()
            if delay:
                await asyncio.sleep(delay)  # over --max-commands-per-second: slowed down to it
            self.current_command = asyncio.create_task(self.process(frame))
            try:
                await self.current_command
            except asyncio.CancelledError:
                # The loop itself is cancelled (connection gone, event loop shutting down): stop too.
                if self.phase != "ready" or asyncio.current_task().cancelling():  # type: ignore[union-attr]  # in a task
                    raise
                # The command was abandoned by a newer request; carry on with that one.
            except DatabaseUnavailable:
                # No status of this command says "try again": the close does (the client reconnects).
                metrics.CONNECTIONS_CLOSED_BY_LIMIT.labels("database_unavailable").inc()
                await self.close_session(code=limits.CLOSE_TRY_AGAIN_LATER, reason=limits.DATABASE_UNAVAILABLE)
                return
            except Exception:
                # Not a command's failure (those are answered by `process`): the session itself broke.
                log.exception("Session crashed")
                await self.close_session(code=1011)
                return
            finally:
                self.current_command = None
                self.current_spec = None

    async def process(self, frame: bytes | None) -> None:
        """One request, one reply: whatever goes wrong in a command is answered, not a 1011 close."""
        try:
            reply = await self.execute(frame)
            # Events arrive already encoded; everything else is a reply map.
            encoded = reply if isinstance(reply, bytes) else codec.packb(replies.well_formed(reply))
        except DatabaseUnavailable:
            raise  # not the command's failure: the session is closed for the client to retry later
        except Exception:
            # One line with the traceback: the log's ERROR level is also the Sentry event.
            log.exception("Command crashed", cmd=self.current_spec.name if self.current_spec else None)
            if self.current_spec is not None and self.family is not None:
                metrics.record_command(
                    family=self.family.value, command=self.current_spec.name, status="internal_error", duration=0.0
                )
            encoded = codec.packb(replies.INTERNAL_ERROR)
        await self.send(bytes_data=encoded)

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except Disconnected:
            # The client left while we were answering: nothing crashed, and its disconnect follows.
            log.debug("Reply dropped: the connection is closed")

    async def execute(self, frame: bytes | None) -> dict[str, Any] | bytes:
        if frame is None:
            return replies.INVALID_MSG_FORMAT
        in_thread = len(frame) > DECODE_IN_THREAD_ABOVE
        try:
            raw = await asyncio.to_thread(codec.unpackb, frame) if in_thread else codec.unpackb(frame)
        except codec.DecodeError:
            return replies.INVALID_MSG_FORMAT
        if not isinstance(raw, dict):
            return replies.INVALID_MSG_FORMAT
        assert self.family is not None
        spec = lookup(self.family, raw.get("cmd"), debug=settings.PARSEC.debug)
        if spec is None:
            return replies.UNKNOWN_COMMAND
        try:
            if in_thread:
                request = await asyncio.to_thread(types.decode_command_request, spec.request, raw)
            else:
                request = types.decode_command_request(spec.request, raw)
        except types.FieldError as exc:
            # One line, so that a client refused for its message's shape is visible to the operator.
            log.info("Request refused: bad message", cmd=spec.name, status="bad_message", reason=str(exc))
            return replies.bad_message(str(exc))
        self.current_spec = spec
        started = time.monotonic()
        reply = await spec.handler(self.session, request)
        duration = time.monotonic() - started
        if isinstance(reply, dict):
            status = str(reply.get("status"))
        else:
            status = "no_events" if reply == events.NO_EVENTS else "ok"
            if status == "ok":
                metrics.EVENTS_SENT.inc()
        metrics.record_command(family=self.family.value, command=spec.name, status=status, duration=duration)
        log.info("Request", cmd=spec.name, status=status, duration_ms=round(duration * 1000, 1))
        return reply

    # Messages from the channel layer ------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        await hooks.dispatch_channel_message(self, message)

    async def parsec_event(self, message: dict[str, Any]) -> None:
        await events.deliver(self, message)

    async def session_close(self, message: dict[str, Any]) -> None:
        await self.close_session()

    async def drain(self) -> None:
        """Graceful shutdown: let the running command reply (a waiting `events_listen` does not), then close."""
        if self.phase == "ready":
            self.phase = "draining"  # requests arriving from now on get no reply: the close says why
        command = self.current_command
        if command is not None and not (self.current_spec is not None and self.current_spec.cancellable):
            await asyncio.wait([command])
        # 1001 "going away": the client reconnects, to another process or once this one is back.
        await self.close_session(code=1001)

    async def close_session(self, code: int = 1000, reason: str | None = None) -> None:
        if self.phase in ("closed", "closing"):
            return
        self.phase = "closing"
        if self.current_command is not None:
            self.current_command.cancel()
        await self.close(code=code, reason=reason)


def _answer_identity(
    answer: handshake.AuthenticatedAnswer
    | handshake.InvitedAnswer
    | handshake.LegacyAnonymousAnswer
    | handshake.LegacyAdministrationAnswer
    | None,
) -> dict[str, str]:
    """Who a refused handshake claimed to be (ids only: never the invitation token)."""
    if isinstance(answer, handshake.AuthenticatedAnswer):
        return {"organization_id": answer.organization_id, "device_id": answer.device_id}
    if isinstance(answer, handshake.InvitedAnswer):
        return {"organization_id": answer.organization_id, "invitation_type": answer.invitation_type}
    if isinstance(answer, handshake.LegacyAnonymousAnswer):
        return {"organization_id": answer.organization_id}
    return {}


def _session_identity(session: object) -> dict[str, Any]:
    if isinstance(session, AuthenticatedSession):
        return {"organization_id": session.organization_id, "device_id": session.device_id}
    if isinstance(session, InvitedSession):
        # The invitation's row id, not its token: the token is what lets anyone claim.
        return {"organization_id": session.organization_id, "invitation_id": session.invitation_pk}
    if isinstance(session, AnonymousSession):  # API v1 `anonymous` (2.0-2.5 bootstrap)
        return {"organization_id": session.organization_id}
    return {}
