"""PKI enrollment rules (docs/protocol.md#pki-enrollment): submit, reject, accept, and the checks around the
reads of `selectors.py` (info, list).

Each function returns an outcome value (`pki.outcomes`), whose `to_reply` maps it to the wire in one place.
Every state change is serialised with user creation by the organization row lock, as the
reference does with its user/device write lock: an acceptance creates a user, and a submission
checks users (e-mail, enrolled user revoked or not).
"""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from organizations.services import users
from organizations.models import Device, Profile, User
from organizations.rules import active_at, active_at_q
from pki import payloads, selectors
from pki.models import EnrollmentState, PkiEnrollment
from pki.outcomes import EnrollmentInfo, EnrollmentList, Explained, NotAdmin, Refused, Submitted
from protocol.events import emit_organization_event_on_commit
from protocol.session import AuthenticatedSession

PKI_ENROLLMENT_UPDATED = {"event": "pki_enrollment.updated"}


def _emit_updated(organization_pk: int) -> None:
    emit_organization_event_on_commit(organization_pk=organization_pk, event=PKI_ENROLLMENT_UPDATED)


def certificate_fingerprint(der_certificate: bytes) -> bytes:
    # What submissions of one certificate are matched by, as in the reference's PostgreSQL store.
    return hashlib.sha1(der_certificate).digest()


# --- pki_enrollment_submit ------------------------------------------------------------------------


def pki_enrollment_submit(
    *,
    organization_pk: int | None,
    enrollment_id: uuid.UUID,
    force: bool,
    submitter_der_x509_certificate: bytes,
    submitter_der_x509_certificate_email: str | None,
    submit_payload_signature: bytes,
    submit_payload: bytes,
    now: datetime | None = None,
) -> Submitted | Refused | Explained:
    """Checks, in order: payload decodes; id unused; the certificate's latest enrollment
    (SUBMITTED: cancelled with `force`, else refused; ACCEPTED: refused while its user is active);
    no active user has the certificate's e-mail."""
    now = now or timezone.now()
    try:
        payloads.load_submit_payload(submit_payload)
    except payloads.InvalidPayload as exc:
        return Explained(Refused.INVALID_PAYLOAD_DATA, str(exc))
    if organization_pk is None:
        # Only reachable with spontaneous bootstrap, for an organization nobody created yet. Not a status
        # of the command: the client reports it as an error, which it is.
        return Explained(Refused.NOT_FOUND, "Organization not found")
    fingerprint = certificate_fingerprint(submitter_der_x509_certificate)
    try:
        with transaction.atomic():
            users.lock_organization_for_user_changes(organization_pk)
            enrollments = PkiEnrollment.objects.filter(organization_id=organization_pk)
            if enrollments.filter(enrollment_id=enrollment_id).exists():
                return Refused.ID_ALREADY_USED
            previous = (
                enrollments.filter(submitter_der_x509_certificate_sha1=fingerprint)
                .order_by("-submitted_on", "-pk")
                .select_related("accepted_device__user")
                .first()
            )
            to_cancel: PkiEnrollment | None = None
            if previous is not None:
                if previous.state == EnrollmentState.SUBMITTED:
                    if not force:
                        return Submitted(already=True, submitted_on=previous.submitted_on)
                    # Cancelled only once every check passed: a refused submission changes nothing.
                    to_cancel = previous
                elif previous.state == EnrollmentState.ACCEPTED:
                    assert previous.accepted_device is not None  # set on acceptance
                    enrolled = previous.accepted_device.user
                    if active_at(enrolled.revoked_on, now):
                        return Refused.ALREADY_ENROLLED
                # REJECTED or CANCELLED: the previous attempt failed, a new one is welcome.
            if submitter_der_x509_certificate_email:
                active_with_email = User.objects.filter(
                    active_at_q(now),
                    organization_id=organization_pk,
                    human_email=submitter_der_x509_certificate_email,
                )
                if active_with_email.exists():
                    return Refused.EMAIL_ALREADY_USED
            if to_cancel is not None:
                PkiEnrollment.objects.filter(pk=to_cancel.pk).update(state=EnrollmentState.CANCELLED, cancelled_on=now)
                _emit_updated(organization_pk)
            PkiEnrollment.objects.create(
                organization_id=organization_pk,
                enrollment_id=enrollment_id,
                submitter_der_x509_certificate=submitter_der_x509_certificate,
                submitter_der_x509_certificate_sha1=fingerprint,
                submitter_der_x509_certificate_email=submitter_der_x509_certificate_email,
                submit_payload_signature=submit_payload_signature,
                submit_payload=submit_payload,
                state=EnrollmentState.SUBMITTED,
                submitted_on=now,
            )
            _emit_updated(organization_pk)
    except IntegrityError:
        # The unique (organization, enrollment_id) constraint, should the organization lock be bypassed.
        return Refused.ID_ALREADY_USED
    return Submitted(already=False, submitted_on=now)


