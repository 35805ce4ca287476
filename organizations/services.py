"""Organization rules: bootstrap, lookups and administration. Plain functions holding the rules and transactions."""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Literal
from urllib.parse import quote

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from organizations.models import DEFAULT_MINIMUM_ARCHIVING_PERIOD, Device, Organization, Profile, User
from parsec_site.config import BackendAddr
from protocol import replies, sessions
from protocol.certificates import (
    DeviceCertificate,
    InvalidCertification,
    SequesterAuthorityCertificate,
    UserCertificate,
)
from protocol.replies import Reply

logger = logging.getLogger("parsec.organizations")


def find_organization_for_rpc(organization_id: str) -> Organization | None:
    return Organization.objects.filter(organization_id=organization_id).only("pk", "is_expired").first()


def new_organization_defaults() -> dict:
    """Settings of a new organization, from the server's `--organization-initial-*` options."""
    return {
        "user_profile_outsider_allowed": settings.PARSEC.organization_initial_user_profile_outsider_allowed,
        "active_users_limit": settings.PARSEC.organization_initial_active_users_limit,
    }


@dataclass(frozen=True)
class BootstrapWebhookPayload:
    organization_id: str
    device_id: str
    device_label: str | None
    human_email: str | None
    human_label: str | None


@dataclass(frozen=True)
class BootstrapOutcome:
    reply: Reply
    webhook_payload: BootstrapWebhookPayload | None = None


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
) -> BootstrapOutcome:
    now = now or timezone.now()
    try:
        user = UserCertificate.verify_and_load(user_certificate, root_verify_key)
        device = DeviceCertificate.verify_and_load(device_certificate, root_verify_key)
        redacted_user = UserCertificate.verify_and_load(redacted_user_certificate, root_verify_key)
        redacted_device = DeviceCertificate.verify_and_load(redacted_device_certificate, root_verify_key)
    except InvalidCertification as exc:
        return BootstrapOutcome(replies.reply("invalid_certification", reason=exc.reason))

    if user.profile != Profile.ADMIN:
        return BootstrapOutcome(replies.reply("invalid_data", reason="Bootstrapping user must have admin profile."))
    if user.timestamp != device.timestamp:
        return BootstrapOutcome(
            replies.reply("invalid_data", reason="Device and user certificates must have the same timestamp.")
        )
    if device.device_id.split("@", 1)[0] != user.user_id:
        return BootstrapOutcome(replies.reply("invalid_data", reason="Device and user must have the same user ID."))
    if not replies.timestamp_in_ballpark(user.timestamp, now):
        return BootstrapOutcome(replies.bad_timestamp(now=now, client_timestamp=user.timestamp))
    if not redacted_user.is_redacted_twin_of(user):
        return BootstrapOutcome(replies.reply("invalid_data", reason="Redacted user certificate differs from user certificate."))
    if not redacted_device.is_redacted_twin_of(device):
        return BootstrapOutcome(
            replies.reply("invalid_data", reason="Redacted device certificate differs from device certificate.")
        )

    sequester_authority = None
    if sequester_authority_certificate is not None:
        try:
            sequester_authority = SequesterAuthorityCertificate.verify_and_load(
                sequester_authority_certificate, root_verify_key
            )
        except InvalidCertification as exc:
            return BootstrapOutcome(replies.reply("invalid_data", reason=exc.reason))
        if sequester_authority.author is not None:
            return BootstrapOutcome(
                replies.reply("invalid_data", reason="Sequester authority certificate must be signed by the root key.")
            )
        if not replies.timestamp_in_ballpark(sequester_authority.timestamp, now):
            return BootstrapOutcome(replies.bad_timestamp(now=now, client_timestamp=sequester_authority.timestamp))
        if sequester_authority.timestamp != user.timestamp:
            return BootstrapOutcome(
                replies.reply(
                    "invalid_data", reason="Sequester authority and user certificates must have the same timestamp."
                )
            )

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
            return BootstrapOutcome(replies.reply("not_found"))
        if organization.root_verify_key is not None:
            return BootstrapOutcome(replies.reply("already_bootstrapped"))
        if organization.bootstrap_token != bootstrap_token:
            return BootstrapOutcome(replies.reply("not_found"))

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
            return BootstrapOutcome(replies.reply("already_bootstrapped"))

    return BootstrapOutcome(
        replies.ok(),
        BootstrapWebhookPayload(
            organization_id=organization_id,
            device_id=device.device_id,
            device_label=device.device_label,
            human_email=user.human_handle.email if user.human_handle else None,
            human_label=user.human_handle.label if user.human_handle else None,
        ),
    )


@dataclass(frozen=True)
class OrganizationConfig:
    user_profile_outsider_allowed: bool
    active_users_limit: int | None
    minimum_archiving_period: int
    # Both None for a non-sequestered organization; the list may be empty for a sequestered one.
    sequester_authority_certificate: bytes | None
    sequester_services_certificates: list[bytes] | None


def _enabled_sequester_service_certificates(organization: Organization) -> list[bytes]:
    """Certificates of the organization's enabled sequester services, in creation order."""
    # Imported here: the sequester app builds on organizations and realms, not the reverse.
    from sequester.services import enabled_service_certificates

    return enabled_service_certificates(organization_pk=organization.pk)


def organization_config(*, organization_pk: int) -> OrganizationConfig | None:
    """What `organization_config` tells a connected client; None if the organization vanished."""
    organization = Organization.objects.filter(pk=organization_pk).first()
    if organization is None:
        return None
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


