"""Database side of the handshakes: who is connecting, and may they."""
from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from invites.models import Invitation
from organizations.models import Device, Organization
from protocol import sessions
from protocol.handshake import (
    HELP_BAD_ADMINISTRATION_TOKEN,
    HELP_INVALID_IDENTITY,
    HELP_INVITATION_DELETED,
    HELP_INVITATION_NOT_FOUND,
    AuthenticatedAnswer,
    HandshakeFailed,
    InvitedAnswer,
    LegacyAdministrationAnswer,
    LegacyAnonymousAnswer,
)
from protocol.session import AdministrationSession, AnonymousSession


@dataclass(frozen=True)
class DeviceIdentity:
    organization_pk: int
    organization_id: str
    user_pk: int
    user_id: str
    device_pk: int
    device_id: str
    profile: str
    verify_key: bytes


@dataclass(frozen=True)
class InvitationIdentity:
    organization_pk: int
    organization_id: str
    invitation_pk: int
    token: uuid.UUID
    invitation_type: str
    greeter_user_pk: int


def _expired(organization: Organization) -> HandshakeFailed:
    # The reference also kicks the organization's other live sessions when it sees it expired.
    sessions.close_organization_sessions_on_commit(organization.pk)
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
        raise _expired(organization)
    if user.revoked_on is not None and user.revoked_on <= timezone.now():
        raise HandshakeFailed("revoked_device", "Device has been revoked")
    if user.frozen:
        raise HandshakeFailed("frozen_user", "User has been frozen by the server administrator")
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


def identify_invitation(answer: InvitedAnswer) -> InvitationIdentity:
    organization = Organization.objects.filter(organization_id=answer.organization_id).first()
    if organization is None:
        raise HandshakeFailed("bad_identity", HELP_INVALID_IDENTITY)
    if organization.is_expired:
        raise _expired(organization)
    invitation = Invitation.objects.filter(organization=organization, token=answer.token).first()
    if invitation is None:
        raise HandshakeFailed("bad_identity", HELP_INVITATION_NOT_FOUND)
    if invitation.deleted_on is not None:
        raise HandshakeFailed("bad_identity", HELP_INVITATION_DELETED)
    if invitation.type != answer.invitation_type:
        raise HandshakeFailed("bad_identity", HELP_INVALID_IDENTITY)
    return InvitationIdentity(
        organization_pk=organization.pk,
        organization_id=organization.organization_id,
        invitation_pk=invitation.pk,
        token=invitation.token,
        invitation_type=invitation.type,
        greeter_user_pk=invitation.greeter_id,
    )


def identify_legacy_anonymous(answer: LegacyAnonymousAnswer) -> AnonymousSession:
    """API v1 `anonymous` side, with the checks of the anonymous route (and of the 2.0 server)."""
    organization = Organization.objects.filter(organization_id=answer.organization_id).first()
    if organization is None and not settings.PARSEC.spontaneous_organization_bootstrap:
        raise HandshakeFailed("bad_identity", HELP_INVALID_IDENTITY)
    if organization is not None and organization.is_expired:
        raise _expired(organization)
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

HTTP_BAD_AUTHENTICATION = 401
HTTP_NOT_FOUND = 404
HTTP_INVITATION_DELETED = 410
HTTP_USER_REVOKED = 461
# Not a 2.17 status (the reference does not check the frozen flag over HTTP): the one the 3.x servers use.
HTTP_USER_FROZEN = 462


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
    if user.revoked_on is not None and user.revoked_on <= timezone.now():
        return HTTP_USER_REVOKED
    if user.frozen:
        return HTTP_USER_FROZEN
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


def identify_http_invitation(organization_pk: int, token: uuid.UUID) -> InvitationIdentity | int:
    invitation = (
        Invitation.objects.select_related("organization").filter(organization_id=organization_pk, token=token).first()
    )
    if invitation is None:
        return HTTP_NOT_FOUND
    if invitation.deleted_on is not None:
        return HTTP_INVITATION_DELETED
    return InvitationIdentity(
        organization_pk=invitation.organization.pk,
        organization_id=invitation.organization.organization_id,
        invitation_pk=invitation.pk,
        token=invitation.token,
        invitation_type=invitation.type,
        greeter_user_pk=invitation.greeter_id,
    )
