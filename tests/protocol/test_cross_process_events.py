"""Events and session closes cross server processes through the Redis channel layer."""
from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid

from tests.testkit import certs
from tests.testkit.cross_process import ADMIN_TOKEN, Ws, authenticated, create_organization, servers  # noqa: F401


async def test_vlob_write_on_one_process_reaches_a_listener_on_the_other(servers):  # noqa: F811 - the fixture imported above
    port_a, port_b = servers
    organization_id = f"Org{uuid.uuid4().hex[:8]}"
    alice = await asyncio.to_thread(create_organization, port_a, organization_id)
    writer = await authenticated(port_a, alice)
    alice2 = alice.new_device("dev2")
    assert await writer.command("device_create", **certs.device_creation_certificates(alice, alice2)) == {"status": "ok"}

    listener = await authenticated(port_b, alice2)
    assert await listener.command("events_subscribe") == {"status": "ok"}

    realm_id = uuid.uuid4()
    role = certs.realm_role_certificate(alice.signing_key, author=alice.device_id, timestamp=certs.now(),
                                        realm_id=realm_id, user_id="alice", role="OWNER")
    assert await writer.command("realm_create", role_certificate=role) == {"status": "ok"}
    assert await listener.command("events_listen", wait=True) == {
        "status": "ok", "event": "realm.roles_updated", "realm_id": realm_id, "role": "OWNER"}

    vlob_id = uuid.uuid4()
    assert await writer.command("vlob_create", realm_id=realm_id, encryption_revision=1, vlob_id=vlob_id,
                                timestamp=certs.now(), blob=b"manifest", sequester_blob=None) == {"status": "ok"}
    assert await listener.command("events_listen", wait=True) == {
        "status": "ok", "event": "realm.vlobs_updated", "realm_id": realm_id, "checkpoint": 1,
        "src_id": vlob_id, "src_version": 1}
    # The author's own device hears nothing of its write, even on its own process.
    own = await authenticated(port_a, alice)
    assert await own.command("events_subscribe") == {"status": "ok"}
    assert await writer.command("vlob_update", vlob_id=vlob_id, version=2, encryption_revision=1,
                                timestamp=certs.now(), blob=b"v2", sequester_blob=None) == {"status": "ok"}
    assert (await listener.command("events_listen", wait=True))["src_version"] == 2
    assert await own.command("events_listen", wait=False) == {"status": "no_events"}
    for ws in (writer, own, listener):
        await ws.connection.close()


async def test_freeze_through_one_process_closes_sessions_on_the_other(servers):  # noqa: F811 - the fixture imported above
    port_a, port_b = servers
    organization_id = f"Org{uuid.uuid4().hex[:8]}"
    alice = await asyncio.to_thread(create_organization, port_a, organization_id)
    session_on_b = await authenticated(port_b, alice)

    def freeze() -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port_a}/administration/organizations/{organization_id}/users/freeze",
            data=json.dumps({"user_id": "alice", "frozen": True}).encode(),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, method="POST",
        )
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    assert (await asyncio.to_thread(freeze))["frozen"] is True
    assert await session_on_b.closed()
    ws, challenge = await Ws.open(port_b)
    await ws.send(alice.authenticated_answer(challenge["challenge"]))
    assert (await ws.receive())["result"] == "frozen_user"


async def test_sessions_idle_past_the_layers_blocking_read_stay_open(servers):  # noqa: F811 - the fixture imported above
    """A session's channel receive is a blocking Redis read of 5 s (channels_redis' BZPOPMIN). redis-py's default
    socket timeout is 5 s too: the read could time out on the client side first, and the consumer crashed with
    1011 — seen under load with `--workers 2`. Sessions idle through several such reads must stay open."""
    port_a, port_b = servers
    organization_id = f"Org{uuid.uuid4().hex[:8]}"
    alice = await asyncio.to_thread(create_organization, port_a, organization_id)
    sessions = [await authenticated(port, alice) for port in (port_a, port_b) for _ in range(4)]
    await asyncio.sleep(16)  # three blocking reads and more, for every session
    for session in sessions:
        reply = await session.command("organization_config")
        assert reply["status"] == "ok"
