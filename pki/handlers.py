"""Protocol handlers of PKI enrollment: decode, call the service, encode with `pki.outcomes.to_reply`."""
from __future__ import annotations

from typing import Any

from pki import services
from pki.outcomes import to_reply
from protocol import replies, types
from protocol.db import run_sync
from protocol.registry import Family, command
from protocol.session import AnonymousSession, AuthenticatedSession


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
    return to_reply(await run_sync(services.pki_enrollment_submit, organization_pk=session.organization_pk, **req))


@command("pki_enrollment_info", family=Family.ANONYMOUS, request={"enrollment_id": types.EnrollmentID})
async def pki_enrollment_info(session: AnonymousSession, req: dict[str, Any]) -> replies.Reply:
    return to_reply(await run_sync(services.pki_enrollment_info, organization_pk=session.organization_pk, **req))


@command("pki_enrollment_list", family=Family.AUTHENTICATED)
async def pki_enrollment_list(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return to_reply(await run_sync(services.pki_enrollment_list, session=session))


@command("pki_enrollment_reject", family=Family.AUTHENTICATED, request={"enrollment_id": types.EnrollmentID})
async def pki_enrollment_reject(session: AuthenticatedSession, req: dict[str, Any]) -> replies.Reply:
    return to_reply(await run_sync(services.pki_enrollment_reject, session=session, **req))


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
    return to_reply(await run_sync(services.pki_enrollment_accept, session=session, **req))
