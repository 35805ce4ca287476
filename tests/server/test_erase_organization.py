"""Erasing an organization (`server.erase`, `manage.py erase_organization`, the console's action).

Two organizations are populated through the real protocol (users, devices, realms, roles and messages,
archiving, vlobs, blocks, invitations); one is erased, on every kind of blockstore, and the other must
come out untouched, blocks included.
"""
from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError

from blocks.stores import factory as blockstores
from blocks.stores.base import BlockNotFound, BlockStore
from blocks.stores.mocked import MockedBlockStore
from blocks.models import Block, BlockData
from organizations.models import Organization
from organizations.outcomes import AdministrationError
from protocol.types import RealmArchivingConfiguration
from realms.models import VlobAtom
from server.erase import ERASE_PLAN, ERASED_BY_ORGANIZATION_ID, KEPT_AFTER_ERASE, EraseReport, erase_organization
from tests.conftest import World, bootstrap_organization, connect_as, create_realm
from tests.invites.conftest import new_invitation
from tests.objectstores import MotoServer
from tests.objectstores import moto_servers, s3_servers, swift_cluster, swift_store  # noqa: F401 (fixtures)
from tests.realms.helpers import grant, update_archiving
from tests.users.conftest import create_device, create_user
from tests.vlobs.helpers import new_vlob, update_vlob
from tests.vlobs.helpers import create_vlob as create_sequestered_vlob

pytestmark = pytest.mark.django_db(transaction=True)

ERASED, KEPT = "CoolOrg", "OtherOrg"
BLOCKS_PER_ORGANIZATION = 3


@dataclass
class Populated:
    world: World
    block_ids: list[uuid.UUID]
    block_data: dict[uuid.UUID, bytes]


async def populate(organization_id: str) -> Populated:
    """An organization with a row in every table the protocol fills, and blocks in the configured store."""
    world = await bootstrap_organization(organization_id)
    alice_ws = await connect_as(world.alice)
    bob = await create_user(alice_ws, world.alice, world, "bob", email=f"bob@{organization_id.lower()}.example")
    await create_device(alice_ws, world.alice, "dev2")
    realm_id = await create_realm(alice_ws, world.alice)
    await grant(alice_ws, world.alice, realm_id, bob.user_id, "CONTRIBUTOR", recipient_message=b"welcome bob")
    reply = await update_archiving(alice_ws, world.alice, realm_id, RealmArchivingConfiguration("ARCHIVED", None))
    assert reply["status"] in ("ok", "archiving_period_too_short"), reply  # a row or not, the realm stays usable
    other_realm = await create_realm(alice_ws, world.alice)
    vlob_id = await new_vlob(alice_ws, other_realm, blob=b"<vlob v1>")
    assert (await update_vlob(alice_ws, vlob_id, 2, blob=b"<vlob v2>"))["status"] == "ok"
    block_data = {}
    for index in range(BLOCKS_PER_ORGANIZATION):
        block_id, data = uuid.uuid4(), f"{organization_id} block {index}".encode() * (index + 1)
        reply = await alice_ws.command("block_create", block_id=block_id, realm_id=other_realm, block=data)
        assert reply == {"status": "ok"}, reply
        block_data[block_id] = data
    await new_invitation(alice_ws, "USER", claimer_email=f"carol@{organization_id.lower()}.example")
    await new_invitation(alice_ws, "DEVICE")
    await alice_ws.close()
    return Populated(world, list(block_data), block_data)


def rows_of(organization_id: str) -> dict[str, int]:
    """Rows of the organization in every table the erase knows."""
    organization = Organization.objects.filter(organization_id=organization_id).first()
    counts = {model._meta.label: 0 for model, _ in ERASE_PLAN}
    if organization is not None:
        counts = {
            model._meta.label: model.objects.filter(**{lookup: organization.pk}).count()
            for model, lookup in ERASE_PLAN
        }
    for model in ERASED_BY_ORGANIZATION_ID:
        counts[model._meta.label] = model.objects.filter(organization_id=organization_id).count()
    counts["organizations.Organization"] = 0 if organization is None else 1
    return counts


def in_store(store: BlockStore, organization_id: str, block_id: uuid.UUID) -> bytes | None:
    try:
        return store.read(organization_id, block_id)
    except BlockNotFound:
        return None


# --- Every kind of blockstore ------------------------------------------------------------------------------


