"""`manage.py organization_stats ORG [--format text|json]`: users, realms and sizes of one organization.

The figures of `GET /administration/organizations/<ORG>/stats` (`--format json` prints that document).
"""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from organizations import selectors
from organizations.administration import organization_stats_json
from organizations.management.operator import organization_id_argument, unknown_organization, write_json
from organizations.outcomes import AdministrationError


class Command(BaseCommand):
    help = "Print the statistics of an organization (users per profile, realms, data and metadata sizes)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization_id", metavar="ORG", help="the organization id")
        parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")

    def handle(self, *args: Any, **options: Any) -> None:
        organization_id = organization_id_argument(options["organization_id"])
        stats = selectors.organization_stats(organization_id=organization_id)
        if stats is AdministrationError.NOT_FOUND:
            raise unknown_organization(organization_id)
        if options["format"] == "json":
            write_json(self.stdout, organization_stats_json(stats))
            return
        self.stdout.write(f"Organization {stats.organization_id}")
        self.stdout.write(f"  users: {stats.users} ({stats.active_users} active)")
        for item in stats.users_per_profile_detail:
            self.stdout.write(f"    {item.profile}: {item.active} active, {item.revoked} revoked")
        self.stdout.write(f"  realms: {stats.realms}")
        self.stdout.write(f"  data size: {stats.data_size} bytes")
        self.stdout.write(f"  metadata size: {stats.metadata_size} bytes")
