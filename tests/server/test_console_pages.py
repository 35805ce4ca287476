"""The web console beyond Django's defaults: figures per organization, statistics page and its CSV, the monthly
chart, invitation cancel, the audit trail, static files, HTTPS behind a proxy, `--admin` options, French."""
from __future__ import annotations

import csv
import dataclasses
import importlib
import io
import re
import uuid
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.test import AsyncClient, Client
from django.urls import clear_url_caches

from blocks.models import Block
from invites.models import Invitation, InvitationType
from organizations import audit
from organizations.models import AuditEntry, Device, Organization, User
from parsec_site import config as parsec_config
from parsec_site.addr import BackendAddr
from realms.models import Realm, VlobAtom
from server.console import monthly_usage, parse_at, usage_chart_svg
from tests.organizations.factories import add_user, bootstrapped_organization

NOW = datetime.now(dt_timezone.utc)


def add_realm_data(organization: Organization, *, blocks: list[int], vlobs: list[int],
                   created_on: datetime | None = None) -> Realm:
    created_on = created_on or NOW
    author = Device.objects.filter(organization=organization).first()
    realm = Realm.objects.create(organization=organization, realm_id=uuid.uuid4(), created_on=created_on)
    for size in blocks:
        Block.objects.create(organization=organization, block_id=uuid.uuid4(), realm=realm, author=author,
                             size=size, created_on=created_on)
    for size in vlobs:
        VlobAtom.objects.create(organization=organization, realm=realm, vlob_id=uuid.uuid4(), version=1,
                                encryption_revision=1, blob=b"x" * size, size=size, author=author,
                                created_on=created_on)
    return realm


@pytest.fixture
def coolorg(db):
    organization, _alice = bootstrapped_organization("CoolOrg")
    organization.active_users_limit = 5
    organization.save()
    add_user(organization, "bob", frozen=True)
    add_user(organization, "carol", revoked_on=NOW)
    add_realm_data(organization, blocks=[1000, 2000], vlobs=[30, 40, 50])
    add_realm_data(organization, blocks=[500], vlobs=[])
    other, _ = bootstrapped_organization("OtherOrg")
    add_realm_data(other, blocks=[7], vlobs=[9])
    return organization


def changelist_row(content: str, organization_id: str) -> str:
    rows = re.findall(r"<tr>.*?</tr>", content, re.S)
    return next(row for row in rows if f">{organization_id}<" in row)


def cell(row: str, column: str) -> str:
    match = re.search(rf'class="field-{column}[^"]*">(.*?)</t[dh]>', row, re.S)
    assert match, column
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


# --- Organization list and page -------------------------------------------------------------------------------------


def test_organization_list_columns(admin_client, coolorg):
    content = admin_client.get("/admin/organizations/organization/").content.decode()
    row = changelist_row(content, "CoolOrg")
    assert cell(row, "users_column") == "2 / 5"  # alice and bob; carol is revoked
    assert cell(row, "device_count_column") == "1"
    assert cell(row, "realm_count_column") == "2"
    assert 'title="3500"' in row and cell(row, "data_size_column") == "3.4\xa0KB"
    assert 'title="120"' in row and cell(row, "metadata_size_column") == "120\xa0bytes"
    assert 'icon-yes' in row  # bootstrapped
    other = changelist_row(content, "OtherOrg")
    assert cell(other, "users_column") == "1 / ∞" and 'title="7"' in other


def test_organization_list_sorts_by_a_figure(admin_client, coolorg):
    # Column 5 is the data size: CoolOrg (3500 bytes) after OtherOrg (7 bytes), then before it when reversed.
    ascending = admin_client.get("/admin/organizations/organization/?o=5").content.decode()
    assert ascending.index(">OtherOrg<") < ascending.index(">CoolOrg<")
    descending = admin_client.get("/admin/organizations/organization/?o=-5").content.decode()
    assert descending.index(">CoolOrg<") < descending.index(">OtherOrg<")


