"""`organization_bootstrap` (docs/protocol.md#organization-bootstrap): one test per reply status, plus webhook and
spontaneous bootstrap."""
from __future__ import annotations

import http.server
import json
import secrets
import threading
from datetime import timedelta

import pytest
from nacl.signing import SigningKey

from organizations.outcomes import to_reply
from organizations.services import organizations as services
from organizations.models import Device, Organization, User
from protocol import codec
from tests.conftest import anonymous_rpc, connect_as, create_organization_row
from tests.testkit import certs

pytestmark = pytest.mark.django_db(transaction=True)

ORG = "BootOrg"


@pytest.fixture
async def token() -> str:
    value = secrets.token_hex(32)
    await create_organization_row(ORG, value)
    return value


def material(**kwargs):
    return certs.bootstrap_material(ORG, "alice", "dev1", "alice@example.com", "Alice", **kwargs)


async def bootstrap(token: str, fields: dict, organization_id: str = ORG) -> dict:
    response = await anonymous_rpc(organization_id, {"cmd": "organization_bootstrap", "bootstrap_token": token, **fields})
    assert response.status_code == 200
    return codec.unpackb(response.content)


def resign_user(m, **changes) -> bytes:
    device = m.device
    fields = dict(
        author=None, timestamp=changes.pop("timestamp", certs.now()), user_id=device.user_id,
        public_key=device.public_key, profile=device.profile, human_handle=device.human_handle,
    )
    fields.update(changes)
    return certs.user_certificate(m.root_signing_key, **fields)


async def test_ok(token):
    m = material()
    assert await bootstrap(token, m.request_fields) == {"status": "ok"}
    organization = await Organization.objects.aget(organization_id=ORG)
    assert bytes(organization.root_verify_key) == m.request_fields["root_verify_key"]
    assert organization.bootstrapped_on is not None
    user = await User.objects.aget(organization=organization, user_id="alice")
    assert (user.profile, user.human_email, user.human_label) == ("ADMIN", "alice@example.com", "Alice")
    assert bytes(user.user_certificate) == m.request_fields["user_certificate"]
    assert bytes(user.redacted_user_certificate) == m.request_fields["redacted_user_certificate"]
    device = await Device.objects.aget(organization=organization, device_id="alice@dev1")
    assert bytes(device.device_certificate) == m.request_fields["device_certificate"]
    assert bytes(device.verify_key) == m.device.verify_key
    assert device.device_certifier_id is None and user.user_certifier_id is None
    # The new device can now open an authenticated session.
    client = await connect_as(m.device)
    await client.close()


async def test_invalid_certification_wrong_root_key(token):
    m = material()
    fields = dict(m.request_fields, root_verify_key=bytes(SigningKey.generate().verify_key))
    reply = await bootstrap(token, fields)
    assert reply["status"] == "invalid_certification"
    assert isinstance(reply["reason"], str)


@pytest.mark.parametrize("field", ["user_certificate", "device_certificate", "redacted_user_certificate", "redacted_device_certificate"])
async def test_invalid_certification_garbage(token, field):
    m = material()
    reply = await bootstrap(token, dict(m.request_fields, **{field: b"\x00" * 80}))
    assert reply["status"] == "invalid_certification"


async def test_invalid_certification_wrong_certificate_type(token):
    m = material()
    reply = await bootstrap(token, dict(m.request_fields, user_certificate=m.request_fields["device_certificate"]))
    assert reply["status"] == "invalid_certification"


async def test_invalid_data_not_admin(token):
    m = material(profile="STANDARD")
    reply = await bootstrap(token, m.request_fields)
    assert reply["status"] == "invalid_data"


async def test_invalid_data_timestamps_differ(token):
    m = material()
    later = certs.now() + timedelta(seconds=1)
    fields = dict(m.request_fields, user_certificate=resign_user(m, timestamp=later),
                  redacted_user_certificate=resign_user(m, timestamp=later, human_handle=None))
    assert (await bootstrap(token, fields))["status"] == "invalid_data"


