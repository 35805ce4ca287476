"""Helpers of the PKI enrollment tests: submissions over the anonymous HTTP route, answers over the websocket."""
from __future__ import annotations

import asyncio
import os
import uuid
import zlib
from typing import Any

from protocol import codec
from tests.conftest import World, anonymous_rpc
from tests.testkit import certs
from tests.testkit.certs import TestDevice
from tests.testkit.ws import WsClient

PKI_ENROLLMENT_UPDATED = {"status": "ok", "event": "pki_enrollment.updated"}


def fake_der_certificate() -> bytes:
    # The server never parses X.509: any bytes stand for a smartcard's certificate.
    return b"0\x82" + os.urandom(64)


def submit_payload(device: TestDevice, **overrides: Any) -> bytes:
    data = {
        "type": "pki_enrollment_submit_payload",
        "verify_key": device.verify_key,
        "public_key": device.public_key,
        "requested_device_label": device.device_label,
        **overrides,
    }
    return zlib.compress(codec.packb(data))


def answer_payload(world: World, device: TestDevice, **overrides: Any) -> bytes:
    data = {
        "type": "pki_enrollment_answer_payload",
        "device_id": device.device_id,
        "device_label": device.device_label,
        "human_handle": list(device.human_handle) if device.human_handle else None,
        "profile": device.profile,
        "root_verify_key": world.root_verify_key,
        **overrides,
    }
    return zlib.compress(codec.packb(data))


async def anonymous(world: World, cmd: str, **fields: Any) -> dict[str, Any]:
    response = await anonymous_rpc(world.organization_id, {"cmd": cmd, **fields})
    assert response.status_code == 200, response.status_code
    return codec.unpackb(response.content)


async def submit(
    world: World,
    device: TestDevice,
    *,
    enrollment_id: uuid.UUID | None = None,
    certificate: bytes | None = None,
    email: str | None = None,
    force: bool = False,
    payload: bytes | None = None,
) -> tuple[uuid.UUID, bytes, dict[str, Any]]:
    """`pki_enrollment_submit` for the would-be `device`; returns (enrollment id, DER certificate, reply)."""
    enrollment_id = enrollment_id or uuid.uuid4()
    certificate = certificate or fake_der_certificate()
    reply = await anonymous(
        world,
        "pki_enrollment_submit",
        enrollment_id=enrollment_id,
        force=force,
        submitter_der_x509_certificate=certificate,
        submitter_der_x509_certificate_email=email,
        submit_payload_signature=b"signature of " + certificate[:8],
        submit_payload=payload if payload is not None else submit_payload(device),
    )
    return enrollment_id, certificate, reply


def accept_request(world: World, author: TestDevice, device: TestDevice, enrollment_id: uuid.UUID,
                   **overrides: Any) -> dict[str, Any]:
    """The fields of `pki_enrollment_accept` by `author` making `device`'s user."""
    return {
        "enrollment_id": enrollment_id,
        "accepter_der_x509_certificate": b"0\x82accepter",
        "accept_payload_signature": b"accept signature",
        "accept_payload": answer_payload(world, device),
        **certs.user_creation_certificates(author, device),
        **overrides,
    }


async def subscribed(device: TestDevice) -> WsClient:
    from tests.conftest import connect_as

    client = await connect_as(device)
    assert await client.command("events_subscribe") == {"status": "ok"}
    return client


async def next_event(listener: WsClient, timeout: float = 5) -> dict[str, Any]:
    await listener.send({"cmd": "events_listen", "wait": True})
    return await listener.receive(timeout)


async def no_more_events(listener: WsClient) -> bool:
    await asyncio.sleep(0.2)
    return await listener.command("events_listen", wait=False) == {"status": "no_events"}
