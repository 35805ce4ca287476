"""Read-only views of realms for operators and statistics (not protocol commands)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.apps import apps
from django.db.models import QuerySet, Sum
from django.db.models.functions import Coalesce

from organizations.models import Organization, User
from realms.models import Realm, RealmUserRole, VlobAtom


@dataclass(frozen=True)
class GrantedRole:
    granted_on: datetime
    role: str | None  # None: access removed


@dataclass
class UserAccesses:
    user_id: str
    profile: str
    created_on: datetime
    revoked_on: datetime | None
    human_email: str | None
    human_label: str | None
    # Realm id -> its role certificates for this user, oldest first; realms in order of first grant.
    realms: dict[uuid.UUID, list[GrantedRole]] = field(default_factory=dict)


def _matches(user: User, words: list[str]) -> bool:
    # The reference matches every word of the filter inside "<label> <email> <user id>", lower-cased.
    # It forgets to lower-case the filter itself (an upper-case word never matches there); we do.
    handle = f"{user.human_label} <{user.human_email}>" if user.human_email is not None else ""
    text = f"{handle} {user.user_id}".lower()
    return all(word in text for word in words)


def human_accesses(*, organization_id: str, user_filter: str = "") -> list[UserAccesses] | None:
    """Every user of the organization (or those matching `user_filter`) with the role history of
    each realm it ever had a role in; None when the organization does not exist."""
    organization = Organization.objects.filter(organization_id=organization_id).only("pk").first()
    if organization is None:
        return None
    words = user_filter.lower().split()
    users = [
        user
        for user in User.objects.filter(organization=organization).order_by("created_on", "pk")
        if _matches(user, words)
    ]
    accesses = {
        user.pk: UserAccesses(
            user_id=user.user_id,
            profile=user.profile,
            created_on=user.created_on,
            revoked_on=user.revoked_on,
            human_email=user.human_email,
            human_label=user.human_label,
        )
        for user in users
    }
    roles = (
        RealmUserRole.objects.filter(user__in=list(accesses))
        .order_by("certified_on", "pk")
        .values_list("user_id", "realm__realm_id", "role", "certified_on")
    )
    for user_pk, realm_id, role, certified_on in roles:
        accesses[user_pk].realms.setdefault(realm_id, []).append(GrantedRole(granted_on=certified_on, role=role))
    return list(accesses.values())


def _size(query: QuerySet) -> int:
    return query.aggregate(total=Coalesce(Sum("size"), 0))["total"]


def realm_data_stats(organization_pk: int, at: datetime | None = None) -> dict[str, int]:
    """Organization stats from the realm tables: block sizes, vlob version sizes, realm count, as of `at`."""
    vlobs = VlobAtom.objects.filter(organization_id=organization_pk)
    realms = Realm.objects.filter(organization_id=organization_pk)
    # Looked up, not imported: blocks.models imports realms.models. Without the blocks app, sizes are 0.
    try:
        block_model = apps.get_model("blocks", "Block")
    except LookupError:
        block_model = None
    blocks = block_model.objects.filter(organization_id=organization_pk) if block_model is not None else None
    if at is not None:
        vlobs = vlobs.filter(created_on__lte=at)
        realms = realms.filter(created_on__lte=at)
        if blocks is not None:
            blocks = blocks.filter(created_on__lte=at)
    return {
        "data_size": _size(blocks) if blocks is not None else 0,
        "metadata_size": _size(vlobs),
        "realms": realms.count(),
    }