@pytest.fixture(params=["MOCKED", "POSTGRESQL", "LOCAL", "s3", "swift"])
def blockstore_spec(
    request: pytest.FixtureRequest, tmp_path: Path, parsec_settings, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, ...]:
    """The server's `--blockstore` for this test: blocks written through the protocol land there."""
    if request.param == "MOCKED":
        # A store of its own: the process-wide MOCKED store holds other tests' CoolOrg blocks.
        store = MockedBlockStore()
        monkeypatch.setattr(blockstores, "get_blockstore", lambda: store)
    if request.param == "LOCAL":
        spec = f"LOCAL:{tmp_path / 'blocks'}"
    elif request.param == "s3":
        server: MotoServer = request.getfixturevalue("s3_servers")[0]
        spec = server.blockstore(server.new_bucket())
    elif request.param == "swift":
        spec = request.getfixturevalue("swift_store")
    else:
        spec = request.param
    parsec_settings(blockstore=(spec,))
    return (spec,)


async def test_erase_deletes_every_row_and_block_and_nothing_else(blockstore_spec) -> None:
    erased = await populate(ERASED)
    kept = await populate(KEPT)
    store = await sync_to_async(blockstores.get_blockstore)()
    # Blocks stored but never recorded (a block_create interrupted between the store and the database).
    unrecorded, kept_unrecorded = uuid.uuid4(), uuid.uuid4()
    await sync_to_async(store.create)(ERASED, unrecorded, b"never recorded")
    await sync_to_async(store.create)(KEPT, kept_unrecorded, b"never recorded either")
    before = await sync_to_async(rows_of)(ERASED)
    kept_before = await sync_to_async(rows_of)(KEPT)
    # Every table the protocol fills has rows (the populated world exercises the whole plan).
    empty = {label for label, count in before.items() if count == 0}
    # Sequester and PKI rows need a sequestered organization and an enrollment: erased in their own test below.
    assert empty <= {"invites.ClaimerSession", "invites.ShamirRecoveryConduit", "invites.ShamirRecoveryShare",
                     "invites.ShamirRecoverySetup", "realms.RealmArchiving", "blocks.BlockData",
                     "pki.PkiEnrollment", "sequester.SequesterService", "sequester.SequesterServiceVlobAtom"}, empty

    report = await sync_to_async(erase_organization)(ERASED, dry_run=False)

    assert isinstance(report, EraseReport)
    assert report.complete and not report.failures
    assert report.blocks == report.blocks_deleted == BLOCKS_PER_ORGANIZATION
    assert report.unrecorded_blocks_deleted == 1
    assert "  and 1 block(s) found in the blockstore without metadata" in report.describe()
    assert report.data_bytes == sum(map(len, erased.block_data.values()))
    assert report.metadata_bytes == len(b"<vlob v1>") + len(b"<vlob v2>")
    # The POSTGRESQL store's own rows (`BlockData`) went with the blocks, before the other rows.
    assert {label: count for label, count in report.rows.items() if count} == {
        label: count for label, count in before.items() if count and label != "blocks.BlockData"
    }
    assert set((await sync_to_async(rows_of)(ERASED)).values()) == {0}
    for block_id in [*erased.block_ids, unrecorded]:
        assert await sync_to_async(in_store)(store, ERASED, block_id) is None
    assert await sync_to_async(store.list_blocks)(ERASED) == set()
    assert await sync_to_async(in_store)(store, KEPT, kept_unrecorded) == b"never recorded either"
    # The other organization: same rows, same blocks, and its users still work.
    assert await sync_to_async(rows_of)(KEPT) == kept_before
    for block_id, data in kept.block_data.items():
        assert await sync_to_async(in_store)(store, KEPT, block_id) == data
    client = await connect_as(kept.world.alice)
    block_id = kept.block_ids[0]
    assert await client.command("block_read", block_id=block_id) == {"status": "ok", "block": kept.block_data[block_id]}
    await client.close()
    # A client of the erased organization is refused at the handshake.
    assert not await Organization.objects.filter(organization_id=ERASED).aexists()


async def test_dry_run_changes_nothing(parsec_settings) -> None:
    parsec_settings(blockstore=("MOCKED",))
    erased = await populate(ERASED)
    before = await sync_to_async(rows_of)(ERASED)

    report = await sync_to_async(erase_organization)(ERASED, dry_run=True)

    assert isinstance(report, EraseReport) and report.dry_run and not report.complete
    assert report.rows == before
    assert report.blocks == BLOCKS_PER_ORGANIZATION and report.blocks_deleted == 0
    assert await sync_to_async(rows_of)(ERASED) == before
    assert not (await Organization.objects.aget(organization_id=ERASED)).is_expired
    store = await sync_to_async(blockstores.get_blockstore)()
    for block_id, data in erased.block_data.items():
        assert await sync_to_async(in_store)(store, ERASED, block_id) == data
    assert report.describe()[0].startswith("Dry run: nothing changed.")


