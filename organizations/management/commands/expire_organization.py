"""`manage.py expire_organization ORG`: expire an organization; its users are disconnected and refused.

The service of `PATCH /administration/organizations/<ORG>` with `{"is_expired": true}` (the API, or the
console's organization page, can re-enable it).
"""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from organizations.services import organizations as services
from organizations.management.operator import organization_id_argument, unknown_organization
from organizations.models import Organization
from organizations.outcomes import AdministrationError


class Command(BaseCommand):
    help = "Expire an organization: its sessions are closed and its users can no longer connect."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization_id", metavar="ORG", help="the organization id")

    def handle(self, *args: Any, **options: Any) -> None:
        organization_id = organization_id_argument(options["organization_id"])
        current = services.organization_get(organization_id=organization_id)
        if current is AdministrationError.NOT_FOUND:
            raise unknown_organization(organization_id)
        if current.is_expired:
            # Expiring again would only move the expiry date (what the API does); keep the first one.
            self.stdout.write(f"Organization {organization_id} is already expired (since {_when(current)}).")
            return
        organization = services.organization_update(organization_id=organization_id, is_expired=True)
        if organization is AdministrationError.NOT_FOUND:  # erased meanwhile
            raise unknown_organization(organization_id)
        self.stdout.write(self.style.SUCCESS(f"Organization {organization_id} expired on {_when(organization)}."))


def _when(organization: Organization) -> str:
    return f"{organization.expired_on:%Y-%m-%d %H:%M:%S %Z}" if organization.expired_on else "an unknown date"
