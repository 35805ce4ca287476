"""`manage.py erase_organization ORG [--dry-run] [--yes]`: delete an organization, its rows and its blocks.

A thin shell over `server.erase.erase_organization` (the console's "Erase" action calls it too).
Without `--yes` it shows what would be deleted and asks for the organization id typed back. Exit status
1 when blocks could not be deleted (the rows are kept: run it again once the blockstore answers).
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from blocks.stores.factory import blockstore_from_config
from organizations import audit
from organizations.outcomes import AdministrationError
from server.erase import DEFAULT_JOBS, erase_organization


class Command(BaseCommand):
    help = (
        "Erase an organization: every row of it in the database and its blocks in the blockstore. "
        "Cannot be undone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization_id", metavar="ORG", help="the organization id")
        parser.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        parser.add_argument(
            "-b", "--blockstore", action="append", metavar="CONFIG",
            help="blockstore configuration, as for `run` (repeatable for RAID); default: PARSEC_BLOCKSTORE",
        )
        parser.add_argument(
            "--jobs", type=int, default=DEFAULT_JOBS, metavar="N",
            help=f"blocks deleted at once (default {DEFAULT_JOBS})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organization_id: str = options["organization_id"]
        specs = tuple(options["blockstore"] or settings.PARSEC.blockstore)
        try:
            store = blockstore_from_config(specs)
        except ValueError as exc:
            raise CommandError(f"--blockstore: {exc}") from None
        if options["jobs"] < 1:
            raise CommandError("--jobs must be at least 1")

        preview = erase_organization(organization_id, dry_run=True)
        if preview is AdministrationError.NOT_FOUND:
            raise CommandError(f"Unknown organization `{organization_id}`: nothing to erase.")
        if options["dry_run"]:
            self._print(preview.describe())
            return
        if not options["yes"]:
            self._print(preview.describe()[1:])
            if not self._confirmed(organization_id):
                raise CommandError("Not confirmed: nothing was erased.")

        report = erase_organization(
            organization_id, dry_run=False, actor=audit.command_actor("erase_organization"), store=store, jobs=options["jobs"]
        )
        if report is AdministrationError.NOT_FOUND:
            raise CommandError(f"Organization `{organization_id}` was erased meanwhile by someone else.")
        lines = report.describe()
        if not report.complete:
            self._print(lines[1:])
            raise CommandError(lines[0])
        self.stdout.write(self.style.SUCCESS(lines[0]))
        self._print(lines[1:])

    def _print(self, lines: list[str]) -> None:
        for line in lines:
            self.stdout.write(line)

    def _confirmed(self, organization_id: str) -> bool:
        self.stdout.write(
            self.style.WARNING(f"This cannot be undone. Type the organization id ({organization_id}) to erase it:"),
            ending=" ",
        )
        self.stdout.flush()
        try:
            answer = input()
        except EOFError:  # no terminal (a script): never erase on a missing answer
            self.stdout.write("")
            return False
        return answer.strip() == organization_id
