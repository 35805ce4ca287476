"""Sequester checks of `vlob_create` / `vlob_update` (docs/protocol.md#sequester-checks) with registered services:
one test per outcome, storage services' blobs kept per version, webhook services POSTed to a real server."""
from __future__ import annotations

import uuid

import pytest

from realms.models import VlobAtom
from sequester.models import SequesterServiceVlobAtom, ServiceType
from tests.conftest import World, connect_as
from tests.sequester.helpers import add_service, make_sequestered, unreachable_url
from tests.vlobs.helpers import OK, create_vlob, update_vlob

pytestmark = pytest.mark.django_db(transaction=True)


async def stored_blobs(vlob_id: uuid.UUID) -> dict[tuple[int, uuid.UUID], bytes]:
    """(version, service id) -> blob kept for the storage services."""
    return {
        (row.vlob_atom.version, row.service.service_id): bytes(row.blob)
        async for row in SequesterServiceVlobAtom.objects.select_related("vlob_atom", "service").filter(
            vlob_atom__vlob_id=vlob_id
        )
    }


# ok ----------------------------------------------------------------------------------------------


async def test_ok_storage_blobs_kept_per_version(world: World, alice_ws, realm_id):
    await make_sequestered(world)
    first, second = await add_service(world, label="First"), await add_service(world, label="Second")
    vlob_id = uuid.uuid4()
    blobs = {first.service_id: b"<for first v1>", second.service_id: b"<for second v1>"}
    assert await create_vlob(alice_ws, realm_id, vlob_id=vlob_id, sequester_blob=blobs) == OK
    blobs2 = {first.service_id: b"<for first v2>", second.service_id: b"<for second v2>"}
    assert await update_vlob(alice_ws, vlob_id, 2, sequester_blob=blobs2) == OK
    assert await stored_blobs(vlob_id) == {
        (1, first.service_id): b"<for first v1>", (1, second.service_id): b"<for second v1>",
        (2, first.service_id): b"<for first v2>", (2, second.service_id): b"<for second v2>",
    }


async def test_ok_disabled_service_is_not_expected(world: World, alice_ws, realm_id):
    await make_sequestered(world)
    enabled = await add_service(world)
    await add_service(world, disabled=True)
    vlob_id = uuid.uuid4()
    assert await create_vlob(alice_ws, realm_id, vlob_id=vlob_id, sequester_blob={enabled.service_id: b"<x>"}) == OK
    assert await stored_blobs(vlob_id) == {(1, enabled.service_id): b"<x>"}


async def test_ok_nil_when_every_service_disabled(world: World, alice_ws, realm_id):
    await make_sequestered(world)
    await add_service(world, disabled=True)
    assert await create_vlob(alice_ws, realm_id, sequester_blob=None) == OK


async def test_ok_webhook_gets_its_blob_and_it_is_not_stored(world: World, alice_ws, realm_id, webhook):
    await make_sequestered(world)
    storage = await add_service(world, label="Storage")
    hook = await add_service(world, label="Hook", service_type=ServiceType.WEBHOOK, webhook_url=webhook.url)
    vlob_id = uuid.uuid4()
    blobs = {storage.service_id: b"<stored>", hook.service_id: b"<posted v1>"}
    assert await create_vlob(alice_ws, realm_id, vlob_id=vlob_id, sequester_blob=blobs) == OK
    assert await update_vlob(alice_ws, vlob_id, 2, sequester_blob={**blobs, hook.service_id: b"<posted v2>"}) == OK
    expected_query = {"organization_id": [world.organization_id], "service_id": [hook.service_id.hex]}
    assert webhook.received == [(expected_query, b"<posted v1>"), (expected_query, b"<posted v2>")]
    assert await stored_blobs(vlob_id) == {(1, storage.service_id): b"<stored>", (2, storage.service_id): b"<stored>"}


# sequester_inconsistency -------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["none", "missing", "extra", "disabled", "nil"])
async def test_sequester_inconsistency(world: World, alice_ws, realm_id, given):
    authority = await make_sequestered(world)
    first, second = await add_service(world), await add_service(world)
    disabled = await add_service(world, disabled=True)
    blob = {
        "none": {},
        "missing": {first.service_id: b"<x>"},
        "extra": {first.service_id: b"<x>", second.service_id: b"<x>", uuid.uuid4(): b"<x>"},
        "disabled": {first.service_id: b"<x>", second.service_id: b"<x>", disabled.service_id: b"<x>"},
        "nil": None,
    }[given]
    expected = {
        "status": "sequester_inconsistency",
        "sequester_authority_certificate": authority,
        "sequester_services_certificates": [bytes(first.service_certificate), bytes(second.service_certificate)],
    }
    vlob_id = uuid.uuid4()
    assert await create_vlob(alice_ws, realm_id, vlob_id=vlob_id, sequester_blob=blob) == expected
    assert not await VlobAtom.objects.filter(vlob_id=vlob_id).aexists()
    assert await create_vlob(alice_ws, realm_id, vlob_id=vlob_id, sequester_blob={
        first.service_id: b"<x>", second.service_id: b"<x>"}) == OK
    assert await update_vlob(alice_ws, vlob_id, 2, sequester_blob=blob) == expected


