"""`human_find` (docs/protocol.md#human-find): one test per reply status, then filters, matching, order and pages."""
from __future__ import annotations

from datetime import timedelta

import pytest

from organizations.models import User
from organizations.services.users import can_match, query_words
from tests.conftest import World, add_user, connect_as
from tests.testkit import certs
from tests.testkit.ws import WsClient
from tests.users.conftest import create_user, revoke_user

pytestmark = pytest.mark.django_db(transaction=True)


def find(**fields) -> dict:
    return {"query": None, "omit_revoked": False, "omit_non_human": False, "page": 1, "per_page": 100, **fields}


def item(user_id: str, email: str | None = None, label: str | None = None, revoked: bool = False) -> dict:
    return {"user_id": user_id, "human_handle": [email, label] if email else None, "revoked": revoked}


ALICE = item("alice", "alice@example.com", "Alice")
BOB = item("bob", "bob.marley@reggae.example", "Bob Marley")
CAROL = item("carol", "carol@example.com", "carol Zed", revoked=True)
DAN = item("dan", "dan@example.com", "Dan_Underscore")
ROBOT = item("robot")
ZOE = item("zed", "zoe@example.com", "Zoé 100% Pure")


@pytest.fixture
async def crowd(world: World, alice_client: WsClient) -> WsClient:
    """alice, Bob Marley, carol Zed (revoked), Dan_Underscore, Zoé (user id `zed`), a non-human robot."""
    await create_user(alice_client, world.alice, world, "bob", email="bob.marley@reggae.example", label="Bob Marley")
    await create_user(alice_client, world.alice, world, "robot", human=False)
    await create_user(alice_client, world.alice, world, "zed", email="zoe@example.com", label="Zoé 100% Pure")
    await create_user(alice_client, world.alice, world, "carol", email="carol@example.com", label="carol Zed")
    await create_user(alice_client, world.alice, world, "dan", email="dan@example.com", label="Dan_Underscore")
    await revoke_user(alice_client, world.alice, "carol")
    return alice_client


async def found(client: WsClient, **fields) -> list[dict]:
    reply = await client.command("human_find", **find(**fields))
    assert reply["status"] == "ok" and reply["total"] == len(reply["results"]), reply
    return reply["results"]


# --- one test per status ----------------------------------------------------------------------------


async def test_ok(world: World, crowd: WsClient):
    reply = await crowd.command("human_find", **find())
    # By lower-cased label, users without human handle last.
    assert reply == {
        "status": "ok", "results": [ALICE, BOB, CAROL, DAN, ZOE, ROBOT], "page": 1, "per_page": 100, "total": 6,
    }


async def test_not_allowed(world: World, crowd: WsClient):
    outsider = await add_user(world, "olga", profile="OUTSIDER")
    client = await connect_as(outsider)
    assert await client.command("human_find", **find()) == {"status": "not_allowed", "reason": None}
    assert await client.command("human_find", **find(query="alice")) == {"status": "not_allowed", "reason": None}


@pytest.mark.parametrize("fields", [{"per_page": 0}, {"per_page": 101}, {"per_page": -1}, {"page": 0}, {"page": -1},
                                    {"page": -(2**63)}])
async def test_bad_message_out_of_range(world: World, alice_client: WsClient, fields):
    reply = await alice_client.command("human_find", **find(**fields))
    assert reply["status"] == "bad_message" and reply["reason"] == "Invalid message." and reply["errors"]


@pytest.mark.parametrize("fields", [
    {"page": "1"}, {"per_page": 1.0}, {"page": True}, {"query": 3}, {"omit_revoked": 0},
])
async def test_bad_message_wrong_type(world: World, alice_client: WsClient, fields):
    assert (await alice_client.command("human_find", **find(**fields)))["status"] == "bad_message"


async def test_bad_message_comes_before_not_allowed(world: World):
    outsider = await add_user(world, "olga", profile="OUTSIDER")
    reply = await (await connect_as(outsider)).command("human_find", **find(per_page=101))
    assert reply["status"] == "bad_message"


# --- filters --------------------------------------------------------------------------------------


