"""Protocol handlers of PKI enrollment: decode, call the service or selector, encode.

The outcome → reply mapping of the family lives here, in one place. Reasons follow the 2.17
reference: `not_allowed` names the user, the store's refusals carry an empty text.
"""
from __future__ import annotations

from typing import Any

from organizations.models import Profile
from pki import selectors, services
from pki.models import EnrollmentState
from protocol import replies, types
from protocol.db import run_sync
from protocol.registry import Family, command
from protocol.session import AnonymousSession, AuthenticatedSession


def _not_admin(session: AuthenticatedSession) -> replies.Reply:
    return replies.reply("not_allowed", reason=f"User `{session.user_id}` is not admin")


@command(
    "pki_enrollment_submit",
    family=Family.ANONYMOUS,
    request={
        "enrollment_id": types.EnrollmentID,
        "force": types.Boolean,
        "submitter_der_x509_certificate": types.Bytes,
        "submitter_der_x509_certificate_email": types.Optional(types.String),
        "submit_payload_signature": types.Bytes,
        "submit_payload": types.Bytes,
    },
)
async def pki_enrollment_submit(session: AnonymousSession, req: dict[str, Any]) -> replies.Reply:
    result = await run_sync(services.pki_enrollment_submit, organization_pk=session.organization_pk, **req)
    match result.outcome:
        case services.SubmitOutcome.OK | services.SubmitOutcome.ALREADY_SUBMITTED:
            return replies.reply(result.outcome.value, submitted_on=result.submitted_on)
        case services.SubmitOutcome.INVALID_PAYLOAD_DATA:
            return replies.reply("invalid_payload_data", reason=result.reason)
        case services.SubmitOutcome.ORGANIZATION_NOT_FOUND:
            # Not a status of the command: the client reports it as an error, which it is.
            return replies.reply("not_found", reason="Organization not found")
        case _:
            return replies.reply(result.outcome.value)


@command("pki_enrollment_info", family=Family.ANONYMOUS, request={"enrollment_id": types.EnrollmentID})
async def pki_enrollment_info(session: AnonymousSession, req: dict[str, Any]) -> replies.Reply:
    info = await run_sync(selectors.pki_enrollment_info, organization_pk=session.organization_pk, **req)
    if info is None:
        return replies.reply("not_found", reason="")
    fields: dict[str, Any] = {"enrollment_status": info.state.value, "submitted_on": info.submitted_on}
    match info.state:
        case EnrollmentState.ACCEPTED:
            fields.update(
                accepted_on=info.accepted_on,
                accepter_der_x509_certificate=info.accepter_der_x509_certificate,
                accept_payload_signature=info.accept_payload_signature,
                accept_payload=info.accept_payload,
            )
        case EnrollmentState.REJECTED:
            fields["rejected_on"] = info.rejected_on
        case EnrollmentState.CANCELLED:
            fields["cancelled_on"] = info.cancelled_on
    return replies.ok(**fields)


@command("pki_enrollment_list", family=Family.AUTHENTICATED)
async def pki_enrollment_list(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    if session.profile != Profile.ADMIN:
        return _not_admin(session)
    enrollments = await run_sync(selectors.pki_enrollment_list, organization_pk=session.organization_pk)
    return replies.ok(
        enrollments=[
            {
                "enrollment_id": item.enrollment_id,
                "submit_payload": item.submit_payload,
                "submit_payload_signature": item.submit_payload_signature,
                "submitted_on": item.submitted_on,
                "submitter_der_x509_certificate": item.submitter_der_x509_certificate,
            }
            for item in enrollments
        ]
    )


@command("pki_enrollment_reject", family=Family.AUTHENTICATED, request={"enrollment_id": types.EnrollmentID})
async def pki_enrollment_reject(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    outcome = await run_sync(services.pki_enrollment_reject, session=session, **req)
    match outcome:
        case services.RejectOutcome.OK:
            return replies.ok()
        case services.RejectOutcome.NOT_ALLOWED:
            return _not_admin(session)
        case _:
            return replies.reply(outcome.value, reason="")


@command(
    "pki_enrollment_accept",
    family=Family.AUTHENTICATED,
    request={
        "enrollment_id": types.EnrollmentID,
        "accepter_der_x509_certificate": types.Bytes,
        "accept_payload_signature": types.Bytes,
        "accept_payload": types.Bytes,
        "user_certificate": types.Bytes,
        "device_certificate": types.Bytes,
        "redacted_user_certificate": types.Bytes,
        "redacted_device_certificate": types.Bytes,
    },
)
async def pki_enrollment_accept(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    result = await run_sync(services.pki_enrollment_accept, session=session, **req)
    match result.outcome:
        case services.AcceptOutcome.OK:
            return replies.ok()
        case services.AcceptOutcome.ACTIVE_USERS_LIMIT_REACHED:
            # The only refusal of the schema without a reason field.
            return replies.reply("active_users_limit_reached")
        case _:
            return replies.reply(result.outcome.value, reason=result.reason)
