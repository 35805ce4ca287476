"""Invitations driven by the official 2.17.0 client (issue 4).

One organization, bootstrapped by alice (ADMIN), is shared by the module; the
tests run in file order:

* alice invites bob by e-mail (`invite_new`, no e-mail sent); greet (alice) and
  claim (bob) run as two CLI processes (`invite_1..4_greeter/claimer_*`,
  `user_create`, then the claimer's `invite_delete`);
* alice invites her own second device and claims it in another client home
  (`device_create`);
* `invite_list` / `invite_delete` (cancel); claiming a cancelled invitation is
  refused at the invited handshake ("Invitation already deleted");
* alice shares a workspace with bob (CONTRIBUTOR): bob reads alice's files and
  writes one that alice and her second device read.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from .refclient import DeviceRef, ParsecCli

pytestmark = pytest.mark.interop

ALICE_EMAIL, ALICE_LABEL = "alice@example.com", "Alice Liddell"
BOB_EMAIL, BOB_LABEL = "bob@example.com", "Bob Morane"
CAROL_EMAIL = "carol@example.com"
PASSWORD = "P@ssw0rd-interop"
WORKSPACE = "Team"
ALICE_FILE = b"From Alice to Bob\n"
ALICE_BIG = os.urandom(700 * 1024)  # 2 blocks
BOB_FILE = "Bob's answer: ça marche\n".encode()


@dataclass
class InviteCtx:
    server: Any
    org_id: str
    alice: ParsecCli
    alice_dev: DeviceRef
    new_home: Any  # name -> fresh, empty ParsecCli home
    bob: ParsecCli | None = None
    bob_dev: DeviceRef | None = None
    alice2: ParsecCli | None = None
    alice2_dev: DeviceRef | None = None


@pytest.fixture(scope="module")
def ctx(server, reference_client, tmp_path_factory) -> InviteCtx:
    base = tmp_path_factory.mktemp("invitations")
    alice = ParsecCli(reference_client, base / "alice")
    org_id = f"Inv{uuid.uuid4().hex[:12]}"
    url = alice.create_organization(server.addr, org_id, server.admin_token)
    dev = alice.bootstrap_organization(url, ALICE_EMAIL, ALICE_LABEL, "laptop", PASSWORD)
    return InviteCtx(server=server, org_id=org_id, alice=alice, alice_dev=dev,
                     new_home=lambda name: ParsecCli(reference_client, base / name))


def _db(server):
    if not server.db_url:
        return None
    import psycopg

    return psycopg.connect(server.db_url)


def _invitations(conn, org_id: str) -> list[tuple]:
    """(token hex, type, claimer_email, deleted_reason) of the organization's invitations."""
    return [
        (row[0].hex, *row[1:])
        for row in conn.execute(
            "SELECT i.token, i.type, i.claimer_email, i.deleted_reason FROM invites_invitation i"
            " JOIN organizations_organization o ON o.id = i.organization_id"
            " WHERE o.organization_id = %s ORDER BY i.created_on", (org_id,),
        ).fetchall()
    ]


def _token(url: str) -> str:
    m = re.search(r"[?&]token=([0-9a-f]{32})(?:&|$)", url)
    assert m, url
    return m.group(1)


