"""Signed certificates (docs/protocol.md#certificates): signature(64) || zlib(msgpack(map)).

Each certificate class offers `verify_and_load(signed, verify_key)` and
`unsecure_load(signed)`; both raise InvalidCertification on any failure.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, TypeVar

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey as _NaclVerifyKey

from protocol import codec, types
from protocol.types import HumanHandle, RealmArchivingConfiguration, RealmRole, UserProfile

__all__ = [
    "SIGNATURE_SIZE",
    "InvalidCertification",
    "verify_signed_blob",
    "UserCertificate",
    "DeviceCertificate",
    "RevokedUserCertificate",
    "RealmRoleCertificate",
    "RealmArchivingCertificate",
    "SequesterAuthorityCertificate",
    "ShamirRecoveryBriefCertificate",
    "ShamirRecoveryShareCertificate",
    "redacted_matches",
]

SIGNATURE_SIZE = 64
# Real certificates are well under a kilobyte; the cap defeats zlib bombs.
_MAX_PAYLOAD_SIZE = 1_048_576


class InvalidCertification(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


BytesLike = bytes | bytearray | memoryview


def _signed_bytes(signed: Any) -> bytes:
    # Certificates read back from PostgreSQL bytea columns arrive as memoryview.
    if not isinstance(signed, (bytes, bytearray, memoryview)):
        raise InvalidCertification("Signed data must be bytes")
    signed = bytes(signed)
    if len(signed) < SIGNATURE_SIZE:
        raise InvalidCertification("Signed data is too short")
    return signed


def verify_signed_blob(signed: BytesLike, verify_key: BytesLike | _NaclVerifyKey) -> bytes:
    """Check the Ed25519 "combined" signature and return the signed message."""
    signed = _signed_bytes(signed)
    try:
        key = verify_key if isinstance(verify_key, _NaclVerifyKey) else _NaclVerifyKey(bytes(verify_key))
    except (TypeError, ValueError) as exc:
        raise InvalidCertification(f"Invalid verify key: {exc}") from None
    try:
        return key.verify(signed)
    except (BadSignatureError, ValueError, TypeError):
        raise InvalidCertification("Invalid signature") from None


def _decompress(zlib_stream: bytes) -> bytes:
    decompressor = zlib.decompressobj()
    try:
        payload = decompressor.decompress(zlib_stream, _MAX_PAYLOAD_SIZE)
    except zlib.error as exc:
        raise InvalidCertification(f"Invalid compressed data: {exc}") from None
    if decompressor.unconsumed_tail:
        raise InvalidCertification("Compressed data is too big")
    if not decompressor.eof or decompressor.unused_data:
        raise InvalidCertification("Invalid compressed data: truncated or trailing bytes")
    return payload


_CertificateT = TypeVar("_CertificateT", bound="_Certificate")


class _Certificate:
    TYPE: ClassVar[str]
    FIELDS: ClassVar[Mapping[str, types.FieldType]]

    @classmethod
    def _complete_legacy_fields(cls, raw: dict[str, Any]) -> dict[str, Any]:
        return raw

    @classmethod
    def _load_payload(cls: type[_CertificateT], zlib_stream: bytes) -> _CertificateT:
        payload = _decompress(zlib_stream)
        try:
            raw = codec.unpackb(payload)
        except codec.DecodeError as exc:
            raise InvalidCertification(f"Invalid certificate serialization: {exc}") from None
        if not isinstance(raw, dict):
            raise InvalidCertification("Invalid certificate serialization: not a map")
        if raw.get("type") != cls.TYPE:
            raise InvalidCertification(f"Expected a {cls.TYPE}, got type {raw.get('type')!r}")
        try:
            fields = types.decode_request(cls.FIELDS, cls._complete_legacy_fields(raw))
            return cls(**fields)
        except types.FieldError as exc:
            raise InvalidCertification(f"Invalid {cls.TYPE}: {exc}") from None

    @classmethod
    def verify_and_load(
        cls: type[_CertificateT], signed: BytesLike, verify_key: BytesLike | _NaclVerifyKey
    ) -> _CertificateT:
        return cls._load_payload(verify_signed_blob(signed, verify_key))

    @classmethod
    def unsecure_load(cls: type[_CertificateT], signed: BytesLike) -> _CertificateT:
        """Load without checking the signature (the blob was verified when stored)."""
        return cls._load_payload(_signed_bytes(signed)[SIGNATURE_SIZE:])


@dataclass(frozen=True)
class UserCertificate(_Certificate):
    TYPE: ClassVar[str] = "user_certificate"
    FIELDS: ClassVar[Mapping[str, types.FieldType]] = {
        "author": types.Optional(types.DeviceID),
        "timestamp": types.DateTime,
        "user_id": types.UserID,
        "human_handle": types.Optional(types.HumanHandleField),
        "public_key": types.PublicKey,
        "profile": types.UserProfileField,
        "is_admin": types.Boolean,
    }

    author: str | None
    timestamp: datetime.datetime
    user_id: str
    human_handle: HumanHandle | None
    public_key: bytes
    profile: UserProfile
    is_admin: bool

    @classmethod
    def _complete_legacy_fields(cls, raw: dict[str, Any]) -> dict[str, Any]:
        # Certificates older than Parsec 1.13/1.14 lack these keys.
        completed = dict(raw)
        completed.setdefault("human_handle", None)
        if "profile" not in completed:
            is_admin = completed.get("is_admin") is True
            completed["profile"] = UserProfile.ADMIN if is_admin else UserProfile.STANDARD
        return completed

    def is_redacted_twin_of(self, full: UserCertificate) -> bool:
        """True if `self` is `full` with `human_handle` removed."""
        return redacted_matches(full, self, "human_handle")


@dataclass(frozen=True)
class DeviceCertificate(_Certificate):
    TYPE: ClassVar[str] = "device_certificate"
    FIELDS: ClassVar[Mapping[str, types.FieldType]] = {
        "author": types.Optional(types.DeviceID),
        "timestamp": types.DateTime,
        "device_id": types.DeviceID,
        "device_label": types.Optional(types.DeviceLabel),
        "verify_key": types.VerifyKey,
    }

    author: str | None
    timestamp: datetime.datetime
    device_id: str
    device_label: str | None
    verify_key: bytes

    @classmethod
    def _complete_legacy_fields(cls, raw: dict[str, Any]) -> dict[str, Any]:
        # Certificates older than Parsec 1.14 lack the label.
        completed = dict(raw)
        completed.setdefault("device_label", None)
        return completed

    @property
    def user_id(self) -> str:
        return types.split_device_id(self.device_id)[0]

    @property
    def device_name(self) -> str:
        return types.split_device_id(self.device_id)[1]

    def is_redacted_twin_of(self, full: DeviceCertificate) -> bool:
        """True if `self` is `full` with `device_label` removed."""
        return redacted_matches(full, self, "device_label")


@dataclass(frozen=True)
class RevokedUserCertificate(_Certificate):
    TYPE: ClassVar[str] = "revoked_user_certificate"
    FIELDS: ClassVar[Mapping[str, types.FieldType]] = {
        "author": types.DeviceID,
        "timestamp": types.DateTime,
        "user_id": types.UserID,
    }

    author: str
    timestamp: datetime.datetime
    user_id: str


@dataclass(frozen=True)
class RealmRoleCertificate(_Certificate):
    TYPE: ClassVar[str] = "realm_role_certificate"
    FIELDS: ClassVar[Mapping[str, types.FieldType]] = {
        "author": types.Optional(types.DeviceID),
        "timestamp": types.DateTime,
        "realm_id": types.RealmID,
        "user_id": types.UserID,
        "role": types.Optional(types.RealmRoleField),
    }

    author: str | None
    timestamp: datetime.datetime
    realm_id: uuid.UUID
    user_id: str
    role: RealmRole | None


@dataclass(frozen=True)
class RealmArchivingCertificate(_Certificate):
    TYPE: ClassVar[str] = "realm_archiving_certificate"
    FIELDS: ClassVar[Mapping[str, types.FieldType]] = {
        "author": types.DeviceID,
        "timestamp": types.DateTime,
        "realm_id": types.RealmID,
        "configuration": types.RealmArchivingConfigurationField,
    }

    author: str
    timestamp: datetime.datetime
    realm_id: uuid.UUID
    configuration: RealmArchivingConfiguration


@dataclass(frozen=True)
class SequesterAuthorityCertificate(_Certificate):
    TYPE: ClassVar[str] = "sequester_authority_certificate"
    # `author` must be nil, but a non-nil one is an `invalid_data` for
    # organization_bootstrap, not an invalid certification: the command checks it.
    FIELDS: ClassVar[Mapping[str, types.FieldType]] = {
        "author": types.Optional(types.DeviceID),
        "timestamp": types.DateTime,
        "verify_key_der": types.SequesterVerifyKeyDer,
    }

    author: str | None
    timestamp: datetime.datetime
    verify_key_der: bytes


@dataclass(frozen=True)
class ShamirRecoveryBriefCertificate(_Certificate):
    TYPE: ClassVar[str] = "shamir_recovery_brief_certificate"
    FIELDS: ClassVar[Mapping[str, types.FieldType]] = {
        "author": types.DeviceID,
        "timestamp": types.DateTime,
        "threshold": types.NonZeroInteger,
        "per_recipient_shares": types.Map(types.UserID, types.NonZeroInteger),
    }

    author: str
    timestamp: datetime.datetime
    threshold: int
    per_recipient_shares: dict[str, int]


@dataclass(frozen=True)
class ShamirRecoveryShareCertificate(_Certificate):
    TYPE: ClassVar[str] = "shamir_recovery_share_certificate"
    FIELDS: ClassVar[Mapping[str, types.FieldType]] = {
        "author": types.DeviceID,
        "timestamp": types.DateTime,
        "recipient": types.UserID,
        "ciphered_share": types.Bytes,
    }

    author: str
    timestamp: datetime.datetime
    recipient: str
    ciphered_share: bytes


def redacted_matches(full: Any, redacted: Any, field_name: str) -> bool:
    """True if `redacted` equals `full` in every field except `field_name`,
    which must be None in `redacted`."""
    if type(full) is not type(redacted) or getattr(redacted, field_name) is not None:
        return False
    return dataclasses.replace(full, **{field_name: None}) == redacted
