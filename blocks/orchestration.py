"""The async side of the block commands: the three phases of each around the store I/O.

The only async block code. Each phase is its own call, so a slow blockstore (S3, Swift) never holds a
database connection of the small pool nor a transaction while it works: check (`blocks.services`; on the
event loop on PostgreSQL, protocol/loop_db.py), store (`blocks.stores`), then record (`blocks.services`),
both in worker threads.
"""
from __future__ import annotations

import logging
import uuid

from django.utils import timezone

from blocks import services
from blocks.outcomes import BlockOutcome, BlockReadOk
from blocks.stores import factory
from blocks.stores.base import BlockNotFound, BlockStoreError
from protocol.db import run_sync
from protocol.loop_db import run_on_loop_or_sync
from protocol.session import AuthenticatedSession

logger = logging.getLogger(__name__)


async def block_create(
    *, session: AuthenticatedSession, block_id: uuid.UUID, realm_id: uuid.UUID, block: bytes
) -> BlockOutcome:
    now = timezone.now()
    checked = await run_on_loop_or_sync(
        services.check_block_create_on_loop, services.check_block_create,
        session=session, block_id=block_id, realm_id=realm_id, now=now,
    )
    if isinstance(checked, BlockOutcome):
        return checked
    try:
        await run_sync(_store_create, session.organization_id, block_id, block)
    except BlockStoreError as exc:
        # No metadata: the client retries with the same id and data, the write is idempotent.
        logger.warning("Blockstore write failed (organization=%s block=%s): %s", session.organization_id, block_id, exc)
        return BlockOutcome.STORE_UNAVAILABLE
    return await run_sync(
        services.record_block, session=session, block_id=block_id, realm_pk=checked, size=len(block), now=now
    )


async def block_read(*, session: AuthenticatedSession, block_id: uuid.UUID) -> BlockOutcome | BlockReadOk:
    now = timezone.now()
    checked = await run_on_loop_or_sync(
        services.check_block_read_on_loop, services.check_block_read, session=session, block_id=block_id, now=now
    )
    if checked is not BlockOutcome.OK:
        return checked
    try:
        data = await run_sync(_store_read, session.organization_id, block_id)
    except BlockNotFound:
        logger.error("Block has metadata but no data (organization=%s block=%s)", session.organization_id, block_id)
        return BlockOutcome.STORE_UNAVAILABLE
    except BlockStoreError as exc:
        logger.warning("Blockstore read failed (organization=%s block=%s): %s", session.organization_id, block_id, exc)
        return BlockOutcome.STORE_UNAVAILABLE
    return BlockReadOk(block=data)


# --- Blockstore calls (worker threads only) -----------------------------------------------------


def _store_create(organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
    factory.get_blockstore().create(organization_id, block_id, data)


def _store_read(organization_id: str, block_id: uuid.UUID) -> bytes:
    return factory.get_blockstore().read(organization_id, block_id)