async def test_invalid_data_device_of_another_user(token):
    m = material()
    ts = certs.now()
    fields = dict(m.request_fields, user_certificate=resign_user(m, timestamp=ts, user_id="bob"),
                  redacted_user_certificate=resign_user(m, timestamp=ts, user_id="bob", human_handle=None))
    # The device certificates still carry the original timestamp: rebuild them at `ts`.
    fields.update(certs.device_creation_certificates(m.root_signing_key, m.device, ts))
    assert (await bootstrap(token, fields))["status"] == "invalid_data"


async def test_invalid_data_redacted_user_keeps_human_handle(token):
    m = material()
    fields = dict(m.request_fields, redacted_user_certificate=m.request_fields["user_certificate"])
    assert (await bootstrap(token, fields))["status"] == "invalid_data"


async def test_invalid_data_redacted_device_keeps_label(token):
    m = material()
    fields = dict(m.request_fields, redacted_device_certificate=m.request_fields["device_certificate"])
    assert (await bootstrap(token, fields))["status"] == "invalid_data"


async def test_invalid_data_redacted_user_differs_elsewhere(token):
    m = material()
    ts = certs.now()
    fields = dict(m.request_fields)
    fields.update(certs.user_creation_certificates(m.root_signing_key, m.device, ts))
    fields["redacted_user_certificate"] = resign_user(m, timestamp=ts, human_handle=None, public_key=b"\x01" * 32)
    assert (await bootstrap(token, fields))["status"] == "invalid_data"


async def test_bad_timestamp(token):
    old = certs.now() - timedelta(hours=1)
    m = material(timestamp=old)
    reply = await bootstrap(token, m.request_fields)
    assert reply["status"] == "bad_timestamp"
    assert reply["reason"] is None
    assert reply["client_timestamp"] == old
    assert reply["ballpark_client_early_offset"] == 300.0
    assert reply["ballpark_client_late_offset"] == 320.0
    assert abs((certs.now() - reply["backend_timestamp"]).total_seconds()) < 5


async def test_already_bootstrapped(token):
    assert (await bootstrap(token, material().request_fields))["status"] == "ok"
    assert await bootstrap(token, material().request_fields) == {"status": "already_bootstrapped"}


async def test_not_found_wrong_token(token):
    assert await bootstrap("0" * 64, material().request_fields) == {"status": "not_found"}
    assert not (await Organization.objects.aget(organization_id=ORG)).is_bootstrapped


async def test_sequester_authority_ok(token):
    ts = certs.now()
    m = material(timestamp=ts)
    authority = certs.sequester_authority_certificate(m.root_signing_key, timestamp=ts, verify_key_der=b"der-key")
    assert (await bootstrap(token, dict(m.request_fields, sequester_authority_certificate=authority)))["status"] == "ok"
    organization = await Organization.objects.aget(organization_id=ORG)
    assert bytes(organization.sequester_authority_certificate) == authority
    assert bytes(organization.sequester_authority_verify_key_der) == b"der-key"


async def test_sequester_authority_invalid_signature_is_invalid_data(token):
    ts = certs.now()
    m = material(timestamp=ts)
    authority = certs.sequester_authority_certificate(SigningKey.generate(), timestamp=ts, verify_key_der=b"k")
    reply = await bootstrap(token, dict(m.request_fields, sequester_authority_certificate=authority))
    assert reply["status"] == "invalid_data"


async def test_sequester_authority_with_author_is_invalid_data(token):
    ts = certs.now()
    m = material(timestamp=ts)
    authority = certs.sequester_authority_certificate(m.root_signing_key, timestamp=ts, verify_key_der=b"k", author="alice@dev1")
    reply = await bootstrap(token, dict(m.request_fields, sequester_authority_certificate=authority))
    assert reply["status"] == "invalid_data"


async def test_sequester_authority_other_timestamp_is_invalid_data(token):
    ts = certs.now()
    m = material(timestamp=ts)
    authority = certs.sequester_authority_certificate(m.root_signing_key, timestamp=ts + timedelta(seconds=1), verify_key_der=b"k")
    reply = await bootstrap(token, dict(m.request_fields, sequester_authority_certificate=authority))
    assert reply["status"] == "invalid_data"