async def test_unknown_organization(db) -> None:
    assert await sync_to_async(erase_organization)("Nobody", dry_run=False) is AdministrationError.NOT_FOUND
    assert await sync_to_async(erase_organization)("Nobody", dry_run=True) is AdministrationError.NOT_FOUND


def test_every_table_of_the_project_is_in_the_plan() -> None:
    """A table added later must be added to the erase (or the organization's data would outlive it)."""
    planned = {model for model, _ in ERASE_PLAN} | set(ERASED_BY_ORGANIZATION_ID) | set(KEPT_AFTER_ERASE) | {Organization}
    ours = {
        model for model in apps.get_models()
        if Path(apps.get_app_config(model._meta.app_label).path).parent == Path(__file__).resolve().parents[2]
    }
    assert ours - planned == set()


# --- RAID5 with a node down --------------------------------------------------------------------------------


async def test_raid5_node_down_is_reported_then_a_rerun_completes(parsec_settings, s3_servers) -> None:  # noqa: F811 - the fixture imported above
    bucket = f"parsec-{uuid.uuid4().hex[:12]}"
    for server in s3_servers:
        server.new_bucket(bucket)
    parsec_settings(blockstore=tuple(f"RAID5:{i}:{server.blockstore(bucket)}" for i, server in enumerate(s3_servers)))
    erased = await populate(ERASED)
    kept = await populate(KEPT)
    store = await sync_to_async(blockstores.get_blockstore)()
    before = await sync_to_async(rows_of)(ERASED)

    def keys(server: MotoServer, organization_id: str) -> set[str]:
        listing = server.client().list_objects_v2(Bucket=bucket, Prefix=f"{organization_id}/")
        return {item["Key"] for item in listing.get("Contents", [])}

    expected_keys = {f"{ERASED}/{block_id}" for block_id in erased.block_ids}
    node1_parts = {
        key: s3_servers[1].client().get_object(Bucket=bucket, Key=key)["Body"].read()
        for key in keys(s3_servers[1], ERASED) | keys(s3_servers[1], KEPT)
    }
    assert keys(s3_servers[1], ERASED) == expected_keys
    s3_servers[1].stop()

    report = await sync_to_async(erase_organization)(ERASED, dry_run=False)

    assert isinstance(report, EraseReport) and not report.complete
    assert {block_id for block_id, _ in report.failures} == set(erased.block_ids)
    assert all("node 1" in error for _, error in report.failures)
    assert report.describe()[0].startswith(f"Organization {ERASED} NOT fully erased: 3 block(s)")
    # The rows are kept (they list what is left to delete), the organization is expired, the other nodes done.
    assert await sync_to_async(rows_of)(ERASED) == before
    assert (await Organization.objects.aget(organization_id=ERASED)).is_expired
    assert keys(s3_servers[0], ERASED) == keys(s3_servers[2], ERASED) == set()

    # Node 1 comes back with its data (moto keeps nothing across a restart: its parts are put back).
    s3_servers[1].start()
    s3_servers[1].wait_ready()
    s3_servers[1].new_bucket(bucket)
    for key, part in node1_parts.items():
        s3_servers[1].client().put_object(Bucket=bucket, Key=key, Body=part)

    # The command, this time: it finishes the job, and says so.
    out = io.StringIO()
    await sync_to_async(call_command)("erase_organization", ERASED, "--yes", stdout=out)
    assert f"Organization {ERASED} erased:" in out.getvalue()
    assert "blocks: deleted 3 of 3" in out.getvalue()
    assert set((await sync_to_async(rows_of)(ERASED)).values()) == {0}
    assert all(keys(server, ERASED) == set() for server in s3_servers)
    # The other organization's blocks are whole on every node (node 1's were put back above).
    assert all(len(keys(server, KEPT)) == BLOCKS_PER_ORGANIZATION for server in s3_servers)
    for block_id, data in kept.block_data.items():
        assert await sync_to_async(store.read)(KEPT, block_id) == data