async def test_omit_revoked(world: World, crowd: WsClient):
    assert await found(crowd, omit_revoked=True) == [ALICE, BOB, DAN, ZOE, ROBOT]


async def test_omit_non_human(world: World, crowd: WsClient):
    assert await found(crowd, omit_non_human=True) == [ALICE, BOB, CAROL, DAN, ZOE]
    assert await found(crowd, omit_non_human=True, omit_revoked=True) == [ALICE, BOB, DAN, ZOE]


async def test_revoked_in_the_future_is_not_revoked_yet(world: World, alice_client: WsClient):
    await create_user(alice_client, world.alice, world, "bob", label="Bob")
    await revoke_user(alice_client, world.alice, "bob", timestamp=certs.now() + timedelta(seconds=200))
    expected = [ALICE, item("bob", "bob@example.com", "Bob")]
    assert await found(alice_client) == expected
    assert await found(alice_client, omit_revoked=True) == expected


# --- matching -------------------------------------------------------------------------------------


@pytest.mark.parametrize("query, expected", [
    ("alice", [ALICE]),
    ("ALI", [ALICE]),
    ("bob", [BOB]),
    ("Bob Marley", [BOB]),
    ("bob  mar\tley", [BOB]),
    ("marley bob", []),
    ("b m", [BOB]),
    ("reggae", [BOB]),
    ("marley@REGGAE", [BOB]),
    ("zed", [CAROL]),  # carol's label; zed is Zoé's user id, not searched for humans
    ("example.com", [ALICE, CAROL, DAN, ZOE]),
    ("robot", [ROBOT]),
    ("ROB", [ROBOT]),
    ("o t", [ROBOT]),
    ("pure", [ZOE]),
    ("nobody", []),
])
async def test_query_matches_words_in_order(world: World, crowd: WsClient, query: str, expected: list[dict]):
    assert await found(crowd, query=query) == expected


@pytest.mark.parametrize("query, expected", [
    ("%", [ZOE]),
    ("100%", [ZOE]),
    ("0% p", [ZOE]),
    ("_", [DAN]),
    ("n_u", [DAN]),
    ("a_", []),
    ("\\", []),
    ("\\%", []),
    (".*", []),
    ("b.b", []),
    ("(", []),
    ("[a-z]", []),
    ("^alice", []),
    ("alice$", []),
    ("a|b", []),
    ("a+", []),
    ("***=a", []),
])
async def test_query_special_characters_are_literal(world: World, crowd: WsClient, query: str, expected: list[dict]):
    assert await found(crowd, query=query) == expected


async def test_query_special_characters_match_themselves(world: World, alice_client: WsClient):
    labels = ["a.b (c) {e} f+g*h?", "x|y ^z$ ~#&-"]
    for index, label in enumerate(labels):
        await create_user(
            alice_client, world.alice, world, f"user{index}", email=f"user{index}@example.com", label=label
        )
    for index, label in enumerate(labels):
        for word in label.split():
            assert [result["user_id"] for result in await found(alice_client, query=word)] == [f"user{index}"], word
        assert [result["user_id"] for result in await found(alice_client, query=label)] == [f"user{index}"]


@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
async def test_empty_query_matches_everything(world: World, crowd: WsClient, query: str):
    assert await found(crowd, query=query) == [ALICE, BOB, CAROL, DAN, ZOE, ROBOT]


async def test_query_and_filters_combine(world: World, crowd: WsClient):
    assert await found(crowd, query="example", omit_revoked=True) == [ALICE, BOB, DAN, ZOE]
    assert await found(crowd, query="r", omit_non_human=True) == [BOB, CAROL, DAN, ZOE]
    assert await found(crowd, query="r") == [BOB, CAROL, DAN, ZOE, ROBOT]


def test_query_words():
    assert query_words(None) is None
    assert query_words("  ") is None
    assert query_words(" a%b  c_d ") == ["a%b", "c_d"]
    assert can_match(["x" * 254]) and can_match(["x" * 127, "y" * 127])
    assert not can_match(["x" * 255]) and not can_match(["x" * 128, "y" * 127])
    assert not can_match(["a\x00b"])


# --- bounded whatever the query (each was a crash or a stuck connection pool) -------------------------


