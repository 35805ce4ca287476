"""Organization rules: bootstrap, lookups and administration. Plain functions holding the rules and transactions."""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from organizations import hooks, selectors
from organizations.models import DEFAULT_MINIMUM_ARCHIVING_PERIOD, Device, Organization, Profile, User
from organizations.outcomes import (
    AdministrationError,
    BadTimestamp,
    Bootstrapped,
    BootstrapWebhookPayload,
    Explained,
    NotFound,
    OrganizationConfig,
    OrganizationCreated,
    OrganizationStats,
    Refused,
)
from parsec_site.addr import BackendAddr
from protocol import groups, replies
from protocol.certificates import (
    DeviceCertificate,
    InvalidCertification,
    SequesterAuthorityCertificate,
    UserCertificate,
)
from protocol.session import AuthenticatedSession

logger = logging.getLogger("parsec.organizations")


def new_organization_defaults() -> dict:
    """Settings of a new organization, from the server's `--organization-initial-*` options."""
    return {
        "user_profile_outsider_allowed": settings.PARSEC.organization_initial_user_profile_outsider_allowed,
        "active_users_limit": settings.PARSEC.organization_initial_active_users_limit,
    }


def organization_bootstrap(
    *,
    organization_id: str,
    bootstrap_token: str,
    root_verify_key: bytes,
    user_certificate: bytes,
    device_certificate: bytes,
    redacted_user_certificate: bytes,
    redacted_device_certificate: bytes,
    sequester_authority_certificate: bytes | None,
    now: datetime | None = None,
) -> Bootstrapped | Refused | Explained | BadTimestamp:
    now = now or timezone.now()
    try:
        user = UserCertificate.verify_and_load(user_certificate, root_verify_key)
        device = DeviceCertificate.verify_and_load(device_certificate, root_verify_key)
        redacted_user = UserCertificate.verify_and_load(redacted_user_certificate, root_verify_key)
        redacted_device = DeviceCertificate.verify_and_load(redacted_device_certificate, root_verify_key)
    except InvalidCertification as exc:
        return Explained(Refused.INVALID_CERTIFICATION, exc.reason)

    if user.profile != Profile.ADMIN:
        return Explained(Refused.INVALID_DATA, "Bootstrapping user must have admin profile.")
    if user.timestamp != device.timestamp:
        return Explained(Refused.INVALID_DATA, "Device and user certificates must have the same timestamp.")
    if device.device_id.split("@", 1)[0] != user.user_id:
        return Explained(Refused.INVALID_DATA, "Device and user must have the same user ID.")
    if not replies.timestamp_in_ballpark(user.timestamp, now):
        return BadTimestamp(now=now, client_timestamp=user.timestamp)
    if not redacted_user.is_redacted_twin_of(user):
        return Explained(Refused.INVALID_DATA, "Redacted user certificate differs from user certificate.")
    if not redacted_device.is_redacted_twin_of(device):
        return Explained(Refused.INVALID_DATA, "Redacted device certificate differs from device certificate.")

    sequester_authority = None
    if sequester_authority_certificate is not None:
        try:
            sequester_authority = SequesterAuthorityCertificate.verify_and_load(
                sequester_authority_certificate, root_verify_key
            )
        except InvalidCertification as exc:
            return Explained(Refused.INVALID_DATA, exc.reason)
        if sequester_authority.author is not None:
            return Explained(Refused.INVALID_DATA, "Sequester authority certificate must be signed by the root key.")
        if not replies.timestamp_in_ballpark(sequester_authority.timestamp, now):
            return BadTimestamp(now=now, client_timestamp=sequester_authority.timestamp)
        if sequester_authority.timestamp != user.timestamp:
            return Explained(Refused.INVALID_DATA, "Sequester authority and user certificates must have the same timestamp.")

    with transaction.atomic():
        if settings.PARSEC.spontaneous_organization_bootstrap:
            # An organization nobody created yet is created on the fly, with an empty token.
            Organization.objects.get_or_create(
                organization_id=organization_id,
                defaults={"bootstrap_token": "", "created_on": now, **new_organization_defaults()},
            )
        # Serialises concurrent bootstraps of one organization: only one may set the root key.
        organization = Organization.objects.select_for_update().filter(organization_id=organization_id).first()
        if organization is None:
            return Refused.NOT_FOUND
        if organization.root_verify_key is not None:
            return Refused.ALREADY_BOOTSTRAPPED
        if organization.bootstrap_token != bootstrap_token:
            return Refused.NOT_FOUND

        organization.root_verify_key = root_verify_key
        organization.bootstrapped_on = now
        if sequester_authority is not None:
            organization.sequester_authority_certificate = sequester_authority_certificate
            organization.sequester_authority_verify_key_der = sequester_authority.verify_key_der
        organization.save()
        try:
            with transaction.atomic():
                user_row = User.objects.create(
                    organization=organization,
                    user_id=user.user_id,
                    human_email=user.human_handle.email if user.human_handle else None,
                    human_label=user.human_handle.label if user.human_handle else None,
                    profile=user.profile,
                    user_certificate=user_certificate,
                    redacted_user_certificate=redacted_user_certificate,
                    user_certifier=None,
                    created_on=user.timestamp,
                )
                Device.objects.create(
                    organization=organization,
                    user=user_row,
                    device_id=device.device_id,
                    device_label=device.device_label,
                    verify_key=device.verify_key,
                    device_certificate=device_certificate,
                    redacted_device_certificate=redacted_device_certificate,
                    device_certifier=None,
                    created_on=device.timestamp,
                )
        except IntegrityError:
            # Leftovers of an earlier, interrupted organization with the same id.
            return Refused.ALREADY_BOOTSTRAPPED

    return Bootstrapped(
        BootstrapWebhookPayload(
            organization_id=organization_id,
            device_id=device.device_id,
            device_label=device.device_label,
            human_email=user.human_handle.email if user.human_handle else None,
            human_label=user.human_handle.label if user.human_handle else None,
        ),
    )