async def test_command_exit_status_when_a_node_is_down(parsec_settings, s3_servers) -> None:  # noqa: F811 - the fixture imported above
    bucket = f"parsec-{uuid.uuid4().hex[:12]}"
    for server in s3_servers:
        server.new_bucket(bucket)
    parsec_settings(blockstore=tuple(f"RAID5:{i}:{server.blockstore(bucket)}" for i, server in enumerate(s3_servers)))
    await populate(ERASED)
    s3_servers[2].stop()
    out = io.StringIO()
    with pytest.raises(CommandError, match=f"Organization {ERASED} NOT fully erased") as raised:
        await sync_to_async(call_command)("erase_organization", ERASED, "--yes", stdout=out)
    assert raised.value.returncode == 1
    assert "failed: block" in out.getvalue() and "node 2" in out.getvalue()
    assert await Block.objects.filter(organization__organization_id=ERASED).acount() == BLOCKS_PER_ORGANIZATION


# --- The command ---------------------------------------------------------------------------------------------


@pytest.fixture
def populated(transactional_db, parsec_settings) -> Populated:
    parsec_settings(blockstore=("POSTGRESQL",))
    from asgiref.sync import async_to_sync

    return async_to_sync(populate)(ERASED)


def run_command(*args: str, answer: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None) -> str:
    if monkeypatch is not None:
        def fake_input() -> str:
            if answer is None:
                raise EOFError
            return answer

        monkeypatch.setattr("builtins.input", fake_input)
    out = io.StringIO()
    call_command("erase_organization", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_command_dry_run(populated: Populated) -> None:
    before = rows_of(ERASED)
    out = run_command(ERASED, "--dry-run")
    assert out.startswith(f"Dry run: nothing changed. Erasing organization {ERASED} would delete:")
    assert f"blocks: would delete {BLOCKS_PER_ORGANIZATION} of {BLOCKS_PER_ORGANIZATION}" in out
    assert f"organizations.User: {before['organizations.User']}" in out
    assert f"realms.VlobAtom: {before['realms.VlobAtom']}" in out
    assert rows_of(ERASED) == before


@pytest.mark.parametrize("answer", ["coolorg", "", None])
def test_command_not_confirmed(populated: Populated, monkeypatch: pytest.MonkeyPatch, answer: str | None) -> None:
    before = rows_of(ERASED)
    with pytest.raises(CommandError, match="Not confirmed: nothing was erased"):
        run_command(ERASED, answer=answer, monkeypatch=monkeypatch)
    assert rows_of(ERASED) == before
    assert BlockData.objects.filter(organization_id=ERASED).count() == BLOCKS_PER_ORGANIZATION


def test_command_confirmed(populated: Populated, monkeypatch: pytest.MonkeyPatch) -> None:
    out = run_command(ERASED, answer=ERASED, monkeypatch=monkeypatch)
    assert f"Type the organization id ({ERASED}) to erase it:" in out
    assert f"Organization {ERASED} erased:" in out
    assert set(rows_of(ERASED).values()) == {0}


def test_command_unknown_organization(db) -> None:
    with pytest.raises(CommandError, match=r"Unknown organization `Nobody`: nothing to erase\.") as raised:
        run_command("Nobody", "--yes")
    assert raised.value.returncode == 1


def test_command_bad_blockstore(db) -> None:
    with pytest.raises(CommandError, match="--blockstore: "):
        run_command(ERASED, "--yes", "-b", "nonsense:1")


# --- The console's action ----------------------------------------------------------------------------------


def changelist_post(admin_client, organization: Organization, **fields: str):
    return admin_client.post(
        "/admin/organizations/organization/",
        {"action": "erase_organization_action", "_selected_action": [str(organization.pk)], **fields},
        follow=True,
    )


def test_console_erase_asks_for_the_id_typed_back(admin_client, populated: Populated) -> None:
    organization = Organization.objects.get(organization_id=ERASED)
    before = rows_of(ERASED)

    response = changelist_post(admin_client, organization)
    assert response.status_code == 200
    content = response.content.decode()
    assert f"Erase organization {ERASED}" in content and "This cannot be undone." in content
    assert f"blocks: would delete {BLOCKS_PER_ORGANIZATION} of {BLOCKS_PER_ORGANIZATION}" in content
    assert rows_of(ERASED) == before

    response = changelist_post(admin_client, organization, confirm_erase="yes", confirmation="OtherOrg")
    assert f"Type {ERASED} exactly to erase this organization." in response.content.decode()
    assert rows_of(ERASED) == before

    response = changelist_post(admin_client, organization, confirm_erase="yes", confirmation=ERASED)
    assert response.status_code == 200
    assert f"Organization {ERASED} erased:" in response.content.decode()
    assert set(rows_of(ERASED).values()) == {0}
    assert BlockData.objects.filter(organization_id=ERASED).count() == 0


def test_console_erase_needs_a_superuser(client, django_user_model, populated: Populated) -> None:
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_organization", "change_organization"]))
    client.force_login(staff)
    organization = Organization.objects.get(organization_id=ERASED)
    response = changelist_post(client, organization, confirm_erase="yes", confirmation=ERASED)
    assert "Only a superuser may erase an organization." in response.content.decode()
    assert Organization.objects.filter(organization_id=ERASED).exists()
    assert VlobAtom.objects.filter(organization=organization).exists()


# --- A block recorded while the erase runs -----------------------------------------------------------------


class RecordsALateBlock:
    """A MOCKED store in which, right after the erase lists it, a `block_create` that passed its checks before
    the organization expired stores its block and records it (the race step 3 of the erase closes)."""

    def __init__(self, organization_id: str) -> None:
        self.inner = MockedBlockStore()
        self.organization_id = organization_id
        self.late_id: uuid.UUID | None = None

    def create(self, organization_id: str, block_id: uuid.UUID, data: bytes) -> None:
        self.inner.create(organization_id, block_id, data)

    def read(self, organization_id: str, block_id: uuid.UUID) -> bytes:
        return self.inner.read(organization_id, block_id)

    def delete(self, organization_id: str, block_id: uuid.UUID) -> None:
        self.inner.delete(organization_id, block_id)

    def list_blocks(self, organization_id: str) -> set[uuid.UUID]:
        listed = self.inner.list_blocks(organization_id)
        assert listed == set() and self.late_id is None  # the recorded blocks are gone already
        existing = Organization.objects.get(organization_id=self.organization_id)
        realm_id, author_id = VlobAtom.objects.filter(organization=existing).values_list("realm", "author").first()
        self.late_id = uuid.uuid4()
        self.inner.create(self.organization_id, self.late_id, b"late")
        Block.objects.create(
            organization=existing, realm_id=realm_id, author_id=author_id, block_id=self.late_id, size=4,
            created_on=existing.created_on,
        )
        return listed


async def test_a_block_recorded_during_the_erase_is_deleted_too(monkeypatch, concurrent_writers) -> None:
    store = RecordsALateBlock(ERASED)
    monkeypatch.setattr(blockstores, "get_blockstore", lambda: store)
    erased = await populate(ERASED)
    report = await sync_to_async(erase_organization)(ERASED, dry_run=False, jobs=1)
    assert isinstance(report, EraseReport) and report.complete
    assert store.late_id is not None
    assert report.blocks == report.blocks_deleted == BLOCKS_PER_ORGANIZATION + 1
    assert report.unrecorded_blocks_deleted == 0
    for block_id in [*erased.block_ids, store.late_id]:
        assert store.inner._blocks.get((ERASED, block_id)) is None
    assert set((await sync_to_async(rows_of)(ERASED)).values()) == {0}


async def test_erase_sequester_services_their_blobs_and_pki_enrollments(parsec_settings) -> None:
    """The tables of the sequester and PKI apps: a sequestered organization with a storage service whose
    blob is kept with a vlob, and a pending PKI enrollment, erased next to an organization left intact."""
    from tests.pki.conftest import submit
    from tests.sequester.helpers import add_service, make_sequestered
    from tests.users.conftest import new_user_device

    parsec_settings(blockstore=("POSTGRESQL",))
    rows_before = {}
    for organization_id in (ERASED, KEPT):
        world = await bootstrap_organization(organization_id)
        await make_sequestered(world)
        service = await add_service(world, label="Escrow")
        alice_ws = await connect_as(world.alice)
        realm_id = await create_realm(alice_ws, world.alice)
        reply = await create_sequestered_vlob(
            alice_ws, realm_id, vlob_id=uuid.uuid4(), sequester_blob={service.service_id: b"<escrowed>"}
        )
        assert reply == {"status": "ok"}, reply
        await alice_ws.close()
        _, _, reply = await submit(world, new_user_device(world, "zack", email="zack@example.com", label="Zack"))
        assert reply["status"] == "ok", reply
        rows_before[organization_id] = await sync_to_async(rows_of)(organization_id)
        for label in ("pki.PkiEnrollment", "sequester.SequesterService", "sequester.SequesterServiceVlobAtom"):
            assert rows_before[organization_id][label] == 1, (label, rows_before[organization_id])

    report = await sync_to_async(erase_organization)(ERASED, dry_run=False)

    assert isinstance(report, EraseReport) and report.complete
    assert set((await sync_to_async(rows_of)(ERASED)).values()) == {0}
    assert await sync_to_async(rows_of)(KEPT) == rows_before[KEPT]
