"""`POSTGRESQL`: blocks in a table of Django's database, whichever it is (SQLite too)."""
from __future__ import annotations

import uuid

from django.db import DatabaseError, connection

from blocks.models import BlockData
from blocks.stores.base import BlockNotFound, BlockStoreError


class DatabaseBlockStore:
    """`POSTGRESQL`: the `BlockData` table of Django's database, whichever it is (SQLite too).

    Each call is its own autocommit statement: the services call it outside their transactions.
    On PostgreSQL with the event loop's pool, the block commands write and read this table without
    this class (blocks/sql.py, `*_WITH_DATA`), with the same rules: keep the two in step.
    """

    def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
        try:
            if connection.vendor == "postgresql":
                # ON CONFLICT DO NOTHING: a retried write finds the same data already there.
                self._execute_binary(
                    f'INSERT INTO "{BlockData._meta.db_table}" ("organization_id", "block_id", "data")'
                    ' VALUES (%s, %s, %b) ON CONFLICT DO NOTHING',
                    (organization_id, block_id, data),
                )
                return
            BlockData.objects.bulk_create(
                [BlockData(organization_id=organization_id, block_id=block_id, data=data)], ignore_conflicts=True
            )
        except DatabaseError as exc:
            raise BlockStoreError(f"cannot write block {block_id}: {type(exc).__name__}") from exc

    def read(self, organization_id: str, block_id: uuid.UUID) -> bytes:
        try:
            if connection.vendor == "postgresql":
                row = self._execute_binary(
                    f'SELECT "data" FROM "{BlockData._meta.db_table}" WHERE "organization_id" = %s AND "block_id" = %s',
                    (organization_id, block_id),
                    fetch=True,
                )
                data = None if row is None else row[0]
            else:
                data = (
                    BlockData.objects.filter(organization_id=organization_id, block_id=block_id)
                    .values_list("data", flat=True)
                    .first()
                )
        except DatabaseError as exc:
            raise BlockStoreError(f"cannot read block {block_id}: {type(exc).__name__}") from exc
        if data is None:
            raise BlockNotFound(f"block {block_id} not found")
        return bytes(data)  # PostgreSQL gives a memoryview

    def delete(self, organization_id: str, block_id: uuid.UUID) -> None:
        try:
            BlockData.objects.filter(organization_id=organization_id, block_id=block_id).delete()
        except DatabaseError as exc:
            raise BlockStoreError(f"cannot delete block {block_id}: {type(exc).__name__}") from exc

    def list_blocks(self, organization_id: str) -> set[uuid.UUID]:
        try:
            return set(BlockData.objects.filter(organization_id=organization_id).values_list("block_id", flat=True))
        except DatabaseError as exc:
            raise BlockStoreError(f"cannot list blocks: {type(exc).__name__}") from exc

    @staticmethod
    def _execute_binary(sql: str, params: tuple, fetch: bool = False) -> tuple | None:
        """Block bytes travel in PostgreSQL's binary format, through a server-side binding cursor.

        Django's cursors bind on the client, which sends and receives bytea as hex text: 4.4 ms of
        CPU to write a 512 KiB block and 2.2 ms to read it, against 0.4 and 0.5 ms in binary (this
        machine). Errors still come out as Django's DatabaseError.
        """
        import psycopg

        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params, binary=fetch)
            return cursor.fetchone() if fetch else None