def test_organization_list_filters_and_search(admin_client, coolorg):
    Organization.objects.create(organization_id="NotYet", bootstrap_token="t" * 64, created_on=NOW)
    not_bootstrapped = admin_client.get("/admin/organizations/organization/?bootstrapped=no").content.decode()
    assert ">NotYet<" in not_bootstrapped and ">CoolOrg<" not in not_bootstrapped
    bootstrapped = admin_client.get("/admin/organizations/organization/?bootstrapped=yes").content.decode()
    assert ">CoolOrg<" in bootstrapped and ">NotYet<" not in bootstrapped
    # By the e-mail of one of its users.
    found = admin_client.get("/admin/organizations/organization/?q=bob@example.com").content.decode()
    assert ">CoolOrg<" in found and ">OtherOrg<" not in found


def test_organization_page_figures_users_and_invitations(admin_client, coolorg):
    alice = User.objects.get(organization=coolorg, user_id="alice")
    Invitation.objects.create(organization=coolorg, token=uuid.uuid4(), type=InvitationType.USER, greeter=alice,
                              claimer_email="zoe@example.com", created_on=NOW)
    content = admin_client.get(f"/admin/organizations/organization/{coolorg.pk}/change/").content.decode()
    assert "2 / 5" in content and "3.4\xa0KB" in content
    assert re.search(r"3 \(1 revoked\)", content)
    users = re.search(r'<table id="organization-users">.*?</table>', content, re.S).group(0)
    assert "alice@example.com" in users and "bob@example.com" in users and "frozen" in users and "revoked" in users
    assert '<span id="pending-invitations">1</span>' in content
    assert f"?organization__id__exact={coolorg.pk}&amp;pending=yes" in content


def test_bootstrap_url_with_copy_button(admin_client, db, parsec_settings):
    parsec_settings(backend_addr=BackendAddr.parse("parsec://parsec.example.com:6777?no_ssl=true"))
    organization = Organization.objects.create(organization_id="Fresh", bootstrap_token="a" * 64, created_on=NOW)
    content = admin_client.get(f"/admin/organizations/organization/{organization.pk}/change/").content.decode()
    assert ('id="bootstrap-url" readonly value="parsec://parsec.example.com:6777/Fresh?no_ssl=true&amp;'
            f'action=bootstrap_organization&amp;token={"a" * 64}"') in content
    assert 'id="copy-bootstrap-url"' in content and "navigator.clipboard" in content


# --- Invitations ----------------------------------------------------------------------------------------------------


def test_cancel_pending_invitations(admin_client, coolorg, django_capture_on_commit_callbacks):
    alice = User.objects.get(organization=coolorg, user_id="alice")
    pending = Invitation.objects.create(organization=coolorg, token=uuid.uuid4(), type=InvitationType.USER,
                                        greeter=alice, claimer_email="zoe@example.com", created_on=NOW)
    listed = admin_client.get(f"/admin/invites/invitation/?pending=yes&organization__id__exact={coolorg.pk}")
    assert "zoe@example.com" in listed.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/invites/invitation/",
                                     {"action": "cancel_invitations", "_selected_action": [pending.pk]}, follow=True)
    assert "1 invitation(s) cancelled." in response.content.decode()
    pending.refresh_from_db()
    assert pending.deleted_on is not None and pending.deleted_reason == "CANCELLED"
    entry = AuditEntry.objects.get(action=AuditEntry.Action.INVITATION_CANCELLED)
    assert (entry.actor, entry.organization_id) == ("console: admin", "CoolOrg")
    assert "zoe@example.com" in entry.target
    # Cancelling it again changes nothing.
    response = admin_client.post("/admin/invites/invitation/",
                                 {"action": "cancel_invitations", "_selected_action": [pending.pk]}, follow=True)
    assert "already deleted" in response.content.decode()
    assert AuditEntry.objects.filter(action=AuditEntry.Action.INVITATION_CANCELLED).count() == 1


# --- Statistics page, CSV, chart ------------------------------------------------------------------------------------


