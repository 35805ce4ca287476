"""The `/ws` endpoint: handshake, then a strict request/reply loop over binary msgpack frames.

The consumer stays thin: it decodes, checks sizes, looks the command up in the registry and hands
the decoded request to the command's handler. It never touches the ORM itself.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from protocol import codec, events, handshake, replies, types
from protocol.db import run_sync
from protocol.registry import CommandSpec, Family, lookup
from protocol.session import AuthenticatedSession, InvitedSession
from protocol.sessions import invitation_group, organization_group, user_group

logger = logging.getLogger("parsec.protocol")

# The reference drops connections sending messages above 16 MiB.
MAX_FRAME_SIZE = 16 * 1024 * 1024


class ParsecConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.phase = "handshake"
        self.session: AuthenticatedSession | InvitedSession | None = None
        self.family: Family | None = None
        self.groups_joined: list[str] = []
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.worker: asyncio.Task | None = None
        self.current_command: asyncio.Task | None = None
        self.current_spec: CommandSpec | None = None
        # Per-connection state owned by command families (e.g. the events queue).
        self.state: dict[str, Any] = {}
        self.challenge = secrets.token_bytes(48)
        await self.accept()
        await self.send(bytes_data=handshake.challenge_message(self.challenge, timezone.now()))

    async def disconnect(self, code: int) -> None:
        self.phase = "closed"
        if self.worker is not None:
            self.worker.cancel()
        if self.current_command is not None:
            self.current_command.cancel()
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        for hook in list(self.state.get("on_close", [])):
            try:
                await hook()
            except Exception:
                logger.exception("session close hook failed")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if bytes_data is not None and len(bytes_data) > MAX_FRAME_SIZE:
            await self.close_session()
            return
        if self.phase == "handshake":
            await self.do_handshake(bytes_data)
        elif self.phase == "ready":
            # A new request abandons a waiting cancellable command, without reply (transport.md §4).
            if self.current_spec is not None and self.current_spec.cancellable and self.current_command:
                self.current_command.cancel()
            self.inbox.put_nowait(bytes_data)

    # Handshake -----------------------------------------------------------------------------

    async def do_handshake(self, frame: bytes | None) -> None:
        from organizations.handshake import identify_device, identify_invitation

        self.phase = "handshaking"
        try:
            answer = handshake.parse_answer(frame)
            if isinstance(answer, handshake.AuthenticatedAnswer):
                identity = await run_sync(identify_device, answer)
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
            else:
                identity = await run_sync(identify_invitation, answer)
                self.family = Family.INVITED
                self.session = InvitedSession(
                    organization_pk=identity.organization_pk,
                    organization_id=identity.organization_id,
                    invitation_pk=identity.invitation_pk,
                    token=identity.token,
                    invitation_type=identity.invitation_type,
                    greeter_user_pk=identity.greeter_user_pk,
                    api_version=answer.api_version,
                    connection=self,
                )
                groups = [invitation_group(identity.invitation_pk)]
        except handshake.HandshakeFailed as failure:
            logger.info("Connection dropped: bad handshake (%s: %s)", failure.result, failure.help)
            await self.send(bytes_data=handshake.result_message(failure.result, failure.help))
            await self.close_session()
            return
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        await self.send(bytes_data=handshake.OK_RESULT)
        logger.info(
            "Connection established (client/server API version: %s.%s/%s)",
            *answer.api_version,
            "3.4" if answer.api_version[0] >= 3 else "2.10",
        )
        for hook in SESSION_START_HOOKS[self.family]:
            await hook(self.session)
        self.phase = "ready"
        self.worker = asyncio.create_task(self.command_loop())

    # Command loop ---------------------------------------------------------------------------

    async def command_loop(self) -> None:
        while True:
            frame = await self.inbox.get()
            self.current_command = asyncio.create_task(self.process(frame))
            try:
                await self.current_command
            except asyncio.CancelledError:
                if self.phase != "ready":
                    raise
                # The command was abandoned by a newer request; carry on with that one.
            except Exception:
                logger.exception("command crashed")
                await self.close_session(code=1011)
                return
            finally:
                self.current_command = None
                self.current_spec = None

    async def process(self, frame: bytes | None) -> None:
        reply = await self.execute(frame)
        # Events arrive already encoded; everything else is a reply map.
        await self.send(bytes_data=reply if isinstance(reply, bytes) else codec.packb(reply))

    async def execute(self, frame: bytes | None) -> dict[str, Any] | bytes:
        if frame is None:
            return replies.INVALID_MSG_FORMAT
        try:
            raw = codec.unpackb(frame)
        except codec.DecodeError:
            return replies.INVALID_MSG_FORMAT
        if not isinstance(raw, dict):
            return replies.INVALID_MSG_FORMAT
        assert self.family is not None
        spec = lookup(self.family, raw.get("cmd"), debug=settings.PARSEC.debug)
        if spec is None:
            return replies.UNKNOWN_COMMAND
        try:
            request = types.decode_request(spec.request, raw)
        except types.FieldError as exc:
            return replies.bad_message(str(exc))
        self.current_spec = spec
        started = time.monotonic()
        reply = await spec.handler(self.session, request)
        if isinstance(reply, dict):
            status = reply.get("status")
        else:
            status = "no_events" if reply == events.NO_EVENTS else "ok"
        logger.info("Request cmd=%s status=%s duration_ms=%.1f", spec.name, status, (time.monotonic() - started) * 1000)
        return reply

    # Messages from the channel layer ------------------------------------------------------

    async def parsec_event(self, message: dict[str, Any]) -> None:
        await events.deliver(self, message)

    async def session_close(self, message: dict[str, Any]) -> None:
        await self.close_session()

    async def close_session(self, code: int = 1000) -> None:
        if self.phase == "closed":
            return
        self.phase = "closing"
        if self.current_command is not None:
            self.current_command.cancel()
        await self.close(code=code)


# Apps add coroutines run right after a successful handshake (e.g. claimer marked READY).
SESSION_START_HOOKS: dict[Family, list] = {Family.AUTHENTICATED: [], Family.INVITED: []}
