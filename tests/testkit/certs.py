"""Client-side toolkit: produce keys, devices and signed certificates the way a
Parsec 2.17 client serializes them (docs/protocol.md#certificates), for tests and benchmarks."""

from __future__ import annotations

import datetime
import struct
import uuid
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from protocol import codec
from protocol.types import HumanHandle, RealmArchivingConfiguration

__all__ = [
    "TestDevice",
    "BootstrapMaterial",
    "now",
    "zlib_stored",
    "sign_certificate",
    "user_certificate_map",
    "user_certificate",
    "device_certificate_map",
    "device_certificate",
    "revoked_user_certificate_map",
    "revoked_user_certificate",
    "realm_role_certificate_map",
    "realm_role_certificate",
    "realm_archiving_certificate_map",
    "realm_archiving_certificate",
    "sequester_authority_certificate_map",
    "sequester_authority_certificate",
    "shamir_recovery_brief_certificate_map",
    "shamir_recovery_brief_certificate",
    "shamir_recovery_share_certificate_map",
    "shamir_recovery_share_certificate",
    "user_creation_certificates",
    "device_creation_certificates",
    "bootstrap_material",
]

HumanHandleLike = HumanHandle | tuple[str, str] | list[str]
Compression = Literal["stored", "deflate"]


def now() -> datetime.datetime:
    """Current UTC time, with the microsecond precision the wire keeps."""
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass
class TestDevice:
    """One device of one user, with all the private material a client holds."""

    __test__ = False  # not a pytest test class despite its name

    organization_id: str
    user_id: str
    device_name: str
    signing_key: SigningKey
    private_key: PrivateKey
    profile: str = "STANDARD"
    human_handle: tuple[str, str] | None = None
    device_label: str | None = None
    root_signing_key: SigningKey | None = field(default=None, repr=False)

    @classmethod
    def generate(
        cls,
        organization_id: str,
        user_id: str,
        device_name: str,
        *,
        profile: str = "STANDARD",
        email: str | None = None,
        label: str | None = None,
        device_label: str | None = None,
        root_signing_key: SigningKey | None = None,
    ) -> TestDevice:
        """A device with fresh random keys; the human handle is derived from the
        user id when `email`/`label` are not given."""
        return cls(
            organization_id=organization_id,
            user_id=user_id,
            device_name=device_name,
            signing_key=SigningKey.generate(),
            private_key=PrivateKey.generate(),
            profile=profile,
            human_handle=(email or f"{user_id}@example.com", label or user_id.capitalize()),
            device_label=device_label or f"Device {device_name}",
            root_signing_key=root_signing_key,
        )

    def new_device(self, device_name: str, device_label: str | None = None) -> TestDevice:
        """Another device of the same user (same user key, new signing key)."""
        return replace(
            self,
            device_name=device_name,
            signing_key=SigningKey.generate(),
            device_label=device_label or f"Device {device_name}",
        )

    @property
    def device_id(self) -> str:
        return f"{self.user_id}@{self.device_name}"

    @property
    def verify_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def public_key(self) -> bytes:
        return bytes(self.private_key.public_key)

    @property
    def root_verify_key(self) -> bytes | None:
        if self.root_signing_key is None:
            return None
        return bytes(self.root_signing_key.verify_key)

    def sign(self, message: bytes) -> bytes:
        """Ed25519 combined form: 64-byte signature followed by `message`."""
        return bytes(self.signing_key.sign(message))

    def signed_answer(self, challenge: bytes) -> bytes:
        """The handshake `answer` field for a >= 2.5 client (docs/protocol.md#handshake-answer)."""
        return self.sign(codec.packb({"answer": challenge, "type": "signed_answer"}))

    def authenticated_answer(
        self, challenge: bytes, api_version: tuple[int, int] = (3, 4)
    ) -> dict[str, Any]:
        """The handshake answer map (docs/protocol.md#handshake-answer), ready for `codec.packb`."""
        if self.root_verify_key is None:
            raise ValueError("the device has no root key reference")
        # Clients below API 2.5 sign the raw challenge.
        legacy = api_version[0] < 2 or (api_version[0] == 2 and api_version < (2, 5))
        return {
            "answer": self.sign(challenge) if legacy else self.signed_answer(challenge),
            "client_api_version": list(api_version),
            "device_id": self.device_id,
            "handshake": "answer",
            "organization_id": self.organization_id,
            "rvk": self.root_verify_key,
            "type": "AUTHENTICATED",
        }


