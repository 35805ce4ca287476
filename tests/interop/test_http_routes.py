"""The HTTP RPC routes and the SSE stream, same requests to our server and to the reference 2.17 server
(`PARSEC_INTEROP_SERVERS=ours,reference`): the same statuses and headers, as docs/protocol.md#http-rpc describes
them."""
from __future__ import annotations

import base64
import uuid

import httpx
import pytest
from nacl.signing import SigningKey

from protocol import codec
from tests.testkit.certs import bootstrap_material

pytestmark = pytest.mark.interop

MSGPACK = {"Content-Type": "application/msgpack", "Api-Version": "3.4"}


@pytest.fixture(scope="module")
def org(server):
    """A bootstrapped organization (through the anonymous route) and its first device."""
    org_id = f"Http{uuid.uuid4().hex[:10]}"
    base = f"http://{server.host}:{server.port}"
    created = httpx.post(f"{base}/administration/organizations", json={"organization_id": org_id},
                         headers={"Authorization": f"Bearer {server.admin_token}"})
    token = created.json()["bootstrap_token"]
    material = bootstrap_material(org_id, "alice", "dev1", "alice@example.com", "Alice")
    body = codec.packb({"cmd": "organization_bootstrap", "bootstrap_token": token, **material.request_fields})
    assert codec.unpackb(httpx.post(f"{base}/anonymous/{org_id}", content=body, headers=MSGPACK).content) == {
        "status": "ok"}
    return base, org_id, material.device


def signed(device, body: bytes, signing_key=None) -> dict[str, str]:
    return {"Authorization": "PARSEC-SIGN-ED25519", "Author": base64.b64encode(device.device_id.encode()).decode(),
            "Signature": base64.b64encode((signing_key or device.signing_key).sign(body).signature).decode()}


def post_authenticated(org, request: dict | bytes, **overrides):
    base, org_id, device = org
    body = request if isinstance(request, bytes) else codec.packb(request)
    headers = {**MSGPACK, **signed(device, body)}
    headers.update(overrides.pop("headers", {}))
    headers = {k: v for k, v in headers.items() if v is not None}
    return httpx.post(f"{base}/authenticated/{overrides.pop('org_id', org_id)}", content=body, headers=headers)


def test_authenticated_statuses(org, server):
    ok = post_authenticated(org, {"cmd": "organization_config"})
    assert (ok.status_code, ok.headers["api-version"], ok.headers["content-type"]) == (
        200, "3.4", "application/msgpack")
    assert codec.unpackb(ok.content)["status"] == "ok"
    v2 = post_authenticated(org, {"cmd": "organization_config"}, headers={"Api-Version": "2.1"})
    assert (v2.status_code, v2.headers["api-version"]) == (200, "2.10")
    refusals = {
        "bad signature": post_authenticated(org, {"cmd": "organization_config"},
                                            headers={"Signature": base64.b64encode(bytes(64)).decode()}),
        "other key": post_authenticated(org, b"\x81\xa3cmd\xb3organization_config", headers=signed(
            org[2], b"\x81\xa3cmd\xb3organization_config", SigningKey.generate())),
        "unknown device": post_authenticated(org, {"cmd": "organization_config"},
                                             headers={"Author": base64.b64encode(b"alice@nope").decode()}),
        "no authorization": post_authenticated(org, {"cmd": "organization_config"}, headers={"Authorization": None}),
        "unknown command": post_authenticated(org, {"cmd": "nope"}),
        "invited command": post_authenticated(org, {"cmd": "invite_info"}),
        "not msgpack": post_authenticated(org, b"\xc1"),
        "bad content type": post_authenticated(org, {"cmd": "organization_config"},
                                               headers={"Content-Type": "text/plain"}),
        "unknown organization": post_authenticated(org, {"cmd": "organization_config"}, org_id="NoSuchOrg"),
    }
    assert {name: (r.status_code, r.content) for name, r in refusals.items()} == {
        "bad signature": (401, b""), "other key": (401, b""), "unknown device": (401, b""),
        "no authorization": (401, b""), "unknown command": (415, b""), "invited command": (415, b""),
        "not msgpack": (415, b""), "bad content type": (415, b""), "unknown organization": (404, b""),
    }
    unsupported = post_authenticated(org, {"cmd": "organization_config"}, headers={"Api-Version": "4.0"})
    assert (unsupported.status_code, unsupported.headers["supported-api-versions"]) == (422, "2.10;3.4")


def test_invited_statuses(org, server):
    base, org_id, _device = org
    new = codec.unpackb(post_authenticated(org, {"cmd": "invite_new", "type": "DEVICE", "send_email": False}).content)
    token = new["token"]

    def invited(raw_token, request=None):
        headers = {**MSGPACK} if raw_token is None else {**MSGPACK, "Invitation-Token": raw_token}
        return httpx.post(f"{base}/invited/{org_id}", content=codec.packb(request or {"cmd": "invite_info"}),
                          headers=headers)

    info = invited(token.hex)
    assert info.status_code == 200
    assert codec.unpackb(info.content)["greeter_user_id"] == "alice"
    assert {name: invited(raw).status_code for name, raw in {
        "missing": None, "not hex": "z" * 32, "unknown": uuid.uuid4().hex}.items()} == {
        "missing": 415, "not hex": 415, "unknown": 404}
    assert invited(token.hex, {"cmd": "organization_config"}).status_code == 415
    deleted = post_authenticated(org, {"cmd": "invite_delete", "token": token, "reason": "CANCELLED"})
    assert codec.unpackb(deleted.content) == {"status": "ok"}
    assert invited(token.hex).status_code == 410


def test_events_stream(org, server):
    base, org_id, device = org
    url = f"{base}/authenticated/{org_id}/events"
    refused = httpx.get(url, headers={**signed(device, b""), "Api-Version": "3.4"})
    assert refused.status_code == 406
    headers = {**signed(device, b""), "Api-Version": "3.4", "Accept": "text/event-stream"}
    with httpx.stream("GET", url, headers=headers, timeout=10) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        assert next(stream.iter_raw()) == b":keepalive\n\n"
