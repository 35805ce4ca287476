"""Sequester services of sequestered organizations (docs/protocol.md#sequester, docs/protocol.md#sequester-services).

A service is registered by the operator from a certificate signed by the organization's sequester
authority; it is never deleted, only disabled (and re-enabled). Blobs of storage services are kept
per vlob version, for the realm export.
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q

from organizations.models import Organization
from realms.models import VlobAtom


class ServiceType(models.TextChoices):
    STORAGE = "storage"
    WEBHOOK = "webhook"


class SequesterService(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="sequester_services")
    service_id = models.UUIDField()
    # Any length: it comes from the signed certificate, which puts no limit on it.
    service_label = models.TextField()
    # Verbatim (clients compare it byte for byte): `RSASSA-PSS-SHA256:` + signature + zlib(msgpack).
    service_certificate = models.BinaryField()
    service_type = models.CharField(max_length=8, choices=ServiceType.choices)
    webhook_url = models.TextField(null=True, blank=True)
    # The certificate's timestamp, as the reference records it.
    created_on = models.DateTimeField()
    disabled_on = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "service_id"], name="sequester_service_unique_id"),
            models.CheckConstraint(
                name="sequester_service_type_known", condition=Q(service_type__in=ServiceType.values)
            ),
            # A webhook service has its URL, a storage service none.
            models.CheckConstraint(
                name="sequester_service_webhook_url",
                condition=Q(service_type=ServiceType.WEBHOOK, webhook_url__isnull=False)
                | Q(service_type=ServiceType.STORAGE, webhook_url__isnull=True),
            ),
        ]
        ordering = ["created_on", "pk"]

    def __str__(self) -> str:
        return f"{self.service_label} ({self.service_id.hex})"

    @property
    def is_enabled(self) -> bool:
        return self.disabled_on is None


class SequesterServiceVlobAtom(models.Model):
    """The blob a storage service got for one vlob version (encrypted for the service's key)."""

    service = models.ForeignKey(SequesterService, on_delete=models.CASCADE, related_name="vlob_atoms")
    vlob_atom = models.ForeignKey(VlobAtom, on_delete=models.CASCADE, related_name="sequester_blobs")
    blob = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["service", "vlob_atom"], name="sequester_vlob_atom_unique"),
        ]