def test_invite_and_claim_user(ctx: InviteCtx, server):
    url = ctx.alice.invite_user(BOB_EMAIL, device=ctx.alice_dev)
    assert re.fullmatch(
        rf"parsec://{re.escape(server.host)}:{server.port}/{ctx.org_id}"
        r"\?no_ssl=true&action=claim_user&token=[0-9a-f]{32}", url
    ), url
    token = _token(url)
    assert ctx.alice.list_invitations(ctx.alice_dev) == [
        {"token": token, "status": "idle", "type": f"user (email={BOB_EMAIL})"}
    ]

    bob = ctx.new_home("bob")
    bob_dev = ctx.alice.greet_and_claim_user(url, bob, label=BOB_LABEL, device_label="bob-pc",
                                             password=PASSWORD, profile="STANDARD",
                                             greeter_device=ctx.alice_dev)
    ctx.bob, ctx.bob_dev = bob, bob_dev
    greeter_out, claimer_out = bob_dev.extra["greeter_stdout"], bob_dev.extra["claimer_stdout"]
    assert "Creating the user in the backend ✔" in greeter_out
    assert f"Invitation greeter: {ALICE_LABEL} <{ALICE_EMAIL}>" in claimer_out
    assert re.search(r"Saving device [0-9a-f]{64} ✔", claimer_out)
    # the greeter was shown the claimer's requested values
    assert f"New user label [{BOB_LABEL}]:" in greeter_out
    assert f"New user email [{BOB_EMAIL}]:" in greeter_out
    assert "New user device label [bob-pc]:" in greeter_out

    # bob's device is saved in bob's home only
    assert [p.stem for p in (bob.config_dir / "devices").glob("*.keys")] == [bob_dev.slughash]
    [local] = bob.list_devices()
    assert (local["organization_id"], local["user"], local["device"]) == (
        ctx.org_id, f"{BOB_LABEL} <{BOB_EMAIL}>", "bob-pc")

    # the claimer deleted the finished invitation
    res = ctx.alice.run("list_invitations", "--device", ctx.alice_dev.slughash,
                        "--password", ctx.alice_dev.password)
    assert res.stdout.strip() == "No invitations."

    # bob is a member: alice finds him (bob's own login is exercised by the sharing test)
    found = ctx.alice.human_find("bob", device=ctx.alice_dev)
    assert [(f["human"], f["revoked"]) for f in found] == [(f"{BOB_LABEL} <{BOB_EMAIL}>", False)]

    conn = _db(server)
    if conn:
        with conn:
            assert _invitations(conn, ctx.org_id) == [(token, "USER", BOB_EMAIL, "FINISHED")]
            users = conn.execute(
                "SELECT u.user_id, u.human_email, u.human_label, u.profile, c.device_id"
                " FROM organizations_user u JOIN organizations_organization o ON o.id = u.organization_id"
                " LEFT JOIN organizations_device c ON c.id = u.user_certifier_id"
                " WHERE o.organization_id = %s ORDER BY u.created_on", (ctx.org_id,),
            ).fetchall()
            assert [u[1:4] for u in users] == [(ALICE_EMAIL, ALICE_LABEL, "ADMIN"),
                                               (BOB_EMAIL, BOB_LABEL, "STANDARD")]
            assert users[1][0] == found[0]["user_id"]
            assert users[1][4].startswith(users[0][0] + "@")  # certified by alice's device
            labels = [r[0] for r in conn.execute(
                "SELECT d.device_label FROM organizations_device d JOIN organizations_user u"
                " ON u.id = d.user_id WHERE u.user_id = %s", (users[1][0],)).fetchall()]
            assert labels == ["bob-pc"]


def test_invite_and_claim_own_device(ctx: InviteCtx, server):
    url = ctx.alice.invite_device(ctx.alice_dev)
    assert re.fullmatch(
        rf"parsec://{re.escape(server.host)}:{server.port}/{ctx.org_id}"
        r"\?no_ssl=true&action=claim_device&token=[0-9a-f]{32}", url
    ), url
    token = _token(url)
    assert ctx.alice.list_invitations(ctx.alice_dev) == [
        {"token": token, "status": "idle", "type": "device"}
    ]

    alice2 = ctx.new_home("alice-pc2")
    dev2 = ctx.alice.greet_and_claim_device(url, alice2, device_label="pc2", password=PASSWORD,
                                            greeter_device=ctx.alice_dev)
    ctx.alice2, ctx.alice2_dev = alice2, dev2
    assert "Creating the device in the backend ✔" in dev2.extra["greeter_stdout"]
    assert f"Invitation greeter: {ALICE_LABEL} <{ALICE_EMAIL}>" in dev2.extra["claimer_stdout"]
    assert dev2.slughash != ctx.alice_dev.slughash
    [local] = alice2.list_devices()
    assert (local["organization_id"], local["user"], local["device"]) == (
        ctx.org_id, f"{ALICE_LABEL} <{ALICE_EMAIL}>", "pc2")

    # the new device logs in (as alice: the sharing test reads her workspace with it)
    assert alice2.list_invitations(dev2) == []  # the device invitation is finished

    conn = _db(server)
    if conn:
        with conn:
            assert _invitations(conn, ctx.org_id)[-1] == (token, "DEVICE", None, "FINISHED")
            labels = [r[0] for r in conn.execute(
                "SELECT d.device_label FROM organizations_device d JOIN organizations_user u"
                " ON u.id = d.user_id JOIN organizations_organization o ON o.id = u.organization_id"
                " WHERE o.organization_id = %s AND u.human_email = %s ORDER BY d.created_on",
                (ctx.org_id, ALICE_EMAIL)).fetchall()]
            assert labels == ["laptop", "pc2"]


def test_cancel_invitation(ctx: InviteCtx, server):
    url = ctx.alice.invite_user(CAROL_EMAIL, device=ctx.alice_dev)
    token = _token(url)
    assert ctx.alice.list_invitations(ctx.alice_dev) == [
        {"token": token, "status": "idle", "type": f"user (email={CAROL_EMAIL})"}
    ]

    res = ctx.alice.cancel_invitation(token, ctx.alice_dev)
    assert res.stdout.strip() == "Invitation deleted."
    assert ctx.alice.list_invitations(ctx.alice_dev) == []

    # the claimer is refused at the handshake: `bad_identity` "Invitation already deleted"
    carol = ctx.new_home("carol")
    res = carol.fails(carol.run, "claim_invitation", url, "--password", PASSWORD)
    assert res.returncode == 1
    assert "Retrieving invitation info ✘" in res.stdout
    assert "Error: Invitation not found" in res.stdout
    assert "Invalid handshake: Invitation already deleted" in res.stderr
    assert carol.list_devices() == []

    # cancelling twice (here with the URL): `invite_delete` answers `already_deleted`
    res = ctx.alice.fails(ctx.alice.cancel_invitation, url, ctx.alice_dev)
    assert res.returncode == 1
    assert "Error: Backend error while cancelling invitation: AlreadyDeleted" in res.stdout

    conn = _db(server)
    if conn:
        with conn:
            assert _invitations(conn, ctx.org_id)[-1] == (token, "USER", CAROL_EMAIL, "CANCELLED")


