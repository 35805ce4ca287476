"""User and device rules (docs/protocol.md#users): user_get, user_create, user_revoke, device_create, human_find.

Plain functions returning outcomes (`organizations.outcomes`), which `to_reply` turns into replies.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Lookup, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone

from organizations import sql
from organizations.models import Device, Organization, OrganizationUserCounts, Profile, User
from organizations.rules import INVALID_AUTHOR_REASON, active_at_q, authored_by_session, revoked_at
from organizations.outcomes import HumanFindPage, Refused, UserCertificates
from protocol import groups, replies
from protocol.certificates import DeviceCertificate, InvalidCertification, RevokedUserCertificate, UserCertificate
from protocol.session import AuthenticatedSession

_AuthoredCertificate = TypeVar("_AuthoredCertificate", UserCertificate, DeviceCertificate, RevokedUserCertificate)


def _load_authored(
    certificate_class: type[_AuthoredCertificate], signed: bytes, session: AuthenticatedSession
) -> _AuthoredCertificate:
    """Signed by the connected device AND naming it as author, or InvalidCertification."""
    certificate = certificate_class.verify_and_load(signed, session.verify_key)
    if not authored_by_session(certificate.author, session):
        raise InvalidCertification(INVALID_AUTHOR_REASON)
    return certificate


def _lock_organization(organization_pk: int) -> Organization:
    # Serialises user/device creations and revocations of one organization (docs/protocol.md#concurrency): the
    # active users limit and the one-active-user-per-e-mail rule span rows no constraint can lock.
    return Organization.objects.select_for_update().only("pk", "active_users_limit").get(pk=organization_pk)


# --- user_get -------------------------------------------------------------------------------------


def user_get(*, session: AuthenticatedSession, user_id: str) -> UserCertificates | Refused:
    """The user's certificates, its devices' and the certifier closure (docs/protocol.md#user-get)."""
    redacted = session.profile == Profile.OUTSIDER
    user_column = "redacted_user_certificate" if redacted else "user_certificate"
    device_column = "redacted_device_certificate" if redacted else "device_certificate"

    # Read order matters: certifiers are always older than what they certify, so the graph read
    # after the target is sure to hold every device and user the closure can reach.
    user = (
        User.objects.filter(organization_id=session.organization_pk, user_id=user_id)
        .values("pk", user_column, "user_certifier_id", "revoked_user_certificate", "revoked_user_certifier_id")
        .first()
    )
    if user is None:
        return Refused.NOT_FOUND
    devices = list(
        Device.objects.filter(user_id=user["pk"]).order_by("pk").values(device_column, "device_certifier_id")
    )

    # Only the certifier closure of the user, walked by the database (organizations/sql.py): its cost follows
    # the chain's length, not the organization's size.
    with connection.cursor() as cursor:
        cursor.execute(sql.TRUSTCHAIN_DEVICES, {"user_pk": user["pk"]})
        chain = cursor.fetchall()
    trustchain_devices = {device_pk for device_pk, _owner_pk in chain}
    trustchain_users = {owner_pk for _device_pk, owner_pk in chain}

    trustchain_device_certificates = [
        bytes(certificate)
        for certificate in Device.objects.filter(pk__in=trustchain_devices)
        .order_by("pk")
        .values_list(device_column, flat=True)
    ]
    trustchain_user_certificates: list[bytes] = []
    trustchain_revoked_user_certificates: list[bytes] = []
    for certificate, revoked_certificate in (
        User.objects.filter(pk__in=trustchain_users).order_by("pk").values_list(user_column, "revoked_user_certificate")
    ):
        trustchain_user_certificates.append(bytes(certificate))
        if revoked_certificate is not None:
            trustchain_revoked_user_certificates.append(bytes(revoked_certificate))

    revoked_certificate = user["revoked_user_certificate"]
    return UserCertificates(
        user_certificate=bytes(user[user_column]),
        # Revocation certificates hold no personal data: never redacted.
        revoked_user_certificate=None if revoked_certificate is None else bytes(revoked_certificate),
        device_certificates=[bytes(device[device_column]) for device in devices],
        trustchain_devices=trustchain_device_certificates,
        trustchain_users=trustchain_user_certificates,
        trustchain_revoked_users=trustchain_revoked_user_certificates,
    )


# --- user_create ----------------------------------------------------------------------------------


def user_create(
    *,
    session: AuthenticatedSession,
    user_certificate: bytes,
    device_certificate: bytes,
    redacted_user_certificate: bytes,
    redacted_device_certificate: bytes,
    now: datetime | None = None,
) -> Refused | None:
    """A new user and its first device, certified by the connected ADMIN device (docs/protocol.md#user-create)."""
    now = now or timezone.now()
    if session.profile != Profile.ADMIN:
        return Refused.NOT_ALLOWED
    material = check_new_user_certificates(
        session=session,
        user_certificate=user_certificate,
        device_certificate=device_certificate,
        redacted_user_certificate=redacted_user_certificate,
        redacted_device_certificate=redacted_device_certificate,
        now=now,
    )
    if isinstance(material, NewUserRefused):
        # Without its reason: the reference's user_create explains none of its refusals.
        return material.status
    with transaction.atomic():
        organization = _lock_organization(session.organization_pk)
        return insert_new_user(session=session, organization=organization, material=material, now=now)


@dataclass(frozen=True)
class NewUserMaterial:
    """The four certificates of a new user, checked (user_create checks 2-6), with their decoded forms."""

    user: UserCertificate
    device: DeviceCertificate
    user_certificate: bytes
    device_certificate: bytes
    redacted_user_certificate: bytes
    redacted_device_certificate: bytes


@dataclass(frozen=True)
class NewUserRefused:
    status: Refused  # INVALID_CERTIFICATION or INVALID_DATA
    reason: str


def check_new_user_certificates(
    *,
    session: AuthenticatedSession,
    user_certificate: bytes,
    device_certificate: bytes,
    redacted_user_certificate: bytes,
    redacted_device_certificate: bytes,
    now: datetime,
) -> NewUserMaterial | NewUserRefused:
    """user_create checks 2-6, shared with `pki_enrollment_accept` (which reports them with a reason)."""
    try:
        device = _load_authored(DeviceCertificate, device_certificate, session)
        user = _load_authored(UserCertificate, user_certificate, session)
        redacted_user = _load_authored(UserCertificate, redacted_user_certificate, session)
        redacted_device = _load_authored(DeviceCertificate, redacted_device_certificate, session)
    except InvalidCertification as exc:
        return NewUserRefused(Refused.INVALID_CERTIFICATION, f"Invalid certification data ({exc.reason}).")
    if user.timestamp != device.timestamp:
        return NewUserRefused(Refused.INVALID_DATA, "Device and User certificates must have the same timestamp.")
    # Reported as a certification problem, not `bad_timestamp`: the 2.17 reference does so.
    if not replies.timestamp_in_ballpark(user.timestamp, now):
        return NewUserRefused(Refused.INVALID_CERTIFICATION, "Invalid timestamp in certificate.")
    if device.user_id != user.user_id:
        return NewUserRefused(Refused.INVALID_DATA, "Device and User must have the same user ID.")
    if not redacted_user.is_redacted_twin_of(user):
        return NewUserRefused(Refused.INVALID_DATA, "Redacted User certificate differs from User certificate.")
    if not redacted_device.is_redacted_twin_of(device):
        return NewUserRefused(Refused.INVALID_DATA, "Redacted Device certificate differs from Device certificate.")
    return NewUserMaterial(
        user=user,
        device=device,
        user_certificate=user_certificate,
        device_certificate=device_certificate,
        redacted_user_certificate=redacted_user_certificate,
        redacted_device_certificate=redacted_device_certificate,
    )


def insert_new_user(
    *, session: AuthenticatedSession, organization: Organization, material: NewUserMaterial, now: datetime
) -> Refused | None:
    """user_create checks 7-8 and the inserts; None when created, else the refusal status.

    The caller holds the organization row lock (`_lock_organization`) in its transaction.
    """
    user = material.user
    email = user.human_handle.email if user.human_handle is not None else None
    users = User.objects.filter(organization=organization)
    limit = organization.active_users_limit
    # One "active at t" for both rules: a user whose revocation is dated a little ahead still counts.
    active = users.filter(active_at_q(now))
    if limit is not None and active.count() >= limit:
        return Refused.ACTIVE_USERS_LIMIT_REACHED
    if users.filter(user_id=user.user_id).exists():
        return Refused.ALREADY_EXISTS
    if email is not None and active.filter(human_email=email).exists():
        return Refused.ALREADY_EXISTS
    try:
        # A savepoint: the caller's transaction stays usable after a constraint says no.
        with transaction.atomic():
            new_user = User.objects.create(
                organization=organization,
                user_id=user.user_id,
                human_email=email,
                human_label=user.human_handle.label if user.human_handle is not None else None,
                profile=user.profile,
                user_certificate=material.user_certificate,
                redacted_user_certificate=material.redacted_user_certificate,
                user_certifier_id=session.device_pk,
                created_on=user.timestamp,
            )
            _insert_device(
                session, new_user.pk, material.device, material.device_certificate, material.redacted_device_certificate
            )
    except IntegrityError:
        # The constraints behind the checks above (user id, active e-mail, device id).
        return Refused.ALREADY_EXISTS
    return None


def lock_organization_for_user_changes(organization_pk: int) -> Organization:
    """The row lock every user/device creation of the organization takes first."""
    return _lock_organization(organization_pk)


def _insert_device(
    session: AuthenticatedSession,
    user_pk: int,
    device: DeviceCertificate,
    device_certificate: bytes,
    redacted_device_certificate: bytes,
) -> Device:
    return Device.objects.create(
        organization_id=session.organization_pk,
        user_id=user_pk,
        device_id=device.device_id,
        device_label=device.device_label,
        verify_key=device.verify_key,
        device_certificate=device_certificate,
        redacted_device_certificate=redacted_device_certificate,
        device_certifier_id=session.device_pk,
        created_on=device.timestamp,
    )


# --- user_revoke ----------------------------------------------------------------------------------


def user_revoke(
    *, session: AuthenticatedSession, revoked_user_certificate: bytes, now: datetime | None = None
) -> Refused | None:
    """Revoke another user and close its live sessions everywhere (docs/protocol.md#user-revoke)."""
    now = now or timezone.now()
    if session.profile != Profile.ADMIN:
        return Refused.NOT_ALLOWED
    try:
        certificate = _load_authored(RevokedUserCertificate, revoked_user_certificate, session)
    except InvalidCertification:
        return Refused.INVALID_CERTIFICATION
    if not replies.timestamp_in_ballpark(certificate.timestamp, now):
        return Refused.INVALID_CERTIFICATION
    if certificate.user_id == session.user_id:
        return Refused.NOT_ALLOWED

    with transaction.atomic():
        organization = _lock_organization(session.organization_pk)
        target = (
            User.objects.filter(organization=organization, user_id=certificate.user_id).only("pk", "revoked_on").first()
        )
        if target is None:
            return Refused.NOT_FOUND
        # Any revocation, even one dated a little ahead: a user is revoked once.
        if target.revoked_on is not None:
            return Refused.ALREADY_REVOKED
        User.objects.filter(pk=target.pk).update(
            revoked_on=certificate.timestamp,
            revoked_user_certificate=revoked_user_certificate,
            revoked_user_certifier_id=session.device_pk,
        )
        groups.close_user_sessions_on_commit(target.pk)
    return None


# --- device_create --------------------------------------------------------------------------------


def device_create(
    *,
    session: AuthenticatedSession,
    device_certificate: bytes,
    redacted_device_certificate: bytes,
    now: datetime | None = None,
) -> Refused | None:
    """A new device for the connected user, certified by one of its devices (docs/protocol.md#device-create)."""
    now = now or timezone.now()
    try:
        device = _load_authored(DeviceCertificate, device_certificate, session)
        redacted_device = _load_authored(DeviceCertificate, redacted_device_certificate, session)
    except InvalidCertification:
        return Refused.INVALID_CERTIFICATION
    if not replies.timestamp_in_ballpark(device.timestamp, now):
        return Refused.INVALID_CERTIFICATION
    if device.user_id != session.user_id:
        return Refused.BAD_USER_ID
    if not redacted_device.is_redacted_twin_of(device):
        return Refused.INVALID_DATA
    try:
        with transaction.atomic():
            _lock_organization(session.organization_pk)
            if Device.objects.filter(organization_id=session.organization_pk, device_id=device.device_id).exists():
                return Refused.ALREADY_EXISTS
            _insert_device(session, session.user_pk, device, device_certificate, redacted_device_certificate)
    except IntegrityError:
        return Refused.ALREADY_EXISTS
    return None


# --- human_find -----------------------------------------------------------------------------------


# The longest text a query can be found in: e-mails and labels are at most 254 characters (the
# columns, and the protocol's < 255 bytes), user ids 32.
_LONGEST_SEARCHED_TEXT = 254


class WordsInOrder(Lookup):
    """`text ILIKE '%w1%w2%...%'` with `%`, `_` and `\\` escaped in each word: the reference's rule.

    PostgreSQL runs exactly that (linear in the text, and served by the trigram indexes where the
    planner finds them worth it). SQLite's LIKE folds ASCII only, so there it is Django's REGEXP
    (Python's re) with each gap an atomic group: once a word is found at its earliest place the
    match never comes back to try another, so a query of many words cannot backtrack exponentially.
    """

    lookup_name = "words_in_order"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        words: list[str] = self.rhs
        if connection.vendor == "postgresql":
            escaped = (word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for word in words)
            return f"{lhs} ILIKE %s", (*lhs_params, "%" + "%".join(escaped) + "%")
        pattern = "(?is)\\A" + "".join(f"(?>.*?{re.escape(word)})" for word in words)
        return f"{lhs} REGEXP %s", (*lhs_params, pattern)


def query_words(query: str | None) -> list[str] | None:
    """The words a user must contain in order; None when the query matches everyone."""
    words = query.split() if query else []
    return words or None


def can_match(words: list[str]) -> bool:
    """False when no stored text can hold the words: too long in total, or holding a NUL
    (PostgreSQL's text has none, and the database would refuse the pattern)."""
    return sum(len(word) for word in words) <= _LONGEST_SEARCHED_TEXT and not any("\x00" in word for word in words)


def matching_users(
    organization_pk: int, *, words: list[str] | None, omit_revoked: bool, omit_non_human: bool, now: datetime
) -> QuerySet[User]:
    users = User.objects.filter(organization_id=organization_pk)
    if omit_revoked:
        users = users.filter(active_at_q(now))
    if omit_non_human:
        users = users.filter(human_email__isnull=False)
    if words is not None:
        users = users.filter(
            Q(WordsInOrder(F("human_label"), words))
            | Q(WordsInOrder(F("human_email"), words))
            | Q(Q(human_email__isnull=True) & WordsInOrder(F("user_id"), words))
        )
    return users


def candidate_count(organization_pk: int, *, omit_revoked: bool, omit_non_human: bool, now: datetime) -> int:
    """How many users `matching_users` gives without a query, from the organization's counts: one row, not a
    count of its users (OrganizationUserCounts, kept by the database). The counted revocations include those
    dated after `now` (the ballpark lets a certificate be a little ahead), still active here: they are counted
    apart, in the few rows of `user_revoked_on_idx` that are ahead of `now`."""
    counts = OrganizationUserCounts.objects.filter(organization_id=organization_pk)
    if omit_revoked:
        ahead = User.objects.filter(organization_id=OuterRef("organization_id"), revoked_on__isnull=False)
        ahead = ahead.filter(revoked_on__gt=now)
        if omit_non_human:
            ahead = ahead.filter(human_email__isnull=False)
        ahead_count = ahead.order_by().values("organization_id").annotate(n=Count("pk")).values("n")
        counts = counts.annotate(ahead=Coalesce(Subquery(ahead_count), 0))
    else:
        counts = counts.annotate(ahead=Value(0))
    row = counts.values_list("users", "human_users", "revoked_users", "revoked_human_users", "ahead").first()
    if row is None:
        return 0  # no user was ever created in the organization
    users, human_users, revoked_users, revoked_human_users, ahead_now = row
    candidates = human_users if omit_non_human else users
    if omit_revoked:
        candidates -= (revoked_human_users if omit_non_human else revoked_users) - ahead_now
    return candidates


def human_find(
    *,
    session: AuthenticatedSession,
    query: str | None,
    omit_revoked: bool,
    omit_non_human: bool,
    page: int,
    per_page: int,
    now: datetime | None = None,
) -> HumanFindPage | Refused:
    """Search the organization's users by name or e-mail, one page at a time (docs/protocol.md#human-find)."""
    now = now or timezone.now()
    if session.profile == Profile.OUTSIDER:
        return Refused.NOT_ALLOWED
    words = query_words(query)
    if words is not None and not can_match(words):
        # Answered without the database: a 50,000-character query finds nobody, at once.
        return HumanFindPage(results=[], page=page, per_page=per_page, total=0)
    users = matching_users(
        session.organization_pk, words=words, omit_revoked=omit_revoked, omit_non_human=omit_non_human, now=now
    )
    if words is None:
        total = candidate_count(
            session.organization_pk, omit_revoked=omit_revoked, omit_non_human=omit_non_human, now=now
        )
    else:
        # Counting the matches reads them (through the trigram indexes on PostgreSQL): a cost that follows
        # the matches, which is what a search's reply is about.
        total = users.count()
    offset = (page - 1) * per_page
    rows: list[tuple[str, str | None, str | None, datetime | None]] = []
    # `page` may be as large as 2**64-1: never send an offset past the matches to the database.
    if offset < total:
        rows = list(
            users.order_by(Lower("human_label").asc(nulls_last=True), "user_id", "pk").values_list(
                "user_id", "human_email", "human_label", "revoked_on"
            )[offset : offset + per_page]
        )
    results: list[dict[str, Any]] = [
        {
            "user_id": row_user_id,
            "human_handle": [email, label] if email is not None else None,
            "revoked": revoked_at(revoked_on, now),
        }
        for row_user_id, email, label, revoked_on in rows
    ]
    return HumanFindPage(results=results, page=page, per_page=per_page, total=total)
