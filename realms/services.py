"""Realm-level reads shared across the server."""
from __future__ import annotations

import uuid

from django.db.models import OuterRef, Subquery

from realms.models import Realm, RealmUserRole


def user_current_realm_ids(user_pk: int) -> list[uuid.UUID]:
    """Realms where the user currently has a role: the realm set of a new events subscription."""
    latest_role = (
        RealmUserRole.objects.filter(realm=OuterRef("pk"), user_id=user_pk).order_by("-certified_on").values("role")[:1]
    )
    return list(
        Realm.objects.filter(roles__user_id=user_pk)
        .annotate(current=Subquery(latest_role))
        .filter(current__isnull=False)
        .values_list("realm_id", flat=True)
        .distinct()
    )
