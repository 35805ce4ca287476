"""Erase an organization: every row of it in every table, and its blocks in the blockstore.

No Parsec server has this (Parsec issue #7593); `manage.py erase_organization` and the console's "Erase"
action call `erase_organization`. The order makes an interrupted erase safe to run again:

1. The organization is expired first (through `organization_update`, which closes its sessions), so no
   client adds blocks or rows while it is being erased.
2. Its blocks are deleted from the blockstore, every one the `Block` table knows, several at once. A
   store's `delete` treats an absent block as done, so a re-run deletes what is left and no more. Then
   the store is listed for the organization: blocks stored but never recorded (a `block_create`
   interrupted between the store and the database) go too.
3. Only if every block went, the rows are deleted in one transaction (the organization row locked
   first). If a store failed (a RAID node down...), the rows stay: they are the list of blocks that a
   re-run, once the store is back, still has to delete. Deleting them first would lose that list and
   leave the blocks in the store forever.

A block written to the store by a command that was already past its checks when the organization expired
may be recorded while step 2 runs: step 3 deletes such late blocks too before it deletes the rows.
"""
from __future__ import annotations

import logging
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Iterable

from django.db import connection, connections, models, transaction

from blocks.stores import factory as blockstores
from blocks.stores.base import BlockStore, BlockStoreError
from blocks.models import Block, BlockData
from invites.models import ClaimerSession, Invitation, ShamirRecoveryConduit, ShamirRecoveryShare, ShamirRecoverySetup
from organizations import audit
from organizations.services import organizations as services
from organizations.models import AuditEntry, Device, Organization, OrganizationUserCounts, User
from organizations.outcomes import AdministrationError, NotFound
from protocol import groups
from realms.models import (
    Message,
    Realm,
    RealmArchiving,
    RealmUserChange,
    RealmUserRole,
    RealmVlobUpdate,
    VlobAtom,
)
from pki.models import PkiEnrollment
from realms.selectors import realm_data_stats
from sequester.models import SequesterService, SequesterServiceVlobAtom

logger = logging.getLogger("parsec.organizations")

DEFAULT_JOBS = 8  # blocks deleted at once
SHOWN_FAILURES = 20  # failed blocks listed by `describe()`

# Every table holding rows of an organization, children first, with the lookup from the table to the
# organization's primary key. tests/server/test_erase_organization.py checks that every model of
# the project is listed here: a new table must be added (a model reaching the organization by a
# cascading foreign key would also go with the final delete of the organization row).
ERASE_PLAN: tuple[tuple[type[models.Model], str], ...] = (
    (ClaimerSession, "invitation__organization"),
    (ShamirRecoveryConduit, "invitation__organization"),
    (Invitation, "organization"),
    (ShamirRecoveryShare, "setup__organization"),
    (ShamirRecoverySetup, "organization"),
    (Message, "recipient__organization"),
    (RealmVlobUpdate, "realm__organization"),
    (SequesterServiceVlobAtom, "service__organization"),
    (VlobAtom, "organization"),
    (SequesterService, "organization"),
    (RealmUserChange, "realm__organization"),
    (RealmArchiving, "realm__organization"),
    (RealmUserRole, "realm__organization"),
    (Block, "organization"),
    (Realm, "organization"),
    (PkiEnrollment, "organization"),  # before the devices it names (protected foreign keys)
    (Device, "organization"),
    (User, "organization"),
    (OrganizationUserCounts, "organization"),  # after the users: their deletes update it (triggers)
)
# `BlockData` (the POSTGRESQL store's table) names the organization by its id, without a foreign key: its
# rows go with the blocks, and in step 3 by organization id (blocks whose metadata was never recorded).
ERASED_BY_ORGANIZATION_ID: tuple[type[models.Model], ...] = (BlockData,)
# Kept on purpose: the audit trail names organizations by id, and must outlive the erase it records.
KEPT_AFTER_ERASE: tuple[type[models.Model], ...] = (AuditEntry,)


def _label(model: type[models.Model]) -> str:
    return model._meta.label


