"""`sequester_export_realm`: the reference's export file (layout, ids, resumption) and every refusal.

That the reference's own reader decrypts it is checked by tests/interop/test_sequester.py.
"""
from __future__ import annotations

import io
import sqlite3
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from blocks.stores import factory
from blocks.stores.mocked import MockedBlockStore
from organizations.models import Device, Organization, User
from realms.models import RealmUserRole, RealmVlobUpdate
from sequester.models import ServiceType
from tests.conftest import World, bootstrap_organization, connect_as, create_realm
from tests.sequester.helpers import add_service, make_sequestered
from tests.vlobs.helpers import OK, create_vlob, update_vlob

pytestmark = pytest.mark.django_db(transaction=True)

# The reference's export database (parsec 2.17 sequester_export.py): table -> columns, its reader's contract.
REFERENCE_LAYOUT = {
    "info": ["magic", "version", "realm_id", "root_verify_key"],
    "block": ["_id", "block_id", "data", "author"],
    "vlob_atom": ["_id", "vlob_id", "version", "blob", "author", "timestamp"],
    "realm_role": ["_id", "role_certificate"],
    "user_": ["_id", "user_certificate", "revoked_user_certificate"],
    "device": ["_id", "device_certificate"],
}


@pytest.fixture(autouse=True)
def blockstore(monkeypatch):
    store = MockedBlockStore()
    monkeypatch.setattr(factory, "get_blockstore", lambda: store)
    return store


async def export_cmd(*args: str) -> str:
    from asgiref.sync import sync_to_async

    out = io.StringIO()
    await sync_to_async(call_command)("sequester_export_realm", *args, stdout=out)
    return out.getvalue()


async def sequestered_realm(world: World, alice_ws, realm_id):
    await make_sequestered(world)
    storage = await add_service(world, label="Storage")
    other = await add_service(world, label="Other")
    vlob_id = uuid.uuid4()
    blobs = {storage.service_id: b"<for storage v1>", other.service_id: b"<for other v1>"}
    assert await create_vlob(alice_ws, realm_id, vlob_id=vlob_id, sequester_blob=blobs) == OK
    blobs2 = {storage.service_id: b"<for storage v2>", other.service_id: b"<for other v2>"}
    assert await update_vlob(alice_ws, vlob_id, 2, sequester_blob=blobs2) == OK
    block_id = uuid.uuid4()
    reply = await alice_ws.command("block_create", block_id=block_id, realm_id=realm_id, block=b"<block>")
    assert reply == OK
    return storage, other, vlob_id, block_id


async def test_export_layout_and_content(world: World, alice_ws, realm_id, tmp_path):
    storage, _other, vlob_id, block_id = await sequestered_realm(world, alice_ws, realm_id)
    out = await export_cmd("--organization", world.organization_id, "--realm", realm_id.hex,
                           "--service", storage.service_id.hex, "--output", str(tmp_path))
    path = tmp_path / f"parsec-sequester-export-realm-{realm_id.hex}.sqlite"
    assert out == f"Created {path}: 2 vlob versions and 1 blocks exported\n"
    con = sqlite3.connect(path)
    tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == set(REFERENCE_LAYOUT)
    for table, columns in REFERENCE_LAYOUT.items():
        assert [row[1] for row in con.execute(f"PRAGMA table_info({table})")] == columns, table
    organization = await Organization.objects.aget(organization_id=world.organization_id)
    assert con.execute("SELECT * FROM info").fetchall() == [(87947, 1, realm_id.bytes,
                                                             bytes(organization.root_verify_key))]
    alice = await Device.objects.aget(device_id=world.alice.device_id)
    updates = {u.version: u.index async for u in RealmVlobUpdate.objects.filter(vlob_id=vlob_id)}
    rows = con.execute("SELECT _id, vlob_id, version, blob, author, timestamp FROM vlob_atom ORDER BY _id").fetchall()
    assert [row[:5] for row in rows] == [
        (updates[1], vlob_id.bytes, 1, b"<for storage v1>", alice.pk),
        (updates[2], vlob_id.bytes, 2, b"<for storage v2>", alice.pk),
    ]
    assert all(isinstance(row[5], int) and row[5] > 1_600_000_000_000_000 for row in rows)
    blocks = con.execute("SELECT block_id, data, author FROM block").fetchall()
    assert blocks == [(block_id.bytes, b"<block>", alice.pk)]
    assert con.execute("SELECT _id, device_certificate FROM device").fetchall() == [
        (alice.pk, bytes(alice.device_certificate))]
    user = await User.objects.aget(user_id="alice")
    assert con.execute("SELECT * FROM user_").fetchall() == [(user.pk, bytes(user.user_certificate), None)]
    role = await RealmUserRole.objects.aget(realm__realm_id=realm_id)
    assert con.execute("SELECT * FROM realm_role").fetchall() == [(role.pk, bytes(role.certificate))]
    con.close()


