"""Sequester rules: the blob-set check of vlob writes (docs/protocol.md#sequester-checks), the webhook POSTs, the
storage of storage services' blobs, and the operator's service management (docs/protocol.md#sequester-services).

Vlob writes call, in order: `check_sequester_blob` (no lock, before the write transaction),
`post_to_webhooks` (outside any transaction: an HTTP round trip must not hold the realm lock or a
database connection's transaction open), then `store_blobs` inside the write transaction.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field

import httpx
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from organizations.models import Organization
from protocol.certificates import InvalidCertification
from realms.models import VlobAtom
from sequester import certificates
from sequester.selectors import enabled_services
from sequester.models import SequesterService, SequesterServiceVlobAtom, ServiceType
from sequester.outcomes import RejectedBySequesterService, SequesterInconsistency, SequesterOutcome, SequesterRefusal

logger = logging.getLogger("parsec.sequester")

NO_REASON = "File rejected (no reason)"


# --- vlob writes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookDelivery:
    service_id: uuid.UUID
    service_label: str
    url: str
    blob: bytes


@dataclass(frozen=True)
class SequesterCheck:
    """What a vlob write must do about its `sequester_blob`; `refusal` is reported after the access checks."""

    # False for a nil `sequester_blob`: nothing read, the write's state read says if services are enabled.
    checked: bool = True
    refusal: SequesterOutcome | None = None
    # (service pk, blob) of the enabled storage services.
    storage: list[tuple[int, bytes]] = field(default_factory=list)
    webhooks: list[WebhookDelivery] = field(default_factory=list)


NIL_BLOB = SequesterCheck(checked=False)


def check_sequester_blob(*, organization_pk: int, sequester_blob: dict[uuid.UUID, bytes] | None) -> SequesterCheck:
    """The §6.8 consistency check of a given blob set against the services enabled now.

    A nil blob set is left to the write's locked state read (`NIL_BLOB`): most writes have none, and
    the common case (plain organization) then costs no query here.
    """
    if sequester_blob is None:
        return NIL_BLOB
    authority = (
        Organization.objects.filter(pk=organization_pk)
        .values_list("sequester_authority_certificate", flat=True)
        .first()
    )
    if authority is None:
        return SequesterCheck(refusal=SequesterRefusal.NOT_A_SEQUESTERED_ORGANIZATION)
    services = enabled_services(organization_pk=organization_pk)
    given = sequester_blob
    if set(given) != {service.service_id for service in services}:
        return SequesterCheck(refusal=_inconsistency(authority, services))
    return SequesterCheck(
        storage=[(s.pk, given[s.service_id]) for s in services if s.service_type == ServiceType.STORAGE],
        webhooks=[
            WebhookDelivery(s.service_id, s.service_label, s.webhook_url, given[s.service_id])
            for s in services
            if s.service_type == ServiceType.WEBHOOK and s.webhook_url is not None
        ],
    )


def _inconsistency(authority: bytes | memoryview, services: list[SequesterService]) -> SequesterInconsistency:
    return SequesterInconsistency(
        authority_certificate=bytes(authority),
        services_certificates=[bytes(service.service_certificate) for service in services],
    )


def nil_blob_refusal(*, organization_pk: int) -> SequesterInconsistency:
    """A nil blob set while services are enabled (the PostgreSQL reference accepts nil only without)."""
    authority = Organization.objects.values_list("sequester_authority_certificate", flat=True).get(pk=organization_pk)
    # Services exist only in an organization bootstrapped with a sequester authority.
    assert authority is not None
    return _inconsistency(authority, enabled_services(organization_pk=organization_pk))


def _rejection_reason(response: httpx.Response) -> str:
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("reason"), str):
        return body["reason"]
    logger.warning("Sequester webhook rejected a blob without a JSON reason: %r", response.content[:200])
    return NO_REASON


def post_to_webhooks(*, organization_id: str, webhooks: list[WebhookDelivery]) -> SequesterOutcome | None:
    """POSTs each blob to its service; the first refusal or failure is the reply, None when all accepted.

    Must be called outside any transaction (no lock or open transaction while waiting on a service).
    """
    if not webhooks:
        return None
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        # Back to the pool while waiting: a slow service must not starve other sessions of
        # connections. The write that follows takes one again.
        connection.close()
    with httpx.Client(timeout=settings.SEQUESTER_WEBHOOK_TIMEOUT, follow_redirects=True) as client:
        for delivery in webhooks:
            try:
                response = client.post(
                    delivery.url,
                    params={"organization_id": organization_id, "service_id": delivery.service_id.hex},
                    content=delivery.blob,
                )
            except httpx.HTTPError as exc:
                logger.warning("Sequester webhook %s unreachable: %s", delivery.service_id.hex, exc)
                return SequesterRefusal.SERVICE_UNAVAILABLE
            if response.is_success:
                continue
            if response.status_code == 400:
                return RejectedBySequesterService(
                    service_id=delivery.service_id,
                    service_label=delivery.service_label,
                    reason=_rejection_reason(response),
                )
            logger.warning("Sequester webhook %s answered HTTP %s", delivery.service_id.hex, response.status_code)
            return SequesterRefusal.SERVICE_UNAVAILABLE
    return None


def store_blobs(
    *,
    organization_pk: int,
    vlob_id: uuid.UUID,
    encryption_revision: int,
    version: int,
    storage: list[tuple[int, bytes]],
) -> None:
    """Keeps the storage services' blobs of a version just written (same transaction as the version)."""
    if not storage:
        return
    atom_pk = VlobAtom.objects.values_list("pk", flat=True).get(
        organization_id=organization_pk, vlob_id=vlob_id, encryption_revision=encryption_revision, version=version
    )
    SequesterServiceVlobAtom.objects.bulk_create(
        [
            SequesterServiceVlobAtom(service_id=service_pk, vlob_atom_id=atom_pk, blob=blob)
            for service_pk, blob in storage
        ]
    )