def test_statistics_page(admin_client, coolorg):
    response = admin_client.get("/admin/stats/")
    assert response.status_code == 200
    content = response.content.decode()
    totals = re.search(r'<table id="stats-totals">.*?</table>', content, re.S).group(0)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", totals, re.S)]
    # 2 organizations, 4 users (1 revoked), 3 realms, 3507 bytes of blocks, 129 of vlobs.
    assert cells == ["2", "4", "3", "3", "3.4\xa0KB", "129\xa0bytes"]
    assert "<svg" in content and 'class="series-active_users"' in content
    assert admin_client.get("/admin/").content.decode().count('href="/admin/stats/"') == 1


def test_statistics_at_a_date(admin_client, coolorg):
    Organization.objects.filter(organization_id="OtherOrg").update(created_on=NOW + timedelta(days=400))
    content = admin_client.get(f"/admin/stats/?at={NOW:%Y-%m-%d}").content.decode()
    table = re.search(r'<table id="stats-organizations">.*?</table>', content, re.S).group(0)
    assert "CoolOrg" in table and "OtherOrg" not in table
    before = admin_client.get("/admin/stats/?at=2000-01-01").content.decode()
    assert "No organization at that date." in before


def test_statistics_bad_date(admin_client, db):
    response = admin_client.get("/admin/stats/?at=yesterday")
    assert response.status_code == 400
    assert "Invalid date yesterday" in response.content.decode()
    response = admin_client.get("/admin/stats/?at=2026-02-30&format=csv")
    assert response.status_code == 400 and b"Invalid date" in response.content


def test_statistics_csv_is_the_administration_api_csv(admin_client, coolorg, settings, parsec_settings):
    parsec_settings(administration_token="t0ken")
    response = admin_client.get("/admin/stats/?format=csv")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith('attachment; filename="parsec-stats-')
    api = Client().get("/administration/stats?format=csv", HTTP_AUTHORIZATION="Bearer t0ken")
    assert response.content == api.content
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[1][:5] == ["CoolOrg", "3500", "120", "2", "2"]


def test_statistics_need_a_staff_login(client, db):
    response = client.get("/admin/stats/?format=csv")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_monthly_usage_counts_users_and_blocks_per_month(db):
    organization, _ = bootstrapped_organization("Monthly")
    jan = datetime(2026, 1, 15, tzinfo=dt_timezone.utc)
    Organization.objects.filter(pk=organization.pk).update(created_on=jan)
    User.objects.filter(organization=organization).update(created_on=jan)
    add_user(organization, "bob", created_on=jan + timedelta(days=31), revoked_on=jan + timedelta(days=62))
    add_realm_data(organization, blocks=[100, 200], vlobs=[], created_on=jan)
    add_realm_data(organization, blocks=[1000], vlobs=[], created_on=jan + timedelta(days=62))
    points = monthly_usage(until=datetime(2026, 4, 30, tzinfo=dt_timezone.utc))
    assert [(p.month.isoformat(), p.users, p.active_users, p.data_size) for p in points] == [
        ("2026-01-01", 1, 1, 300),
        ("2026-02-01", 2, 2, 300),
        ("2026-03-01", 2, 1, 1300),
        ("2026-04-01", 2, 1, 1300),
    ]
    svg = usage_chart_svg(points)
    assert svg.startswith("<svg") and svg.count("<polyline") == 3 and "2026-03" in svg


def test_monthly_usage_without_organizations(db):
    assert monthly_usage() == []
    assert "No data yet." in usage_chart_svg([])


def test_parse_at():
    assert parse_at("2026-01-31") == datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=dt_timezone.utc)
    assert parse_at("2026-01-31T10:00:00Z") == datetime(2026, 1, 31, 10, tzinfo=dt_timezone.utc)
    assert parse_at("2026-02-30") is None and parse_at("31/01/2026") is None


# --- Audit trail ----------------------------------------------------------------------------------------------------


