"""Sequester test material: RSA keys, a sequestered organization, services, a real webhook server."""
from __future__ import annotations

import datetime
import uuid
import zlib
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from nacl.signing import SigningKey

from organizations.models import Organization
from protocol import codec
from sequester import certificates
from sequester.models import SequesterService, ServiceType
from tests.conftest import World
from tests.sequester.webhook_server import WebhookServer, unreachable_url  # noqa: F401 (re-exported)
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


def run_command(*args: str) -> str:
    """A management command's output (CommandError raised as is)."""
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def create_with_command(keys, org: str, *extra: str, label: str = "Storage") -> SequesterService:
    """`sequester_create_service` with the openssl-made keys of the `openssl_keys` fixture."""
    run_command("sequester_create_service", "--service-public-key", str(keys / "service.pub.pem"),
                "--authority-private-key", str(keys / "authority.pem"), "--service-label", label,
                "--organization", org, *extra)
    return SequesterService.objects.get(service_label=label)
