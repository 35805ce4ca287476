"""Bulk loader of a large organization for the "flat with size" bench phases (bench/README.md#large-organization).

Going through the protocol would take the better part of an hour (100,000 `vlob_create` at a few hundred per
second, 10,000 `user_create`...), so this module writes the rows those commands would write, straight into our
server's tables, with COPY on PostgreSQL (executemany on SQLite). Nothing is faked: every certificate is signed
the way a 2.17 client signs it (tests/testkit/certs.py), by the device the protocol would take as author, with
timestamps that follow the order the commands would have run in, and every row the commands would add or move
is there (role history, causality timestamps, checkpoints and their change log, the sharing messages).
tests/bench/test_largeorg.py checks it twice: the same plan loaded here and replayed through the protocol gives
the same rows, and a loaded organization reads back through the protocol.

The organization, as the protocol would have built it:

* the organization, created by the administration API and bootstrapped by alice@dev1 (ADMIN, certified by the
  root key);
* `users - 1` more users (STANDARD, one device each, human handle `uNNNNN@example.com` / `User NNNNN`), each
  created by alice with `user_create`;
* one realm of alice's (`realm_create`) holding `vlobs` vlobs, each written once by alice with `vlob_create`
  (checkpoint = `vlobs`);
* `member_realms` realms of alice's, each shared with the user `member` (u00001) as CONTRIBUTOR by
  `realm_update_roles` with a recipient message (the message a client sends when it shares a workspace).

Rows are written with the models' table and column names (`<app>.models` only: the loader never goes through
the services, so it must be kept in step with what they write; the replay test is what says when it is not).

    .venv/bin/python -m bench.largeorg --db postgresql://... [--users 10000] [--vlobs 100000]
        [--member-realms 1000] [--blob-size 1024] [--organization LargeOrg] [--handles out.json]

prints how long each part took, and writes the keys and ids a client needs (alice's and the member's keys, the
big realm, sample vlobs...) as JSON, for the bench phases (`LoadedOrg.from_json`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from tests.testkit import certs
from tests.testkit.certs import TestDevice

# Each step of the timeline (one protocol command) is this much later than the previous one: distinct
# timestamps, strictly increasing where the protocol requires it (roles of one realm, versions of one vlob).
STEP = datetime.timedelta(milliseconds=1)
MEMBER_USER_ID = "member"
SAMPLE_VLOBS = 1000  # vlob ids handed to the bench (read/update targets), spread over the big realm


@dataclass(frozen=True)
class Shape:
    users: int = 10_000  # alice included
    vlobs: int = 100_000  # in the big realm
    member_realms: int = 1_000  # realms shared with `member`
    blob_size: int = 1024

    def __post_init__(self) -> None:
        if self.users < 2:
            raise ValueError("users must be at least 2 (alice and the member)")
        if self.vlobs < 1 or self.member_realms < 1 or self.blob_size < 1:
            raise ValueError("vlobs, member realms and blob size must be at least 1")

    @property
    def steps(self) -> int:
        """Protocol commands of the timeline: bootstrap, user creations, realm creations and sharings, writes."""
        return 1 + (self.users - 1) + 1 + 2 * self.member_realms + self.vlobs


def user_id_of(index: int) -> str:
    """Users 1..users-1; user 1 is the member of the realms."""
    return MEMBER_USER_ID if index == 1 else f"u{index:05d}"


# --- the plan: every command the protocol would have received, in order ------------------------------


@dataclass
class NewUser:
    device: TestDevice
    timestamp: datetime.datetime
    certificates: dict[str, bytes]  # the four certificates of user_create / organization_bootstrap


@dataclass
class NewRealm:
    realm_id: uuid.UUID
    owner_certificate: bytes  # realm_create's, signed by alice
    created_on: datetime.datetime


@dataclass
class MemberRealm(NewRealm):
    """Created by alice, then shared with the member by realm_update_roles."""

    share_certificate: bytes
    shared_on: datetime.datetime
    message: bytes  # the recipient message


@dataclass
class NewVlob:
    vlob_id: uuid.UUID
    timestamp: datetime.datetime
    blob: bytes


@dataclass
class Plan:
    organization_id: str
    shape: Shape
    root_signing_key: SigningKey
    bootstrap_token: str
    alice: NewUser
    users: list[NewUser]  # without alice; users[0] is the member
    big_realm: NewRealm
    vlobs: list[NewVlob]
    member_realms: list[MemberRealm]


def make_plan(organization_id: str, shape: Shape, *, end: datetime.datetime | None = None) -> Plan:
    """Sign everything. The last command is dated `end` (default: a minute ago), the earlier ones one STEP apart
    before it, so that whatever a client does next is later than all of it."""
    end = end or certs.now() - datetime.timedelta(minutes=1)
    clock = iter(end - STEP * (shape.steps - 1 - i) for i in range(shape.steps))
    root = SigningKey.generate()
    alice_device = TestDevice.generate(organization_id, "alice", "dev1", profile="ADMIN", email="alice@example.com",
                                       label="Alice", root_signing_key=root)
    timestamp = next(clock)
    alice = NewUser(alice_device, timestamp, certs.user_creation_certificates(root, alice_device, timestamp))
    users = []
    for index in range(1, shape.users):
        user_id = user_id_of(index)
        device = TestDevice.generate(organization_id, user_id, "dev1", email=f"{user_id}@example.com",
                                     label=f"User {index:05d}", root_signing_key=root)
        timestamp = next(clock)
        users.append(NewUser(device, timestamp, certs.user_creation_certificates(alice_device, device, timestamp)))

    def new_realm() -> NewRealm:
        realm_id, timestamp = uuid.uuid4(), next(clock)
        certificate = certs.realm_role_certificate(
            alice_device.signing_key, author=alice_device.device_id, timestamp=timestamp, realm_id=realm_id,
            user_id="alice", role="OWNER",
        )
        return NewRealm(realm_id, certificate, timestamp)

    big_realm = new_realm()
    member_realms = []
    for _ in range(shape.member_realms):
        realm = new_realm()
        timestamp = next(clock)
        certificate = certs.realm_role_certificate(
            alice_device.signing_key, author=alice_device.device_id, timestamp=timestamp, realm_id=realm.realm_id,
            user_id=MEMBER_USER_ID, role="CONTRIBUTOR",
        )
        # The message is encrypted for the member by the client: opaque to the server, like a blob.
        member_realms.append(MemberRealm(realm.realm_id, realm.owner_certificate, realm.created_on, certificate,
                                         timestamp, os.urandom(200)))
    # One random blob per 64 vlobs: urandom of 100 MB would be most of the plan's time, and the server
    # neither knows nor cares that two ciphertexts repeat.
    blobs = [os.urandom(shape.blob_size) for _ in range(max(1, shape.vlobs // 64))]
    vlobs = [NewVlob(uuid.uuid4(), next(clock), blobs[i % len(blobs)]) for i in range(shape.vlobs)]
    return Plan(organization_id=organization_id, shape=shape, root_signing_key=root,
                bootstrap_token=secrets.token_hex(32), alice=alice, users=users, big_realm=big_realm, vlobs=vlobs,
                member_realms=member_realms)


# --- writing the rows --------------------------------------------------------------------------------


class _Writer:
    """Appends rows to a model's table: COPY on PostgreSQL, executemany elsewhere."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.rows = 0

    def write(self, model, fields: list[str], rows: Iterable[tuple]) -> None:
        meta = model._meta
        model_fields = [meta.get_field(name) for name in fields]
        columns = ", ".join(self.connection.ops.quote_name(f.column) for f in model_fields)
        table = self.connection.ops.quote_name(meta.db_table)
        count = 0
        with self.connection.cursor() as cursor:
            if self.connection.vendor == "postgresql":
                # psycopg adapts bytes, UUID and aware datetimes to bytea, uuid and timestamptz itself.
                with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                        count += 1
            else:
                prepared = [
                    tuple(f.get_db_prep_value(value, self.connection, prepared=False)
                          for f, value in zip(model_fields, row))
                    for row in rows
                ]
                placeholders = ", ".join(["%s"] * len(fields))
                cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", prepared)
                count = len(prepared)
        self.rows += count