def _enabled_sequester_service_certificates(organization: Organization) -> list[bytes]:
    """Certificates of the organization's enabled sequester services, in creation order."""
    # Through a hook the sequester app fills: it builds on organizations, not the reverse.
    return hooks.enabled_sequester_service_certificates(organization_pk=organization.pk)


def organization_config(*, organization_pk: int) -> OrganizationConfig | Refused:
    """What `organization_config` tells a connected client; NOT_FOUND if the organization vanished."""
    organization = Organization.objects.filter(pk=organization_pk).first()
    if organization is None:
        return Refused.NOT_FOUND
    sequestered = organization.sequester_authority_certificate is not None
    return OrganizationConfig(
        user_profile_outsider_allowed=organization.user_profile_outsider_allowed,
        active_users_limit=organization.active_users_limit,
        minimum_archiving_period=organization.minimum_archiving_period,
        sequester_authority_certificate=(
            None if organization.sequester_authority_certificate is None
            else bytes(organization.sequester_authority_certificate)
        ),
        sequester_services_certificates=_enabled_sequester_service_certificates(organization) if sequestered else None,
    )


def organization_stats(*, session: AuthenticatedSession) -> OrganizationStats | Refused | NotFound:
    """The wire's `organization_stats`: ADMIN only (the reference sends no explanation); the figures are the
    administration API's."""
    if session.profile != Profile.ADMIN:
        return Refused.NOT_ALLOWED
    return selectors.organization_stats(organization_id=session.organization_id)


# --- Administration: organizations, freezing ------------------------------------------------------------------
#
# The administration API (`administration.py`), the `create_organization` management command and the Django
# admin all go through these functions. The statistics, reads, are in `organizations.selectors`.


class _Unset(Enum):
    UNSET = "UNSET"


# "Key absent from the request": `None` cannot say it, it means "no limit" for `active_users_limit`.
UNSET = _Unset.UNSET


def generate_bootstrap_token() -> str:
    return secrets.token_hex(32)


def organization_bootstrap_url(*, organization_id: str, bootstrap_token: str, backend_addr: BackendAddr) -> str:
    """`parsec://host[:port]/<org>?[no_ssl=true&]action=bootstrap_organization&token=<token>` (docs/protocol.md#urls)"""
    return backend_addr.to_url(
        path="/" + quote(organization_id, safe=""),
        query=f"action=bootstrap_organization&token={bootstrap_token}",
    )


def organization_create(
    *,
    organization_id: str,
    user_profile_outsider_allowed: bool | _Unset = UNSET,
    active_users_limit: int | _Unset | None = UNSET,
    minimum_archiving_period: int | _Unset = UNSET,
    now: datetime | None = None,
) -> OrganizationCreated | AdministrationError:
    """Create the organization, or re-create it (new token, settings reset) while it is not bootstrapped."""
    now = now or timezone.now()
    defaults = new_organization_defaults()
    fields: dict[str, Any] = {
        "bootstrap_token": generate_bootstrap_token(),
        "user_profile_outsider_allowed": defaults["user_profile_outsider_allowed"]
        if user_profile_outsider_allowed is UNSET
        else user_profile_outsider_allowed,
        "active_users_limit": defaults["active_users_limit"] if active_users_limit is UNSET else active_users_limit,
        "minimum_archiving_period": DEFAULT_MINIMUM_ARCHIVING_PERIOD
        if minimum_archiving_period is UNSET
        else minimum_archiving_period,
        "created_on": now,
        "is_expired": False,
        "expired_on": None,
    }
    # Two attempts: a concurrent create of the same id may win the INSERT, then we re-create over it.
    for _ in range(2):
        with transaction.atomic():
            # Serialises with `organization_bootstrap`: a bootstrapped organization is never re-created.
            organization = Organization.objects.select_for_update().filter(organization_id=organization_id).first()
            if organization is None:
                try:
                    with transaction.atomic():
                        organization = Organization.objects.create(organization_id=organization_id, **fields)
                except IntegrityError:
                    continue
                return OrganizationCreated(organization, fields["bootstrap_token"])
            if organization.is_bootstrapped:
                return AdministrationError.ALREADY_EXISTS
            for name, value in fields.items():
                setattr(organization, name, value)
            organization.save(update_fields=list(fields))
            return OrganizationCreated(organization, fields["bootstrap_token"])
    return AdministrationError.ALREADY_EXISTS


