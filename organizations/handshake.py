"""Database side of the handshakes: who is connecting, and may they (the device and API v1 sides; the
invitation side is the invites app's, invites/handshake.py). Registered into `protocol.hooks` by
`OrganizationsConfig.ready()`: the wire calls these without importing this app."""
from __future__ import annotations

import hmac

from django.conf import settings
from django.utils import timezone

from organizations.models import Device, Organization, User
from organizations.rules import revoked_at
from protocol import groups, hooks
from protocol.handshake import (
    HELP_BAD_ADMINISTRATION_TOKEN,
    HELP_INVALID_IDENTITY,
    AuthenticatedAnswer,
    HandshakeFailed,
    LegacyAdministrationAnswer,
    LegacyAnonymousAnswer,
)
from protocol.hooks import DeviceIdentity
from protocol.http import HTTP_BAD_AUTHENTICATION, HTTP_USER_FROZEN, HTTP_USER_REVOKED
from protocol.session import AdministrationSession, AnonymousSession


def register() -> None:
    hooks.identify_device.register(identify_device)
    hooks.identify_legacy_anonymous.register(identify_legacy_anonymous)
    hooks.identify_legacy_administration.register(identify_legacy_administration)
    hooks.identify_http_device.register(identify_http_device)
    hooks.find_organization.register(find_organization)


def find_organization(organization_id: str) -> Organization | None:
    """The organization an HTTP route's URL names: only what the route checks before anything else."""
    return Organization.objects.filter(organization_id=organization_id).only("pk", "is_expired").first()


def _device_identity(organization: Organization, user: User, device: Device) -> DeviceIdentity:
    """What both handshakes (/ws and HTTP) hand the wire about an accepted device."""
    return DeviceIdentity(
        organization_pk=organization.pk,
        organization_id=organization.organization_id,
        user_pk=user.pk,
        user_id=user.user_id,
        device_pk=device.pk,
        device_id=device.device_id,
        profile=user.profile,
        verify_key=bytes(device.verify_key),
    )


def organization_expired(organization: Organization) -> HandshakeFailed:
    # The reference also kicks the organization's other live sessions when it sees it expired.
    groups.close_organization_sessions_on_commit(organization.pk)
    return HandshakeFailed("organization_expired", "The organization has expired")


def identify_device(answer: AuthenticatedAnswer) -> DeviceIdentity:
    """Checks 1-5 of the authenticated handshake, in the reference's order; signature is next."""
    device = (
        Device.objects.select_related("user", "organization")
        .filter(organization__organization_id=answer.organization_id, device_id=answer.device_id)
        .first()
    )
    if device is None:
        raise HandshakeFailed("bad_identity", HELP_INVALID_IDENTITY)
    organization, user = device.organization, device.user
    if organization.root_verify_key is None or bytes(organization.root_verify_key) != answer.rvk:
        raise HandshakeFailed("rvk_mismatch", "Root verify key for organization differs between client and server")
    if organization.is_expired:
        raise organization_expired(organization)
    if revoked_at(user.revoked_on, timezone.now()):
        raise HandshakeFailed("revoked_device", "Device has been revoked")
    if user.frozen:
        raise HandshakeFailed("frozen_user", "User has been frozen by the server administrator")
    return _device_identity(organization, user, device)


def identify_legacy_anonymous(answer: LegacyAnonymousAnswer) -> AnonymousSession:
    """API v1 `anonymous` side, with the checks of the anonymous route (and of the 2.0 server)."""
    organization = Organization.objects.filter(organization_id=answer.organization_id).first()
    if organization is None and not settings.PARSEC.spontaneous_organization_bootstrap:
        raise HandshakeFailed("bad_identity", HELP_INVALID_IDENTITY)
    if organization is not None and organization.is_expired:
        raise organization_expired(organization)
    if (
        answer.rvk is not None
        and organization is not None
        and (organization.root_verify_key is None or bytes(organization.root_verify_key) != answer.rvk)
    ):
        raise HandshakeFailed("rvk_mismatch", "Root verify key for organization differs between client and server")
    return AnonymousSession(
        organization_id=answer.organization_id,
        organization_pk=organization.pk if organization is not None else None,
        api_version=answer.api_version,
    )


def identify_legacy_administration(answer: LegacyAdministrationAnswer) -> AdministrationSession:
    """API v1 `administration` side: the same token as the administration API, compared in constant time."""
    token = settings.PARSEC.administration_token
    if not token or not hmac.compare_digest(answer.token.encode(), token.encode()):
        raise HandshakeFailed("bad_admin_token", HELP_BAD_ADMINISTRATION_TOKEN)
    return AdministrationSession(api_version=answer.api_version)


# The HTTP routes' per-request handshake (docs/protocol.md#session-routes): the same identities, refusals as HTTP
# statuses.


def identify_http_device(organization_pk: int, device_id: str) -> DeviceIdentity | int:
    """The websocket handshake's device checks, for a request of an organization found not expired."""
    device = (
        Device.objects.select_related("user", "organization")
        .filter(organization_id=organization_pk, device_id=device_id)
        .first()
    )
    if device is None:
        return HTTP_BAD_AUTHENTICATION
    organization, user = device.organization, device.user
    if revoked_at(user.revoked_on, timezone.now()):
        return HTTP_USER_REVOKED
    if user.frozen:
        return HTTP_USER_FROZEN
    return _device_identity(organization, user, device)