async def test_export_resumes(world: World, alice_ws, realm_id, tmp_path):
    storage, other, vlob_id, _block_id = await sequestered_realm(world, alice_ws, realm_id)
    output = tmp_path / "export.sqlite"
    args = ("--organization", world.organization_id, "--realm", realm_id.hex, "--service", storage.service_id.hex,
            "--output", str(output))
    await export_cmd(*args)
    blobs = {storage.service_id: b"<for storage v3>", other.service_id: b"<x>"}
    assert await update_vlob(alice_ws, vlob_id, 3, sequester_blob=blobs) == OK
    assert (await export_cmd(*args)).startswith(f"Resumed {output}: 1 vlob versions")
    con = sqlite3.connect(output)
    assert [row[0] for row in con.execute("SELECT version FROM vlob_atom ORDER BY _id")] == [1, 2, 3]
    assert con.execute("SELECT count(*) FROM block").fetchone() == (1,)
    con.close()


async def test_export_refusals(world: World, alice_ws, realm_id, tmp_path, webhook):
    storage, *_ = await sequestered_realm(world, alice_ws, realm_id)
    hook = await add_service(world, label="Hook", service_type=ServiceType.WEBHOOK, webhook_url=webhook.url)
    await bootstrap_organization("PlainOrg")
    out = str(tmp_path / "x.sqlite")
    org, realm, service = world.organization_id, realm_id.hex, storage.service_id.hex
    cases = [
        (("Nope", realm, service, out), "Organization `Nope` doesn't exist"),
        (("PlainOrg", realm, service, out), "not a sequestered organization"),
        ((org, uuid.uuid4().hex, service, out), "doesn't exist in organization"),
        ((org, realm, uuid.uuid4().hex, out), "Sequester service .* doesn't exist"),
        ((org, realm, hook.service_id.hex, out), "is a webhook service: it stores nothing"),
        ((org, "not-an-id", service, out), "--realm: `not-an-id` is not an id"),
        ((org, realm, service, str(tmp_path / "missing" / "x.sqlite")), "doesn't exist"),
    ]
    for (o, r, s, output), message in cases:
        with pytest.raises(CommandError, match=message):
            await export_cmd("--organization", o, "--realm", r, "--service", s, "--output", output)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not sqlite at all, just some text that is long enough" * 10)
    with pytest.raises(CommandError, match="not a valid export database"):
        await export_cmd("--organization", org, "--realm", realm, "--service", service, "--output", str(garbage))
    other_realm = await create_realm(await connect_as(world.alice), world.alice)
    first = tmp_path / "first.sqlite"
    await export_cmd("--organization", org, "--realm", other_realm.hex, "--service", service, "--output", str(first))
    with pytest.raises(CommandError, match="export of another realm"):
        await export_cmd("--organization", org, "--realm", realm, "--service", service, "--output", str(first))
