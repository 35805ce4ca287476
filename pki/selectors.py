"""PKI enrollment reads (docs/protocol.md#pki-enrollment-info, docs/protocol.md#pki-enrollment-list)."""
from __future__ import annotations

import uuid

from pki.models import EnrollmentState, PkiEnrollment
from pki.outcomes import EnrollmentInfo, SubmittedEnrollment


def _bytes(value: bytes | memoryview | None) -> bytes | None:
    # PostgreSQL bytea columns come back as memoryview.
    return None if value is None else bytes(value)


def pki_enrollment_info(*, organization_pk: int | None, enrollment_id: uuid.UUID) -> EnrollmentInfo | None:
    if organization_pk is None:
        return None
    row = (
        PkiEnrollment.objects.filter(organization_id=organization_pk, enrollment_id=enrollment_id)
        .values(
            "state", "submitted_on", "cancelled_on", "rejected_on", "accepted_on",
            "accepter_der_x509_certificate", "accept_payload_signature", "accept_payload",
        )
        .first()
    )
    if row is None:
        return None
    return EnrollmentInfo(
        state=EnrollmentState(row["state"]),
        submitted_on=row["submitted_on"],
        cancelled_on=row["cancelled_on"],
        rejected_on=row["rejected_on"],
        accepted_on=row["accepted_on"],
        accepter_der_x509_certificate=_bytes(row["accepter_der_x509_certificate"]),
        accept_payload_signature=_bytes(row["accept_payload_signature"]),
        accept_payload=_bytes(row["accept_payload"]),
    )


def pki_enrollment_list(*, organization_pk: int) -> list[SubmittedEnrollment]:
    """The enrollments still waiting for an answer, oldest first."""
    rows = (
        PkiEnrollment.objects.filter(organization_id=organization_pk, state=EnrollmentState.SUBMITTED)
        .order_by("submitted_on", "pk")
        .values_list(
            "enrollment_id", "submit_payload", "submit_payload_signature", "submitted_on",
            "submitter_der_x509_certificate",
        )
    )
    return [
        SubmittedEnrollment(
            enrollment_id=enrollment_id,
            submit_payload=bytes(submit_payload),
            submit_payload_signature=bytes(signature),
            submitted_on=submitted_on,
            submitter_der_x509_certificate=bytes(certificate),
        )
        for enrollment_id, submit_payload, signature, submitted_on, certificate in rows
    ]
