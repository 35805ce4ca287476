"""Greeter and claimer served by two server processes sharing the database and a Redis channel layer.

The greeter (alice) talks to server A, the claimer to server B, over real websockets. The rendezvous
lives in the database and wakes the other side through Redis.
"""
from __future__ import annotations

import asyncio
import uuid

from tests.testkit.cross_process import authenticated, create_organization, invited, servers  # noqa: F401


async def test_greeter_and_claimer_on_two_processes(servers):  # noqa: F811 - the fixture imported above
    port_a, port_b = servers
    organization_id = f"Org{uuid.uuid4().hex[:8]}"
    alice = await asyncio.to_thread(create_organization, port_a, organization_id)

    listener = await authenticated(port_a, alice)
    assert await listener.command("events_subscribe") == {"status": "ok"}
    greeter = await authenticated(port_a, alice)
    reply = await greeter.command("invite_new", type="DEVICE", send_email=False)
    token = reply["token"]
    assert await listener.command("events_listen", wait=True) == {
        "status": "ok", "event": "invite.status_changed", "token": token, "invitation_status": "IDLE"}

    # Claimer on the other process: READY reaches the greeter's process, and the list says so.
    claimer = await invited(port_b, organization_id, token)
    assert (await listener.command("events_listen", wait=True))["invitation_status"] == "READY"
    assert (await greeter.command("invite_list"))["invitations"][0]["status"] == "READY"

    # Step 1, claimer first: the greeter's post on A wakes the claimer waiting on B.
    await claimer.send({"cmd": "invite_1_claimer_wait_peer", "greeter_user_id": "alice", "claimer_public_key": b"C" * 32})
    assert await claimer.nothing_received()
    await greeter.send({"cmd": "invite_1_greeter_wait_peer", "token": token, "greeter_public_key": b"G" * 32})
    assert await greeter.receive() == {"status": "ok", "claimer_public_key": b"C" * 32}
    assert await claimer.receive() == {"status": "ok", "greeter_public_key": b"G" * 32}

    # Step 2, greeter first: the claimer's post on B wakes the greeter waiting on A.
    await greeter.send({"cmd": "invite_2a_greeter_get_hashed_nonce", "token": token})
    assert await greeter.nothing_received()
    await claimer.send({"cmd": "invite_2a_claimer_send_hashed_nonce", "greeter_user_id": "alice",
                        "claimer_hashed_nonce": b"H" * 32})
    assert await greeter.receive() == {"status": "ok", "claimer_hashed_nonce": b"H" * 32}
    await greeter.send({"cmd": "invite_2b_greeter_send_nonce", "token": token, "greeter_nonce": b"g" * 64})
    assert await claimer.receive() == {"status": "ok", "greeter_nonce": b"g" * 64}
    assert await claimer.command("invite_2b_claimer_send_nonce", greeter_user_id="alice", claimer_nonce=b"c" * 64) == {
        "status": "ok"}
    assert await greeter.receive() == {"status": "ok", "claimer_nonce": b"c" * 64}
    await greeter.send({"cmd": "invite_3a_greeter_wait_peer_trust", "token": token})
    assert await claimer.command("invite_3a_claimer_signify_trust", greeter_user_id="alice") == {"status": "ok"}
    assert await greeter.receive() == {"status": "ok"}
    await claimer.send({"cmd": "invite_3b_claimer_wait_peer_trust", "greeter_user_id": "alice"})
    assert await greeter.command("invite_3b_greeter_signify_trust", token=token) == {"status": "ok"}
    assert await claimer.receive() == {"status": "ok"}
    await claimer.send({"cmd": "invite_4_claimer_communicate", "greeter_user_id": "alice", "payload": b"request"})
    assert await greeter.command("invite_4_greeter_communicate", token=token, payload=b"") == {
        "status": "ok", "payload": b"request"}
    assert await claimer.receive() == {"status": "ok", "payload": b""}

    # Deletion from process B while the greeter waits on A: already_deleted there, the claimer on B is closed.
    await greeter.send({"cmd": "invite_4_greeter_communicate", "token": token, "payload": b"confirmation"})
    assert await greeter.nothing_received()
    other = await authenticated(port_b, alice)
    assert await other.command("invite_delete", token=token, reason="CANCELLED") == {"status": "ok"}
    assert await greeter.receive() == {"status": "already_deleted"}
    assert await claimer.closed()
    assert (await listener.command("events_listen", wait=True))["invitation_status"] == "DELETED"
    assert (await listener.command("events_listen", wait=True))["invitation_status"] == "IDLE"
    for ws in (listener, greeter, other):
        await ws.connection.close()