def test_console_changes_are_audited(admin_client, coolorg, parsec_settings):
    parsec_settings(backend_addr=BackendAddr.parse("parsec://parsec.example.com:6777?no_ssl=true"))
    admin_client.post("/admin/organizations/organization/add/", {
        "organization_id": "Audited", "user_profile_outsider_allowed": "on", "minimum_archiving_period": "2592000",
    })
    url = f"/admin/organizations/organization/{coolorg.pk}/change/"
    admin_client.post(url, {"user_profile_outsider_allowed": "on", "active_users_limit": "9",
                            "minimum_archiving_period": "2592000"})
    admin_client.post(url, {"is_expired": "on", "user_profile_outsider_allowed": "on", "active_users_limit": "9",
                            "minimum_archiving_period": "2592000"})
    bob = User.objects.get(organization=coolorg, user_id="bob")
    admin_client.post("/admin/organizations/user/", {"action": "unfreeze_users", "_selected_action": [bob.pk]})
    entries = [(e.actor, e.action, e.organization_id, e.target, e.details)
               for e in AuditEntry.objects.order_by("timestamp", "pk")]
    assert entries == [
        ("console: admin", "organization_created", "Audited", "",
         {"user_profile_outsider_allowed": True, "active_users_limit": None, "minimum_archiving_period": 2592000}),
        ("console: admin", "organization_patched", "CoolOrg", "", {"active_users_limit": 9}),
        ("console: admin", "organization_expired", "CoolOrg", "", {"is_expired": True}),
        ("console: admin", "user_unfrozen", "CoolOrg", "bob <bob@example.com>", {}),
    ]
    trail = admin_client.get("/admin/organizations/auditentry/").content.decode()
    assert "Organization expired" in trail and "User unfrozen" in trail and "console: admin" in trail
    page = admin_client.get(url).content.decode()
    assert "User unfrozen" in page and ">3 change(s)</a>" in page and "/admin/organizations/auditentry/?q=CoolOrg" in page


def test_administration_api_changes_are_audited(client, coolorg, parsec_settings):
    parsec_settings(administration_token="t0ken")
    auth = {"HTTP_AUTHORIZATION": "Bearer t0ken", "content_type": "application/json"}
    assert client.post("/administration/organizations", {"organization_id": "ByApi"}, **auth).status_code == 200
    assert client.patch("/administration/organizations/CoolOrg", {"active_users_limit": 3}, **auth).status_code == 200
    assert client.patch("/administration/organizations/CoolOrg", {"is_expired": True}, **auth).status_code == 200
    assert client.patch("/administration/organizations/CoolOrg", {}, **auth).status_code == 200  # no change
    assert client.post("/administration/organizations/CoolOrg/users/freeze",
                       {"user_email": "alice@example.com", "frozen": True}, **auth).status_code == 200
    # Refused requests change nothing and record nothing.
    assert client.patch("/administration/organizations/Nope", {"is_expired": True}, **auth).status_code == 404
    entries = [(e.actor, e.action, e.organization_id, e.target, e.details)
               for e in AuditEntry.objects.order_by("timestamp", "pk")]
    assert entries == [
        ("administration token", "organization_created", "ByApi", "", {}),
        ("administration token", "organization_patched", "CoolOrg", "", {"active_users_limit": 3}),
        ("administration token", "organization_expired", "CoolOrg", "", {"is_expired": True}),
        ("administration token", "user_frozen", "CoolOrg", "alice <alice@example.com>", {}),
    ]


def test_record_is_the_entry_point_for_other_callers(db):
    entry = audit.record(actor=audit.command_actor("erase_organization"), action="organization_erased",
                         organization_id="Gone", details={"blocks": 3, "bytes": 4096})
    assert (entry.actor, entry.action, entry.details) == (
        "manage.py erase_organization", AuditEntry.Action.ORGANIZATION_ERASED, {"blocks": 3, "bytes": 4096})
    with pytest.raises(ValueError):
        audit.record(actor="x", action="organization_burnt", organization_id="Gone")


def test_audit_trail_is_read_only(admin_client, db):
    audit.record(actor="x", action=audit.Action.USER_FROZEN, organization_id="Org")
    entry = AuditEntry.objects.get()
    assert admin_client.get("/admin/organizations/auditentry/add/").status_code == 403
    assert admin_client.get(f"/admin/organizations/auditentry/{entry.pk}/delete/").status_code == 403
    page = admin_client.get(f"/admin/organizations/auditentry/{entry.pk}/change/").content.decode()
    assert 'name="actor"' not in page


# --- Static files, HTTPS behind a proxy, --admin options ------------------------------------------------------------


