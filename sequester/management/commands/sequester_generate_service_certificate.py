"""`manage.py sequester_generate_service_certificate`: sign a new service's certificate, offline.

The PEM file it writes is registered later with `sequester_import_service_certificate`.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from sequester import certificates
from sequester.management import common


def new_certificate(
    *, service_label: str, service_public_key: str, authority_private_key: str
) -> tuple[uuid.UUID, bytes]:
    if not service_label.strip():
        raise CommandError("--service-label must not be empty")
    encryption_key_der = common.service_public_key_der(service_public_key)
    signing_key = common.authority_private_key(authority_private_key)
    service_id = uuid.uuid4()
    data = certificates.SequesterServiceCertificate(
        timestamp=timezone.now(), service_id=service_id, service_label=service_label,
        encryption_key_der=encryption_key_der,
    )
    return service_id, certificates.sign(signing_key, data.dump())


class Command(BaseCommand):
    help = "Generate a certificate for a new sequester service (signed by the sequester authority key)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--service-label", required=True, help="name of the new service")
        parser.add_argument("--service-public-key", required=True, help="PEM file of the service's RSA public key")
        parser.add_argument("--authority-private-key", required=True,
                            help="PEM file of the organization's sequester authority RSA private key")
        parser.add_argument("--output", "-o", required=True, help="file to write the certificate to (PEM)")

    def handle(self, *args: Any, **options: Any) -> None:
        service_id, certificate = new_certificate(
            service_label=options["service_label"], service_public_key=options["service_public_key"],
            authority_private_key=options["authority_private_key"],
        )
        try:
            Path(options["output"]).write_text(certificates.dump_pem(certificate), encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot write --output {options['output']}: {exc.strerror or exc}") from None
        self.stdout.write(
            f"Sequester service certificate {options['service_label']} (id: {service_id.hex}) exported in "
            f"{options['output']}\nUse sequester_import_service_certificate to add it to an organization"
        )
