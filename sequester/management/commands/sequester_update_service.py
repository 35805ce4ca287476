"""`manage.py sequester_update_service --enable|--disable`: toggle a service."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from sequester import services
from sequester.management import common


class Command(common.DatabaseCommand):
    help = "Disable or re-enable a sequester service."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", required=True, help="organization id")
        parser.add_argument("--service", required=True, help="id of the service (32 hex digits)")
        parser.add_argument("--enable", action="store_true", help="enable the service")
        parser.add_argument("--disable", action="store_true", help="disable the service")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["enable"] == options["disable"]:
            raise CommandError("Give exactly one of --enable and --disable")
        service_id = common.parse_id(options["service"], "--service")
        try:
            services.update_service(organization_id=options["organization"], service_id=service_id,
                                    enable=options["enable"])
        except services.SequesterError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write("Service updated")