async def test_fifty_thousand_character_query_finds_nobody(world: World, crowd: WsClient):
    for query in ("a" * 50_000, " ".join(["a"] * 25_000), "alice " + "x" * 50_000):
        reply = await crowd.command("human_find", **find(query=query))
        assert reply == {"status": "ok", "results": [], "page": 1, "per_page": 100, "total": 0}
    assert await found(crowd, query="alice") == [ALICE]


async def test_longest_matching_query_still_matches(world: World, alice_client: WsClient):
    label = "L" * 200
    email = "e" * 240 + "@example.com"  # 252 characters, under the 254 of the column
    await create_user(alice_client, world.alice, world, "long", email=email, label=label)
    assert [r["user_id"] for r in await found(alice_client, query=email)] == ["long"]
    assert [r["user_id"] for r in await found(alice_client, query=" ".join(email))] == ["long"]
    assert await found(alice_client, query=email + "x") == []


async def test_many_words_do_not_backtrack(world: World, alice_client: WsClient):
    # 127 one-letter words against labels full of that letter and lacking the last word: a
    # backtracking matcher would try every way to place 126 words in 200 letters.
    await create_user(alice_client, world.alice, world, "aaa", email="a@example.com", label="a" * 200)
    assert await found(alice_client, query=" ".join(["a"] * 126 + ["b"])) == []
    assert [r["user_id"] for r in await found(alice_client, query=" ".join(["a"] * 127))] == ["aaa"]


async def test_nul_in_query_finds_nobody(world: World, crowd: WsClient):
    assert await found(crowd, query="ali\x00ce") == []
    assert await found(crowd, query="alice \x00") == []
    assert await found(crowd, query="alice") == [ALICE]


# --- order and pages ------------------------------------------------------------------------------


async def test_order_is_case_insensitive_with_non_humans_last(world: World, alice_client: WsClient):
    for user_id, label in [("u1", "bernard"), ("u2", "Albert"), ("u3", "CHARLES"), ("u4", "aaron")]:
        await create_user(alice_client, world.alice, world, user_id, label=label)
    await create_user(alice_client, world.alice, world, "a_robot", human=False)
    await create_user(alice_client, world.alice, world, "z_robot", human=False)
    results = await found(alice_client)
    assert [result["user_id"] for result in results] == ["u4", "u2", "alice", "u1", "u3", "a_robot", "z_robot"]


async def test_pagination(world: World, crowd: WsClient):
    pages = []
    for page in (1, 2, 3, 4):
        reply = await crowd.command("human_find", **find(page=page, per_page=2))
        assert (reply["status"], reply["page"], reply["per_page"], reply["total"]) == ("ok", page, 2, 6)
        pages.append(reply["results"])
    assert pages == [[ALICE, BOB], [CAROL, DAN], [ZOE, ROBOT], []]


async def test_pagination_with_query(world: World, crowd: WsClient):
    reply = await crowd.command("human_find", **find(query="example", page=2, per_page=3))
    assert reply == {"status": "ok", "results": [DAN, ZOE], "page": 2, "per_page": 3, "total": 5}


async def test_huge_page_is_empty(world: World, crowd: WsClient):
    reply = await crowd.command("human_find", **find(page=2**64 - 1, per_page=100))
    assert reply == {"status": "ok", "results": [], "page": 2**64 - 1, "per_page": 100, "total": 6}


async def test_only_the_organizations_users(world: World, alice_client: WsClient):
    from tests.conftest import bootstrap_organization

    other = await bootstrap_organization("OtherOrg")
    await create_user(await connect_as(other.alice), other.alice, other, "zoe")
    assert await found(alice_client) == [ALICE]
    assert await User.objects.acount() == 3


async def test_standard_user_may_search(world: World, crowd: WsClient):
    bob = await add_user(world, "bobby")
    results = await found(await connect_as(bob), query="bob")
    assert [result["user_id"] for result in results] == ["bob", "bobby"]


