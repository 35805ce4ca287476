"""The async side of the block commands: the phases of each around the store I/O.

The only async block code. With the POSTGRESQL blockstore on PostgreSQL, the data is a table of the
same database: a command runs on the event loop's own connections (`blocks.services.*_with_data_on_loop`,
protocol/loop_db.py), check and data on one connection, and falls back to the path below when that
pool cannot serve it. Every other store: the check (`blocks.services`; on the event loop on
PostgreSQL), then the store I/O (`blocks.stores`) and, for a write, the metadata row, in one worker
thread. The check is its own call, so a slow blockstore (S3, Swift) never holds a database connection
of the small pool nor a transaction while it works: the record takes its connection after the store.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.utils import timezone

from blocks import services
from blocks.outcomes import BlockOutcome, BlockReadOk
from blocks.stores import factory
from blocks.stores.base import BlockNotFound, BlockStoreError
from blocks.stores.database import DatabaseBlockStore
from protocol import loop_db
from protocol.db import run_sync
from protocol.loop_db import LoopUnavailable, run_on_loop_or_sync
from protocol.session import AuthenticatedSession

logger = logging.getLogger(__name__)


def _data_on_loop() -> bool:
    """Whether this command's block data can go through the event loop's pool."""
    return loop_db.enabled() and isinstance(factory.get_blockstore(), DatabaseBlockStore)


async def block_create(
    *, session: AuthenticatedSession, block_id: uuid.UUID, realm_id: uuid.UUID, block: bytes
) -> BlockOutcome:
    now = timezone.now()
    if _data_on_loop():
        try:
            return await services.block_create_with_data_on_loop(
                session=session, block_id=block_id, realm_id=realm_id, block=block, now=now
            )
        except LoopUnavailable as exc:
            logger.info("Event loop database access unavailable, running in a worker thread: %s", exc)
            checked = await run_sync(
                services.check_block_create, session=session, block_id=block_id, realm_id=realm_id, now=now
            )
    else:
        checked = await run_on_loop_or_sync(
            services.check_block_create_on_loop, services.check_block_create,
            session=session, block_id=block_id, realm_id=realm_id, now=now,
        )
    if isinstance(checked, BlockOutcome):
        return checked
    return await run_sync(_store_then_record, session=session, block_id=block_id, realm_pk=checked, block=block, now=now)


async def block_read(*, session: AuthenticatedSession, block_id: uuid.UUID) -> BlockOutcome | BlockReadOk:
    now = timezone.now()
    if _data_on_loop():
        try:
            return await services.block_read_with_data_on_loop(session=session, block_id=block_id, now=now)
        except LoopUnavailable as exc:
            logger.info("Event loop database access unavailable, running in a worker thread: %s", exc)
            checked = await run_sync(services.check_block_read, session=session, block_id=block_id, now=now)
    else:
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


def _store_then_record(
    *, session: AuthenticatedSession, block_id: uuid.UUID, realm_pk: int, block: bytes, now: datetime
) -> BlockOutcome:
    """The data, then its metadata row, in one worker-thread call (one hand-off of the block instead of two)."""
    try:
        factory.get_blockstore().create(session.organization_id, block_id, block)
    except BlockStoreError as exc:
        # No metadata: the client retries with the same id and data, the write is idempotent.
        logger.warning("Blockstore write failed (organization=%s block=%s): %s", session.organization_id, block_id, exc)
        return BlockOutcome.STORE_UNAVAILABLE
    return services.record_block(session=session, block_id=block_id, realm_pk=realm_pk, size=len(block), now=now)


def _store_read(organization_id: str, block_id: uuid.UUID) -> bytes:
    return factory.get_blockstore().read(organization_id, block_id)
