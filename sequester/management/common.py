"""Shared pieces of the `sequester_*` management commands (the reference's `parsec backend sequester ...`).

They work on this server's database (PARSEC_DB, or the embedded default) and blockstore; every
mistake (missing file, wrong key, unknown organization or service...) is a CommandError with one
clear line, never a traceback.
"""
from __future__ import annotations

import uuid
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

from sequester import certificates
from sequester.models import ServiceType


class DatabaseCommand(BaseCommand):
    """A command working on the server's database: refuses an unreachable or not migrated one in one line."""

    def execute(self, *args, **options):
        try:
            executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
            pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except DatabaseError as exc:
            raise CommandError(f"Cannot use the database: {str(exc).strip()}") from None
        if pending:
            raise CommandError(
                f"The database has {len(pending)} unapplied migration(s): "
                "run `python manage.py migrate` (with the same --db / PARSEC_DB) first."
            )
        return super().execute(*args, **options)


def read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"Cannot read {what} {path}: {exc.strerror or exc}") from None


def service_public_key_der(path: str) -> bytes:
    try:
        return certificates.load_rsa_public_key_pem(read_file(path, "--service-public-key"))
    except certificates.BadKey as exc:
        raise CommandError(f"--service-public-key {path}: {exc}") from None


def authority_private_key(path: str):
    try:
        return certificates.load_rsa_private_key_pem(read_file(path, "--authority-private-key"))
    except certificates.BadKey as exc:
        raise CommandError(f"--authority-private-key {path}: {exc}") from None


def parse_id(text: str, option: str) -> uuid.UUID:
    try:
        return uuid.UUID(hex=text)
    except ValueError:
        raise CommandError(f"{option}: `{text}` is not an id (32 hex digits)") from None


def add_service_type_options(parser: CommandParser) -> None:
    parser.add_argument(
        "--service-type", type=str.lower, choices=ServiceType.values, default=ServiceType.STORAGE,
        help="storage (blobs kept for export, the default) or webhook (blobs POSTed to --webhook-url)",
    )
    parser.add_argument("--webhook-url", help="[webhook services only] URL the sequestered blobs are POSTed to")
