"""Block rules (docs/protocol.md#blocks): checks in one statement, data in the blockstore, then metadata.

Each phase is its own `run_sync` call, so a slow blockstore (S3, Swift) never holds a database
connection of the small pool nor a transaction while it works.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.db import IntegrityError
from django.utils import timezone

from blocks import blockstores
from blocks.blockstores import BlockNotFound, BlockStoreError
from blocks.models import Block
from protocol import replies
from protocol.db import db_param, fetch_row, run_sync
from protocol.replies import Reply
from protocol.session import AuthenticatedSession
from realms.rules import ACCESS_STATE_FIELDS, Operation, Refused, access_state_from_row, evaluate_realm_access
from realms.sql import ACCESS_STATE_COLUMNS_POSITIONAL as ACCESS_STATE_COLUMNS
from realms.models import Realm

logger = logging.getLogger(__name__)

_BLOCK_ID = Block._meta.get_field("block_id")
_REALM_ID = Realm._meta.get_field("realm_id")


# --- block_create --------------------------------------------------------------------------------


async def block_create(
    *, session: AuthenticatedSession, block_id: uuid.UUID, realm_id: uuid.UUID, block: bytes
) -> Reply:
    now = timezone.now()
    checked = await run_sync(check_block_create, session=session, block_id=block_id, realm_id=realm_id, now=now)
    if not isinstance(checked, Realm):
        return checked
    try:
        await run_sync(_store_create, session.organization_id, block_id, block)
    except BlockStoreError as exc:
        # No metadata: the client retries with the same id and data, the write is idempotent.
        logger.warning("Blockstore write failed (organization=%s block=%s): %s", session.organization_id, block_id, exc)
        return replies.reply("timeout")
    return await run_sync(
        record_block, session=session, block_id=block_id, realm_pk=checked.pk, size=len(block), now=now
    )


def check_block_create(
    *, session: AuthenticatedSession, block_id: uuid.UUID, realm_id: uuid.UUID, now: datetime
) -> Realm | Reply:
    """The checks of §7.1 in order: the realm to attach the block to, or the refusal.

    One statement (realm access state and whether the id is taken), so no transaction is needed.
    """
    row = fetch_row(
        f"SELECT {ACCESS_STATE_COLUMNS},"
        f' EXISTS(SELECT 1 FROM "{Block._meta.db_table}" b WHERE b."organization_id" = %s AND b."block_id" = %s)'
        f' FROM "{Realm._meta.db_table}" r WHERE r."organization_id" = %s AND r."realm_id" = %s',
        [
            session.user_pk, session.user_pk,
            session.organization_pk, db_param(_BLOCK_ID, block_id),
            session.organization_pk, db_param(_REALM_ID, realm_id),
        ],
        (*ACCESS_STATE_FIELDS, None),
    )
    if row is None:
        # block_create's `not_found` carries no reason field (schema).
        return replies.reply("not_found")
    access = evaluate_realm_access(access_state_from_row(row[:-1]), operation=Operation.WRITE, now=now)
    if isinstance(access, Refused):
        return replies.reply(access.status)
    if row[-1]:
        return replies.reply("already_exists")
    return access.realm


def record_block(
    *, session: AuthenticatedSession, block_id: uuid.UUID, realm_pk: int, size: int, now: datetime
) -> Reply:
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
        return replies.reply("already_exists")
    return replies.ok()


# --- block_read ----------------------------------------------------------------------------------


async def block_read(*, session: AuthenticatedSession, block_id: uuid.UUID) -> Reply:
    now = timezone.now()
    refused = await run_sync(check_block_read, session=session, block_id=block_id, now=now)
    if refused is not None:
        return refused
    try:
        data = await run_sync(_store_read, session.organization_id, block_id)
    except BlockNotFound:
        logger.error("Block has metadata but no data (organization=%s block=%s)", session.organization_id, block_id)
        return replies.reply("timeout")
    except BlockStoreError as exc:
        logger.warning("Blockstore read failed (organization=%s block=%s): %s", session.organization_id, block_id, exc)
        return replies.reply("timeout")
    return replies.ok(block=data)


def check_block_read(*, session: AuthenticatedSession, block_id: uuid.UUID, now: datetime) -> Reply | None:
    """The checks of §7.2 in order, in one statement: None when the block may be read."""
    row = fetch_row(
        f"SELECT {ACCESS_STATE_COLUMNS}"
        f' FROM "{Block._meta.db_table}" b JOIN "{Realm._meta.db_table}" r ON r."id" = b."realm_id"'
        ' WHERE b."organization_id" = %s AND b."block_id" = %s',
        [session.user_pk, session.user_pk, session.organization_pk, db_param(_BLOCK_ID, block_id)],
        ACCESS_STATE_FIELDS,
    )
    if row is None:
        return replies.reply("not_found")
    # READ without an encryption revision: allowed during re-encryption, refused in other maintenance.
    access = evaluate_realm_access(access_state_from_row(row), operation=Operation.READ, now=now)
    if isinstance(access, Refused):
        return replies.reply(access.status)
    return None


# --- Blockstore calls (worker threads only) -----------------------------------------------------


def _store_create(organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
    blockstores.get_blockstore().create(organization_id, block_id, data)


def _store_read(organization_id: str, block_id: uuid.UUID) -> bytes:
    return blockstores.get_blockstore().read(organization_id, block_id)