# --- low-level signing ------------------------------------------------------------


def zlib_stored(payload: bytes) -> bytes:
    """zlib stream made of stored (uncompressed) deflate blocks behind the default
    `78 9c` header: the exact framing of the client's certificates (TV6).
    `zlib.compress(level=0)` would write a `78 01` header instead."""
    raw_deflate = zlib.compressobj(level=0, wbits=-15)
    blocks = raw_deflate.compress(payload) + raw_deflate.flush()
    return b"\x78\x9c" + blocks + struct.pack(">I", zlib.adler32(payload))


def sign_certificate(
    signing_key: SigningKey, cert_map: dict[str, Any], *, compression: Compression = "stored"
) -> bytes:
    """signature(64) || zlib(msgpack(cert_map)), signed by `signing_key`."""
    payload = codec.packb(cert_map)
    zlib_stream = zlib_stored(payload) if compression == "stored" else zlib.compress(payload)
    return bytes(signing_key.sign(zlib_stream))


def _human_handle_wire(human_handle: HumanHandleLike | None) -> list[str] | None:
    if human_handle is None:
        return None
    if isinstance(human_handle, HumanHandle):
        return human_handle.to_wire()
    email, label = human_handle
    return [email, label]


# --- certificate maps (key order = client serialization order) ---------------------


def user_certificate_map(
    *,
    author: str | None,
    timestamp: datetime.datetime,
    user_id: str,
    human_handle: HumanHandleLike | None,
    public_key: bytes,
    profile: str = "STANDARD",
) -> dict[str, Any]:
    return {
        "type": "user_certificate",
        "author": author,
        "timestamp": timestamp,
        "user_id": user_id,
        "human_handle": _human_handle_wire(human_handle),
        "public_key": public_key,
        "is_admin": str(profile) == "ADMIN",
        "profile": str(profile),
    }


def user_certificate(signing_key: SigningKey, **fields: Any) -> bytes:
    return sign_certificate(signing_key, user_certificate_map(**fields))


def device_certificate_map(
    *,
    author: str | None,
    timestamp: datetime.datetime,
    device_id: str,
    device_label: str | None,
    verify_key: bytes,
) -> dict[str, Any]:
    return {
        "type": "device_certificate",
        "author": author,
        "timestamp": timestamp,
        "device_id": device_id,
        "device_label": device_label,
        "verify_key": verify_key,
    }


def device_certificate(signing_key: SigningKey, **fields: Any) -> bytes:
    return sign_certificate(signing_key, device_certificate_map(**fields))


def revoked_user_certificate_map(
    *, author: str, timestamp: datetime.datetime, user_id: str
) -> dict[str, Any]:
    return {
        "type": "revoked_user_certificate",
        "author": author,
        "timestamp": timestamp,
        "user_id": user_id,
    }


def revoked_user_certificate(signing_key: SigningKey, **fields: Any) -> bytes:
    return sign_certificate(signing_key, revoked_user_certificate_map(**fields))


def realm_role_certificate_map(
    *,
    author: str | None,
    timestamp: datetime.datetime,
    realm_id: uuid.UUID,
    user_id: str,
    role: str | None,
) -> dict[str, Any]:
    return {
        "type": "realm_role_certificate",
        "author": author,
        "timestamp": timestamp,
        "realm_id": realm_id,
        "user_id": user_id,
        "role": None if role is None else str(role),
    }


def realm_role_certificate(signing_key: SigningKey, **fields: Any) -> bytes:
    return sign_certificate(signing_key, realm_role_certificate_map(**fields))


def realm_archiving_certificate_map(
    *,
    author: str,
    timestamp: datetime.datetime,
    realm_id: uuid.UUID,
    configuration: RealmArchivingConfiguration | dict[str, Any],
) -> dict[str, Any]:
    if isinstance(configuration, RealmArchivingConfiguration):
        configuration = configuration.to_wire()
    return {
        "type": "realm_archiving_certificate",
        "author": author,
        "timestamp": timestamp,
        "realm_id": realm_id,
        "configuration": configuration,
    }


def realm_archiving_certificate(signing_key: SigningKey, **fields: Any) -> bytes:
    return sign_certificate(signing_key, realm_archiving_certificate_map(**fields))


