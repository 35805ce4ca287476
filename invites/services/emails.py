"""The invitation e-mail (docs/configuration.md#options), sent after commit from a worker thread.

`settings.PARSEC` is read at send time. `email_host == "MOCKED"` writes each message as a MIME file
into a folder created once per process instead of sending it.
"""
from __future__ import annotations

import logging
import smtplib
import tempfile
import threading
import uuid
from dataclasses import dataclass
from email.header import Header
from email.message import Message
from email.utils import formataddr
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string
from django.utils import translation

from invites.models import InvitationType
from protocol.types import FieldError, HumanHandle, InvitationEmailSentStatus

logger = logging.getLogger("parsec.email")

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
# Seconds; the SMTP exchange runs before `invite_new` replies, so a dead server must not hang it.
DEFAULT_SMTP_TIMEOUT = 30

CLAIM_ACTIONS = {
    InvitationType.USER: "claim_user",
    InvitationType.DEVICE: "claim_device",
    InvitationType.SHAMIR_RECOVERY: "claim_shamir_recovery",
}
TEMPLATE_NAMES = {
    InvitationType.USER: "invitation_user",
    InvitationType.DEVICE: "invitation_device",
    InvitationType.SHAMIR_RECOVERY: "invitation_shamir",
}
# English subjects are the reference's, word for word; French ones are ours (`--email-language fr`).
SUBJECTS = {
    "en": {
        InvitationType.USER: "[Parsec] {greeter} invited you to {organization_id}",
        InvitationType.DEVICE: "[Parsec] New device invitation to {organization_id}",
        InvitationType.SHAMIR_RECOVERY: "[Parsec] Recovery invitation to {organization_id}",
    },
    "fr": {
        InvitationType.USER: "[Parsec] {greeter} vous invite à rejoindre {organization_id}",
        InvitationType.DEVICE: "[Parsec] Invitation à ajouter un appareil à {organization_id}",
        InvitationType.SHAMIR_RECOVERY: "[Parsec] Invitation à une procédure de récupération sur {organization_id}",
    },
}


class InvitationMessage(EmailMultiAlternatives):
    def message(self) -> Message:
        msg = super().message()
        if not self.subject.isascii():
            # Django's encoded subject is one long encoded word that folds after "Subject:", which
            # decoders read with a leading space; a Header knowing its name splits into encoded words.
            del msg["Subject"]
            Message.__setitem__(msg, "Subject", Header(str(self.subject), "utf-8", header_name="Subject"))
        return msg


@dataclass(frozen=True)
class InvitationEmail:
    """What the e-mail says, gathered inside the transaction that created (or found) the invitation."""

    invitation_type: str
    organization_id: str
    token: uuid.UUID
    recipient: str | None  # None: the claimer has no e-mail (SHAMIR_RECOVERY of a legacy user)
    greeter_name: str  # human label, or user id for legacy users
    greeter_label: str | None = None  # with greeter_email: the Reply-To, when the greeter has a human handle
    greeter_email: str | None = None


def invitation_url(mail: InvitationEmail) -> str:
    """The `/redirect` link (docs/protocol.md#redirect), `http` when the server address says `no_ssl=true`."""
    backend_addr = settings.PARSEC.backend_addr
    assert backend_addr is not None  # checked by send_invitation_email
    action = CLAIM_ACTIONS[InvitationType(mail.invitation_type)]
    return backend_addr.to_http_url(f"/redirect/{quote(mail.organization_id)}?action={action}&token={mail.token.hex}")


