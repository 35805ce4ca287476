"""Realm export for a storage sequester service (`sequester_export_realm`, docs/protocol.md#sequester-services).

The output is the reference's export file, an SQLite database the reference's
`parsec backend sequester extract_realm_export` reads: format version 1, magic number 87947, and
the same tables and columns. Every row keeps its id from our database, so `author` columns point
into the exported `device` table; vlob rows are keyed by their realm checkpoint. An export can be
stopped and run again on the same file: it checks the file is an export of the same realm and
adds what is missing.
"""
from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from blocks.stores import factory
from blocks.stores.base import BlockStoreError
from blocks.models import Block
from organizations.models import Device, Organization, User
from realms.models import Realm, RealmUserRole, RealmVlobUpdate
from sequester.models import SequesterService, SequesterServiceVlobAtom, ServiceType

EXPORT_MAGIC_NUMBER = 87947
EXPORT_FORMAT_VERSION = 1
VLOB_BATCH_SIZE = 1000
BLOCK_BATCH_SIZE = 100

# The layout the reference's reader expects (table and column names and types are its contract).
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS info(
    magic INTEGER UNIQUE NOT NULL DEFAULT {EXPORT_MAGIC_NUMBER},
    version INTEGER NOT NULL DEFAULT {EXPORT_FORMAT_VERSION},
    realm_id BLOB NOT NULL,
    root_verify_key BLOB NOT NULL
);
CREATE TABLE block (
    _id PRIMARY KEY,
    block_id BLOB NOT NULL,
    data BLOB NOT NULL,
    author INTEGER REFERENCES device (_id) NOT NULL,
    UNIQUE(block_id)
);
-- _id: the realm checkpoint of the write; timestamp: microseconds since the UNIX epoch.
CREATE TABLE vlob_atom (
    _id PRIMARY KEY,
    vlob_id BLOB NOT NULL,
    version INTEGER NOT NULL,
    blob BLOB NOT NULL,
    author INTEGER REFERENCES device (_id) NOT NULL,
    timestamp INTEGER NOT NULL,
    UNIQUE(vlob_id, version)
);
CREATE TABLE realm_role (
    _id PRIMARY KEY,
    role_certificate BLOB NOT NULL
);
CREATE TABLE user_ (
    _id PRIMARY KEY,
    user_certificate BLOB NOT NULL,
    revoked_user_certificate BLOB
);
CREATE TABLE device (
    _id PRIMARY KEY,
    device_certificate BLOB NOT NULL
);
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ExportError(Exception):
    """The export cannot be done; the message is for the operator."""


@dataclass
class ExportResult:
    path: Path
    resumed: bool
    vlobs: int
    blocks: int