def sequester_authority_certificate_map(
    *, timestamp: datetime.datetime, verify_key_der: bytes, author: str | None = None
) -> dict[str, Any]:
    return {
        "type": "sequester_authority_certificate",
        "author": author,
        "timestamp": timestamp,
        "verify_key_der": verify_key_der,
    }


def sequester_authority_certificate(signing_key: SigningKey, **fields: Any) -> bytes:
    return sign_certificate(signing_key, sequester_authority_certificate_map(**fields))


def shamir_recovery_brief_certificate_map(
    *,
    author: str,
    timestamp: datetime.datetime,
    threshold: int,
    per_recipient_shares: dict[str, int],
) -> dict[str, Any]:
    return {
        "type": "shamir_recovery_brief_certificate",
        "author": author,
        "timestamp": timestamp,
        "threshold": threshold,
        "per_recipient_shares": dict(per_recipient_shares),
    }


def shamir_recovery_brief_certificate(signing_key: SigningKey, **fields: Any) -> bytes:
    return sign_certificate(signing_key, shamir_recovery_brief_certificate_map(**fields))


def shamir_recovery_share_certificate_map(
    *, author: str, timestamp: datetime.datetime, recipient: str, ciphered_share: bytes
) -> dict[str, Any]:
    return {
        "type": "shamir_recovery_share_certificate",
        "author": author,
        "timestamp": timestamp,
        "recipient": recipient,
        "ciphered_share": ciphered_share,
    }


def shamir_recovery_share_certificate(signing_key: SigningKey, **fields: Any) -> bytes:
    return sign_certificate(signing_key, shamir_recovery_share_certificate_map(**fields))


# --- bundles ready for commands -----------------------------------------------------


def _signer(author: TestDevice | SigningKey) -> tuple[SigningKey, str | None]:
    """A TestDevice signs as itself; a bare SigningKey is the root key (author nil)."""
    if isinstance(author, TestDevice):
        return author.signing_key, author.device_id
    return author, None


def device_creation_certificates(
    author: TestDevice | SigningKey,
    new_device: TestDevice,
    timestamp: datetime.datetime | None = None,
) -> dict[str, bytes]:
    """`device_certificate` and `redacted_device_certificate`, as `device_create` takes them."""
    signing_key, author_id = _signer(author)
    timestamp = timestamp or now()
    fields = dict(
        author=author_id,
        timestamp=timestamp,
        device_id=new_device.device_id,
        verify_key=new_device.verify_key,
    )
    return {
        "device_certificate": device_certificate(
            signing_key, device_label=new_device.device_label, **fields
        ),
        "redacted_device_certificate": device_certificate(signing_key, device_label=None, **fields),
    }


def user_creation_certificates(
    author: TestDevice | SigningKey,
    new_device: TestDevice,
    timestamp: datetime.datetime | None = None,
) -> dict[str, bytes]:
    """The four certificates `user_create` (and `organization_bootstrap`) take:
    user, redacted user, device, redacted device."""
    signing_key, author_id = _signer(author)
    timestamp = timestamp or now()
    user_fields = dict(
        author=author_id,
        timestamp=timestamp,
        user_id=new_device.user_id,
        public_key=new_device.public_key,
        profile=new_device.profile,
    )
    return {
        "user_certificate": user_certificate(
            signing_key, human_handle=new_device.human_handle, **user_fields
        ),
        "redacted_user_certificate": user_certificate(signing_key, human_handle=None, **user_fields),
        **device_creation_certificates(author, new_device, timestamp),
    }


class BootstrapMaterial(NamedTuple):
    root_signing_key: SigningKey
    device: TestDevice
    # root_verify_key, the four certificates and sequester_authority_certificate=None:
    # add `cmd` and `bootstrap_token` to get an `organization_bootstrap` request.
    request_fields: dict[str, Any]


def bootstrap_material(
    organization_id: str,
    user_id: str,
    device_name: str,
    email: str,
    label: str,
    timestamp: datetime.datetime | None = None,
    profile: str = "ADMIN",
) -> BootstrapMaterial:
    root_signing_key = SigningKey.generate()
    device = TestDevice.generate(
        organization_id,
        user_id,
        device_name,
        profile=profile,
        email=email,
        label=label,
        root_signing_key=root_signing_key,
    )
    request_fields: dict[str, Any] = {
        "root_verify_key": bytes(root_signing_key.verify_key),
        **user_creation_certificates(root_signing_key, device, timestamp or now()),
        "sequester_authority_certificate": None,
    }
    return BootstrapMaterial(root_signing_key, device, request_fields)
