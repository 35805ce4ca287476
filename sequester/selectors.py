"""Sequester reads: the enabled services of an organization, for the vlob checks and `organization_config`."""
from __future__ import annotations

from sequester.models import SequesterService


def enabled_services(*, organization_pk: int) -> list[SequesterService]:
    """Enabled services, oldest first."""
    return list(
        SequesterService.objects.filter(organization_id=organization_pk, disabled_on__isnull=True).order_by(
            "created_on", "pk"
        )
    )


def enabled_service_certificates(*, organization_pk: int) -> list[bytes]:
    """Certificates of the enabled services, in creation order (organization_config)."""
    return [bytes(service.service_certificate) for service in enabled_services(organization_pk=organization_pk)]