def test_static_files_are_served(client, db):
    response = client.get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css") and "max-age" in response["Cache-Control"]
    assert client.get("/static/base.css").status_code == 200
    assert client.get("/static/admin/css/nope.css").status_code == 404


async def test_static_files_are_served_on_the_async_path(db):
    response = await AsyncClient().get("/static/admin/js/theme.js")
    assert response.status_code == 200 and b"".join(response.streaming_content)


def _login_form(client: Client, path: str = "/admin/login/", **headers) -> str:
    page = client.get(path, **headers).content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def test_login_behind_a_tls_proxy(db, settings, django_user_model):
    django_user_model.objects.create_superuser("operator", "op@example.com", "s3cret-passw0rd")
    config = dataclasses.replace(settings.PARSEC, forward_proto_enforce_https=("X-Forwarded-Proto", "https"),
                                 backend_addr=BackendAddr.parse("parsec://parsec.example.com:8443"))
    settings.PARSEC = config
    settings.SECURE_PROXY_SSL_HEADER = parsec_config.proxy_ssl_header(config)
    settings.CSRF_TRUSTED_ORIGINS = parsec_config.csrf_trusted_origins(config)
    assert settings.SECURE_PROXY_SSL_HEADER == ("HTTP_X_FORWARDED_PROTO", "https")
    assert settings.CSRF_TRUSTED_ORIGINS == ["https://parsec.example.com:8443"]
    # nginx's `Host $host` drops the port; the browser's Origin keeps it.
    proxy = {"HTTP_HOST": "parsec.example.com", "HTTP_X_FORWARDED_PROTO": "https"}
    client = Client(enforce_csrf_checks=True)
    token = _login_form(client, **proxy)
    response = client.post("/admin/login/?next=/admin/", {"username": "operator", "password": "s3cret-passw0rd",
                                                           "csrfmiddlewaretoken": token},
                           HTTP_ORIGIN="https://parsec.example.com:8443",
                           HTTP_REFERER="https://parsec.example.com:8443/admin/login/", **proxy)
    assert (response.status_code, response["Location"]) == (302, "/admin/")


def test_login_behind_a_tls_proxy_fails_without_the_derived_settings(db, settings, django_user_model):
    django_user_model.objects.create_superuser("operator", "op@example.com", "s3cret-passw0rd")
    settings.SECURE_PROXY_SSL_HEADER = None
    settings.CSRF_TRUSTED_ORIGINS = []
    proxy = {"HTTP_HOST": "parsec.example.com", "HTTP_X_FORWARDED_PROTO": "https"}
    client = Client(enforce_csrf_checks=True)
    token = _login_form(client, **proxy)
    response = client.post("/admin/login/", {"username": "operator", "password": "s3cret-passw0rd",
                                             "csrfmiddlewaretoken": token},
                           HTTP_ORIGIN="https://parsec.example.com:8443", **proxy)
    assert response.status_code == 403


def test_derived_proxy_settings_without_options(settings):
    bare = dataclasses.replace(settings.PARSEC, forward_proto_enforce_https=None, backend_addr=None)
    assert parsec_config.proxy_ssl_header(bare) is None and parsec_config.csrf_trusted_origins(bare) == []
    plain = dataclasses.replace(settings.PARSEC, backend_addr=BackendAddr.parse("parsec://h:6777?no_ssl=true"))
    assert parsec_config.csrf_trusted_origins(plain) == ["http://h:6777"]


@pytest.fixture
def reload_urls(settings):
    """Rebuild the URL configuration after changing the console's options, and restore it afterwards."""
    import parsec_site.admin_urls
    import parsec_site.urls

    def reload() -> None:
        importlib.reload(parsec_site.urls)
        importlib.reload(parsec_site.admin_urls)
        clear_url_caches()

    yield reload
    settings.PARSEC = dataclasses.replace(settings.PARSEC, admin_enabled=True, admin_prefix="admin", admin_port=None)
    reload()


def test_admin_off(client, db, parsec_settings, reload_urls):
    parsec_settings(admin_enabled=False)
    reload_urls()
    assert client.get("/admin/login/").status_code == 404
    assert client.get("/admin/stats/").status_code == 404
    assert client.get("/health/live").status_code == 200


