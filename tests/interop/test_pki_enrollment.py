"""PKI enrollment through the official 2.17.0 client library (issue 13).

The client's smartcard layer is Windows-only (`parsec_ext.smartcard`), so the GUI/CLI flows
cannot run on Linux: `pki_client_script.py` drives the same steps with the client's own
payload types, request serializers and reply deserializers, with stand-in X.509 bytes
(the server never parses them): submit → list → accept → the new device connects; a second
accept is `no_longer_available`; reject; a forced resubmission cancels; info in every state;
the admin's connection receives `pki_enrollment.updated`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .refclient import ParsecCli

pytestmark = pytest.mark.interop

SCRIPT = Path(__file__).with_name("pki_client_script.py")
PASSWORD = "P@ssw0rd-interop"


def test_pki_enrollment_with_the_client_library(parsec_cli: ParsecCli, server, org_id: str):
    url = parsec_cli.create_organization(server.addr, org_id, server.admin_token)
    alice = parsec_cli.bootstrap_organization(url, "alice@example.com", "Alice", "alice-laptop", PASSWORD)
    res = parsec_cli.run(
        str(parsec_cli.config_dir), alice.slughash, alice.password,
        program=[str(parsec_cli.bin_dir / "python"), str(SCRIPT)], timeout=120,
    )
    assert res.returncode == 0, res.describe()
    outcome = json.loads(res.stdout.strip().splitlines()[-1])
    assert outcome == {
        "info_unknown": "not_found",
        "submit": "PkiEnrollmentSubmitRepOk",
        "event_after_submit": True,
        "info_submitted": "SUBMITTED",
        "listed": 1,
        "listed_payload_roundtrip": True,
        "accept": "PkiEnrollmentAcceptRepOk",
        "accept_again": True,
        "info_accepted": "ACCEPTED",
        "new_device_connects": "UserGetRepOk",
        "submit_after_enrolled": True,
        "reject": True,
        "info_rejected": "REJECTED",
        "submit_twice": True,
        "submit_forced": True,
        "info_cancelled": "CANCELLED",
    }, res.describe()