def load(plan: Plan, *, log=None) -> dict[str, float]:
    """Write the plan's rows into the default database, in one transaction; returns seconds per part."""
    from django.db import connection, transaction

    from organizations.models import AuditEntry, Device, Organization, User
    from realms.models import Message, Realm, RealmUserChange, RealmUserRole, RealmVlobUpdate, VlobAtom

    timings: dict[str, float] = {}
    writer = _Writer(connection)
    alice, shape = plan.alice, plan.shape
    started = time.perf_counter()

    def lap(part: str) -> None:
        nonlocal started
        timings[part] = time.perf_counter() - started
        if log:
            log(f"  {part}: {timings[part]:.1f} s")
        started = time.perf_counter()

    with transaction.atomic():
        # The administration API's create (with its audit entry), then organization_bootstrap.
        created_on = alice.timestamp - datetime.timedelta(seconds=1)
        organization = Organization.objects.create(
            organization_id=plan.organization_id, bootstrap_token=plan.bootstrap_token, created_on=created_on,
            root_verify_key=bytes(plan.root_signing_key.verify_key), bootstrapped_on=alice.timestamp,
        )
        AuditEntry.objects.create(timestamp=created_on, actor="bench.largeorg",
                                  action=AuditEntry.Action.ORGANIZATION_CREATED, organization_id=plan.organization_id)
        org_pk = organization.pk
        user_fields = ["organization", "user_id", "human_email", "human_label", "profile", "user_certificate",
                       "redacted_user_certificate", "user_certifier", "created_on", "frozen"]
        device_fields = ["organization", "user", "device_id", "device_label", "verify_key", "device_certificate",
                         "redacted_device_certificate", "device_certifier", "created_on"]

        def user_row(user: NewUser, certifier: int | None) -> tuple:
            email, label = user.device.human_handle or (None, None)  # NULLs for a non-human user
            return (org_pk, user.device.user_id, email, label, user.device.profile,
                    user.certificates["user_certificate"], user.certificates["redacted_user_certificate"],
                    certifier, user.timestamp, False)

        def device_row(user: NewUser, user_pk: int, certifier: int | None) -> tuple:
            return (org_pk, user_pk, user.device.device_id, user.device.device_label, user.device.verify_key,
                    user.certificates["device_certificate"], user.certificates["redacted_device_certificate"],
                    certifier, user.timestamp)

        writer.write(User, user_fields, [user_row(alice, None)])
        alice_user = User.objects.get(organization_id=org_pk, user_id="alice").pk
        writer.write(Device, device_fields, [device_row(alice, alice_user, None)])
        alice_device = Device.objects.get(organization_id=org_pk, device_id=alice.device.device_id).pk
        writer.write(User, user_fields, (user_row(user, alice_device) for user in plan.users))
        user_pks = dict(User.objects.filter(organization_id=org_pk).values_list("user_id", "pk"))
        writer.write(Device, device_fields,
                     (device_row(user, user_pks[user.device.user_id], alice_device) for user in plan.users))
        lap(f"{shape.users} users and devices")

        realms = [plan.big_realm, *plan.member_realms]
        last_vlob = plan.vlobs[-1].timestamp
        writer.write(Realm, ["organization", "realm_id", "encryption_revision", "checkpoint", "created_on"],
                     [(org_pk, plan.big_realm.realm_id, 1, shape.vlobs, plan.big_realm.created_on)]
                     + [(org_pk, realm.realm_id, 1, 0, realm.created_on) for realm in plan.member_realms])
        realm_pks = dict(Realm.objects.filter(organization_id=org_pk).values_list("realm_id", "pk"))
        member = user_pks[MEMBER_USER_ID]
        role_fields = ["realm", "user", "role", "certificate", "certified_by", "certified_on"]
        writer.write(RealmUserRole, role_fields,
                     [(realm_pks[r.realm_id], alice_user, "OWNER", r.owner_certificate, alice_device, r.created_on)
                      for r in realms]
                     + [(realm_pks[r.realm_id], member, "CONTRIBUTOR", r.share_certificate, alice_device,
                         r.shared_on) for r in plan.member_realms])
        # realm_update_roles records the author's last role change; a vlob write the writer's last write.
        writer.write(RealmUserChange, ["realm", "user", "last_role_change", "last_vlob_update"],
                     [(realm_pks[plan.big_realm.realm_id], alice_user, None, last_vlob)]
                     + [(realm_pks[r.realm_id], alice_user, r.shared_on, None) for r in plan.member_realms])
        writer.write(Message, ["recipient", "index", "sender", "timestamp", "body"],
                     [(member, index, alice_device, r.shared_on, r.message)
                      for index, r in enumerate(plan.member_realms, start=1)])
        lap(f"{len(realms)} realms, their roles and {len(plan.member_realms)} messages")

        big = realm_pks[plan.big_realm.realm_id]
        writer.write(VlobAtom, ["organization", "realm", "vlob_id", "version", "encryption_revision", "blob", "size",
                                "author", "created_on"],
                     ((org_pk, big, v.vlob_id, 1, 1, v.blob, len(v.blob), alice_device, v.timestamp)
                      for v in plan.vlobs))
        writer.write(RealmVlobUpdate, ["realm", "index", "vlob_id", "version"],
                     ((big, index, v.vlob_id, 1) for index, v in enumerate(plan.vlobs, start=1)))
        lap(f"{shape.vlobs} vlobs and their checkpoints")

    if connection.vendor == "postgresql":
        # What autovacuum does to tables grown over months: without it the planner takes them for empty.
        with connection.cursor() as cursor:
            for model in (User, Device, Realm, RealmUserRole, RealmUserChange, Message, VlobAtom, RealmVlobUpdate):
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        lap("ANALYZE")
    timings["rows"] = writer.rows + 2
    return timings


