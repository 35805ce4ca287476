"""The invitation e-mail (docs/configuration.md#options, docs/protocol.md#invite-new) against a real SMTP server
(aiosmtpd)."""
from __future__ import annotations

import email
import email.header
import email.policy
import logging
import ssl
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from invites.services import emails
from organizations.models import User
from parsec_site.addr import BackendAddr
from tests.conftest import World, add_user, connect_as
from tests.pgcluster import free_port

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # Plain LOGIN on loopback is what these tests want.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

LOGIN, PASSWORD = "parsec-mailer", "s3cret"
SENDER = "parsec@example.com"
REFUSED = "refused@example.com"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage
    authenticated: bool
    raw: bytes


@dataclass
class MailHandler:
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == REFUSED:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), message, bool(session.authenticated), envelope.content)
        )
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    valid = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == LOGIN and auth_data.password.decode() == PASSWORD
    # handled=False: aiosmtpd answers the failure (535) itself.
    return AuthResult(success=valid, handled=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the `openssl` command."""
    folder = tmp_path_factory.mktemp("smtp-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def trust_certificate(certificate, monkeypatch) -> None:
    # The server's SMTP client verifies certificates against the default CA store, read from here.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))


@pytest.fixture
def smtp_server(certificate, parsec_settings) -> Iterator[Any]:
    """Start an SMTP server and point the settings at it: `smtp_server(mode="plain"|"ssl"|"starttls")`."""
    controllers: list[Controller] = []

    def start(mode: str = "plain", *, require_auth: bool = True, **settings: Any) -> MailHandler:
        handler = MailHandler()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
        options: dict[str, Any] = {
            "authenticator": authenticator,
            "auth_required": require_auth,
            # Plain LOGIN over loopback for the "plain" mode.
            "auth_require_tls": False,
        }
        if mode == "ssl":
            options["ssl_context"] = context
        elif mode == "starttls":
            options["tls_context"] = context
            options["require_starttls"] = True
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        parsec_settings(
            email_host="127.0.0.1", email_port=port, email_host_user=LOGIN, email_host_password=PASSWORD,
            email_use_ssl=mode == "ssl", email_use_tls=mode == "starttls", email_sender=SENDER,
            **settings,
        )
        return handler

    yield start
    for controller in controllers:
        controller.stop()


async def invite(device, type: str = "USER", **fields: Any) -> dict[str, Any]:
    client = await connect_as(device)
    if type == "USER":
        fields.setdefault("claimer_email", "zack@example.com")
    reply = await client.command("invite_new", type=type, send_email=True, **fields)
    assert reply["status"] == "ok", reply
    return reply


def parts(message: email.message.EmailMessage) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.get_payload()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    return text.get_content(), html.get_content()


def link(token: uuid.UUID, action: str = "claim_user") -> str:
    return f"http://parsec.example.com:6777/redirect/CoolOrg?action={action}&token={token.hex}"


# Over SMTP ----------------------------------------------------------------------------------------------------


async def test_user_invitation_over_smtp_with_login(world: World, smtp_server):
    mailbox = smtp_server("plain")
    reply = await invite(world.alice)
    assert reply["email_sent"] == "SUCCESS"
    [received] = mailbox.received
    assert received.authenticated
    assert (received.mail_from, received.rcpt_tos) == (SENDER, ["zack@example.com"])
    message = received.message
    assert message["Subject"] == "[Parsec] Alice invited you to CoolOrg"
    assert message["From"] == SENDER
    assert message["To"] == "zack@example.com"
    assert message["Reply-To"] == "Alice <alice@example.com>"
    text, html = parts(message)
    url = link(reply["token"])
    assert "You have received an invitation from Alice to join the CoolOrg organization on Parsec." in text
    assert url in text and "https://parsec.cloud/get-parsec" in text and "https://docs.parsec.cloud" in text
    assert "3. Get in touch with Alice" in text
    assert f'href="{url.replace("&", "&amp;")}"' in html
    assert "http://parsec.example.com:6777/static/parsec-vert.png" in html
    assert "Download Parsec" in html and "Claim invitation" in html


async def test_over_implicit_tls(world: World, smtp_server, trust_certificate):
    mailbox = smtp_server("ssl")
    assert (await invite(world.alice))["email_sent"] == "SUCCESS"
    [received] = mailbox.received
    assert received.authenticated and received.rcpt_tos == ["zack@example.com"]


async def test_over_starttls(world: World, smtp_server, trust_certificate):
    mailbox = smtp_server("starttls")
    assert (await invite(world.alice))["email_sent"] == "SUCCESS"
    [received] = mailbox.received
    assert received.authenticated


async def test_starttls_required_but_not_configured(world: World, smtp_server, parsec_settings):
    mailbox = smtp_server("starttls")
    parsec_settings(email_use_tls=False)
    assert (await invite(world.alice))["email_sent"] == "NOT_AVAILABLE"
    assert mailbox.received == []


async def test_untrusted_certificate_is_not_available(world: World, smtp_server):
    smtp_server("ssl")
    assert (await invite(world.alice))["email_sent"] == "NOT_AVAILABLE"


async def test_wrong_password_is_not_available(world: World, smtp_server, parsec_settings):
    mailbox = smtp_server("plain")
    parsec_settings(email_host_password="wrong")
    assert (await invite(world.alice))["email_sent"] == "NOT_AVAILABLE"
    assert mailbox.received == []


async def test_no_login_without_credentials(world: World, smtp_server, parsec_settings):
    mailbox = smtp_server("plain", require_auth=False)
    parsec_settings(email_host_user=None, email_host_password=None)
    assert (await invite(world.alice))["email_sent"] == "SUCCESS"
    assert not mailbox.received[0].authenticated


async def test_bad_recipient_refused(world: World, smtp_server, caplog):
    from invites.models import Invitation

    smtp_server("plain")
    with caplog.at_level(logging.WARNING, logger="parsec.email"):
        reply = await invite(world.alice, claimer_email=REFUSED)
    assert reply["email_sent"] == "BAD_RECIPIENT"
    # The invitation exists all the same, and the refusal is logged.
    assert await Invitation.objects.filter(token=reply["token"]).aexists()
    assert "refused" in caplog.text


@pytest.mark.parametrize(
    "claimer_email",
    ["zoé@example.com", "日本@example.jp", "not an address", "é", "two@at@example.com", "a\nb@example.com"],
    ids=["non-ascii-local-part", "cjk-local-part", "spaces", "no-at", "two-ats", "newline"],
)
async def test_unsendable_address_is_bad_recipient_and_nothing_sent(world: World, smtp_server, claimer_email):
    from invites.models import Invitation

    mailbox = smtp_server("plain")
    reply = await invite(world.alice, claimer_email=claimer_email)
    assert reply["status"] == "ok" and reply["email_sent"] == "BAD_RECIPIENT"
    assert await Invitation.objects.filter(token=reply["token"], claimer_email=claimer_email).aexists()
    assert mailbox.received == []


async def test_unsendable_address_is_bad_recipient_when_mocked(world: World, parsec_settings):
    parsec_settings(email_host="MOCKED")
    assert (await invite(world.alice, claimer_email="zoé@example.com"))["email_sent"] == "BAD_RECIPIENT"


async def test_non_ascii_domain_is_sent_as_idna(world: World, smtp_server):
    mailbox = smtp_server("plain")
    assert (await invite(world.alice, claimer_email="zoe@exämple.com"))["email_sent"] == "SUCCESS"
    assert mailbox.received[0].rcpt_tos == ["zoe@xn--exmple-cua.com"]


async def test_server_down_is_not_available(world: World, parsec_settings, caplog):
    parsec_settings(email_host="127.0.0.1", email_port=free_port(), email_sender=SENDER)
    with caplog.at_level(logging.WARNING, logger="parsec.email"):
        reply = await invite(world.alice)
    assert reply["email_sent"] == "NOT_AVAILABLE"
    assert "ConnectionRefusedError" in caplog.text


async def test_not_available_without_backend_address(world: World, smtp_server, parsec_settings):
    mailbox = smtp_server("plain")
    parsec_settings(backend_addr=None)
    assert (await invite(world.alice))["email_sent"] == "NOT_AVAILABLE"
    assert mailbox.received == []


# Content per invitation type and language -------------------------------------------------------------------


async def test_device_invitation(world: World, smtp_server):
    mailbox = smtp_server("plain")
    reply = await invite(world.alice, "DEVICE")
    assert reply["email_sent"] == "SUCCESS"
    [received] = mailbox.received
    assert received.rcpt_tos == ["alice@example.com"]
    message = received.message
    assert message["Subject"] == "[Parsec] New device invitation to CoolOrg"
    assert message["Reply-To"] is None
    text, _html = parts(message)
    assert "You have received an invitation to add a new device to the CoolOrg organization on Parsec." in text
    assert link(reply["token"], "claim_device") in text
    assert "3. Start the invitation process from a device already part of the organization" in text


async def test_shamir_recovery_invitation(world: World, smtp_server):
    from tests.invites.test_shamir import make_setup

    bob = await add_user(world, "bob")
    await add_user(world, "carol")
    setup = make_setup(bob, {"alice": 1, "carol": 1})
    assert await (await connect_as(bob)).command("shamir_recovery_setup", setup=setup) == {"status": "ok"}
    mailbox = smtp_server("plain")
    reply = await invite(world.alice, "SHAMIR_RECOVERY", claimer_user_id="bob")
    assert reply["email_sent"] == "SUCCESS"
    [received] = mailbox.received
    assert received.rcpt_tos == ["bob@example.com"]
    assert received.message["Subject"] == "[Parsec] Recovery invitation to CoolOrg"
    assert received.message["Reply-To"] == "Alice <alice@example.com>"
    text, _ = parts(received.message)
    assert "invitation to start a recovery procedure on the CoolOrg organization" in text
    assert link(reply["token"], "claim_shamir_recovery") in text
    assert "3. Get in touch with Alice" in text

    # A claimer without e-mail (legacy user): nothing is sent.
    await User.objects.filter(user_id="bob").aupdate(human_email=None, human_label=None)
    reply = await invite(world.alice, "SHAMIR_RECOVERY", claimer_user_id="bob")
    assert reply["email_sent"] == "BAD_RECIPIENT"
    assert len(mailbox.received) == 1


async def test_legacy_greeter_named_by_user_id_without_reply_to(world: World, smtp_server):
    legacy = await add_user(world, "legacy", profile="ADMIN")
    await User.objects.filter(user_id="legacy").aupdate(human_email=None, human_label=None)
    mailbox = smtp_server("plain")
    assert (await invite(legacy))["email_sent"] == "SUCCESS"
    message = mailbox.received[0].message
    assert message["Subject"] == "[Parsec] legacy invited you to CoolOrg"
    assert message["Reply-To"] is None
    assert "3. Get in touch with legacy" in parts(message)[0]


async def test_non_ascii_greeter_label(world: World, smtp_server):
    await User.objects.filter(user_id="alice").aupdate(human_label="Zoé O'Hara & Co")
    mailbox = smtp_server("plain")
    await invite(world.alice)
    message = mailbox.received[0].message
    # RFC 2047 (utf-8) on the wire.
    raw = email.message_from_bytes(mailbox.received[0].raw)  # compat32: headers as sent
    assert raw["Reply-To"] == "=?utf-8?q?Zo=C3=A9_O=27Hara_=26_Co?= <alice@example.com>"
    assert "=?utf-8?" in raw["Subject"]
    subject = str(email.header.make_header(email.header.decode_header(raw["Subject"])))
    assert subject == "[Parsec] Zoé O'Hara & Co invited you to CoolOrg"
    assert message["Subject"] == subject
    assert message["Reply-To"] == "Zoé O'Hara & Co <alice@example.com>"
    text, html = parts(message)
    assert "from Zoé O'Hara & Co to join" in text  # the text part is not HTML-escaped
    assert "Zoé O&#x27;Hara &amp; Co" in html


async def test_french(world: World, smtp_server):
    mailbox = smtp_server("plain", email_language="fr")
    reply = await invite(world.alice)
    message = mailbox.received[0].message
    assert message["Subject"] == "[Parsec] Alice vous invite à rejoindre CoolOrg"
    text, html = parts(message)
    assert "Alice vous invite à rejoindre l'organisation CoolOrg sur Parsec." in text
    assert "Les prochaines étapes" in text and link(reply["token"]) in text
    assert 'lang="fr"' in html and "Accepter l'invitation" in html
    # Every sentence of the templates is a gettext message: none is left in English.
    for english in ("next steps", "download the Parsec client", "Get in touch", "For more information"):
        assert english not in text and english not in html
    assert "Prenez contact avec Alice" in text and "documentation de Parsec</a>" in html
    await invite(world.alice, "DEVICE")
    assert mailbox.received[1].message["Subject"] == "[Parsec] Invitation à ajouter un appareil à CoolOrg"
    assert "ajouter un nouvel appareil" in parts(mailbox.received[1].message)[0]


async def test_https_link_when_the_server_address_uses_tls(world: World, smtp_server):
    mailbox = smtp_server("plain", backend_addr=BackendAddr.parse("parsec://parsec.example.com"))
    reply = await invite(world.alice)
    text, html = parts(mailbox.received[0].message)
    assert f"https://parsec.example.com/redirect/CoolOrg?action=claim_user&token={reply['token'].hex}" in text
    assert "https://parsec.example.com/static/parsec-vert.png" in html


# MOCKED --------------------------------------------------------------------------------------------------------


async def test_mocked_writes_the_message_to_a_file(world: World, parsec_settings, caplog):
    parsec_settings(email_host="MOCKED", email_sender="no-reply@parsec.com")
    with caplog.at_level(logging.WARNING, logger="parsec.email"):
        reply = await invite(world.alice)
        await invite(world.alice, "DEVICE")
    assert reply["email_sent"] == "SUCCESS"
    folder = emails.mock_folder()
    assert folder.name.startswith("tmp-email-folder-")
    files = [path for path in folder.iterdir() if path.name.startswith("tmp-email-") and path.suffix == ".html"]
    messages = [email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in files]
    by_subject = {message["Subject"]: message for message in messages}
    user_message = by_subject["[Parsec] Alice invited you to CoolOrg"]
    assert user_message["To"] == "zack@example.com" and user_message["From"] == "no-reply@parsec.com"
    assert link(reply["token"]) in parts(user_message)[0]
    assert "zack@example.com" in caplog.text
    assert any(str(path) in caplog.text for path in files)
