"""`manage.py list_users ORG [--format text|json]`: the users of an organization, frozen or not.

The users of `GET /administration/organizations/<ORG>/users` (those with a name and an e-mail, revoked
ones included), in creation order.
"""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from organizations.services import organizations as services
from organizations.administration import user_json
from organizations.management.operator import organization_id_argument, unknown_organization, write_json
from organizations.outcomes import AdministrationError


class Command(BaseCommand):
    help = "List the users of an organization (id, e-mail, name, frozen)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization_id", metavar="ORG", help="the organization id")
        parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")

    def handle(self, *args: Any, **options: Any) -> None:
        organization_id = organization_id_argument(options["organization_id"])
        users = services.organization_users(organization_id=organization_id)
        if users is AdministrationError.NOT_FOUND:
            raise unknown_organization(organization_id)
        if options["format"] == "json":
            write_json(self.stdout, {"users": [user_json(user) for user in users]})
            return
        rows = [("USER ID", "E-MAIL", "NAME", "FROZEN")]
        rows += [(user.user_id, user.user_email, user.user_name, "yes" if user.frozen else "no") for user in users]
        widths = [max(len(row[column]) for row in rows) for column in range(3)]
        for row in rows:
            self.stdout.write("  ".join(value.ljust(width) for value, width in zip(row, widths)) + "  " + row[3])
        self.stdout.write(f"{len(users)} user(s)")
