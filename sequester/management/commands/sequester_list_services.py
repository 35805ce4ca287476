"""`manage.py sequester_list_services`: an organization's services, enabled ones first."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from sequester import services
from sequester.management import common
from sequester.models import ServiceType


class Command(common.DatabaseCommand):
    help = "List the sequester services of an organization."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", required=True, help="organization id")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            found = services.list_services(organization_id=options["organization"])
        except services.SequesterError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Found {len(found)} sequester service(s)")
        for service in [s for s in found if s.is_enabled] + [s for s in found if not s.is_enabled]:
            self.stdout.write(f"Service {service.service_label} (id: {service.service_id.hex})")
            self.stdout.write(f"\tCreated on: {service.created_on.isoformat()}")
            self.stdout.write(f"\tService type: {service.service_type}")
            if service.service_type == ServiceType.WEBHOOK:
                self.stdout.write(f"\tWebhook endpoint URL {service.webhook_url}")
            if service.disabled_on is not None:
                self.stdout.write(f"\tDisabled on: {service.disabled_on.isoformat()}")