def test_share_workspace_with_claimed_user(ctx: InviteCtx, server):
    if ctx.bob_dev is None:
        pytest.fail("bob was not claimed (test_invite_and_claim_user failed)")
    alice, bob = ctx.alice, ctx.bob
    res = alice.batch([
        {"op": "create_workspace", "workspace": WORKSPACE},
        {"op": "write", "workspace": WORKSPACE, "path": "/hello.txt", "data": ALICE_FILE},
        {"op": "write", "workspace": WORKSPACE, "path": "/data/big.bin", "data": ALICE_BIG},
    ], ctx.alice_dev, timeout=120)
    workspace_id = res[0]["workspace_id"]

    res = alice.share_workspace(WORKSPACE, "CONTRIBUTOR", recipient=BOB_EMAIL, device=ctx.alice_dev)
    assert res.stdout == ""
    [ws] = alice.list_workspaces(ctx.alice_dev)
    assert ws["internal_id"] == workspace_id
    assert ws["other_users"] == {f"{BOB_LABEL} <{BOB_EMAIL}>": "CONTRIBUTOR"}

    # bob: the sharing message makes the workspace appear; read, then write
    res = bob.batch([
        {"op": "workspace_info", "workspace": WORKSPACE},
        {"op": "read", "workspace": WORKSPACE, "path": "/hello.txt"},
        {"op": "read", "workspace": WORKSPACE, "path": "/data/big.bin"},
        {"op": "write", "workspace": WORKSPACE, "path": "/data/from-bob.txt", "data": BOB_FILE},
    ], ctx.bob_dev, timeout=120)
    info = res[0]
    assert info["workspace_id"] == workspace_id
    assert info["role"] == "CONTRIBUTOR"
    assert sorted(info["roles"].values()) == ["CONTRIBUTOR", "OWNER"]
    assert base64.b64decode(res[1]["data"]) == ALICE_FILE
    assert base64.b64decode(res[2]["data"]) == ALICE_BIG
    assert res[3]["written"] == len(BOB_FILE)
    [bob_ws] = bob.list_workspaces(ctx.bob_dev)
    assert (bob_ws["name"], bob_ws["current_role"]) == (WORKSPACE, "CONTRIBUTOR")
    assert bob_ws["other_users"] == {f"{ALICE_LABEL} <{ALICE_EMAIL}>": "OWNER"}

    # alice reads bob's file; so does her second device (a fresh local storage)
    assert alice.read_file(WORKSPACE, "/data/from-bob.txt", ctx.alice_dev) == BOB_FILE
    if ctx.alice2_dev is not None:
        tree = ctx.alice2.read_tree(WORKSPACE, device=ctx.alice2_dev)
        assert {p: (v.get("size"), v.get("sha256")) for p, v in tree.items()} == {
            "/hello.txt": (len(ALICE_FILE), hashlib.sha256(ALICE_FILE).hexdigest()),
            "/data": (None, None),
            "/data/big.bin": (len(ALICE_BIG), hashlib.sha256(ALICE_BIG).hexdigest()),
            "/data/from-bob.txt": (len(BOB_FILE), hashlib.sha256(BOB_FILE).hexdigest()),
        }

    conn = _db(server)
    if conn:
        with conn:
            roles = conn.execute(
                "SELECT u.human_email, rr.role FROM realms_realmuserrole rr"
                " JOIN realms_realm r ON r.id = rr.realm_id JOIN organizations_user u ON u.id = rr.user_id"
                " WHERE r.realm_id = %s ORDER BY rr.certified_on", (uuid.UUID(workspace_id),),
            ).fetchall()
            assert roles == [(ALICE_EMAIL, "OWNER"), (BOB_EMAIL, "CONTRIBUTOR")]
            authors = conn.execute(
                "SELECT DISTINCT u.human_email FROM realms_vlobatom v JOIN realms_realm r ON r.id = v.realm_id"
                " JOIN organizations_device d ON d.id = v.author_id JOIN organizations_user u ON u.id = d.user_id"
                " WHERE r.realm_id = %s", (uuid.UUID(workspace_id),),
            ).fetchall()
            assert sorted(a[0] for a in authors) == [ALICE_EMAIL, BOB_EMAIL]