def organization_get(*, organization_id: str) -> Organization | NotFound:
    organization = Organization.objects.filter(organization_id=organization_id).first()
    return AdministrationError.NOT_FOUND if organization is None else organization


def organization_update(
    *,
    organization_id: str,
    is_expired: bool | _Unset = UNSET,
    user_profile_outsider_allowed: bool | _Unset = UNSET,
    active_users_limit: int | _Unset | None = UNSET,
    minimum_archiving_period: int | _Unset = UNSET,
    now: datetime | None = None,
) -> Organization | NotFound:
    """Change the given settings only; expiring closes every authenticated session of the organization."""
    now = now or timezone.now()
    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("user_profile_outsider_allowed", user_profile_outsider_allowed),
            ("active_users_limit", active_users_limit),
            ("minimum_archiving_period", minimum_archiving_period),
        )
        if value is not UNSET
    }
    if is_expired is not UNSET:
        changes["is_expired"] = is_expired
        # As the reference: the date of the latest expiration, cleared when re-enabled.
        changes["expired_on"] = now if is_expired else None
    with transaction.atomic():
        # Concurrent updates (and bootstraps) of one organization apply one after the other.
        organization = Organization.objects.select_for_update().filter(organization_id=organization_id).first()
        if organization is None:
            return AdministrationError.NOT_FOUND
        if not changes:
            return organization
        for name, value in changes.items():
            setattr(organization, name, value)
        organization.save(update_fields=list(changes))
        if is_expired is True:
            groups.close_organization_sessions_on_commit(organization.pk)
    return organization


@dataclass(frozen=True)
class HumanUserItem:
    user_id: str
    user_email: str
    user_name: str
    frozen: bool

    @classmethod
    def from_user(cls, user: User) -> HumanUserItem:
        assert user.human_email is not None and user.human_label is not None
        return cls(user_id=user.user_id, user_email=user.human_email, user_name=user.human_label, frozen=user.frozen)


def organization_users(*, organization_id: str) -> list[HumanUserItem] | NotFound:
    """The users with a human handle, revoked ones included, in creation order."""
    organization = Organization.objects.filter(organization_id=organization_id).first()
    if organization is None:
        return AdministrationError.NOT_FOUND
    users = User.objects.filter(organization=organization, human_email__isnull=False).order_by("created_on", "pk")
    return [HumanUserItem.from_user(user) for user in users]


def user_freeze_target_error(*, user_id: str | None, user_email: str | None) -> AdministrationError | None:
    """A user to freeze is designated by exactly one of its id and its e-mail."""
    if user_id is None and user_email is None:
        return AdministrationError.NO_USER_ID_NOR_EMAIL
    if user_id is not None and user_email is not None:
        return AdministrationError.BOTH_USER_ID_AND_EMAIL
    return None


def user_freeze(
    *, organization_id: str, frozen: bool, user_id: str | None = None, user_email: str | None = None
) -> HumanUserItem | AdministrationError:
    """Freeze or unfreeze a user found by id or by e-mail; its live sessions are closed either way."""
    target_error = user_freeze_target_error(user_id=user_id, user_email=user_email)
    if target_error is not None:
        return target_error
    with transaction.atomic():
        organization = Organization.objects.filter(organization_id=organization_id).first()
        if organization is None:
            return AdministrationError.NOT_FOUND
        users = User.objects.select_for_update().filter(organization=organization)
        if user_id is not None:
            user = users.filter(user_id=user_id).first()
        else:
            # Revocation frees an e-mail, so several users may share it: only the active one counts.
            user = users.filter(human_email=user_email, revoked_on__isnull=True).first()
        if user is None or user.human_email is None or user.revoked_on is not None:
            return AdministrationError.USER_NOT_FOUND
        user.frozen = frozen
        user.save(update_fields=["frozen"])
        groups.close_user_sessions_on_commit(user.pk)
    return HumanUserItem.from_user(user)
