"""`manage.py sequester_create_service`: generate a service's certificate and register it, in one step."""
from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from sequester import services
from sequester.management import common
from sequester.management.commands.sequester_generate_service_certificate import new_certificate


class Command(common.DatabaseCommand):
    help = "Create a sequester service in an organization (certificate signed with the authority key)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--service-public-key", required=True, help="PEM file of the service's RSA public key")
        parser.add_argument("--authority-private-key", required=True,
                            help="PEM file of the organization's sequester authority RSA private key")
        parser.add_argument("--service-label", required=True, help="name of the new service")
        parser.add_argument("--organization", required=True, help="organization to register the service in")
        common.add_service_type_options(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            # Checked before the keys are read: a wrong combination is the likelier mistake.
            services.check_service_type(options["service_type"], options["webhook_url"])
            _service_id, certificate = new_certificate(
                service_label=options["service_label"], service_public_key=options["service_public_key"],
                authority_private_key=options["authority_private_key"],
            )
            service = services.register_service(
                organization_id=options["organization"], certificate=certificate,
                service_type=options["service_type"], webhook_url=options["webhook_url"],
            )
        except services.SequesterError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Service created: {service.service_label} (id: {service.service_id.hex})")
