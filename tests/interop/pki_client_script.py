"""PKI enrollment driven through the official 2.17.0 client library (run with the reference venv's Python 3.9).

The client's smartcard layer (`parsec_ext.smartcard`, used by `pki_enrollment_select_certificate`
and `pki_enrollment_sign_payload`) exists only on Windows, so the X.509 certificate and the
payload signatures are stand-in bytes here; every request, payload and reply goes through the
client's own types and serializers: `PkiEnrollmentSubmitPayload`/`PkiEnrollmentAnswerPayload`,
`parsec.core.backend_connection.pki_enrollment_submit`/`pki_enrollment_info` (POST /anonymous/<org>),
the authenticated `pki_enrollment_list`/`accept`/`reject` commands, and `_create_new_user_certificates`
(what the client's accepter signs). Prints one JSON document describing what happened.

Usage: python pki_client_script.py CONFIG_DIR SLUGHASH PASSWORD
"""
import json
import os
import sys
from pathlib import Path

import trio

from parsec._parsec import (
    BackendAddr,
    BackendOrganizationAddr,
    BackendPkiEnrollmentAddr,
    EnrollmentID,
    EventsListenRepOkPkiEnrollmentUpdated,
    PkiEnrollmentAcceptRepNoLongerAvailable,
    PkiEnrollmentAcceptRepOk,
    PkiEnrollmentInfoRepNotFound,
    PkiEnrollmentInfoRepOk,
    PkiEnrollmentListRepOk,
    PkiEnrollmentRejectRepOk,
    PkiEnrollmentSubmitRepAlreadySubmitted,
    PkiEnrollmentSubmitRepAlreadyEnrolled,
    PkiEnrollmentSubmitRepOk,
    PrivateKey,
    SigningKey,
    list_available_devices,
)
from parsec.api.data import PkiEnrollmentAnswerPayload, PkiEnrollmentSubmitPayload
from parsec.api.protocol import DeviceLabel, HumanHandle, UserProfile
from parsec.core.backend_connection import (
    backend_authenticated_cmds_factory,
    pki_enrollment_info,
    pki_enrollment_submit,
)
from parsec.core.invite.greeter import _create_new_user_certificates
from parsec.core.types import LocalDevice


def load_device(config_dir, slughash, password):
    found = [d for d in list_available_devices(config_dir) if d.slughash.startswith(slughash)]
    assert len(found) == 1, found
    return LocalDevice.load_device_with_password(Path(found[0].key_file_path), password)


class Submitter:
    """What the client's `PkiEnrollmentSubmitterInitialCtx` keeps, minus the smartcard."""

    def __init__(self, addr, email):
        self.addr = addr
        self.email = email
        self.enrollment_id = EnrollmentID.new()
        self.signing_key = SigningKey.generate()
        self.private_key = PrivateKey.generate()
        self.der_certificate = b"0\x82 stand-in DER certificate of " + email.encode() + os.urandom(16)

    async def submit(self, force=False, new_id=False):
        if new_id:
            self.enrollment_id = EnrollmentID.new()
        payload = PkiEnrollmentSubmitPayload(
            verify_key=self.signing_key.verify_key,
            public_key=self.private_key.public_key,
            requested_device_label=DeviceLabel("PKI laptop"),
        ).dump()
        return await pki_enrollment_submit(
            addr=self.addr,
            enrollment_id=self.enrollment_id,
            force=force,
            submitter_der_x509_certificate=self.der_certificate,
            submitter_der_x509_certificate_email=self.email,
            submit_payload_signature=b"stand-in signature",
            submit_payload=payload,
        )

    async def info(self, enrollment_id=None):
        return await pki_enrollment_info(addr=self.addr, enrollment_id=enrollment_id or self.enrollment_id)


def info_state(rep):
    if isinstance(rep, PkiEnrollmentInfoRepNotFound):
        return "not_found"
    assert isinstance(rep, PkiEnrollmentInfoRepOk), rep
    return rep.enrollment_status.status.value


