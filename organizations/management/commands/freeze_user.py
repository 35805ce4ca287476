"""`manage.py freeze_user ORG USER --freeze|--unfreeze`: refuse (or allow again) a user's connections.

The service of `POST /administration/organizations/<ORG>/users/freeze`: USER is a user id, or an e-mail
(anything with an `@`, the active user with that e-mail); freezing closes the user's live sessions.
"""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from organizations.services import organizations as services
from organizations.management.operator import organization_id_argument, unknown_organization
from organizations.outcomes import AdministrationError


class Command(BaseCommand):
    help = "Freeze a user (its devices can no longer connect) or unfreeze it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization_id", metavar="ORG", help="the organization id")
        parser.add_argument("user", metavar="USER", help="the user id, or the user's e-mail")
        state = parser.add_mutually_exclusive_group(required=True)
        state.add_argument("--freeze", dest="frozen", action="store_true", default=None, help="freeze the user")
        state.add_argument("--unfreeze", dest="frozen", action="store_false", help="unfreeze the user")

    def handle(self, *args: Any, **options: Any) -> None:
        organization_id = organization_id_argument(options["organization_id"])
        if options["frozen"] is None:  # call_command() does not enforce the required group
            raise CommandError("Say --freeze or --unfreeze.")
        user: str = options["user"]
        target = {"user_email": user} if "@" in user else {"user_id": user}
        outcome = services.user_freeze(organization_id=organization_id, frozen=options["frozen"], **target)
        if outcome is AdministrationError.NOT_FOUND:
            raise unknown_organization(organization_id)
        if outcome is AdministrationError.USER_NOT_FOUND:
            raise CommandError(
                f"No user `{user}` in organization {organization_id} (revoked users and users without an "
                f"e-mail cannot be frozen; see `list_users {organization_id}`)."
            )
        if isinstance(outcome, AdministrationError):
            raise CommandError(f"Cannot change user `{user}`: {outcome.value}.")
        state = "frozen" if outcome.frozen else "unfrozen"
        self.stdout.write(
            self.style.SUCCESS(f"User {outcome.user_id} ({outcome.user_name} <{outcome.user_email}>) is {state}.")
        )