def _microseconds(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def output_path(output: Path, realm_id: uuid.UUID) -> Path:
    """A directory gets the reference's default file name."""
    if output.is_dir():
        return output / f"parsec-sequester-export-realm-{realm_id.hex}.sqlite"
    return output


def _open_output(path: Path, realm_id: uuid.UUID, root_verify_key: bytes) -> tuple[sqlite3.Connection, bool]:
    resumed = path.exists()
    try:
        con = sqlite3.connect(path)
    except sqlite3.Error as exc:
        raise ExportError(f"Cannot create export database {path}: {exc}") from None
    try:
        if not resumed:
            con.executescript(_SCHEMA)
            con.execute("INSERT INTO info (realm_id, root_verify_key) VALUES (?, ?)", (realm_id.bytes, root_verify_key))
            con.commit()
            return con, False
        try:
            row = con.execute(
                "SELECT version, realm_id, root_verify_key FROM info WHERE magic = ?", (EXPORT_MAGIC_NUMBER,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise ExportError(f"Existing output {path} is not a valid export database: {exc}") from None
        if row is None:
            raise ExportError(f"Existing output {path} is not a valid export database")
        if row[0] != EXPORT_FORMAT_VERSION:
            raise ExportError(f"Existing output {path} has export format version {row[0]}, only 1 is supported")
        if bytes(row[1]) != realm_id.bytes or bytes(row[2]) != root_verify_key:
            raise ExportError(f"Existing output {path} is the export of another realm")
        return con, True
    except BaseException:
        con.close()
        raise


def _batches(query_for: Callable[[int], list[tuple]], key: int = 0) -> Iterator[list[tuple]]:
    """Rows in id order, a batch at a time; `query_for(last_id)` gives the rows after last_id."""
    last = -1
    while True:
        rows = query_for(last)
        if not rows:
            return
        yield rows
        last = rows[-1][key]


def export_realm(
    *, organization_id: str, realm_id: uuid.UUID, service_id: uuid.UUID, output: Path,
    progress: Callable[[str], None] = lambda message: None,
) -> ExportResult:
    organization = Organization.objects.filter(organization_id=organization_id).first()
    if organization is None:
        raise ExportError(f"Organization `{organization_id}` doesn't exist")
    if organization.root_verify_key is None:
        raise ExportError(f"Organization `{organization_id}` is not bootstrapped")
    if organization.sequester_authority_certificate is None:
        raise ExportError(f"Organization `{organization_id}` is not a sequestered organization")
    realm = Realm.objects.filter(organization=organization, realm_id=realm_id).first()
    if realm is None:
        raise ExportError(f"Realm `{realm_id.hex}` doesn't exist in organization `{organization_id}`")
    service = SequesterService.objects.filter(organization=organization, service_id=service_id).first()
    if service is None:
        raise ExportError(f"Sequester service `{service_id.hex}` doesn't exist in organization `{organization_id}`")
    if service.service_type != ServiceType.STORAGE:
        raise ExportError(
            f"Sequester service `{service_id.hex}` is a {service.service_type} service: it stores nothing"
        )

    path = output_path(output, realm_id)
    con, resumed = _open_output(path, realm_id, bytes(organization.root_verify_key))
    try:
        # Certificates: every user and device of the organization (authors, revocations), the realm's roles.
        users = User.objects.filter(organization=organization).order_by("pk").values_list(
            "pk", "user_certificate", "revoked_user_certificate"
        )
        con.executemany(
            "INSERT OR IGNORE INTO user_ (_id, user_certificate, revoked_user_certificate) VALUES (?, ?, ?)",
            [(pk, bytes(cert), None if revoked is None else bytes(revoked)) for pk, cert, revoked in users],
        )
        devices = (
            Device.objects.filter(organization=organization).order_by("pk").values_list("pk", "device_certificate")
        )
        con.executemany(
            "INSERT OR IGNORE INTO device (_id, device_certificate) VALUES (?, ?)",
            [(pk, bytes(cert)) for pk, cert in devices],
        )
        roles = RealmUserRole.objects.filter(realm=realm).order_by("pk").values_list("pk", "certificate")
        con.executemany(
            "INSERT OR IGNORE INTO realm_role (_id, role_certificate) VALUES (?, ?)",
            [(pk, bytes(cert)) for pk, cert in roles],
        )
        con.commit()

        # Vlobs: the service's blob of each write, keyed by the write's checkpoint.
        start = con.execute("SELECT max(_id) FROM vlob_atom").fetchone()[0] or 0
        checkpoints = {
            (vlob_id, version): index
            for vlob_id, version, index in RealmVlobUpdate.objects.filter(realm=realm, index__gt=start).values_list(
                "vlob_id", "version", "index"
            )
        }
        vlobs = 0
        sequestered = (
            SequesterServiceVlobAtom.objects.filter(service=service, vlob_atom__realm=realm)
            .order_by("pk")
            .values_list("pk", "vlob_atom__vlob_id", "vlob_atom__version", "blob", "vlob_atom__author_id",
                         "vlob_atom__created_on")
        )
        for rows in _batches(lambda last: list(sequestered.filter(pk__gt=last)[:VLOB_BATCH_SIZE])):
            cooked = [
                (checkpoints[(vlob_id, version)], vlob_id.bytes, version, bytes(blob), author, _microseconds(created))
                for _pk, vlob_id, version, blob, author, created in rows
                if (vlob_id, version) in checkpoints
            ]
            con.executemany(
                "INSERT OR IGNORE INTO vlob_atom (_id, vlob_id, version, blob, author, timestamp)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                cooked,
            )
            con.commit()
            vlobs += len(cooked)
            progress(f"{vlobs} vlob versions exported")

        # Blocks: read from the configured blockstore.
        store = factory.get_blockstore()
        block_start = con.execute("SELECT max(_id) FROM block").fetchone()[0] or 0
        block_rows = Block.objects.filter(realm=realm).order_by("pk").values_list("pk", "block_id", "author_id")
        blocks = 0
        for rows in _batches(lambda last: list(block_rows.filter(pk__gt=max(last, block_start))[:BLOCK_BATCH_SIZE])):
            cooked_blocks = []
            for pk, block_id, author in rows:
                try:
                    data = store.read(organization_id, block_id)
                except BlockStoreError as exc:
                    raise ExportError(f"Cannot read block {block_id.hex}: {exc}") from None
                cooked_blocks.append((pk, block_id.bytes, data, author))
            con.executemany(
                "INSERT OR IGNORE INTO block (_id, block_id, data, author) VALUES (?, ?, ?, ?)", cooked_blocks
            )
            con.commit()
            blocks += len(cooked_blocks)
            progress(f"{blocks} blocks exported")
    finally:
        con.close()
    return ExportResult(path=path, resumed=resumed, vlobs=vlobs, blocks=blocks)