async def test_postgresql_search_uses_the_trigram_indexes(world: World):
    from asgiref.sync import sync_to_async
    from django.db import connection
    from django.utils import timezone

    from organizations.models import Organization
    from organizations.services.users import matching_users

    if connection.vendor != "postgresql":
        pytest.skip("trigram indexes are PostgreSQL's (embedded SQLite deployments are small)")

    def plan() -> str:
        organization = Organization.objects.get(organization_id=world.organization_id)
        now = timezone.now()
        User.objects.bulk_create(
            User(organization=organization, user_id=f"user{index}", human_email=f"person{index}@example.com",
                 human_label=f"Person Number {index}", profile="STANDARD", user_certificate=b"",
                 redacted_user_certificate=b"", created_on=now)
            for index in range(20_000)
        )
        with connection.cursor() as cursor:
            # What autovacuum does in production: statistics, and the GIN pending list merged.
            cursor.execute(f"VACUUM ANALYZE {User._meta.db_table}")
        users = matching_users(organization.pk, words=["number", "4242"], omit_revoked=False,
                               omit_non_human=False, now=now)
        assert sorted(users.values_list("user_id", flat=True)) == ["user14242", "user4242"]
        return users.explain()

    query_plan = await sync_to_async(plan)()
    # The organization's 20,000 users are not read one by one: the trigram indexes answer (and
    # the e-mail index finds the few users without a human handle, whose user id is searched).
    assert "user_label_trgm_idx" in query_plan and "user_email_trgm_idx" in query_plan, query_plan
    assert "Seq Scan" not in query_plan, query_plan


# --- cost: the first page without a query does not grow with the organization (issue 15) ----------


def _bulk_users(organization, count: int, *, now, start: int = 0) -> None:
    """`count` users written straight into the table, as the bench's bulk loader does (the services are
    tested above): every 7th without a human handle, every 11th revoked, every 13th revoked a minute ahead."""
    def revoked_on(index: int):
        if index % 13 == 0:
            return now + timedelta(minutes=1)
        return now - timedelta(minutes=1) if index % 11 == 0 else None

    User.objects.bulk_create(
        User(organization=organization, user_id=f"user{index}", profile="STANDARD",
             human_email=None if index % 7 == 0 else f"person{index}@example.com",
             human_label=None if index % 7 == 0 else f"Person {index}",
             user_certificate=b"", redacted_user_certificate=b"", created_on=now,
             revoked_on=revoked_on(index), revoked_user_certificate=b"" if revoked_on(index) else None)
        for index in range(start, start + count)
    )


async def test_total_without_query_follows_every_write(world: World, crowd: WsClient):
    """The total comes from the organization's counts, which the database keeps: they match a count of the
    users after inserts (the protocol's and bulk ones), revocations past and ahead, and deletes."""
    from asgiref.sync import sync_to_async
    from django.db.models import Count, Q
    from django.utils import timezone

    from organizations.models import Organization, OrganizationUserCounts
    from organizations.services.users import candidate_count, matching_users

    def check(organization) -> None:
        now = timezone.now()
        for omit_revoked in (False, True):
            for omit_non_human in (False, True):
                expected = matching_users(organization.pk, words=None, omit_revoked=omit_revoked,
                                          omit_non_human=omit_non_human, now=now).count()
                assert candidate_count(organization.pk, omit_revoked=omit_revoked, omit_non_human=omit_non_human,
                                       now=now) == expected, (omit_revoked, omit_non_human)
        stored = OrganizationUserCounts.objects.filter(organization=organization).values(
            "users", "human_users", "revoked_users", "revoked_human_users").get()
        assert stored == User.objects.filter(organization=organization).aggregate(
            users=Count("pk"), human_users=Count("pk", filter=Q(human_email__isnull=False)),
            revoked_users=Count("pk", filter=Q(revoked_on__isnull=False)),
            revoked_human_users=Count("pk", filter=Q(revoked_on__isnull=False, human_email__isnull=False)),
        )

    def writes() -> None:
        organization = Organization.objects.get(organization_id=world.organization_id)
        check(organization)  # the crowd, written through the protocol
        other = Organization.objects.create(organization_id="Other", created_on=timezone.now())
        _bulk_users(other, 50, now=timezone.now())
        _bulk_users(organization, 100, now=timezone.now())
        check(organization)
        check(other)
        users = User.objects.filter(organization=organization)
        # A revocation dated ahead, then the time passes it: counted as revoked only from then on.
        ahead = timezone.now() + timedelta(minutes=1)
        users.filter(user_id="user1").update(revoked_on=ahead, revoked_user_certificate=b"")
        check(organization)
        users.filter(user_id__in=["user2", "user7"]).update(revoked_on=timezone.now(), revoked_user_certificate=b"")
        check(organization)
        users.filter(user_id__in=["user3", "user14"]).update(human_email=None, human_label=None)
        check(organization)
        users.filter(user_id__startswith="user2").delete()
        check(organization)
        check(other)
        assert candidate_count(organization.pk, omit_revoked=True, omit_non_human=False, now=ahead) == (
            matching_users(organization.pk, words=None, omit_revoked=True, omit_non_human=False, now=ahead).count()
        )
        Organization.objects.create(organization_id="Empty", created_on=timezone.now())
        empty = Organization.objects.get(organization_id="Empty")
        assert [candidate_count(empty.pk, omit_revoked=o, omit_non_human=h, now=timezone.now())
                for o in (False, True) for h in (False, True)] == [0, 0, 0, 0]

    await sync_to_async(writes)()
    # And through the protocol, which answers from the same counts.
    reply = await crowd.command("human_find", **find(omit_revoked=True, per_page=1))
    assert reply["total"] == await sync_to_async(
        lambda: User.objects.filter(organization__organization_id=world.organization_id)
        .exclude(revoked_on__lte=certs.now()).count()
    )()


