"""Reads of the organizations app for operators: the statistics of organizations.

Used by the administration API, the `organization_stats` command, the console and `server_stats`. The
users come from this app's rows; the realm, vlob and block figures from the selector the realms app
registers in `organizations.hooks` (this app imports none of the apps built on it).
"""
from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Q
from django.utils import timezone

from organizations import hooks
from organizations.models import Organization, Profile, User
from organizations.outcomes import AdministrationError, NotFound, OrganizationStats, UsersPerProfileDetail

# The order of `users_per_profile_detail` (docs/protocol.md#organization-stats).
PROFILES = (Profile.ADMIN.value, Profile.STANDARD.value, Profile.OUTSIDER.value)


def users_per_profile(
    organization_pks: list[int], at: datetime | None
) -> dict[int, tuple[UsersPerProfileDetail, ...]]:
    """Active and revoked users of each organization per profile, always ADMIN, STANDARD, OUTSIDER.

    Counts only the users that existed at `at` (None = now); a user revoked after `at` was still active then.
    """
    users = User.objects.filter(organization_id__in=organization_pks)
    if at is None:
        revoked = Q(revoked_on__isnull=False)
    else:
        users = users.filter(created_on__lte=at)
        revoked = Q(revoked_on__lte=at)
    rows = users.values("organization_id", "profile").annotate(
        total=Count("pk"), revoked=Count("pk", filter=revoked)
    )
    counts: dict[int, dict[str, UsersPerProfileDetail]] = {pk: {} for pk in organization_pks}
    for row in rows:
        counts[row["organization_id"]][row["profile"]] = UsersPerProfileDetail(
            profile=row["profile"], active=row["total"] - row["revoked"], revoked=row["revoked"]
        )
    return {
        pk: tuple(
            per_profile.get(profile, UsersPerProfileDetail(profile=profile, active=0, revoked=0))
            for profile in PROFILES
        )
        for pk, per_profile in counts.items()
    }


def _stats(
    organization: Organization, detail: tuple[UsersPerProfileDetail, ...], at: datetime | None
) -> OrganizationStats:
    figures = hooks.data_figures(organization_pk=organization.pk, at=at)
    active = sum(item.active for item in detail)
    return OrganizationStats(
        organization_id=organization.organization_id,
        data_size=figures["data_size"],
        metadata_size=figures["metadata_size"],
        realms=figures["realms"],
        users=active + sum(item.revoked for item in detail),
        active_users=active,
        users_per_profile_detail=detail,
    )


def organization_stats(*, organization_id: str) -> OrganizationStats | NotFound:
    """Current statistics of one organization (the `organization_stats` command of the wire, of the
    administration API and of manage.py)."""
    organization = Organization.objects.filter(organization_id=organization_id).first()
    if organization is None:
        return AdministrationError.NOT_FOUND
    return _stats(organization, users_per_profile([organization.pk], None)[organization.pk], None)


def server_stats(*, at: datetime | None = None) -> list[OrganizationStats]:
    """Statistics of every organization that existed at `at` (default now), counting only what existed then."""
    at = at or timezone.now()
    organizations = list(Organization.objects.filter(created_on__lte=at).order_by("organization_id"))
    per_profile = users_per_profile([organization.pk for organization in organizations], at)
    return [_stats(organization, per_profile[organization.pk], at) for organization in organizations]
