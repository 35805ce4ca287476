"""`manage.py sequester_import_service_certificate`: register a service from its certificate file."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from sequester import certificates, services
from sequester.management import common


class Command(common.DatabaseCommand):
    help = "Register a sequester service in an organization from its certificate (PEM file)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--service-certificate", required=True,
                            help="PEM file made by sequester_generate_service_certificate")
        parser.add_argument("--organization", required=True, help="organization to register the service in")
        common.add_service_type_options(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        raw = common.read_file(options["service_certificate"], "--service-certificate")
        try:
            certificate = certificates.load_pem(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CommandError(f"--service-certificate {options['service_certificate']}: {exc}") from None
        try:
            service = services.register_service(
                organization_id=options["organization"], certificate=certificate,
                service_type=options["service_type"], webhook_url=options["webhook_url"],
            )
        except services.SequesterError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Service created: {service.service_label} (id: {service.service_id.hex})")