# --- Administration: organizations, statistics, freezing -------------------------------------------------------
#
# The administration API (`administration.py`), the `create_organization` management command and the Django
# admin all go through these functions.


class _Unset(Enum):
    UNSET = "UNSET"


# "Key absent from the request": `None` cannot say it, it means "no limit" for `active_users_limit`.
UNSET = _Unset.UNSET


class AdministrationError(StrEnum):
    """Administration outcomes that are not successes; the value is the API's `error` (or a tag for `bad_data`)."""

    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    USER_NOT_FOUND = "user_not_found"
    NO_USER_ID_NOR_EMAIL = "no_user_id_nor_email"
    BOTH_USER_ID_AND_EMAIL = "both_user_id_and_email"


# The outcome of the functions whose only failure is an unknown organization: `is NOT_FOUND` narrows it.
NotFound = Literal[AdministrationError.NOT_FOUND]


def generate_bootstrap_token() -> str:
    return secrets.token_hex(32)


def organization_bootstrap_url(*, organization_id: str, bootstrap_token: str, backend_addr: BackendAddr) -> str:
    """`parsec://host[:port]/<org>?[no_ssl=true&]action=bootstrap_organization&token=<token>` (docs/protocol.md#urls)"""
    return backend_addr.to_url(
        path="/" + quote(organization_id, safe=""),
        query=f"action=bootstrap_organization&token={bootstrap_token}",
    )


@dataclass(frozen=True)
class OrganizationCreated:
    organization: Organization
    bootstrap_token: str


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
            sessions.close_organization_sessions_on_commit(organization.pk)
    return organization


@dataclass(frozen=True)
class UsersPerProfileDetail:
    profile: str
    active: int
    revoked: int

    def as_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "active": self.active, "revoked": self.revoked}


@dataclass(frozen=True)
class OrganizationStats:
    organization_id: str
    data_size: int
    metadata_size: int
    realms: int
    users: int
    active_users: int
    # Always ADMIN, STANDARD, OUTSIDER, in this order (docs/protocol.md#organization-stats).
    users_per_profile_detail: tuple[UsersPerProfileDetail, ...]


@dataclass(frozen=True)
class RealmDataStats:
    data_size: int = 0
    metadata_size: int = 0
    realms: int = 0


def _realm_data_stats(organization: Organization, at: datetime | None) -> RealmDataStats:
    """Blocks size (`data_size`), vlob versions size (`metadata_size`) and realm count of the organization.

    Counts only what exists at `at` (None = now). The sums over the realm, vlob and block tables belong to the
    workspaces apps (`realms.services.realm_data_stats`).
    """
    # Imported here: the realms app builds on this one, not the other way round.
    from realms.services import realm_data_stats

    return RealmDataStats(**realm_data_stats(organization.pk, at))


def _users_per_profile(
    organization_pks: list[int], at: datetime | None
) -> dict[int, dict[str, UsersPerProfileDetail]]:
    users = User.objects.filter(organization_id__in=organization_pks)
    if at is None:
        revoked = Q(revoked_on__isnull=False)
    else:
        users = users.filter(created_on__lte=at)
        # A user revoked after `at` was still active then.
        revoked = Q(revoked_on__lte=at)
    rows = users.values("organization_id", "profile").annotate(
        total=Count("pk"), revoked=Count("pk", filter=revoked)
    )
    counts: dict[int, dict[str, UsersPerProfileDetail]] = {pk: {} for pk in organization_pks}
    for row in rows:
        counts[row["organization_id"]][row["profile"]] = UsersPerProfileDetail(
            profile=row["profile"], active=row["total"] - row["revoked"], revoked=row["revoked"]
        )
    return counts


def _stats(
    organization: Organization, per_profile: dict[str, UsersPerProfileDetail], at: datetime | None
) -> OrganizationStats:
    detail = tuple(
        per_profile.get(profile, UsersPerProfileDetail(profile=profile, active=0, revoked=0))
        for profile in (Profile.ADMIN.value, Profile.STANDARD.value, Profile.OUTSIDER.value)
    )
    realm_data = _realm_data_stats(organization, at)
    active = sum(item.active for item in detail)
    return OrganizationStats(
        organization_id=organization.organization_id,
        data_size=realm_data.data_size,
        metadata_size=realm_data.metadata_size,
        realms=realm_data.realms,
        users=active + sum(item.revoked for item in detail),
        active_users=active,
        users_per_profile_detail=detail,
    )


def organization_stats(*, organization_id: str) -> OrganizationStats | NotFound:
    """Current statistics of one organization (administration API and the `organization_stats` command)."""
    organization = Organization.objects.filter(organization_id=organization_id).first()
    if organization is None:
        return AdministrationError.NOT_FOUND
    return _stats(organization, _users_per_profile([organization.pk], None)[organization.pk], None)


def server_stats(*, at: datetime | None = None) -> list[OrganizationStats]:
    """Statistics of every organization that existed at `at` (default now), counting only what existed then."""
    at = at or timezone.now()
    organizations = list(Organization.objects.filter(created_on__lte=at).order_by("organization_id"))
    per_profile = _users_per_profile([organization.pk for organization in organizations], at)
    return [_stats(organization, per_profile[organization.pk], at) for organization in organizations]


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
        sessions.close_user_sessions_on_commit(user.pk)
    return HumanUserItem.from_user(user)
