"""The SAS conduit (docs/protocol.md#conduit): the exchange primitive, its TALK and LISTEN halves, and wake-ups.

The rendezvous lives in the database: each half is a short transaction that locks the invitation
row. The waiting between them happens outside any transaction; the side that changes the conduit
sends `conduit.updated` to the invitation's conduit group through the channel layer, so greeter
and claimer may be served by different server processes. The waiting side re-reads the row at
every wake-up, so a spurious or duplicated wake-up is harmless.
"""
from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from invites.models import ConduitState, Invitation, InvitationType, ShamirRecoveryConduit
from invites.outcomes import Refused
from organizations.models import User
from protocol.db import run_sync
from protocol.groups import send_to_group_on_commit
from protocol.session import Connection

NEXT_STATE: dict[str, str] = {
    ConduitState.WAIT_PEERS: ConduitState.CLAIMER_HASHED_NONCE,
    ConduitState.CLAIMER_HASHED_NONCE: ConduitState.GREETER_NONCE,
    ConduitState.GREETER_NONCE: ConduitState.CLAIMER_NONCE,
    ConduitState.CLAIMER_NONCE: ConduitState.CLAIMER_TRUST,
    ConduitState.CLAIMER_TRUST: ConduitState.GREETER_TRUST,
    ConduitState.GREETER_TRUST: ConduitState.COMMUNICATE,
    # Step 7 may be repeated (the claims use two rounds).
    ConduitState.COMMUNICATE: ConduitState.COMMUNICATE,
}

# Not a timeout (the protocol has none): while waiting, re-read the conduit and renew the group
# membership this often, against a lost wake-up and the channel layers' group expiry (one day).
RECHECK_SECONDS = 60.0

CONDUIT_UPDATED = "conduit.updated"


class Side(enum.StrEnum):
    GREETER = "greeter"
    CLAIMER = "claimer"


# Outcomes other than the peer's payload: NOT_FOUND, ALREADY_DELETED, INVALID_STATE of the family's enum.
Failure = Refused


@dataclass(frozen=True)
class ConduitRef:
    """Which conduit a step works on, as the connection knows it.

    Greeter side: the invitation token and the author user, who must be its greeter (or, for
    SHAMIR_RECOVERY, a recipient owning a conduit). Claimer side: the invitation of the handshake
    and the `greeter_user_id` of the request (None when absent: not checked, legacy clients).
    """

    side: Side
    organization_pk: int
    token: Any = None
    greeter_user_pk: int | None = None
    invitation_pk: int | None = None
    greeter_user_id: str | None = None


def conduit_group(invitation_pk: int) -> str:
    # Not the invitation's session group: greeters join this one, and must not be closed with claimers.
    return f"parsec.conduit.{invitation_pk}"


def notify_conduit_updated_on_commit(invitation_pk: int) -> None:
    send_to_group_on_commit(conduit_group(invitation_pk), {"type": CONDUIT_UPDATED, "invitation": invitation_pk})


def _bytes(value: Any) -> bytes | None:
    # PostgreSQL bytea columns come back as memoryview.
    return None if value is None else bytes(value)


@dataclass
class _Locked:
    invitation: Invitation
    conduit: Invitation | ShamirRecoveryConduit  # the row holding the three conduit columns

    def my_payload(self, side: Side) -> bytes | None:
        field = "conduit_greeter_payload" if side is Side.GREETER else "conduit_claimer_payload"
        return _bytes(getattr(self.conduit, field))

    def peer_payload(self, side: Side) -> bytes | None:
        return self.my_payload(Side.CLAIMER if side is Side.GREETER else Side.GREETER)

    def set_my_payload(self, side: Side, payload: bytes | None) -> None:
        field = "conduit_greeter_payload" if side is Side.GREETER else "conduit_claimer_payload"
        setattr(self.conduit, field, payload)

    def save(self) -> None:
        self.conduit.save(update_fields=["conduit_state", "conduit_greeter_payload", "conduit_claimer_payload"])


