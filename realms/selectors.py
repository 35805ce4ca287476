"""Reads of the realms app: the operators' views, and the queries of the realm-family commands."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.apps import apps
from django.db import connection, models
from django.db.models import Exists, Max, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from organizations.models import Organization, User
from protocol.db import db_param, fetch_row
from realms import sql
from realms.models import Message, Realm, RealmArchiving, RealmUserRole, RealmVlobUpdate, VlobAtom
from realms.rules import ACCESS_STATE_FIELDS, AccessState, access_state_from_row, role_certificates_newest_first

_REALM_ID = Realm._meta.get_field("realm_id")


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


# --- reads of the protocol commands -------------------------------------------------------------


def _current_realms(user_pk: int) -> models.QuerySet[Realm]:
    """Realms where the user's latest role certificate grants a role, in creation order."""
    latest_role = role_certificates_newest_first(realm=OuterRef("pk"), user=user_pk).values("role")[:1]
    return (
        Realm.objects.filter(roles__user_id=user_pk)
        .annotate(current=Subquery(latest_role))
        .filter(current__isnull=False)
        .distinct()
        .order_by("pk")
    )


# A subscription's realm set: the user's role certificates with none newer for the same realm and a role, as the
# realms' hex ids (the form of the realm groups' names), computed by the database: a member of 1,000 realms
# costs no UUID objects and no ORM rows (3.5 -> 1.0 ms). PostgreSQL reads the user's certificates twice and
# anti-joins them by hash, where a subquery per realm (`_current_realms`) took twice as long. Written here rather
# than in realms/sql.py, being reworked on another branch: move it there at the next occasion.
_CURRENT_REALM_HEX_IDS = """
SELECT {hex_id} FROM "{role}" ur JOIN "{realm}" r ON r."id" = ur."realm_id"
WHERE ur."user_id" = %(user_pk)s AND ur."role" IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM "{role}" n
    WHERE n."user_id" = %(user_pk)s AND n."realm_id" = ur."realm_id" AND n."certified_on" > ur."certified_on"
)
"""


def user_current_realm_hex_ids(user_pk: int) -> set[str]:
    """Realms where the user currently has a role, as hex ids: the realm set of a new events subscription.
    One query; its cost follows the number of realms, as the subscription's groups do."""
    # The realm id as `UUID.hex` gives it: PostgreSQL's uuid encoded, SQLite's stored hex text (Django's form).
    hex_id = "encode(uuid_send(r.\"realm_id\"), 'hex')" if connection.vendor == "postgresql" else 'r."realm_id"'
    statement = _CURRENT_REALM_HEX_IDS.format(
        hex_id=hex_id, role=RealmUserRole._meta.db_table, realm=Realm._meta.db_table
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, {"user_pk": user_pk})
        return {hex_id for (hex_id,) in cursor.fetchall()}


def user_current_realms(user_pk: int) -> list[tuple[int, uuid.UUID]]:
    """(pk, realm id) of the realms where the user currently has a role, in creation order."""
    return list(_current_realms(user_pk).values_list("pk", "realm_id"))


def latest_archivings(realm_pks: list[int]) -> dict[int, tuple[str, datetime | None, datetime, str]]:
    """Realm pk -> (configuration, deletion date, certified on, certifying device id) of its latest
    archiving certificate, for the realms that have one."""
    latest: dict[int, tuple[str, datetime | None, datetime, str]] = {}
    for realm_pk, configuration, deletion_date, certified_on, certified_by in (
        RealmArchiving.objects.filter(realm_id__in=realm_pks)
        .order_by("realm_id", "certified_on")
        .values_list("realm_id", "configuration", "deletion_date", "certified_on", "certified_by__device_id")
    ):
        latest[realm_pk] = (configuration, deletion_date, certified_on, certified_by)
    return latest