# --- operator management ------------------------------------------------------------------------


class SequesterError(Exception):
    """A management request that cannot be done; the message is for the operator."""


def sequestered_organization(organization_id: str) -> Organization:
    organization = Organization.objects.filter(organization_id=organization_id).first()
    if organization is None:
        raise SequesterError(f"Organization `{organization_id}` doesn't exist")
    if not organization.is_bootstrapped:
        raise SequesterError(f"Organization `{organization_id}` is not bootstrapped")
    if organization.sequester_authority_certificate is None:
        raise SequesterError(f"Organization `{organization_id}` is not a sequestered organization")
    return organization


def check_service_type(service_type: str, webhook_url: str | None) -> ServiceType:
    if service_type not in ServiceType.values:
        raise SequesterError(f"Unknown service type `{service_type}` (storage or webhook)")
    if service_type == ServiceType.WEBHOOK:
        if not webhook_url:
            raise SequesterError("Webhook sequester service requires --webhook-url")
        try:
            parsed = httpx.URL(webhook_url)
        except (httpx.InvalidURL, TypeError, ValueError):
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise SequesterError(f"Invalid --webhook-url `{webhook_url}`: an http:// or https:// URL is expected")
    elif webhook_url is not None:
        raise SequesterError("--webhook-url can only be used with --service-type webhook")
    return ServiceType(service_type)


def register_service(
    *, organization_id: str, certificate: bytes, service_type: str, webhook_url: str | None = None
) -> SequesterService:
    """Registers a service from its signed certificate (timestamp not checked: made in advance)."""
    kind = check_service_type(service_type, webhook_url)
    organization = sequestered_organization(organization_id)
    assert organization.sequester_authority_verify_key_der is not None  # stored with the authority certificate
    try:
        data = certificates.verify_and_load(certificate, bytes(organization.sequester_authority_verify_key_der))
    except (InvalidCertification, certificates.BadKey) as exc:
        raise SequesterError(f"Invalid sequester service certificate: {exc}") from None
    try:
        with transaction.atomic():
            return SequesterService.objects.create(
                organization=organization,
                service_id=data.service_id,
                service_label=data.service_label,
                service_certificate=bytes(certificate),
                service_type=kind,
                webhook_url=webhook_url if kind == ServiceType.WEBHOOK else None,
                created_on=data.timestamp,
            )
    except IntegrityError:
        raise SequesterError(f"Sequester service `{data.service_id.hex}` already exists") from None


def list_services(*, organization_id: str) -> list[SequesterService]:
    organization = sequestered_organization(organization_id)
    return list(SequesterService.objects.filter(organization=organization).order_by("created_on", "pk"))


def get_service(*, organization: Organization, service_id: uuid.UUID) -> SequesterService:
    service = SequesterService.objects.filter(organization=organization, service_id=service_id).first()
    if service is None:
        raise SequesterError(f"Sequester service `{service_id.hex}` doesn't exist in `{organization.organization_id}`")
    return service


def update_service(*, organization_id: str, service_id: uuid.UUID, enable: bool) -> SequesterService:
    organization = sequestered_organization(organization_id)
    with transaction.atomic():
        service = get_service(organization=organization, service_id=service_id)
        service = SequesterService.objects.select_for_update().get(pk=service.pk)
        if enable and service.is_enabled:
            raise SequesterError(f"Sequester service `{service_id.hex}` is already enabled")
        if not enable and not service.is_enabled:
            raise SequesterError(f"Sequester service `{service_id.hex}` is already disabled")
        service.disabled_on = None if enable else timezone.now()
        service.save(update_fields=["disabled_on"])
    return service