async def main(config_dir, slughash, password):
    out = {}
    alice = load_device(config_dir, slughash, password)
    org_addr = alice.organization_addr
    addr = BackendPkiEnrollmentAddr(
        organization_id=org_addr.organization_id, hostname=org_addr.hostname, port=org_addr.port,
        use_ssl=org_addr.use_ssl,
    )

    async with backend_authenticated_cmds_factory(org_addr, alice.device_id, alice.signing_key) as cmds:
        await cmds.events_subscribe()
        out["info_unknown"] = info_state(await Submitter(addr, "x@example.com").info())

        # submit -> list -> accept -> the new device connects
        bob = Submitter(addr, "bob@example.com")
        rep = await bob.submit()
        out["submit"] = type(rep).__name__
        assert isinstance(rep, PkiEnrollmentSubmitRepOk), rep
        with trio.fail_after(10):
            event = await cmds.events_listen(wait=True)
        out["event_after_submit"] = isinstance(event, EventsListenRepOkPkiEnrollmentUpdated)
        out["info_submitted"] = info_state(await bob.info())

        rep = await cmds.pki_enrollment_list()
        assert isinstance(rep, PkiEnrollmentListRepOk), rep
        listed = [item for item in rep.enrollments if item.enrollment_id == bob.enrollment_id]
        out["listed"] = len(listed)
        payload = PkiEnrollmentSubmitPayload.load(listed[0].submit_payload)
        out["listed_payload_roundtrip"] = (
            payload.verify_key == bob.signing_key.verify_key
            and listed[0].submitter_der_x509_certificate == bob.der_certificate
        )

        (user_cert, redacted_user_cert, device_cert, redacted_device_cert, confirmation) = (
            _create_new_user_certificates(
                author=alice,
                device_label=payload.requested_device_label,
                human_handle=HumanHandle(bob.email, "Bob PKI"),
                profile=UserProfile.STANDARD,
                public_key=payload.public_key,
                verify_key=payload.verify_key,
            )
        )
        answer = PkiEnrollmentAnswerPayload(
            device_id=confirmation.device_id,
            device_label=confirmation.device_label,
            human_handle=confirmation.human_handle,
            profile=confirmation.profile,
            root_verify_key=confirmation.root_verify_key,
        ).dump()
        accept_fields = dict(
            enrollment_id=bob.enrollment_id,
            accepter_der_x509_certificate=b"0\x82 stand-in DER certificate of alice",
            accept_payload_signature=b"stand-in accept signature",
            accept_payload=answer,
            user_certificate=user_cert,
            device_certificate=device_cert,
            redacted_user_certificate=redacted_user_cert,
            redacted_device_certificate=redacted_device_cert,
        )
        rep = await cmds.pki_enrollment_accept(**accept_fields)
        out["accept"] = type(rep).__name__
        assert isinstance(rep, PkiEnrollmentAcceptRepOk), rep
        rep = await cmds.pki_enrollment_accept(**accept_fields)
        out["accept_again"] = isinstance(rep, PkiEnrollmentAcceptRepNoLongerAvailable)

        # What the client's submitter does once it sees ACCEPTED: build the device from the answer.
        info = await bob.info()
        out["info_accepted"] = info_state(info)
        accepted = PkiEnrollmentAnswerPayload.load(info.accept_payload)
        new_device = LocalDevice.generate_new_device(
            organization_addr=BackendOrganizationAddr.build(
                backend_addr=BackendAddr(addr.hostname, addr.port, addr.use_ssl),
                organization_id=addr.organization_id,
                root_verify_key=accepted.root_verify_key,
            ),
            device_id=accepted.device_id,
            profile=accepted.profile,
            human_handle=accepted.human_handle,
            device_label=accepted.device_label,
            signing_key=bob.signing_key,
            private_key=bob.private_key,
        )
        async with backend_authenticated_cmds_factory(
            new_device.organization_addr, new_device.device_id, new_device.signing_key
        ) as bob_cmds:
            rep = await bob_cmds.user_get(new_device.user_id)
            out["new_device_connects"] = type(rep).__name__
        rep = await bob.submit(force=True, new_id=True)
        out["submit_after_enrolled"] = isinstance(rep, PkiEnrollmentSubmitRepAlreadyEnrolled)

        # reject
        carl = Submitter(addr, "carl@example.com")
        await carl.submit()
        rep = await cmds.pki_enrollment_reject(carl.enrollment_id)
        out["reject"] = isinstance(rep, PkiEnrollmentRejectRepOk)
        out["info_rejected"] = info_state(await carl.info())

        # force: the pending submission is cancelled
        dave = Submitter(addr, "dave@example.com")
        first_id = dave.enrollment_id
        await dave.submit()
        rep = await dave.submit(new_id=True)
        out["submit_twice"] = isinstance(rep, PkiEnrollmentSubmitRepAlreadySubmitted)
        rep = await dave.submit(force=True)
        out["submit_forced"] = isinstance(rep, PkiEnrollmentSubmitRepOk)
        out["info_cancelled"] = info_state(await dave.info(first_id))
    print(json.dumps(out))


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), sys.argv[2], sys.argv[3])
