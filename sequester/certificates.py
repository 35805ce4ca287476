"""Sequester service certificates (docs/protocol.md#certificate-types): RSA-PSS signed, unlike the Ed25519 certificates.

`RSASSA-PSS-SHA256:` + signature (key-size bytes) + zlib(msgpack(map)), signed by the organization's
sequester authority key. The `cryptography` library does the RSA work.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import textwrap
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from protocol import codec, types
from protocol.certificates import InvalidCertification, _Certificate

SIGNATURE_PREFIX = b"RSASSA-PSS-SHA256:"
PEM_HEADER = "-----BEGIN PARSEC SEQUESTER SERVICE CERTIFICATE-----"
PEM_FOOTER = "-----END PARSEC SEQUESTER SERVICE CERTIFICATE-----"


class BadKey(ValueError):
    """A key file or key bytes that are not the expected RSA key."""


@dataclass(frozen=True)
class SequesterServiceCertificate(_Certificate):
    TYPE: ClassVar[str] = "sequester_service_certificate"
    FIELDS: ClassVar[Mapping[str, types.FieldType]] = {
        "timestamp": types.DateTime,
        "service_id": types.SequesterServiceID,
        "service_label": types.String,
        "encryption_key_der": types.SequesterPublicKeyDer,
    }

    timestamp: datetime.datetime
    service_id: uuid.UUID
    service_label: str
    encryption_key_der: bytes

    def dump(self) -> bytes:
        payload: dict[str, Any] = {
            "type": self.TYPE,
            "timestamp": self.timestamp,
            "service_id": self.service_id,
            "service_label": self.service_label,
            "encryption_key_der": self.encryption_key_der,
        }
        return zlib.compress(codec.packb(payload))


def _pss_verify() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)


def load_rsa_public_key_der(der: bytes) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_der_public_key(bytes(der))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadKey(f"not a DER public key ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise BadKey("not an RSA public key")
    return key


def load_rsa_public_key_pem(pem: bytes) -> bytes:
    """The SubjectPublicKeyInfo DER of an RSA public key PEM (what the certificate carries)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BadKey(f"not a PEM public key ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise BadKey("not an RSA public key")
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_rsa_private_key_pem(pem: bytes) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BadKey(f"not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BadKey("not an RSA private key")
    return key


def sign(private_key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """`RSASSA-PSS-SHA256:` + signature + data, as the reference's SequesterSigningKeyDer.sign."""
    signature = private_key.sign(
        data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH), hashes.SHA256()
    )
    return SIGNATURE_PREFIX + signature + data


def verify_and_load(signed: bytes, authority_verify_key_der: bytes) -> SequesterServiceCertificate:
    """Raises InvalidCertification (bad signature, bad payload) or BadKey (bad authority key)."""
    key = load_rsa_public_key_der(authority_verify_key_der)
    signed = bytes(signed)
    if not signed.startswith(SIGNATURE_PREFIX):
        raise InvalidCertification(f"Signed data does not start with {SIGNATURE_PREFIX.decode()}")
    size = key.key_size // 8
    body = signed[len(SIGNATURE_PREFIX):]
    if len(body) <= size:
        raise InvalidCertification("Signed data is too short")
    signature, data = body[:size], body[size:]
    try:
        key.verify(signature, data, _pss_verify(), hashes.SHA256())
    except InvalidSignature:
        raise InvalidCertification("Invalid signature") from None
    return SequesterServiceCertificate._load_payload(data)


def dump_pem(certificate: bytes) -> str:
    body = textwrap.wrap(base64.b64encode(certificate).decode("ascii"), width=64)
    return "\n".join((PEM_HEADER, *body, PEM_FOOTER, ""))


def load_pem(text: str) -> bytes:
    """The certificate bytes of a PEM-armored service certificate; ValueError with a readable message."""
    lines = text.strip().splitlines()
    if len(lines) < 3:
        raise ValueError("Not a valid Parsec sequester service certificate PEM file")
    if lines[0].strip() != PEM_HEADER:
        raise ValueError(f"Not a valid Parsec sequester service certificate PEM file: missing `{PEM_HEADER}` header")
    if lines[-1].strip() != PEM_FOOTER:
        raise ValueError(f"Not a valid Parsec sequester service certificate PEM file: missing `{PEM_FOOTER}` footer")
    try:
        return base64.b64decode("".join(line.strip() for line in lines[1:-1]), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"Not a valid Parsec sequester service certificate PEM file: invalid body ({exc})") from None
