"""Helpers of the invitation tests: greeters, claimers and the events greeters receive."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from invites.models import ClaimerSession
from tests.conftest import World, connect_as
from tests.testkit.certs import TestDevice
from tests.testkit.ws import WsClient

PUBLIC_KEY_G = b"G" * 32
PUBLIC_KEY_C = b"C" * 32
HASHED_NONCE = b"H" * 32
GREETER_NONCE = b"g" * 64
CLAIMER_NONCE = b"c" * 64


@pytest.fixture(autouse=True)
def no_email_by_default(parsec_settings):
    """A backend address and the MOCKED e-mail host, whatever the environment says."""
    from parsec_site.addr import BackendAddr

    parsec_settings(backend_addr=BackendAddr.parse("parsec://parsec.example.com:6777?no_ssl=true"), email_host="MOCKED")


async def new_invitation(client: WsClient, type: str = "DEVICE", **fields: Any) -> uuid.UUID:
    fields.setdefault("send_email", False)
    reply = await client.command("invite_new", type=type, **fields)
    assert reply["status"] == "ok", reply
    return reply["token"]


async def connect_claimer(
    world: World, token: uuid.UUID, invitation_type: str = "DEVICE", api_version: tuple[int, int] = (3, 4)
) -> WsClient:
    sessions = ClaimerSession.objects.filter(invitation__token=token)
    before = await sessions.acount()
    client = await WsClient.connect()
    result = await client.invited(
        organization_id=world.organization_id, invitation_type=invitation_type, token=token, api_version=api_version
    )
    assert result == {"handshake": "result", "result": "ok"}, result
    # The server marks the claimer online right after its handshake reply: wait for it.
    await wait_for(sessions.acount, lambda count: count > before)
    return client


async def wait_for(query, condition, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition(await query()):
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def subscribed(device: TestDevice) -> WsClient:
    client = await connect_as(device)
    assert await client.command("events_subscribe") == {"status": "ok"}
    return client


async def next_event(listener: WsClient, timeout: float = 5) -> dict[str, Any]:
    await listener.send({"cmd": "events_listen", "wait": True})
    return await listener.receive(timeout)


async def no_more_events(listener: WsClient) -> bool:
    await asyncio.sleep(0.2)
    return await listener.command("events_listen", wait=False) == {"status": "no_events"}


def status_changed(token: uuid.UUID, status: str) -> dict[str, Any]:
    return {"status": "ok", "event": "invite.status_changed", "token": token, "invitation_status": status}


async def pending(client: WsClient, cmd: str, **fields: Any) -> None:
    """Send a command that must wait for the peer; it gets no reply yet."""
    await client.send({"cmd": cmd, **fields})
    assert await client.nothing_received(0.2), f"{cmd} replied without waiting for the peer"