async def test_missing_sequester_key_means_none(token):
    # Introduced in API 2.8/3.2: the 2.0-2.10 clients do not send it (the reference reads it as absent).
    fields = dict(material().request_fields)
    del fields["sequester_authority_certificate"]
    assert await bootstrap(token, fields) == {"status": "ok"}


async def test_spontaneous_bootstrap_creates_the_organization(transactional_db, parsec_settings):
    parsec_settings(spontaneous_organization_bootstrap=True)
    m = certs.bootstrap_material("NewOrg", "alice", "dev1", "alice@example.com", "Alice")
    assert await bootstrap("", m.request_fields, organization_id="NewOrg") == {"status": "ok"}
    organization = await Organization.objects.aget(organization_id="NewOrg")
    assert organization.bootstrap_token == "" and organization.is_bootstrapped


async def test_spontaneous_bootstrap_keeps_token_of_created_organization(token, parsec_settings):
    parsec_settings(spontaneous_organization_bootstrap=True)
    assert await bootstrap("", material().request_fields) == {"status": "not_found"}
    assert (await bootstrap(token, material().request_fields))["status"] == "ok"


async def test_unknown_organization_without_spontaneous_bootstrap_is_404(transactional_db):
    response = await anonymous_rpc("NewOrg", {"cmd": "organization_bootstrap", "bootstrap_token": "", **material().request_fields})
    assert response.status_code == 404


def test_concurrent_bootstraps_only_one_wins(transactional_db):
    from asgiref.sync import SyncToAsync
    from django.db import connections

    token = secrets.token_hex(32)
    from django.utils import timezone

    Organization.objects.create(organization_id=ORG, bootstrap_token=token, created_on=timezone.now())
    outcomes: list[str] = []

    def attempt() -> None:
        m = material()
        outcome = services.organization_bootstrap(organization_id=ORG, bootstrap_token=token, **m.request_fields)
        outcomes.append(to_reply(outcome)["status"])

    def attempt_then_release() -> None:
        try:
            attempt()
        finally:
            connections.close_all()

    # Four attempts hold four pooled connections at once: give back the ones this thread and asgiref's
    # sync thread hold from earlier work, so that the test needs no more of the pool than that.
    connections.close_all()
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()
    threads = [threading.Thread(target=attempt_then_release) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["already_bootstrapped"] * 3 + ["ok"]
    assert User.objects.filter(organization__organization_id=ORG).count() == 1


class WebhookReceiver(http.server.BaseHTTPRequestHandler):
    received: list = []
    answer_status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        WebhookReceiver.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(WebhookReceiver.answer_status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook_server():
    WebhookReceiver.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), WebhookReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


async def test_webhook_is_posted_after_bootstrap(token, webhook_server, parsec_settings):
    parsec_settings(organization_bootstrap_webhook=f"http://127.0.0.1:{webhook_server.server_port}/hook")
    assert (await bootstrap(token, material().request_fields))["status"] == "ok"
    assert WebhookReceiver.received == [
        ("application/json; charset=utf-8",
         {"organization_id": ORG, "device_id": "alice@dev1", "device_label": "Device dev1",
          "human_email": "alice@example.com", "human_label": "Alice"})
    ]


async def test_failing_webhook_does_not_break_bootstrap(token, webhook_server, parsec_settings):
    WebhookReceiver.answer_status = 500
    parsec_settings(organization_bootstrap_webhook=f"http://127.0.0.1:{webhook_server.server_port}/hook")
    try:
        assert (await bootstrap(token, material().request_fields))["status"] == "ok"
    finally:
        WebhookReceiver.answer_status = 200
    assert len(WebhookReceiver.received) == 1


async def test_unreachable_webhook_does_not_break_bootstrap(token, parsec_settings):
    from tests.pgcluster import free_port

    parsec_settings(organization_bootstrap_webhook=f"http://127.0.0.1:{free_port()}/hook")
    assert (await bootstrap(token, material().request_fields))["status"] == "ok"


async def test_no_webhook_for_failed_bootstrap(token, webhook_server, parsec_settings):
    parsec_settings(organization_bootstrap_webhook=f"http://127.0.0.1:{webhook_server.server_port}/hook")
    assert (await bootstrap("0" * 64, material().request_fields))["status"] == "not_found"
    assert WebhookReceiver.received == []