def _lock(ref: ConduitRef) -> _Locked | Failure:
    """Lock the invitation row (it serialises every change of its conduits) and find the conduit."""
    invitations = Invitation.objects.select_for_update()
    if ref.side is Side.GREETER:
        invitation = invitations.filter(organization_id=ref.organization_pk, token=ref.token).first()
    else:
        assert ref.invitation_pk is not None  # the claimer's connection knows its invitation
        invitation = invitations.filter(pk=ref.invitation_pk).first()
    if invitation is None:
        return Failure.NOT_FOUND
    if invitation.type == InvitationType.SHAMIR_RECOVERY:
        # The invitation row lock covers its conduits.
        conduits = ShamirRecoveryConduit.objects.filter(invitation=invitation)
        conduit: ShamirRecoveryConduit | Invitation | None
        if ref.side is Side.GREETER:
            conduit = conduits.filter(greeter_id=ref.greeter_user_pk).first()
        else:
            conduit = conduits.filter(greeter__user_id=ref.greeter_user_id).first() if ref.greeter_user_id else None
        if conduit is None:
            return Failure.NOT_FOUND
    else:
        conduit = invitation
        if ref.side is Side.GREETER and invitation.greeter_id != ref.greeter_user_pk:
            return Failure.NOT_FOUND
        if (ref.side is Side.CLAIMER and ref.greeter_user_id is not None
                and not User.objects.filter(pk=invitation.greeter_id, user_id=ref.greeter_user_id).exists()):
            return Failure.NOT_FOUND
    if invitation.deleted_on is not None:
        return Failure.ALREADY_DELETED
    return _Locked(invitation=invitation, conduit=conduit)


@dataclass(frozen=True)
class Talked:
    invitation_pk: int
    peer_seen: bytes | None


def talk(ref: ConduitRef, state: str, payload: bytes) -> Talked | Failure:
    """TALK: post my payload for `state` (step 1 resets the conduit instead of failing)."""
    with transaction.atomic():
        locked = _lock(ref)
        if isinstance(locked, Failure):
            return locked
        if locked.conduit.conduit_state != state or locked.my_payload(ref.side) is not None:
            if state != ConduitState.WAIT_PEERS:
                return Failure.INVALID_STATE
            locked.conduit.conduit_state = ConduitState.WAIT_PEERS
            locked.set_my_payload(Side.GREETER, None)
            locked.set_my_payload(Side.CLAIMER, None)
        locked.set_my_payload(ref.side, payload)
        peer_seen = locked.peer_payload(ref.side)
        locked.save()
        notify_conduit_updated_on_commit(locked.invitation.pk)
        return Talked(invitation_pk=locked.invitation.pk, peer_seen=peer_seen)


def listen(ref: ConduitRef, state: str, payload: bytes, peer_seen: bytes | None) -> bytes | Failure | None:
    """LISTEN, one look: the peer's payload, a failure, or None to keep waiting."""
    with transaction.atomic():
        locked = _lock(ref)
        if isinstance(locked, Failure):
            return locked
        current_state = locked.conduit.conduit_state
        mine, peer = locked.my_payload(ref.side), locked.peer_payload(ref.side)
        if peer_seen is None:
            # I talked first: the peer's post completes the step, I move the conduit on.
            if current_state != state or mine != payload:
                return Failure.INVALID_STATE
            if peer is not None:
                locked.conduit.conduit_state = NEXT_STATE[state]
                locked.set_my_payload(Side.GREETER, None)
                locked.set_my_payload(Side.CLAIMER, None)
                locked.save()
                notify_conduit_updated_on_commit(locked.invitation.pk)
                return peer
        else:
            # The peer talked first: done once it has moved the conduit on.
            if current_state == NEXT_STATE[state] and mine is None:
                return peer_seen
            if current_state != state or mine != payload or peer != peer_seen:
                return Failure.INVALID_STATE
        return None


# Waking up ------------------------------------------------------------------------------------


def _waiters(connection: Connection) -> dict[Any, asyncio.Event]:
    return connection.state.waiters


async def on_conduit_updated(connection: Connection, message: dict[str, Any]) -> None:
    """Handler of `conduit.updated` channel messages, registered by InvitesConfig.ready()."""
    event = _waiters(connection).get(message.get("invitation"))
    if event is not None:
        event.set()


async def exchange(*, connection: Connection, ref: ConduitRef, state: str, payload: bytes) -> bytes | Failure:
    """The exchange primitive: post `payload` for `state`, wait for the peer's, return it."""
    talked = await run_sync(talk, ref, state, payload)
    if isinstance(talked, Failure):
        return talked
    group = conduit_group(talked.invitation_pk)
    layer = connection.channel_layer
    wake_up = asyncio.Event()
    _waiters(connection)[talked.invitation_pk] = wake_up
    await layer.group_add(group, connection.channel_name)
    try:
        while True:
            # Cleared before looking: an update arriving during the look wakes the next wait.
            wake_up.clear()
            outcome = await run_sync(listen, ref, state, payload, talked.peer_seen)
            if outcome is not None:
                return outcome
            try:
                await asyncio.wait_for(wake_up.wait(), RECHECK_SECONDS)
            except TimeoutError:
                await layer.group_add(group, connection.channel_name)
    finally:
        _waiters(connection).pop(talked.invitation_pk, None)
        await layer.group_discard(group, connection.channel_name)