def realm_with_maintenance_author(*, organization_pk: int, realm_id: uuid.UUID) -> Realm | None:
    return (
        Realm.objects.select_related("maintenance_started_by")
        .filter(organization_id=organization_pk, realm_id=realm_id)
        .first()
    )


def role_certificates(*, organization_pk: int, realm_id: uuid.UUID) -> list[tuple[int, str | None, bytes | memoryview]]:
    """(user pk, role, certificate) of every role certificate of the realm, oldest first, in one query."""
    return list(
        RealmUserRole.objects.filter(realm__organization_id=organization_pk, realm__realm_id=realm_id)
        .order_by("certified_on", "pk")
        .values_list("user_id", "role", "certificate")
    )


def messages_after(*, user_pk: int, offset: int) -> list[tuple[int, str, datetime, bytes | memoryview]]:
    """(index, sender device id, timestamp, body) of the user's messages after `offset`, in order."""
    return list(
        Message.objects.filter(recipient_id=user_pk, index__gt=offset)
        .order_by("index")
        .values_list("index", "sender__device_id", "timestamp", "body")
    )


def realm_access_state(
    *, user_pk: int, organization_pk: int = 0, realm_id: uuid.UUID | None = None, realm_pk: int | None = None
) -> AccessState | None:
    """The access state (rules.AccessState) of the user in the realm of pk `realm_pk`, or else of id
    `realm_id`, in one round trip; None: no such realm."""
    if realm_pk is not None:
        sql_text, params = sql.ACCESS_STATE_BY_PK, {"user_pk": user_pk, "realm_pk": realm_pk}
    else:
        sql_text = sql.ACCESS_STATE_BY_ID
        params = {"user_pk": user_pk, "organization_pk": organization_pk, "realm_id": db_param(_REALM_ID, realm_id)}
    row = fetch_row(sql_text, params, ACCESS_STATE_FIELDS)
    return None if row is None else access_state_from_row(row)


def realm_of_vlob(*, organization_pk: int, vlob_id: uuid.UUID) -> Realm | None:
    query = Realm.objects.filter(
        organization_id=organization_pk, vlob_atoms__organization_id=organization_pk, vlob_atoms__vlob_id=vlob_id
    )
    return next(iter(query[:1]), None)


def vlob_changes_since(*, realm_pk: int, last_checkpoint: int) -> list[tuple[uuid.UUID, int, int]]:
    """(vlob id, latest version, latest change index) of every vlob changed after `last_checkpoint`."""
    return list(
        RealmVlobUpdate.objects.filter(realm_id=realm_pk, index__gt=last_checkpoint)
        .values("vlob_id")
        .annotate(latest_version=Max("version"), latest_index=Max("index"))
        .values_list("vlob_id", "latest_version", "latest_index")
        .order_by()
    )


def vlob_versions(
    *, organization_pk: int, vlob_id: uuid.UUID, encryption_revision: int
) -> list[tuple[int, datetime, str]]:
    """(version, timestamp, author device id) of every version of the vlob in the revision, in order."""
    return list(
        VlobAtom.objects.filter(
            organization_id=organization_pk, vlob_id=vlob_id, encryption_revision=encryption_revision
        )
        .order_by("version")
        .values_list("version", "created_on", "author__device_id")
    )


def versions_to_reencrypt(*, realm: Realm, encryption_revision: int, limit: int) -> list[tuple[uuid.UUID, int, bytes | memoryview]]:
    """(vlob id, version, blob) of up to `limit` versions of the realm's previous revision not yet saved
    in `encryption_revision`."""
    reencrypted = VlobAtom.objects.filter(
        organization_id=realm.organization_id,
        vlob_id=OuterRef("vlob_id"),
        encryption_revision=encryption_revision,
        version=OuterRef("version"),
    )
    return list(
        VlobAtom.objects.filter(realm_id=realm.pk, encryption_revision=encryption_revision - 1)
        .exclude(Exists(reencrypted))
        .values_list("vlob_id", "version", "blob")[:limit]
    )