def test_admin_prefix(admin_client, db, parsec_settings, reload_urls):
    parsec_settings(admin_prefix="ops/console")
    reload_urls()
    assert admin_client.get("/admin/").status_code == 404
    assert admin_client.get("/ops/console/").status_code == 200
    assert 'href="/ops/console/stats/"' in admin_client.get("/ops/console/").content.decode()
    assert admin_client.get("/ops/console/stats/").status_code == 200


def test_admin_port(admin_client, db, parsec_settings, reload_urls):
    parsec_settings(admin_port=6778)
    reload_urls()
    assert admin_client.get("/admin/", SERVER_PORT="6777").status_code == 404
    assert admin_client.get("/admin/", SERVER_PORT="6778").status_code == 200
    assert admin_client.get("/admin/stats/", SERVER_PORT="6778").status_code == 200
    assert admin_client.get("/static/admin/css/base.css", SERVER_PORT="6778").status_code == 200
    # The clients' routes are not on the console's port.
    assert admin_client.get("/health/live", SERVER_PORT="6778").status_code == 404


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"PARSEC_ADMIN": "maybe"}, "--admin / PARSEC_ADMIN: invalid value 'maybe'"),
        ({"PARSEC_ADMIN_PREFIX": "static"}, "`static` is a route of the server itself"),
        ({"PARSEC_ADMIN_PREFIX": "a b"}, "--admin-prefix / PARSEC_ADMIN_PREFIX: invalid value"),
        ({"PARSEC_ADMIN_PORT": "6777"}, "must differ from --port"),
        ({"PARSEC_ADMIN_PORT": "9100", "PARSEC_METRICS_PORT": "9100"}, "must differ from --metrics-port"),
        ({"PARSEC_ADMIN_HOST": "127.0.0.1"}, "--admin-host / PARSEC_ADMIN_HOST: goes with --admin-port"),
    ],
)
def test_bad_admin_options(variables, message):
    from django.core.exceptions import ImproperlyConfigured

    from parsec_site import cli

    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        parsec_config.load_server_config(cli.environ_reader(variables))


def test_admin_port_with_an_inherited_socket_needs_its_own():
    from django.core.exceptions import ImproperlyConfigured

    from parsec_site import cli

    config = parsec_config.load_server_config(cli.environ_reader({"PARSEC_ADMIN_PORT": "6778", "PARSEC_FD": "3"}))
    with pytest.raises(ImproperlyConfigured, match="PARSEC_ADMIN_PORT: with --fd, give the console's inherited"):
        parsec_config.check_supported(config)
    config = parsec_config.load_server_config(
        cli.environ_reader({"PARSEC_ADMIN_PORT": "6778", "PARSEC_FD": "3", "PARSEC_ADMIN_FD": "4"}))
    parsec_config.check_supported(config)
    with pytest.raises(ImproperlyConfigured, match="PARSEC_ADMIN_FD: goes with --admin-port"):
        parsec_config.load_server_config(cli.environ_reader({"PARSEC_ADMIN_FD": "4"}))


# --- French ---------------------------------------------------------------------------------------------------------


def test_console_in_french(admin_client, coolorg):
    french = {"HTTP_ACCEPT_LANGUAGE": "fr"}
    listing = admin_client.get("/admin/organizations/organization/", **french).content.decode()
    assert "Utilisateurs (actifs / limite)" in listing and "Taille des données" in listing and "Appareils" in listing
    page = admin_client.get(f"/admin/organizations/organization/{coolorg.pk}/change/", **french).content.decode()
    assert "Invitations en attente" in page and "Déjà initialisée" in page
    stats = admin_client.get("/admin/stats/", **french).content.decode()
    assert "Statistiques du serveur" in stats and "Télécharger le CSV" in stats and "Utilisation par mois" in stats
    assert "Utilisateurs actifs" in stats and "Données stockées" in stats  # the chart's legend
    assert "Statistiques du serveur" in admin_client.get("/admin/", **french).content.decode()
    audit.record(actor="x", action=audit.Action.USER_FROZEN, organization_id="CoolOrg")
    assert "Utilisateur gelé" in admin_client.get("/admin/organizations/auditentry/", **french).content.decode()
    bob = User.objects.get(organization=coolorg, user_id="bob")
    response = admin_client.post("/admin/organizations/user/",
                                 {"action": "unfreeze_users", "_selected_action": [bob.pk]}, follow=True, **french)
    assert "Bob &lt;bob@example.com&gt; : dégelé" in response.content.decode()