def build_message(mail: InvitationEmail) -> InvitationMessage:
    config = settings.PARSEC
    assert config.backend_addr is not None and mail.recipient is not None  # checked by send_invitation_email
    invitation_type = InvitationType(mail.invitation_type)
    language = config.email_language if config.email_language in SUBJECTS else "en"
    context = {
        "language": language,
        "greeter": mail.greeter_name,
        "organization_id": mail.organization_id,
        "invitation_url": invitation_url(mail),
        "backend_url": config.backend_addr.to_http_url(),
    }
    name = TEMPLATE_NAMES[invitation_type]
    # The templates' sentences are gettext messages (locale/): rendered in the server's e-mail language.
    with translation.override(language):
        text = render_to_string(f"email/{name}.txt", context)
        html = render_to_string(f"email/{name}.html", context)
    subject = SUBJECTS[language][invitation_type].format(
        greeter=mail.greeter_name, organization_id=mail.organization_id
    )
    reply_to = []
    if invitation_type != InvitationType.DEVICE and mail.greeter_label and mail.greeter_email:
        # RFC 2047 (utf-8) for non-ASCII labels, as the reference writes it.
        reply_to.append(formataddr((mail.greeter_label, mail.greeter_email), charset="utf-8"))
    message = InvitationMessage(
        subject=subject, body=text, from_email=config.email_sender, to=[mail.recipient], reply_to=reply_to
    )
    message.attach_alternative(html, "text/html")
    return message


_mock_folder: Path | None = None
_mock_folder_lock = threading.Lock()


def mock_folder() -> Path:
    """The per-process folder of MOCKED e-mails, created on first use."""
    global _mock_folder
    with _mock_folder_lock:
        if _mock_folder is None:
            _mock_folder = Path(tempfile.mkdtemp(prefix="tmp-email-folder-"))
        return _mock_folder


def _write_mocked(message: EmailMultiAlternatives, recipient: str) -> Path:
    handle, path = tempfile.mkstemp(prefix="tmp-email-", suffix=".html", dir=mock_folder())
    with open(handle, "wb") as file:
        file.write(message.message().as_bytes())
    logger.warning("E-mail to %s not sent (--email-host=MOCKED); the message is in %s", recipient, path)
    return Path(path)


def _send_smtp(message: EmailMultiAlternatives) -> None:
    config = settings.PARSEC
    connection = get_connection(
        SMTP_BACKEND,
        fail_silently=False,
        host=config.email_host,
        port=config.email_port,
        username=config.email_host_user or "",
        password=config.email_host_password or "",
        use_ssl=config.email_use_ssl,
        # STARTTLS is ignored with implicit TLS (Django refuses both at once).
        use_tls=config.email_use_tls and not config.email_use_ssl,
        timeout=getattr(config, "email_timeout", DEFAULT_SMTP_TIMEOUT),
    )
    message.connection = connection
    message.send()


def sendable_address(address: str) -> bool:
    """Whether we can put `address` in an SMTP envelope: a valid e-mail (the human handle rule)
    whose local part is ASCII (we do not speak SMTPUTF8; a non-ASCII domain goes out as IDNA).

    The claimer's e-mail is a free string on the wire; an address failing this is refused here, as
    an SMTP server would refuse it, instead of breaking the message's headers.
    """
    try:
        HumanHandle(address, "x")
    except FieldError:
        return False
    local_part, _, domain = address.rpartition("@")
    if not local_part.isascii():
        return False
    try:
        domain.encode("idna")
    except UnicodeError:
        return False
    return True


def send_invitation_email(mail: InvitationEmail) -> InvitationEmailSentStatus:
    """Send (or mock) the e-mail; the invitation exists whatever this returns."""
    config = settings.PARSEC
    if config.backend_addr is None:
        return InvitationEmailSentStatus.NOT_AVAILABLE
    if mail.recipient is None:
        return InvitationEmailSentStatus.BAD_RECIPIENT
    if not sendable_address(mail.recipient):
        logger.warning("Invitation e-mail not sent: the recipient is not a deliverable address")
        return InvitationEmailSentStatus.BAD_RECIPIENT
    message = build_message(mail)
    if config.email_host.upper() == "MOCKED":
        _write_mocked(message, mail.recipient)
        return InvitationEmailSentStatus.SUCCESS
    try:
        _send_smtp(message)
    except smtplib.SMTPRecipientsRefused as exc:
        logger.warning("Invitation e-mail refused by the SMTP server for %s: %s", mail.recipient, exc.recipients)
        return InvitationEmailSentStatus.BAD_RECIPIENT
    except Exception as exc:  # any SMTP, network or TLS failure: the invitation stays, the client is told
        logger.warning("Invitation e-mail to %s not sent: %s: %s", mail.recipient, type(exc).__name__, exc)
        return InvitationEmailSentStatus.NOT_AVAILABLE
    return InvitationEmailSentStatus.SUCCESS
