"""`manage.py sequester_export_realm`: a realm's data for a storage service, in the reference's export file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from sequester import export
from sequester.management import common


class Command(common.DatabaseCommand):
    help = ("Export a realm's sequestered data for a storage service to an SQLite file that "
            "`parsec backend sequester extract_realm_export` decrypts. Re-running it resumes an export.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", required=True, help="organization id")
        parser.add_argument("--realm", required=True, help="realm (workspace) id, 32 hex digits")
        parser.add_argument("--service", required=True, help="storage service id, 32 hex digits")
        parser.add_argument("--output", required=True,
                            help="export file, or a directory (the file is then named after the realm)")

    def handle(self, *args: Any, **options: Any) -> None:
        realm_id = common.parse_id(options["realm"], "--realm")
        service_id = common.parse_id(options["service"], "--service")
        output = Path(options["output"])
        if not output.is_dir() and not output.parent.is_dir():
            raise CommandError(f"--output {output}: folder {output.parent} doesn't exist")
        try:
            result = export.export_realm(
                organization_id=options["organization"], realm_id=realm_id, service_id=service_id, output=output,
                progress=lambda message: self.stdout.write(message) if options["verbosity"] > 1 else None,
            )
        except export.ExportError as exc:
            raise CommandError(str(exc)) from None
        verb = "Resumed" if result.resumed else "Created"
        self.stdout.write(f"{verb} {result.path}: {result.vlobs} vlob versions and {result.blocks} blocks exported")
