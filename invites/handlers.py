"""Protocol handlers of the invitation family (greeter and claimer sides) and of shamir recovery.

Decode, call the service, encode: `invites.outcomes.to_reply` is the one mapping of the family's outcomes
to the wire.
"""
from __future__ import annotations

import asyncio
from typing import Any, Mapping, NoReturn

from invites.models import ConduitState
from invites.outcomes import InvitationCreated, NewInvitation, Refused, to_reply
from invites.services import emails, shamir
from invites.services import invitations as services
from invites.services.conduit import ConduitRef, Failure, Side, exchange
from protocol import replies, types
from protocol.db import run_sync
from protocol.registry import Family, command
from protocol.replies import Reply
from protocol.session import AuthenticatedSession, InvitedSession, close_soon
from protocol.types import InvitationEmailSentStatus

# Request maps the field table of the registry cannot describe --------------------------------------


class FlattenedUnion(types.FieldType):
    """A request whose variant, named by a discriminant key, brings its own fields (docs/protocol.md#replies)."""

    def __init__(self, discriminant: str, variants: Mapping[str, Mapping[str, Any]]) -> None:
        self.discriminant = discriminant
        self.variants = variants
        self.name = f"union on `{discriminant}`"

    def decode(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise types.FieldError("expected a map")
        if self.discriminant not in value:
            raise types.FieldError(f"missing field `{self.discriminant}`")
        variant = self.variants.get(value[self.discriminant]) if isinstance(value[self.discriminant], str) else None
        if variant is None:
            raise types.FieldError(f"invalid field `{self.discriminant}`: {value[self.discriminant]!r}")
        return {self.discriminant: value[self.discriminant], **types.decode_request(variant, value)}


def claimer_request(**fields: Any) -> dict[str, Any]:
    # `greeter_user_id` arrived with API 2.9 in major 2, and 3.3 in major 3 (the 2.11-2.15 clients,
    # API 3.2, do not send it; 2.16's API 3.4 does). Absent means "not checked" (USER/DEVICE).
    return {**fields, "greeter_user_id": types.Introduced(types.UserID, "2.9", "3.3")}


# Greeter side: creation, deletion, list ---------------------------------------------------------------


@command(
    "invite_new",
    family=Family.AUTHENTICATED,
    request=FlattenedUnion(
        "type",
        {
            "USER": {"claimer_email": types.ClaimerEmail, "send_email": types.Boolean},
            "DEVICE": {"send_email": types.Boolean},
            "SHAMIR_RECOVERY": {"claimer_user_id": types.UserID, "send_email": types.Boolean},
        },
    ),
)
async def invite_new(session: AuthenticatedSession, req: dict[str, Any]) -> Reply:
    outcome = await run_sync(
        services.invite_new,
        session=session,
        invitation_type=req["type"],
        send_email=req["send_email"],
        claimer_email=req.get("claimer_email"),
        claimer_user_id=req.get("claimer_user_id"),
    )
    if not isinstance(outcome, NewInvitation):
        return to_reply(outcome)
    if req["send_email"]:
        # Committed by now: the invitation exists whatever happens to the e-mail. A worker thread
        # of its own, which holds no database connection while talking to the SMTP server.
        email_sent = await run_sync(emails.send_invitation_email, outcome.email)
    else:
        # Historical meaning: "nothing failed".
        email_sent = InvitationEmailSentStatus.SUCCESS
    return to_reply(InvitationCreated(token=outcome.token, email_sent=email_sent.value))


@command(
    "invite_delete",
    family=Family.AUTHENTICATED,
    request={"token": types.InvitationToken, "reason": types.InvitationDeletedReasonField},
)
async def invite_delete(session: AuthenticatedSession, req: dict[str, Any]) -> Reply:
    outcome = await run_sync(services.invite_delete, session=session, token=req["token"], reason=req["reason"].value)
    return to_reply(outcome)


@command("invite_list", family=Family.AUTHENTICATED)
async def invite_list(session: AuthenticatedSession, req: dict[str, Any]) -> Reply:
    return to_reply(await run_sync(services.invite_list, session=session))


# Greeter side: the conduit -----------------------------------------------------------------------------


async def greeter_exchanges(
    session: AuthenticatedSession, token: Any, steps: list[tuple[str, bytes]]
) -> bytes | Failure:
    """One or two exchanges in sequence; the last one's peer payload."""
    ref = ConduitRef(
        side=Side.GREETER, organization_pk=session.organization_pk, token=token, greeter_user_pk=session.user_pk
    )
    # A conduit step is a command: it runs on the connection it came on, never outside one.
    assert session.connection is not None
    outcome: bytes | Failure = b""
    for state, payload in steps:
        outcome = await exchange(connection=session.connection, ref=ref, state=state, payload=payload)
        if isinstance(outcome, Failure):
            return outcome
    return outcome


def greeter_reply(outcome: bytes | Failure, field_name: str | None = None) -> Reply:
    """An exchange's reply: the peer's payload under the step's field name (none for the trust steps)."""
    if isinstance(outcome, Failure):
        return to_reply(outcome)
    return replies.ok(**{field_name: outcome}) if field_name else replies.ok()


@command(
    "invite_1_greeter_wait_peer",
    family=Family.AUTHENTICATED,
    request={"token": types.InvitationToken, "greeter_public_key": types.PublicKey},
)
async def invite_1_greeter_wait_peer(session: AuthenticatedSession, req: dict[str, Any]) -> Reply:
    outcome = await greeter_exchanges(session, req["token"], [(ConduitState.WAIT_PEERS, req["greeter_public_key"])])
    return greeter_reply(outcome, "claimer_public_key")


@command("invite_2a_greeter_get_hashed_nonce", family=Family.AUTHENTICATED, request={"token": types.InvitationToken})
async def invite_2a_greeter_get_hashed_nonce(session: AuthenticatedSession, req: dict[str, Any]) -> Reply:
    outcome = await greeter_exchanges(session, req["token"], [(ConduitState.CLAIMER_HASHED_NONCE, b"")])
    return greeter_reply(outcome, "claimer_hashed_nonce")


@command(
    "invite_2b_greeter_send_nonce",
    family=Family.AUTHENTICATED,
    request={"token": types.InvitationToken, "greeter_nonce": types.Bytes},
)
async def invite_2b_greeter_send_nonce(session: AuthenticatedSession, req: dict[str, Any]) -> Reply:
    outcome = await greeter_exchanges(
        session, req["token"], [(ConduitState.GREETER_NONCE, req["greeter_nonce"]), (ConduitState.CLAIMER_NONCE, b"")]
    )
    return greeter_reply(outcome, "claimer_nonce")


@command("invite_3a_greeter_wait_peer_trust", family=Family.AUTHENTICATED, request={"token": types.InvitationToken})
async def invite_3a_greeter_wait_peer_trust(session: AuthenticatedSession, req: dict[str, Any]) -> Reply:
    return greeter_reply(await greeter_exchanges(session, req["token"], [(ConduitState.CLAIMER_TRUST, b"")]))


@command("invite_3b_greeter_signify_trust", family=Family.AUTHENTICATED, request={"token": types.InvitationToken})
async def invite_3b_greeter_signify_trust(session: AuthenticatedSession, req: dict[str, Any]) -> Reply:
    return greeter_reply(await greeter_exchanges(session, req["token"], [(ConduitState.GREETER_TRUST, b"")]))


@command(
    "invite_4_greeter_communicate",
    family=Family.AUTHENTICATED,
    request={"token": types.InvitationToken, "payload": types.Bytes},
)
async def invite_4_greeter_communicate(session: AuthenticatedSession, req: dict[str, Any]) -> Reply:
    outcome = await greeter_exchanges(session, req["token"], [(ConduitState.COMMUNICATE, req["payload"])])
    return greeter_reply(outcome, "payload")


# Claimer side ------------------------------------------------------------------------------------------


async def close_without_reply(session: InvitedSession) -> NoReturn:
    """The invitation is gone: the reference closes the claimer's connection instead of replying."""
    assert session.connection is not None
    close_soon(session.connection)  # from another task: closing cancels the running command, which is this one
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def claimer_exchanges(
    session: InvitedSession, req: dict[str, Any], steps: list[tuple[str, bytes]]
) -> bytes | Failure:
    ref = ConduitRef(
        side=Side.CLAIMER,
        organization_pk=session.organization_pk,
        invitation_pk=session.invitation_pk,
        greeter_user_id=req["greeter_user_id"],
    )
    # A conduit step is a command: it runs on the connection it came on, never outside one.
    assert session.connection is not None
    outcome: bytes | Failure = b""
    for state, payload in steps:
        outcome = await exchange(connection=session.connection, ref=ref, state=state, payload=payload)
        if outcome is Failure.ALREADY_DELETED:
            await close_without_reply(session)
        if isinstance(outcome, Failure):
            return outcome
    return outcome


def claimer_reply(outcome: bytes | Failure, field_name: str | None = None) -> Reply:
    return greeter_reply(outcome, field_name)


@command("invite_info", family=Family.INVITED)
async def invite_info(session: InvitedSession, req: dict[str, Any]) -> Reply:
    outcome = await run_sync(services.invite_info, session=session)
    if outcome is Refused.ALREADY_DELETED:
        await close_without_reply(session)
    return to_reply(outcome)


@command(
    "invite_1_claimer_wait_peer",
    family=Family.INVITED,
    request=claimer_request(claimer_public_key=types.PublicKey),
    # A new request abandons the wait; the posted public key stays in the conduit.
    cancellable=True,
)
async def invite_1_claimer_wait_peer(session: InvitedSession, req: dict[str, Any]) -> Reply:
    outcome = await claimer_exchanges(session, req, [(ConduitState.WAIT_PEERS, req["claimer_public_key"])])
    return claimer_reply(outcome, "greeter_public_key")


@command(
    "invite_2a_claimer_send_hashed_nonce",
    family=Family.INVITED,
    request=claimer_request(claimer_hashed_nonce=types.HashDigest),
)
async def invite_2a_claimer_send_hashed_nonce(session: InvitedSession, req: dict[str, Any]) -> Reply:
    outcome = await claimer_exchanges(
        session,
        req,
        [(ConduitState.CLAIMER_HASHED_NONCE, req["claimer_hashed_nonce"]), (ConduitState.GREETER_NONCE, b"")],
    )
    return claimer_reply(outcome, "greeter_nonce")


@command("invite_2b_claimer_send_nonce", family=Family.INVITED, request=claimer_request(claimer_nonce=types.Bytes))
async def invite_2b_claimer_send_nonce(session: InvitedSession, req: dict[str, Any]) -> Reply:
    return claimer_reply(await claimer_exchanges(session, req, [(ConduitState.CLAIMER_NONCE, req["claimer_nonce"])]))


@command("invite_3a_claimer_signify_trust", family=Family.INVITED, request=claimer_request())
async def invite_3a_claimer_signify_trust(session: InvitedSession, req: dict[str, Any]) -> Reply:
    return claimer_reply(await claimer_exchanges(session, req, [(ConduitState.CLAIMER_TRUST, b"")]))


@command("invite_3b_claimer_wait_peer_trust", family=Family.INVITED, request=claimer_request())
async def invite_3b_claimer_wait_peer_trust(session: InvitedSession, req: dict[str, Any]) -> Reply:
    return claimer_reply(await claimer_exchanges(session, req, [(ConduitState.GREETER_TRUST, b"")]))


@command("invite_4_claimer_communicate", family=Family.INVITED, request=claimer_request(payload=types.Bytes))
async def invite_4_claimer_communicate(session: InvitedSession, req: dict[str, Any]) -> Reply:
    outcome = await claimer_exchanges(session, req, [(ConduitState.COMMUNICATE, req["payload"])])
    return claimer_reply(outcome, "payload")


# Claimer presence: READY while connected, IDLE after (session hooks registered by InvitesConfig.ready()) -----


async def claimer_online(session: InvitedSession) -> None:
    assert session.connection is not None
    channel_name = session.connection.channel_name
    await run_sync(services.claimer_connected, invitation_pk=session.invitation_pk, channel_name=channel_name)


async def claimer_offline(session: InvitedSession) -> None:
    # Run at disconnect for every session whose start hooks ran, even if `claimer_online` failed: safe either way.
    assert session.connection is not None
    channel_name = session.connection.channel_name
    await run_sync(services.claimer_disconnected, invitation_pk=session.invitation_pk, channel_name=channel_name)


# Shamir recovery -------------------------------------------------------------------------------------------


@command(
    "shamir_recovery_setup",
    family=Family.AUTHENTICATED,
    request={"setup": types.Optional(types.ShamirRecoverySetup)},
)
async def shamir_recovery_setup(session: AuthenticatedSession, req: dict[str, Any]) -> Reply:
    return to_reply(await run_sync(shamir.shamir_recovery_setup, session=session, setup=req["setup"]))


@command("shamir_recovery_self_info", family=Family.AUTHENTICATED)
async def shamir_recovery_self_info(session: AuthenticatedSession, req: dict[str, Any]) -> Reply:
    return to_reply(await run_sync(shamir.shamir_recovery_self_info, session=session))


@command("shamir_recovery_others_list", family=Family.AUTHENTICATED)
async def shamir_recovery_others_list(session: AuthenticatedSession, req: dict[str, Any]) -> Reply:
    return to_reply(await run_sync(shamir.shamir_recovery_others_list, session=session))


@command("invite_shamir_recovery_reveal", family=Family.INVITED, request={"reveal_token": types.ShamirRevealToken})
async def invite_shamir_recovery_reveal(session: InvitedSession, req: dict[str, Any]) -> Reply:
    outcome = await run_sync(shamir.invite_shamir_recovery_reveal, session=session, reveal_token=req["reveal_token"])
    return to_reply(outcome)