@dataclass
class EraseReport:
    """What was (or, with `dry_run`, would be) deleted; `complete` once nothing of the organization is left."""

    organization_id: str
    dry_run: bool
    rows: dict[str, int] = field(default_factory=dict)  # model label -> rows (counted, or deleted)
    blocks: int = 0  # blocks the database knows, to delete from the blockstore
    data_bytes: int = 0  # their total size
    metadata_bytes: int = 0  # size of the vlob versions
    blocks_deleted: int = 0
    unrecorded_blocks_deleted: int = 0  # found by listing the store, unknown to the database
    failures: list[tuple[uuid.UUID | None, str]] = field(default_factory=list)  # (block or None, store error)
    complete: bool = False

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def describe(self) -> list[str]:
        """The report as lines of text, for the command's output and the console's messages."""
        verb = "would delete" if self.dry_run else "deleted"
        lines = []
        if self.dry_run:
            lines.append(f"Dry run: nothing changed. Erasing organization {self.organization_id} would delete:")
        elif self.complete:
            lines.append(f"Organization {self.organization_id} erased:")
        else:
            lines.append(
                f"Organization {self.organization_id} NOT fully erased: {len(self.failures)} block(s) could not be "
                "deleted from the blockstore. Its rows were kept so that running the erase again, once the "
                "blockstore answers, finishes the job:"
            )
        done = self.blocks if self.dry_run else self.blocks_deleted
        lines.append(
            f"  blocks: {verb} {done} of {self.blocks} in the blockstore ({_size(self.data_bytes)} of data, "
            f"{_size(self.metadata_bytes)} of metadata)"
        )
        if self.unrecorded_blocks_deleted:
            lines.append(f"  and {self.unrecorded_blocks_deleted} block(s) found in the blockstore without metadata")
        for block_id, error in self.failures[:SHOWN_FAILURES]:
            lines.append(f"  failed: block {block_id}: {error}" if block_id else f"  failed: {error}")
        if len(self.failures) > SHOWN_FAILURES:
            lines.append(f"  ... and {len(self.failures) - SHOWN_FAILURES} more failed block(s)")
        if self.dry_run or self.complete:
            lines.append(f"  rows: {verb} {self.total_rows}")
            lines.extend(f"    {label}: {count}" for label, count in self.rows.items() if count)
        return lines


def _size(value: int) -> str:
    return f"{value} bytes" if value < 1024 else f"{value} bytes ({value / 1024 / 1024:.1f} MiB)"


def _count_rows(organization: Organization) -> dict[str, int]:
    rows = {_label(model): model._default_manager.filter(**{lookup: organization.pk}).count() for model, lookup in ERASE_PLAN}
    for model in ERASED_BY_ORGANIZATION_ID:
        rows[_label(model)] = model._default_manager.filter(organization_id=organization.organization_id).count()
    rows[_label(Organization)] = 1
    return rows


def _delete_blocks(
    store: BlockStore, organization_id: str, block_ids: Iterable[uuid.UUID], report: EraseReport, jobs: int
) -> set[uuid.UUID]:
    """Delete these blocks from the store, `jobs` at a time; failures go to the report. The ids deleted."""
    deleted: set[uuid.UUID] = set()

    def delete(block_id: uuid.UUID) -> None:
        try:
            store.delete(organization_id, block_id)
        finally:
            connections.close_all()  # a POSTGRESQL store used this worker thread's connection

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="erase") as executor:
        in_flight: dict[Future, uuid.UUID] = {}

        def drain(until: int) -> None:
            while len(in_flight) > until:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    block_id = in_flight.pop(future)
                    exc = future.exception()
                    if exc is None:
                        deleted.add(block_id)
                    elif isinstance(exc, BlockStoreError):
                        report.failures.append((block_id, str(exc)))
                    else:  # a bug or an unexpected library error: reported, the rows are kept
                        logger.error("Erase of block %s failed", block_id, exc_info=exc)
                        report.failures.append((block_id, f"unexpected {type(exc).__name__}: {exc}"))

        for block_id in block_ids:
            in_flight[executor.submit(delete, block_id)] = block_id
            drain(jobs * 4)
        drain(0)
    return deleted


def record_erasure_in_audit_trail(report: EraseReport, *, actor: str) -> None:
    """Called once an organization is erased (never for a dry run or an incomplete erase)."""
    audit.record(
        actor=actor,
        action=audit.Action.ORGANIZATION_ERASED,
        organization_id=report.organization_id,
        details={
            "rows": report.rows,
            "blocks_deleted": report.blocks_deleted + report.unrecorded_blocks_deleted,
            "data_bytes": report.data_bytes,
            "metadata_bytes": report.metadata_bytes,
        },
    )


