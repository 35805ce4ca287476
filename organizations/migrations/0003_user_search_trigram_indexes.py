"""Trigram indexes for `human_find` on PostgreSQL.

`human_find` matches `ILIKE '%w1%w2%...%'` on labels, e-mails (and user ids of non-human
users), which no b-tree serves; pg_trgm's
GIN indexes do, so a search in a large organization reads the matching rows instead of every user.
pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it. If the role
cannot, the migration goes on without the indexes (searches stay correct, only slower) and says so.
SQLite has nothing to do: embedded deployments are small.
"""
from __future__ import annotations

import logging

from django.db import DatabaseError, migrations, transaction

logger = logging.getLogger("parsec.migrations")

# The third branch of the search (user ids of non-human users) goes through `user_email_idx`
# (organization, e-mail IS NULL): few users lack a human handle.
INDEXES = {
    "user_label_trgm_idx": "human_label",
    "user_email_trgm_idx": "human_email",
}


def create_indexes(apps, schema_editor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    table = apps.get_model("organizations", "User")._meta.db_table
    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError as exc:
        logger.warning("pg_trgm unavailable (%s): human_find will scan the organization's users", exc)
        return
    with connection.cursor() as cursor:
        for name, column in INDEXES.items():
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON {connection.ops.quote_name(table)} "
                f"USING gin ({connection.ops.quote_name(column)} gin_trgm_ops)"
            )


def drop_indexes(apps, schema_editor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for name in INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("organizations", "0002_audit_trail")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
