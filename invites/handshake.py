"""Database side of the invited handshakes (/ws and `POST /invited/<org>`): which invitation is claimed, and
may it be. Registered into `protocol.hooks` by `InvitesConfig.ready()`: the wire calls these without importing
this app, and the organizations app, below this one, does not know invitations."""
from __future__ import annotations

import uuid

from invites.models import Invitation
from organizations.handshake import organization_expired
from organizations.models import Organization
from protocol import hooks
from protocol.handshake import (
    HELP_INVALID_IDENTITY,
    HELP_INVITATION_DELETED,
    HELP_INVITATION_NOT_FOUND,
    HandshakeFailed,
    InvitedAnswer,
)
from protocol.hooks import InvitationIdentity
from protocol.http import HTTP_INVITATION_DELETED, HTTP_NOT_FOUND


def register() -> None:
    hooks.identify_invitation.register(identify_invitation)
    hooks.identify_http_invitation.register(identify_http_invitation)


def identify_invitation(answer: InvitedAnswer) -> InvitationIdentity:
    organization = Organization.objects.filter(organization_id=answer.organization_id).first()
    if organization is None:
        raise HandshakeFailed("bad_identity", HELP_INVALID_IDENTITY)
    if organization.is_expired:
        raise organization_expired(organization)
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


def identify_http_invitation(organization_pk: int, token: uuid.UUID) -> InvitationIdentity | int:
    """The same invitation checks for a request of an organization found not expired; refusals as HTTP statuses."""
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