def test_french_catalogue_is_complete():
    import shutil
    import subprocess
    from pathlib import Path

    msgfmt = shutil.which("msgfmt")
    assert msgfmt, "msgfmt (gettext) is needed: scripts/setup.sh installs it"
    po = Path(__file__).resolve().parents[2] / "locale" / "fr" / "LC_MESSAGES" / "django.po"
    result = subprocess.run([msgfmt, "--check", "--statistics", "-o", "/dev/null", str(po)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "untranslated" not in result.stderr and "fuzzy" not in result.stderr, result.stderr


def test_realm_list_with_members_and_sizes(admin_client, coolorg):
    from realms.models import RealmUserRole

    realm = Realm.objects.filter(organization=coolorg).order_by("pk").first()
    alice = User.objects.get(organization=coolorg, user_id="alice")
    bob = User.objects.get(organization=coolorg, user_id="bob")
    for user, role, seconds in ((alice, "OWNER", 0), (bob, "READER", 1), (bob, None, 2)):
        RealmUserRole.objects.create(realm=realm, user=user, role=role, certificate=b"x",
                                     certified_on=NOW + timedelta(seconds=seconds))
    content = admin_client.get(f"/admin/realms/realm/?organization__id__exact={coolorg.pk}").content.decode()
    row = next(row for row in re.findall(r"<tr>.*?</tr>", content, re.S) if str(realm.realm_id) in row)
    assert cell(row, "members") == "1"  # bob's role was removed
    assert cell(row, "vlobs") == "3" and 'title="3000"' in row and 'title="120"' in row
    assert admin_client.get(f"/admin/realms/realm/{realm.pk}/change/").status_code == 200
    assert admin_client.get("/admin/realms/realm/add/").status_code == 403


def test_expire_action(admin_client, coolorg, django_capture_on_commit_callbacks):
    other = Organization.objects.get(organization_id="OtherOrg")
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post("/admin/organizations/organization/", {
            "action": "expire_organizations", "_selected_action": [coolorg.pk, other.pk]}, follow=True)
    assert "CoolOrg: expired" in response.content.decode()
    assert len(callbacks) == 2  # each one's sessions are closed
    assert Organization.objects.filter(is_expired=True, expired_on__isnull=False).count() == 2
    assert sorted(AuditEntry.objects.filter(action="organization_expired").values_list("organization_id", flat=True)) \
        == ["CoolOrg", "OtherOrg"]
    # Already expired: nothing to do, nothing recorded.
    admin_client.post("/admin/organizations/organization/", {
        "action": "expire_organizations", "_selected_action": [coolorg.pk]})
    assert AuditEntry.objects.count() == 2


def test_organization_page_lists_its_sequester_services(admin_client, coolorg):
    from sequester.models import SequesterService, ServiceType

    for label, service_type, disabled_on in (("Escrow", ServiceType.STORAGE, None),
                                             ("Antivirus", ServiceType.WEBHOOK, NOW)):
        SequesterService.objects.create(
            organization=coolorg, service_id=uuid.uuid4(), service_label=label, service_certificate=b"<certificate>",
            service_type=service_type, webhook_url="https://av.example.com" if service_type == "webhook" else None,
            created_on=NOW, disabled_on=disabled_on,
        )
    content = admin_client.get(f"/admin/organizations/organization/{coolorg.pk}/change/").content.decode()
    services = re.search(r'<span id="sequester-services">(.*?)</span>', content, re.S).group(1)
    assert services == "Escrow (Storage, enabled), Antivirus (Webhook, disabled)"
    assert f"/admin/sequester/sequesterservice/?organization__id__exact={coolorg.pk}" in content