# rejected_by_sequester_service -------------------------------------------------------------------


@pytest.mark.parametrize(("reason", "expected_reason"), [("Contains a virus", "Contains a virus"),
                                                         (None, "File rejected (no reason)")])
async def test_rejected_by_sequester_service(world: World, alice_ws, realm_id, webhook, reason, expected_reason):
    await make_sequestered(world)
    storage = await add_service(world)
    hook = await add_service(world, label="Antivirus", service_type=ServiceType.WEBHOOK, webhook_url=webhook.url)
    vlob_id = uuid.uuid4()
    blobs = {storage.service_id: b"<stored>", hook.service_id: b"<posted>"}
    assert await create_vlob(alice_ws, realm_id, vlob_id=vlob_id, sequester_blob=blobs) == OK
    webhook.refuse(reason)
    expected = {"status": "rejected_by_sequester_service", "service_id": hook.service_id,
                "service_label": "Antivirus", "reason": expected_reason}
    assert await create_vlob(alice_ws, realm_id, sequester_blob=blobs) == expected
    assert await update_vlob(alice_ws, vlob_id, 2, sequester_blob=blobs) == expected
    # Nothing of the refused writes is kept.
    assert await VlobAtom.objects.filter(realm__realm_id=realm_id).acount() == 1
    assert await SequesterServiceVlobAtom.objects.acount() == 1


# timeout -----------------------------------------------------------------------------------------


async def _timeout_case(world: World, alice_ws, realm_id, url: str) -> None:
    await make_sequestered(world)
    hook = await add_service(world, service_type=ServiceType.WEBHOOK, webhook_url=url)
    assert await create_vlob(alice_ws, realm_id, sequester_blob={hook.service_id: b"<x>"}) == {"status": "timeout"}
    assert not await VlobAtom.objects.filter(realm__realm_id=realm_id).aexists()


async def test_timeout_unreachable(world: World, alice_ws, realm_id):
    await _timeout_case(world, alice_ws, realm_id, unreachable_url())


async def test_timeout_slow_service(world: World, alice_ws, realm_id, webhook, settings):
    settings.SEQUESTER_WEBHOOK_TIMEOUT = 0.3
    webhook.delay = 1.5
    await _timeout_case(world, alice_ws, realm_id, webhook.url)
    assert len(webhook.received) == 1


async def test_timeout_other_http_error(world: World, alice_ws, realm_id, webhook):
    webhook.refuse("busy", status=503)
    await _timeout_case(world, alice_ws, realm_id, webhook.url)


async def test_timeout_on_update(world: World, alice_ws, realm_id):
    await make_sequestered(world)
    vlob_id = uuid.uuid4()
    assert await create_vlob(alice_ws, realm_id, vlob_id=vlob_id) == OK
    hook = await add_service(world, service_type=ServiceType.WEBHOOK, webhook_url=unreachable_url())
    assert await update_vlob(alice_ws, vlob_id, 2, sequester_blob={hook.service_id: b"<x>"}) == {"status": "timeout"}


# the webhook only hears of writes the realm accepts ----------------------------------------------


async def test_refused_write_is_not_posted(world: World, alice_ws, realm_id, bob, webhook):
    await make_sequestered(world)
    hook = await add_service(world, service_type=ServiceType.WEBHOOK, webhook_url=webhook.url)
    blobs = {hook.service_id: b"<x>"}
    bob_ws = await connect_as(bob)
    assert await create_vlob(bob_ws, realm_id, sequester_blob=blobs) == {"status": "not_allowed"}
    assert await update_vlob(alice_ws, uuid.uuid4(), 2, sequester_blob=blobs) == {"status": "not_found", "reason": None}
    assert webhook.received == []


# organization_config -----------------------------------------------------------------------------


async def test_organization_config_lists_enabled_services(world: World, alice_ws, webhook):
    authority = await make_sequestered(world)
    first = await add_service(world)
    await add_service(world, disabled=True)
    hook = await add_service(world, service_type=ServiceType.WEBHOOK, webhook_url=webhook.url)
    reply = await alice_ws.command("organization_config")
    assert reply["sequester_authority_certificate"] == authority
    assert reply["sequester_services_certificates"] == [bytes(first.service_certificate),
                                                        bytes(hook.service_certificate)]
