"""Block rules (docs/protocol.md#blocks), synchronous like every app's services: the checks before the data
is stored, and the metadata row after. `blocks.orchestration` runs them around the store I/O.

Each function is one statement on its own (no transaction): the checks read the realm access state and
whether the id is taken at once, and the unique constraint decides a race between two writers.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.db import DatabaseError, IntegrityError

from blocks import sql
from blocks.models import Block
from blocks.outcomes import BlockOutcome, BlockReadOk
from protocol import loop_db
from protocol.db import db_param, fetch_row
from protocol.session import AuthenticatedSession
from realms.rules import ACCESS_STATE_FIELDS, Operation, Refused, access_state_from_row, evaluate_realm_access
from realms.models import Realm

logger = logging.getLogger(__name__)

_BLOCK_ID = Block._meta.get_field("block_id")
_REALM_ID = Realm._meta.get_field("realm_id")
_CREATE_FIELDS = (*ACCESS_STATE_FIELDS, None)


def _refusal(refused: Refused) -> BlockOutcome:
    # Without a timestamp or an encryption revision the realm check refuses only with statuses of this family.
    return BlockOutcome(refused.status)


# --- block_create --------------------------------------------------------------------------------


def _block_create_query(*, session: AuthenticatedSession, block_id: uuid.UUID, realm_id: uuid.UUID) -> dict:
    return {
        "user_pk": session.user_pk,
        "organization_pk": session.organization_pk,
        "block_id": db_param(_BLOCK_ID, block_id),
        "realm_id": db_param(_REALM_ID, realm_id),
    }


def _block_create_checked(row: tuple | None, *, now: datetime) -> int | BlockOutcome:
    if row is None:
        # block_create's `not_found` carries no reason field (schema).
        return BlockOutcome.NOT_FOUND
    access = evaluate_realm_access(access_state_from_row(row[:-1]), operation=Operation.WRITE, now=now)
    if isinstance(access, Refused):
        return _refusal(access)
    if row[-1]:
        return BlockOutcome.ALREADY_EXISTS
    return access.realm.pk


def check_block_create(
    *, session: AuthenticatedSession, block_id: uuid.UUID, realm_id: uuid.UUID, now: datetime
) -> int | BlockOutcome:
    """The checks of §7.1 in order: the pk of the realm to attach the block to, or the refusal.

    One statement (realm access state and whether the id is taken), so no transaction is needed.
    """
    params = _block_create_query(session=session, block_id=block_id, realm_id=realm_id)
    return _block_create_checked(fetch_row(sql.BLOCK_CREATE_STATE, params, _CREATE_FIELDS), now=now)


async def check_block_create_on_loop(
    *, session: AuthenticatedSession, block_id: uuid.UUID, realm_id: uuid.UUID, now: datetime
) -> int | BlockOutcome:
    """`check_block_create` from the event loop (protocol/loop_db.py)."""
    params = _block_create_query(session=session, block_id=block_id, realm_id=realm_id)
    return _block_create_checked(await loop_db.fetch_row(sql.BLOCK_CREATE_STATE, params, _CREATE_FIELDS), now=now)


def record_block(
    *, session: AuthenticatedSession, block_id: uuid.UUID, realm_pk: int, size: int, now: datetime
) -> BlockOutcome:
    try:
        # One INSERT, atomic on its own: no transaction around it.
        Block.objects.create(
            organization_id=session.organization_pk,
            block_id=block_id,
            realm_id=realm_pk,
            author_id=session.device_pk,
            size=size,
            created_on=now,
        )
    except IntegrityError:
        # A concurrent block_create of the same id passed the checks too; the database kept the other.
        return BlockOutcome.ALREADY_EXISTS
    return BlockOutcome.OK


# --- block_read ----------------------------------------------------------------------------------


def _block_read_checked(row: tuple | None, *, now: datetime) -> BlockOutcome:
    if row is None:
        return BlockOutcome.NOT_FOUND
    # READ without an encryption revision: allowed during re-encryption, refused in other maintenance.
    access = evaluate_realm_access(access_state_from_row(row), operation=Operation.READ, now=now)
    if isinstance(access, Refused):
        return _refusal(access)
    return BlockOutcome.OK


def _block_read_query(*, session: AuthenticatedSession, block_id: uuid.UUID) -> dict:
    return {"user_pk": session.user_pk, "organization_pk": session.organization_pk, "block_id": db_param(_BLOCK_ID, block_id)}


def check_block_read(*, session: AuthenticatedSession, block_id: uuid.UUID, now: datetime) -> BlockOutcome:
    """The checks of §7.2 in order, in one statement: OK when the block may be read."""
    params = _block_read_query(session=session, block_id=block_id)
    return _block_read_checked(fetch_row(sql.BLOCK_READ_STATE, params, ACCESS_STATE_FIELDS), now=now)


async def check_block_read_on_loop(*, session: AuthenticatedSession, block_id: uuid.UUID, now: datetime) -> BlockOutcome:
    """`check_block_read` from the event loop (protocol/loop_db.py)."""
    params = _block_read_query(session=session, block_id=block_id)
    return _block_read_checked(await loop_db.fetch_row(sql.BLOCK_READ_STATE, params, ACCESS_STATE_FIELDS), now=now)


# --- The POSTGRESQL blockstore on the event loop --------------------------------------------------
# With the POSTGRESQL blockstore on PostgreSQL, the data is a table of the same database: the check,
# the data and the metadata row need no worker thread (two of them per block_create otherwise, each
# a hand-off of the 512 KiB block between threads) and the data and its row go in one statement.
# `LoopUnavailable` (no connection, or the check failed: nothing was written) sends the command to
# the worker-thread path (`blocks.orchestration`), which decides every case.


async def block_create_with_data_on_loop(
    *, session: AuthenticatedSession, block_id: uuid.UUID, realm_id: uuid.UUID, block: bytes, now: datetime
) -> BlockOutcome:
    """`check_block_create`, then the data and the metadata row in one statement (sql.BLOCK_CREATE_WITH_DATA),
    on one loop connection: the outcome is the worker-thread path's (check, store, `record_block`)."""
    params = _block_create_query(session=session, block_id=block_id, realm_id=realm_id)
    async with loop_db.bytes_connection() as db:
        checked = _block_create_checked(await db.read(sql.BLOCK_CREATE_STATE, params, _CREATE_FIELDS), now=now)
        if isinstance(checked, BlockOutcome):
            return checked
        try:
            written = await db.execute_binary(
                sql.BLOCK_CREATE_WITH_DATA,
                {
                    "organization_id": session.organization_id,
                    "organization_pk": session.organization_pk,
                    "block_id": params["block_id"],
                    "data": block,
                    "realm_pk": checked,
                    "author_pk": session.device_pk,
                    "size": len(block),
                    "created_on": now,
                },
            )
        except DatabaseError as exc:
            # Sent, so not run again: answered as a failed store write, which the client retries with
            # the same id and data (the statement wrote all of it or nothing).
            logger.warning("Block write failed (organization=%s block=%s): %s", session.organization_id, block_id, exc)
            return BlockOutcome.STORE_UNAVAILABLE
    # Refused by the unique constraint: a concurrent block_create of the same id passed the checks too.
    return BlockOutcome.OK if written else BlockOutcome.ALREADY_EXISTS


_READ_WITH_DATA_FIELDS = (*ACCESS_STATE_FIELDS, None)


async def block_read_with_data_on_loop(
    *, session: AuthenticatedSession, block_id: uuid.UUID, now: datetime
) -> BlockOutcome | BlockReadOk:
    """`check_block_read` and the data in one read (sql.BLOCK_READ_WITH_DATA) on a loop connection."""
    params = {**_block_read_query(session=session, block_id=block_id), "organization_id": session.organization_id}
    async with loop_db.bytes_connection() as db:
        row = await db.read(sql.BLOCK_READ_WITH_DATA, params, _READ_WITH_DATA_FIELDS, binary=True)
    checked = _block_read_checked(None if row is None else row[:-1], now=now)
    if checked is not BlockOutcome.OK:
        return checked
    assert row is not None
    data = row[-1]
    if data is None:
        logger.error("Block has metadata but no data (organization=%s block=%s)", session.organization_id, block_id)
        return BlockOutcome.STORE_UNAVAILABLE
    return BlockReadOk(block=data)