# --- pki_enrollment_info, pki_enrollment_list ----------------------------------------------------


def pki_enrollment_info(*, organization_pk: int | None, enrollment_id: uuid.UUID) -> EnrollmentInfo | Explained:
    info = selectors.pki_enrollment_info(organization_pk=organization_pk, enrollment_id=enrollment_id)
    return Explained(Refused.NOT_FOUND, "") if info is None else info


def pki_enrollment_list(*, session: AuthenticatedSession) -> EnrollmentList | NotAdmin:
    """ADMIN only: the enrollments waiting for an answer."""
    if session.profile != Profile.ADMIN:
        return NotAdmin(session.user_id)
    return EnrollmentList(selectors.pki_enrollment_list(organization_pk=session.organization_pk))


# --- pki_enrollment_reject ------------------------------------------------------------------------


def pki_enrollment_reject(
    *, session: AuthenticatedSession, enrollment_id: uuid.UUID, now: datetime | None = None
) -> Explained | NotAdmin | None:
    """ADMIN only; the enrollment must exist and still be SUBMITTED."""
    now = now or timezone.now()
    if session.profile != Profile.ADMIN:
        return NotAdmin(session.user_id)
    with transaction.atomic():
        users.lock_organization_for_user_changes(session.organization_pk)
        enrollment = (
            PkiEnrollment.objects.filter(organization_id=session.organization_pk, enrollment_id=enrollment_id)
            .only("pk", "state")
            .first()
        )
        if enrollment is None:
            return Explained(Refused.NOT_FOUND, "")
        if enrollment.state != EnrollmentState.SUBMITTED:
            return Explained(Refused.NO_LONGER_AVAILABLE, "")
        PkiEnrollment.objects.filter(pk=enrollment.pk).update(state=EnrollmentState.REJECTED, rejected_on=now)
        _emit_updated(session.organization_pk)
    return None


# --- pki_enrollment_accept ------------------------------------------------------------------------


def pki_enrollment_accept(
    *,
    session: AuthenticatedSession,
    enrollment_id: uuid.UUID,
    accepter_der_x509_certificate: bytes,
    accept_payload_signature: bytes,
    accept_payload: bytes,
    user_certificate: bytes,
    device_certificate: bytes,
    redacted_user_certificate: bytes,
    redacted_device_certificate: bytes,
    now: datetime | None = None,
) -> Explained | NotAdmin | Refused | None:
    """Checks, in order: ADMIN; answer payload decodes; the four certificates pass `user_create`'s
    checks (any failure is `invalid_certification`); the enrollment exists and is SUBMITTED; then
    the user and its device are created exactly as `user_create` does, in the same transaction
    that marks the enrollment ACCEPTED."""
    now = now or timezone.now()
    if session.profile != Profile.ADMIN:
        return NotAdmin(session.user_id)
    try:
        payloads.load_answer_payload(accept_payload)
    except payloads.InvalidPayload as exc:
        return Explained(Refused.INVALID_PAYLOAD_DATA, str(exc))
    material = users.check_new_user_certificates(
        session=session,
        user_certificate=user_certificate,
        device_certificate=device_certificate,
        redacted_user_certificate=redacted_user_certificate,
        redacted_device_certificate=redacted_device_certificate,
        now=now,
    )
    if isinstance(material, users.NewUserRefused):
        return Explained(Refused.INVALID_CERTIFICATION, material.reason)
    with transaction.atomic():
        organization = users.lock_organization_for_user_changes(session.organization_pk)
        enrollment = (
            PkiEnrollment.objects.filter(organization_id=session.organization_pk, enrollment_id=enrollment_id)
            .only("pk", "state")
            .first()
        )
        if enrollment is None:
            return Explained(Refused.NOT_FOUND, "")
        if enrollment.state != EnrollmentState.SUBMITTED:
            return Explained(Refused.NO_LONGER_AVAILABLE, "")
        refused = users.insert_new_user(session=session, organization=organization, material=material, now=now)
        if refused == "active_users_limit_reached":
            # The only refusal of the schema without a reason field.
            return Refused.ACTIVE_USERS_LIMIT_REACHED
        if refused is not None:
            return Explained(Refused.ALREADY_EXISTS, "")
        PkiEnrollment.objects.filter(pk=enrollment.pk).update(
            state=EnrollmentState.ACCEPTED,
            accepted_on=now,
            accepter_der_x509_certificate=accepter_der_x509_certificate,
            accept_payload_signature=accept_payload_signature,
            accept_payload=accept_payload,
            accepter_id=session.device_pk,
            accepted_device=Device.objects.get(
                organization_id=session.organization_pk, device_id=material.device.device_id
            ),
        )
        _emit_updated(session.organization_pk)
    return None
