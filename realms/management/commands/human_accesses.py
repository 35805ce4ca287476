"""`manage.py human_accesses ORG [--filter WORDS]`: who can access which realm, with the role history.

The counterpart of the reference's `parsec backend human_accesses`, with its layout: users grouped
by human (same e-mail and name), then the users without a human handle; per user its realms and
every role change, oldest first.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from realms.selectors import UserAccesses, human_accesses


def format_datetime(value: datetime) -> str:
    # RFC 3339 in UTC, microseconds only when there are some, as the reference prints its DateTime.
    value = value.astimezone(timezone.utc)
    fraction = f".{value.microsecond:06d}" if value.microsecond else ""
    return f"{value:%Y-%m-%dT%H:%M:%S}{fraction}Z"


class Command(BaseCommand):
    help = "Show, per user of an organization, the realms they can access and their role history."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization", nargs="?", metavar="ORG", help="the organization id")
        parser.add_argument(
            "--organization", dest="organization_option", metavar="ORG",
            help="the organization id (the reference's spelling)",
        )
        parser.add_argument(
            "--filter", default="", metavar="WORDS",
            help="only users whose name, e-mail or user id contain every word",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        organization = options["organization"] or options["organization_option"]
        if not organization:
            raise CommandError("Give the organization: manage.py human_accesses ORG [--filter WORDS]")
        result = human_accesses(organization_id=organization, user_filter=options["filter"])
        if result is None:
            raise CommandError(f"Organization {organization!r} not found")

        humans: dict[tuple[str, str | None], list[UserAccesses]] = {}
        non_humans: list[UserAccesses] = []
        for user in result:
            if user.human_email is None:
                non_humans.append(user)
            else:
                humans.setdefault((user.human_email, user.human_label), []).append(user)

        self.stdout.write(f"Found {len(humans)} result(s)")
        for (email, label), users in humans.items():
            self.stdout.write(f"Human {self.style.SUCCESS(f'{label} <{email}>')}")
            for user in users:
                self._write_user(user, indent=1)
            self.stdout.write("")
        for user in non_humans:
            self._write_user(user, indent=0)

    def _write_user(self, user: UserAccesses, indent: int) -> None:
        tabs = "\t" * indent
        info = f"{user.profile}, created on {format_datetime(user.created_on)}"
        if user.revoked_on is not None:
            info += f", revoked on {format_datetime(user.revoked_on)}"
        self.stdout.write(f"{tabs}User {self.style.SUCCESS(user.user_id)} ({info})")
        for realm_id, granted_roles in user.realms.items():
            self.stdout.write(f"{tabs}\tRealm {self.style.WARNING(realm_id.hex)}")
            for granted in granted_roles:
                change = "Access removed" if granted.role is None else f"Access {granted.role} granted"
                self.stdout.write(f"{tabs}\t\t{format_datetime(granted.granted_on)}: {change}")