def erase_organization(
    organization_id: str,
    *,
    dry_run: bool,
    actor: str = "manage.py",
    store: BlockStore | None = None,
    jobs: int = DEFAULT_JOBS,
) -> EraseReport | NotFound:
    """Erase the organization (see the module's docstring for the order), or report what it would delete.

    NOT_FOUND for an unknown organization. The report's `complete` is False when blocks could not be
    deleted; the rows are then kept and running it again finishes the erase.
    """
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    organization = Organization.objects.filter(organization_id=organization_id).first()
    if organization is None:
        return AdministrationError.NOT_FOUND
    report = EraseReport(organization_id=organization_id, dry_run=dry_run)
    sizes = realm_data_stats(organization.pk)
    report.data_bytes, report.metadata_bytes = sizes["data_size"], sizes["metadata_size"]
    report.rows = _count_rows(organization)
    report.blocks = report.rows[_label(Block)]
    if dry_run:
        return report

    store = store or blockstores.get_blockstore()
    if connection.vendor == "sqlite":
        jobs = 1  # SQLite writes one at a time anyway, and its in-memory test database refuses concurrent writers
    # 1. No client writes anything any more (and the connected ones are disconnected).
    services.organization_update(organization_id=organization_id, is_expired=True)
    # 2. The blocks, outside any transaction: store I/O may take long.
    block_ids = Block.objects.filter(organization=organization).values_list("block_id", flat=True)
    deleted = _delete_blocks(store, organization_id, block_ids.iterator(chunk_size=1000), report, jobs)
    report.blocks_deleted = len(deleted)
    if not report.failures:
        try:
            unrecorded = store.list_blocks(organization_id) - deleted
        except BlockStoreError as exc:
            report.failures.append((None, f"cannot list the blocks left in the blockstore: {exc}"))
        else:
            swept = _delete_blocks(store, organization_id, unrecorded, report, jobs)
            report.unrecorded_blocks_deleted = len(swept)
            deleted |= swept
    if report.failures:
        logger.warning(
            "Erase of organization %s incomplete: %d block(s) not deleted from the blockstore",
            organization_id, len(report.failures),
        )
        return report

    # 3. The rows, all at once.
    with transaction.atomic():
        # Serialises with anything still writing rows of the organization (a foreign key to it waits for this
        # lock, then fails): what is read below is all there will ever be.
        locked = Organization.objects.select_for_update().filter(pk=organization.pk).first()
        if locked is None:
            # Erased meanwhile by another run: nothing left to do.
            report.rows = {}
            report.complete = True
            return report
        recorded = Block.objects.filter(organization=organization).values_list("block_id", flat=True)
        late = [block_id for block_id in recorded.iterator(chunk_size=1000) if block_id not in deleted]
        if late:
            # A few at most (commands in flight when the organization expired): deleted here, in this thread, so
            # that a POSTGRESQL store on SQLite does not wait for this transaction's lock from another connection.
            report.blocks += len(late)
            for block_id in late:
                try:
                    store.delete(organization_id, block_id)
                except BlockStoreError as exc:
                    report.failures.append((block_id, str(exc)))
                else:
                    report.blocks_deleted += 1
            if report.failures:
                transaction.set_rollback(True)
                return report
        pending_invitations = list(
            Invitation.objects.filter(organization=organization, deleted_on__isnull=True).values_list("pk", flat=True)
        )
        rows: dict[str, int] = {}
        for model, lookup in ERASE_PLAN:
            queryset = model._default_manager.filter(**{lookup: organization.pk})
            # A plain DELETE per table: Django's collector would load every device and user in memory to honour
            # PROTECT foreign keys between rows that all go anyway. (Foreign keys are checked at commit.)
            rows[_label(model)] = queryset._raw_delete(queryset.db)
        for model in ERASED_BY_ORGANIZATION_ID:
            queryset = model._default_manager.filter(organization_id=organization_id)
            rows[_label(model)] = queryset._raw_delete(queryset.db)
        # Whatever still references the organization (a table added without updating ERASE_PLAN) cascades here.
        _, cascaded = Organization.objects.filter(pk=organization.pk).delete()
        for label, count in cascaded.items():
            rows[label] = rows.get(label, 0) + count
        report.rows = rows
        groups.close_organization_sessions_on_commit(organization.pk)
        for invitation_pk in pending_invitations:
            groups.close_invitation_sessions_on_commit(invitation_pk)
        transaction.on_commit(lambda: record_erasure_in_audit_trail(report, actor=actor))
    report.complete = True
    logger.info(
        "Organization %s erased by %s: %d block(s), %d row(s)", organization_id, actor, report.blocks_deleted,
        report.total_rows,
    )
    return report
