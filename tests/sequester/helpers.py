"""Sequester test material: RSA keys, a sequestered organization, services, a real webhook server."""
from __future__ import annotations

import datetime
import http.server
import json
import socket
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

from asgiref.sync import sync_to_async
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from nacl.signing import SigningKey

from organizations.models import Organization
from protocol import codec
from sequester import certificates
from sequester.models import SequesterService, ServiceType
from tests.conftest import World
from tests.testkit import certs


@dataclass(frozen=True)
class RsaKey:
    private: rsa.RSAPrivateKey

    @property
    def public_der(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


_KEYS: dict[str, RsaKey] = {}


def rsa_key(name: str) -> RsaKey:
    """One RSA key per name for the whole run (generating them is slow)."""
    if name not in _KEYS:
        _KEYS[name] = RsaKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _KEYS[name]


def authority_certificate(root_signing_key: SigningKey, verify_key_der: bytes) -> bytes:
    payload = {"type": "sequester_authority_certificate", "author": None, "timestamp": certs.now(),
               "verify_key_der": verify_key_der}
    return root_signing_key.sign(zlib.compress(codec.packb(payload)))


async def make_sequestered(world: World, authority: RsaKey | None = None) -> bytes:
    """Gives the organization a sequester authority (as a bootstrap with one would); returns its certificate."""
    authority = authority or rsa_key("authority")
    certificate = authority_certificate(SigningKey.generate(), authority.public_der)
    await Organization.objects.filter(organization_id=world.organization_id).aupdate(
        sequester_authority_certificate=certificate, sequester_authority_verify_key_der=authority.public_der
    )
    return certificate


def service_certificate(
    *, label: str = "Service", service_id: uuid.UUID | None = None, authority: RsaKey | None = None,
    service_key: RsaKey | None = None, timestamp: datetime.datetime | None = None,
) -> bytes:
    data = certificates.SequesterServiceCertificate(
        timestamp=timestamp or certs.now(),
        service_id=service_id or uuid.uuid4(),
        service_label=label,
        encryption_key_der=(service_key or rsa_key("service")).public_der,
    )
    return certificates.sign((authority or rsa_key("authority")).private, data.dump())


@sync_to_async
def add_service(
    world: World, *, label: str = "Service", service_type: str = ServiceType.STORAGE, webhook_url: str | None = None,
    disabled: bool = False,
) -> SequesterService:
    from sequester import services

    service = services.register_service(
        organization_id=world.organization_id,
        certificate=service_certificate(label=label),
        service_type=service_type,
        webhook_url=webhook_url,
    )
    if disabled:
        service = services.update_service(
            organization_id=world.organization_id, service_id=service.service_id, enable=False
        )
    return service


@dataclass
class WebhookServer:
    """A real HTTP server on localhost that answers sequester POSTs as told."""

    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    received: list[tuple[dict[str, list[str]], bytes]] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(length)
                outer.received.append((parse_qs(urlparse(self.path).query), data))
                if outer.delay:
                    time.sleep(outer.delay)
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/sequester"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def refuse(self, reason: str | None, *, status: int = 400) -> None:
        self.status = status
        self.body = b"not json" if reason is None else json.dumps({"reason": reason}).encode()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def unreachable_url() -> str:
    """A localhost port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/sequester"