# --- what a client needs afterwards --------------------------------------------------------------------


def _device_to_json(device: TestDevice) -> dict[str, Any]:
    return {"user_id": device.user_id, "device_name": device.device_name, "profile": device.profile,
            "signing_key": bytes(device.signing_key).hex(), "private_key": bytes(device.private_key).hex(),
            "human_handle": list(device.human_handle) if device.human_handle else None,
            "device_label": device.device_label}


def _device_from_json(organization_id: str, data: dict[str, Any], root: SigningKey) -> TestDevice:
    return TestDevice(organization_id=organization_id, user_id=data["user_id"], device_name=data["device_name"],
                      signing_key=SigningKey(bytes.fromhex(data["signing_key"])),
                      private_key=PrivateKey(bytes.fromhex(data["private_key"])), profile=data["profile"],
                      human_handle=tuple(data["human_handle"]) if data["human_handle"] else None,
                      device_label=data["device_label"], root_signing_key=root)


@dataclass
class LoadedOrg:
    """The keys and ids the bench phases need to use a loaded organization."""

    organization_id: str
    shape: Shape
    alice: TestDevice
    member: TestDevice
    sample_user_id: str  # a user in the middle of the organization, for user_get
    big_realm: uuid.UUID
    big_realm_checkpoint: int
    sample_vlobs: list[uuid.UUID]  # spread over the big realm, version 1 each
    member_realms: list[uuid.UUID]
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, plan: Plan) -> LoadedOrg:
        step = max(1, len(plan.vlobs) // SAMPLE_VLOBS)
        return cls(organization_id=plan.organization_id, shape=plan.shape, alice=plan.alice.device,
                   member=plan.users[0].device, sample_user_id=plan.users[len(plan.users) // 2].device.user_id,
                   big_realm=plan.big_realm.realm_id, big_realm_checkpoint=plan.shape.vlobs,
                   sample_vlobs=[v.vlob_id for v in plan.vlobs[::step]][:SAMPLE_VLOBS],
                   member_realms=[r.realm_id for r in plan.member_realms])

    def to_json(self) -> dict[str, Any]:
        assert self.alice.root_signing_key is not None
        return {
            "organization_id": self.organization_id, "shape": vars(self.shape),
            "root_signing_key": bytes(self.alice.root_signing_key).hex(),
            "alice": _device_to_json(self.alice), "member": _device_to_json(self.member),
            "sample_user_id": self.sample_user_id, "big_realm": self.big_realm.hex,
            "big_realm_checkpoint": self.big_realm_checkpoint, "sample_vlobs": [v.hex for v in self.sample_vlobs],
            "member_realms": [r.hex for r in self.member_realms], "timings": self.timings,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadedOrg:
        root = SigningKey(bytes.fromhex(data["root_signing_key"]))
        org = data["organization_id"]
        return cls(organization_id=org, shape=Shape(**data["shape"]), alice=_device_from_json(org, data["alice"], root),
                   member=_device_from_json(org, data["member"], root), sample_user_id=data["sample_user_id"],
                   big_realm=uuid.UUID(data["big_realm"]), big_realm_checkpoint=data["big_realm_checkpoint"],
                   sample_vlobs=[uuid.UUID(v) for v in data["sample_vlobs"]],
                   member_realms=[uuid.UUID(r) for r in data["member_realms"]], timings=data.get("timings", {}))


def build(organization_id: str, shape: Shape, *, log=None) -> LoadedOrg:
    """Plan, sign and load into the default database."""
    started = time.perf_counter()
    plan = make_plan(organization_id, shape)
    signed = time.perf_counter() - started
    if log:
        log(f"  signed {shape.users * 4 + 2 * shape.member_realms + 1} certificates: {signed:.1f} s")
    timings = load(plan, log=log)
    loaded = LoadedOrg.of(plan)
    loaded.timings = {"sign": signed, **timings, "total": time.perf_counter() - started}
    return loaded


def main(argv: list[str] | None = None) -> int:
    defaults = Shape()
    parser = argparse.ArgumentParser(prog="python -m bench.largeorg", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True,
                        help="our server's database (postgresql://... or sqlite:///...), migrated")
    parser.add_argument("--organization", default=None, help="organization id (default: Large<random>)")
    parser.add_argument("--users", type=int, default=defaults.users,
                        help=f"users, alice included (default {defaults.users})")
    parser.add_argument("--vlobs", type=int, default=defaults.vlobs,
                        help=f"vlobs of the big realm (default {defaults.vlobs})")
    parser.add_argument("--member-realms", type=int, default=defaults.member_realms,
                        help=f"realms shared with the member (default {defaults.member_realms})")
    parser.add_argument("--blob-size", type=int, default=defaults.blob_size, help="bytes of each blob (default 1024)")
    parser.add_argument("--handles", metavar="FILE",
                        help="write the keys and ids of the loaded organization there (JSON)")
    args = parser.parse_args(argv)
    try:
        shape = Shape(users=args.users, vlobs=args.vlobs, member_realms=args.member_realms, blob_size=args.blob_size)
    except ValueError as exc:
        parser.error(str(exc))
    # Our settings read the database from the environment, once: set it before Django starts.
    os.environ["PARSEC_DB"] = args.db
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))  # else settings keep one in ./var
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parsec_site.settings")
    import django

    django.setup()
    organization_id = args.organization or f"Large{secrets.token_hex(4)}"

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    from django.db import DatabaseError, IntegrityError

    from organizations.models import Organization

    try:
        if Organization.objects.filter(organization_id=organization_id).exists():
            parser.error(f"organization {organization_id} already exists in that database")
        log(f"loading {organization_id}: {shape}")
        loaded = build(organization_id, shape, log=log)
    except IntegrityError as exc:  # e.g. created meanwhile: the whole load was rolled back
        parser.exit(1, f"nothing loaded: {exc}\n")
    except DatabaseError as exc:
        parser.exit(1, f"nothing loaded (is the database migrated? `manage.py migrate`): {exc}\n")
    log(f"  {int(loaded.timings['rows'])} rows in {loaded.timings['total']:.1f} s")
    if args.handles:
        with open(args.handles, "w") as f:
            json.dump(loaded.to_json(), f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
