"""`manage.py server_stats [--at DATE] [--format csv|json]`: the statistics of every organization.

The document of `GET /administration/stats?format=…&at=…`, counting only what existed at `--at`.
"""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from organizations.services import organizations as services
from organizations.administration import server_stats_csv, server_stats_json
from organizations.management.operator import date_argument, write_json


class Command(BaseCommand):
    help = "Print the statistics of every organization, now or at a past date, as CSV or JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--at", metavar="DATE",
            help="count only what existed then: YYYY-MM-DD (00:00 UTC) or an RFC 3339 date-time (default: now)",
        )
        parser.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (default csv)")

    def handle(self, *args: Any, **options: Any) -> None:
        at = date_argument(options["at"]) if options["at"] is not None else None
        all_stats = services.server_stats(at=at)
        if options["format"] == "json":
            write_json(self.stdout, server_stats_json(all_stats))
        else:
            self.stdout.write(server_stats_csv(all_stats), ending="")