async def test_first_page_cost_does_not_grow_with_the_organization(world: World, alice_client: WsClient):
    """Two queries whatever the size; neither reads the organization's users one by one: the total is the
    counts' row (plus the revocations dated ahead), the page the first entries of `user_find_order_idx`."""
    from asgiref.sync import sync_to_async
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from organizations.models import Organization

    async def queries_of_first_page(**fields) -> list[str]:
        def run() -> list[str]:
            from organizations.services.users import human_find
            from protocol.session import AuthenticatedSession

            alice = User.objects.select_related("organization").get(user_id="alice")
            session = AuthenticatedSession(
                organization_pk=alice.organization_id, organization_id=world.organization_id, user_pk=alice.pk,
                user_id="alice", device_pk=alice.devices.get().pk, device_id="alice@dev1", profile="ADMIN",
                api_version=(3, 4), verify_key=b"",
            )
            with CaptureQueriesContext(connection) as captured:
                page = human_find(session=session, query=None, page=1, per_page=100, **fields)
            assert len(page.results) == min(100, page.total)
            return [query["sql"] for query in captured.captured_queries]
        return await sync_to_async(run)()

    filters = [dict(omit_revoked=o, omit_non_human=h) for o in (False, True) for h in (False, True)]
    small = [await queries_of_first_page(**f) for f in filters]

    def grow() -> None:
        organization = Organization.objects.get(organization_id=world.organization_id)
        _bulk_users(organization, 20_000, now=timezone.now())
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"VACUUM ANALYZE {User._meta.db_table}")  # what autovacuum does in production

    await sync_to_async(grow)()
    large = [await queries_of_first_page(**f) for f in filters]
    assert [len(queries) for queries in small] == [len(queries) for queries in large] == [2, 2, 2, 2]

    def plans(queries: list[str]) -> list[str]:
        explain = "EXPLAIN " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "
        with connection.cursor() as cursor:
            result = []
            for query in queries:
                cursor.execute(explain + query)
                result.append("\n".join(str(row[-1]) for row in cursor.fetchall()))
            return result

    for queries in large:
        total_plan, page_plan = await sync_to_async(plans)(queries)
        assert "user_find_order_idx" in page_plan, page_plan
        if connection.vendor == "postgresql":
            assert "Sort" not in page_plan and "Seq Scan" not in page_plan, page_plan
            assert "Seq Scan" not in total_plan and "user_find_order_idx" not in total_plan, total_plan
        else:
            assert "TEMP B-TREE" not in page_plan, page_plan
            assert f"SCAN {User._meta.db_table}" not in total_plan, total_plan
