"""Field types of the wire schemas (docs/protocol.md#field-types) and identifier rules (docs/protocol.md#identifiers).

A field type is an object with `decode(value)` (msgpack value -> Python value,
raising FieldError) and `encode(value)` (Python value -> msgpack-able value).
Simple types are module-level instances (`String`, `RealmID`...); composite
ones are built by calling `Optional(T)`, `List(T)`, `Map(K, V)`, `Tuple(*Ts)`,
`Struct({...})`. Value classes (the StrEnums, `HumanHandle`,
`RealmArchivingConfiguration`) may be used wherever a field type is expected.
"""

from __future__ import annotations

import datetime as _datetime
import enum
import logging
import re
import unicodedata
import uuid as _uuid
from dataclasses import dataclass
from typing import Any, Generic, Mapping, TypeVar

__all__ = [
    "FieldError",
    "FieldType",
    "String",
    "ClaimerEmail",
    "Boolean",
    "Integer",
    "Index",
    "Size",
    "Version",
    "UnsignedInteger",
    "NonZeroInteger",
    "IntegerBetween1And100",
    "Float",
    "DurationInSeconds",
    "Bytes",
    "DateTime",
    "RealmID",
    "VlobID",
    "BlockID",
    "ChunkID",
    "EntryID",
    "InvitationToken",
    "ShamirRevealToken",
    "EnrollmentID",
    "SequesterServiceID",
    "OrganizationID",
    "UserID",
    "DeviceName",
    "DeviceID",
    "DeviceLabel",
    "HumanHandle",
    "HumanHandleField",
    "UserProfile",
    "UserProfileField",
    "RealmRole",
    "RealmRoleField",
    "InvitationType",
    "InvitationTypeField",
    "InvitationStatus",
    "InvitationStatusField",
    "InvitationDeletedReason",
    "InvitationDeletedReasonField",
    "InvitationEmailSentStatus",
    "InvitationEmailSentStatusField",
    "MaintenanceType",
    "MaintenanceTypeField",
    "RealmArchivingConfigurationType",
    "RealmArchivingConfiguration",
    "RealmArchivingConfigurationField",
    "VerifyKey",
    "PublicKey",
    "HashDigest",
    "SequesterVerifyKeyDer",
    "SequesterPublicKeyDer",
    "ActiveUsersLimit",
    "ReencryptionBatchEntry",
    "ShamirRecoverySetup",
    "UsersPerProfileDetailItem",
    "EnumField",
    "Optional",
    "List",
    "Map",
    "Tuple",
    "Struct",
    "Introduced",
    "as_field_type",
    "decode_request",
    "decode_command_request",
    "encode_fields",
    "validate_organization_id",
    "validate_user_id",
    "validate_device_name",
    "validate_device_id",
    "validate_device_label",
    "split_device_id",
    "uuid_from_text",
    "uuid_to_text",
]


_logger = logging.getLogger("parsec.protocol")


class FieldError(ValueError):
    """A value does not match its field type; the message is free text."""


class FieldType:
    """Base of all field types: `decode` validates a decoded msgpack value."""

    name: str = "FieldType"

    def decode(self, value: Any) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> Any:
        return value

    def __repr__(self) -> str:
        return self.name


def _describe(value: Any) -> str:
    return type(value).__name__


def _shown(value: Any) -> str:
    """The repr of a rejected value for an error reason, cut short: a 16 MiB string or a deep
    structure sent by a client must not come back as a 16 MiB reason (nor recurse in repr)."""
    if isinstance(value, (str, bytes, bytearray)):
        text = repr(value[:_SHOWN_LENGTH])
        return text if len(value) <= _SHOWN_LENGTH else f"{text}... ({len(value)} long)"
    if isinstance(value, (int, float, bool, _uuid.UUID, _datetime.datetime)) or value is None:
        return repr(value)
    return f"<{_describe(value)}>"


_SHOWN_LENGTH = 64


# --- scalars ------------------------------------------------------------------


class _StringType(FieldType):
    name = "String"

    def decode(self, value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError(f"expected a string, got {_describe(value)}")
        return value


class _StoredStringType(FieldType):
    """A String the server stores or looks up in a text column: PostgreSQL's text cannot hold NUL,
    and the column has a length; both are refused at decoding (`bad_message`), not by the database."""

    def __init__(self, name: str, max_length: int | None = None) -> None:
        self.name = name
        self.max_length = max_length

    def decode(self, value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError(f"expected a string, got {_describe(value)}")
        if "\x00" in value:
            raise FieldError("NUL character in a string")
        if self.max_length is not None and len(value) > self.max_length:
            raise FieldError(f"string longer than {self.max_length} characters")
        return value


class _BooleanType(FieldType):
    name = "Boolean"

    def decode(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise FieldError(f"expected a boolean, got {_describe(value)}")
        return value


class _IntegerType(FieldType):
    def __init__(self, name: str, minimum: int, maximum: int) -> None:
        self.name = name
        self.minimum = minimum
        self.maximum = maximum

    def decode(self, value: Any) -> int:
        # bool is an int subclass in Python but a distinct msgpack type.
        if not isinstance(value, int) or isinstance(value, bool):
            raise FieldError(f"expected an integer, got {_describe(value)}")
        if not self.minimum <= value <= self.maximum:
            raise FieldError(f"integer {value} out of range [{self.minimum}, {self.maximum}]")
        return value


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1


class _FloatType(FieldType):
    name = "Float"

    def decode(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (float, int)):
            raise FieldError(f"expected a float, got {_describe(value)}")
        return float(value)

    def encode(self, value: Any) -> float:
        return float(value)


class _BytesType(FieldType):
    def __init__(self, name: str = "Bytes", length: int | None = None) -> None:
        self.name = name
        self.length = length

    def decode(self, value: Any) -> bytes:
        if not isinstance(value, (bytes, bytearray)):
            raise FieldError(f"expected binary data, got {_describe(value)}")
        if self.length is not None and len(value) != self.length:
            raise FieldError(f"expected {self.length} bytes, got {len(value)}")
        return bytes(value)


class _DateTimeType(FieldType):
    name = "DateTime"

    def decode(self, value: Any) -> _datetime.datetime:
        if not isinstance(value, _datetime.datetime):
            raise FieldError(f"expected a DateTime, got {_describe(value)}")
        return value


class _UUIDType(FieldType):
    def __init__(self, name: str) -> None:
        self.name = name

    def decode(self, value: Any) -> _uuid.UUID:
        if not isinstance(value, _uuid.UUID):
            raise FieldError(f"expected a UUID ({self.name}), got {_describe(value)}")
        return value


String: FieldType = _StringType()
# The invitation's `claimer_email` (a plain String on the wire): the reference stores it in a
# VARCHAR(255), so longer ones or NULs could never be stored by it either.
ClaimerEmail: FieldType = _StoredStringType("ClaimerEmail", 255)
Boolean: FieldType = _BooleanType()
Integer: FieldType = _IntegerType("Integer", _INT64_MIN, _INT64_MAX)
Index: FieldType = _IntegerType("Index", 0, _UINT64_MAX)
Size: FieldType = _IntegerType("Size", 0, _UINT64_MAX)
Version: FieldType = _IntegerType("Version", 0, _UINT64_MAX)
UnsignedInteger: FieldType = _IntegerType("UnsignedInteger", 0, _UINT64_MAX)
NonZeroInteger: FieldType = _IntegerType("NonZeroInteger", 1, _UINT64_MAX)
IntegerBetween1And100: FieldType = _IntegerType("IntegerBetween1And100", 1, 100)
DurationInSeconds: FieldType = _IntegerType("DurationInSeconds", 0, _INT64_MAX)
Float: FieldType = _FloatType()
Bytes: FieldType = _BytesType()
DateTime: FieldType = _DateTimeType()
VerifyKey: FieldType = _BytesType("VerifyKey", 32)
PublicKey: FieldType = _BytesType("PublicKey", 32)
HashDigest: FieldType = _BytesType("HashDigest", 32)
SequesterVerifyKeyDer: FieldType = _BytesType("SequesterVerifyKeyDer")
SequesterPublicKeyDer: FieldType = _BytesType("SequesterPublicKeyDer")

RealmID: FieldType = _UUIDType("RealmID")
VlobID: FieldType = _UUIDType("VlobID")
BlockID: FieldType = _UUIDType("BlockID")
ChunkID: FieldType = _UUIDType("ChunkID")
EntryID: FieldType = _UUIDType("EntryID")
InvitationToken: FieldType = _UUIDType("InvitationToken")
ShamirRevealToken: FieldType = _UUIDType("ShamirRevealToken")
EnrollmentID: FieldType = _UUIDType("EnrollmentID")
SequesterServiceID: FieldType = _UUIDType("SequesterServiceID")


def uuid_from_text(text: str) -> _uuid.UUID:
    """Parse a UUID id written as 32 hex digits (dashed form accepted too)."""
    if not isinstance(text, str):
        raise FieldError(f"expected a UUID string, got {_describe(text)}")
    try:
        return _uuid.UUID(hex=text)
    except ValueError:
        raise FieldError(f"invalid UUID: {_shown(text)}") from None


def uuid_to_text(value: _uuid.UUID) -> str:
    """Text form used in URLs, headers and logs: 32 lowercase hex digits."""
    return value.hex


# --- identifiers (docs/protocol.md#identifiers) -------------------------------

_ASCII_IDENTIFIER = re.compile(r"[A-Za-z0-9_\-]{1,32}")
# The reference server validates with Rust's regex crate, whose Unicode `\w` is
# letters, marks, decimal digits, letter numbers and connector punctuation plus
# the two join controls. Python's `\w` differs (it refuses marks, so most Indic
# words, and accepts other numerics such as "²"), hence this explicit table.
_WORD_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "Pc"})
_JOIN_CONTROLS = frozenset({"\u200c", "\u200d"})


def _is_identifier_char(char: str) -> bool:
    return (
        char == "-"
        or char in _JOIN_CONTROLS
        or unicodedata.category(char) in _WORD_CATEGORIES
    )


def _validate_identifier(kind: str, value: Any) -> str:
    if not isinstance(value, str):
        raise FieldError(f"{kind} must be a string, got {_describe(value)}")
    if _ASCII_IDENTIFIER.fullmatch(value):
        return value
    normalized = unicodedata.normalize("NFC", value)
    if (
        not 1 <= len(normalized) <= 32
        or len(normalized.encode("utf-8")) > 32
        or not all(_is_identifier_char(char) for char in normalized)
    ):
        raise FieldError(f"invalid {kind}: {_shown(value)}")
    return normalized


def validate_organization_id(value: Any) -> str:
    return _validate_identifier("OrganizationID", value)


def validate_user_id(value: Any) -> str:
    return _validate_identifier("UserID", value)


def validate_device_name(value: Any) -> str:
    return _validate_identifier("DeviceName", value)


def split_device_id(device_id: str) -> tuple[str, str]:
    """`alice@dev1` -> (`alice`, `dev1`); the device id must already be valid."""
    user_id, _, device_name = device_id.partition("@")
    return user_id, device_name


def validate_device_id(value: Any) -> str:
    if not isinstance(value, str):
        raise FieldError(f"DeviceID must be a string, got {_describe(value)}")
    user_id, separator, device_name = value.partition("@")
    if not separator:
        raise FieldError(f"invalid DeviceID (expected user@device): {_shown(value)}")
    try:
        return f"{validate_user_id(user_id)}@{validate_device_name(device_name)}"
    except FieldError:
        raise FieldError(f"invalid DeviceID: {_shown(value)}") from None


def validate_device_label(value: Any) -> str:
    if not isinstance(value, str):
        raise FieldError(f"DeviceLabel must be a string, got {_describe(value)}")
    normalized = unicodedata.normalize("NFC", value)
    # NUL: PostgreSQL's text cannot store it (the reference's database refuses it too).
    if not normalized or "\n" in normalized or "\x00" in normalized or len(normalized.encode("utf-8")) > 255:
        raise FieldError(f"invalid DeviceLabel: {_shown(value)}")
    return normalized


class _IdentifierType(FieldType):
    def __init__(self, name: str, validator: Any) -> None:
        self.name = name
        self._validator = validator

    def decode(self, value: Any) -> str:
        return self._validator(value)


OrganizationID: FieldType = _IdentifierType("OrganizationID", validate_organization_id)
UserID: FieldType = _IdentifierType("UserID", validate_user_id)
DeviceName: FieldType = _IdentifierType("DeviceName", validate_device_name)
DeviceID: FieldType = _IdentifierType("DeviceID", validate_device_id)
DeviceLabel: FieldType = _IdentifierType("DeviceLabel", validate_device_label)


# --- human handle ---------------------------------------------------------------

_EMAIL_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
_EMAIL_PATTERN = re.compile(
    rf"(?:{_EMAIL_ATOM}(?:\.{_EMAIL_ATOM})*|\"(?:[^\"\\\r\n]|\\.)*\")"
    r"@"
    r"(?:[\w\-]+(?:\.[\w\-]+)*|\[[^\[\]\\\s]+\])"
)
_HUMAN_LABEL_FORBIDDEN = frozenset('<>@,:;\\"[]')


def _validate_email(email: str) -> str:
    normalized = unicodedata.normalize("NFC", email)
    if not 0 < len(normalized.encode("utf-8")) < 255:
        raise FieldError("invalid e-mail address: bad length")
    has_control_char = any(
        unicodedata.category(char) == "Cc" or (char.isspace() and char != " ") for char in normalized
    )
    if has_control_char or not _EMAIL_PATTERN.fullmatch(normalized):
        raise FieldError(f"invalid e-mail address: {_shown(email)}")
    return normalized


def _validate_human_label(label: str) -> str:
    normalized = unicodedata.normalize("NFC", label)
    if not 0 < len(normalized.encode("utf-8")) < 255:
        raise FieldError("invalid human handle label: bad length")
    # NUL: PostgreSQL's text cannot store it (the reference's database refuses it too).
    if "\x00" in normalized or any(char in _HUMAN_LABEL_FORBIDDEN for char in normalized):
        raise FieldError(f"invalid human handle label: {_shown(label)}")
    return normalized


@dataclass(frozen=True, eq=False)
class HumanHandle:
    """`[email, label]`; validated on construction. Equality is by e-mail only."""

    email: str
    label: str

    def __post_init__(self) -> None:
        if not isinstance(self.email, str) or not isinstance(self.label, str):
            raise FieldError("human handle e-mail and label must be strings")
        object.__setattr__(self, "email", _validate_email(self.email))
        object.__setattr__(self, "label", _validate_human_label(self.label))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HumanHandle):
            return NotImplemented
        return self.email == other.email

    def __hash__(self) -> int:
        return hash(self.email)

    def __str__(self) -> str:
        return f"{self.label} <{self.email}>"

    def to_wire(self) -> list[str]:
        return [self.email, self.label]


class _HumanHandleType(FieldType):
    name = "HumanHandle"

    def decode(self, value: Any) -> HumanHandle:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise FieldError("HumanHandle must be an array [email, label]")
        email, label = value
        return HumanHandle(email, label)

    def encode(self, value: Any) -> list[str]:
        if isinstance(value, HumanHandle):
            return value.to_wire()
        email, label = value
        return [email, label]


HumanHandleField: FieldType = _HumanHandleType()


# --- string enums -----------------------------------------------------------------


class UserProfile(enum.StrEnum):
    ADMIN = "ADMIN"
    STANDARD = "STANDARD"
    OUTSIDER = "OUTSIDER"


class RealmRole(enum.StrEnum):
    OWNER = "OWNER"
    MANAGER = "MANAGER"
    CONTRIBUTOR = "CONTRIBUTOR"
    READER = "READER"


class InvitationType(enum.StrEnum):
    USER = "USER"
    DEVICE = "DEVICE"
    SHAMIR_RECOVERY = "SHAMIR_RECOVERY"


class InvitationStatus(enum.StrEnum):
    IDLE = "IDLE"
    READY = "READY"
    DELETED = "DELETED"


class InvitationDeletedReason(enum.StrEnum):
    FINISHED = "FINISHED"
    CANCELLED = "CANCELLED"
    ROTTEN = "ROTTEN"


class InvitationEmailSentStatus(enum.StrEnum):
    SUCCESS = "SUCCESS"
    NOT_AVAILABLE = "NOT_AVAILABLE"
    BAD_RECIPIENT = "BAD_RECIPIENT"


class MaintenanceType(enum.StrEnum):
    REENCRYPTION = "REENCRYPTION"
    GARBAGE_COLLECTION = "GARBAGE_COLLECTION"


class RealmArchivingConfigurationType(enum.StrEnum):
    AVAILABLE = "AVAILABLE"
    ARCHIVED = "ARCHIVED"
    DELETION_PLANNED = "DELETION_PLANNED"


_Enum = TypeVar("_Enum", bound=enum.StrEnum)


class EnumField(FieldType, Generic[_Enum]):
    """A msgpack str restricted to the values of a StrEnum; decodes to the member."""

    def __init__(self, enum_class: type[_Enum]) -> None:
        self.enum_class = enum_class
        self.name = enum_class.__name__
        self._members: Mapping[str, _Enum] = {member.value: member for member in enum_class}

    def decode(self, value: Any) -> _Enum:
        if not isinstance(value, str):
            raise FieldError(f"{self.name} must be a string, got {_describe(value)}")
        member = self._members.get(value)
        if member is None:
            raise FieldError(f"invalid {self.name}: {_shown(value)}")
        return member

    def encode(self, value: Any) -> str:
        return self.enum_class(value).value


UserProfileField = EnumField(UserProfile)
RealmRoleField = EnumField(RealmRole)
InvitationTypeField = EnumField(InvitationType)
InvitationStatusField = EnumField(InvitationStatus)
InvitationDeletedReasonField = EnumField(InvitationDeletedReason)
InvitationEmailSentStatusField = EnumField(InvitationEmailSentStatus)
MaintenanceTypeField = EnumField(MaintenanceType)
_RealmArchivingConfigurationTypeField = EnumField(RealmArchivingConfigurationType)


# --- realm archiving configuration ------------------------------------------------


@dataclass(frozen=True)
class RealmArchivingConfiguration:
    type: RealmArchivingConfigurationType
    deletion_date: _datetime.datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", RealmArchivingConfigurationType(self.type))
        planned = self.type is RealmArchivingConfigurationType.DELETION_PLANNED
        if planned != (self.deletion_date is not None):
            raise FieldError("deletion_date is required for DELETION_PLANNED and only for it")

    @classmethod
    def available(cls) -> RealmArchivingConfiguration:
        return cls(RealmArchivingConfigurationType.AVAILABLE)

    @classmethod
    def archived(cls) -> RealmArchivingConfiguration:
        return cls(RealmArchivingConfigurationType.ARCHIVED)

    @classmethod
    def deletion_planned(cls, deletion_date: _datetime.datetime) -> RealmArchivingConfiguration:
        return cls(RealmArchivingConfigurationType.DELETION_PLANNED, deletion_date)

    def to_wire(self) -> dict[str, Any]:
        if self.deletion_date is None:
            return {"type": self.type.value}
        return {"type": self.type.value, "deletion_date": self.deletion_date}


class _RealmArchivingConfigurationType(FieldType):
    name = "RealmArchivingConfiguration"

    def decode(self, value: Any) -> RealmArchivingConfiguration:
        if not isinstance(value, dict):
            raise FieldError("RealmArchivingConfiguration must be a map")
        if "type" not in value:
            raise FieldError("RealmArchivingConfiguration: missing `type`")
        archiving_type = _RealmArchivingConfigurationTypeField.decode(value["type"])
        if archiving_type is not RealmArchivingConfigurationType.DELETION_PLANNED:
            return RealmArchivingConfiguration(archiving_type)
        if "deletion_date" not in value:
            raise FieldError("RealmArchivingConfiguration: missing `deletion_date`")
        return RealmArchivingConfiguration(archiving_type, DateTime.decode(value["deletion_date"]))

    def encode(self, value: Any) -> dict[str, Any]:
        return value.to_wire()


RealmArchivingConfigurationField: FieldType = _RealmArchivingConfigurationType()


# --- composites ---------------------------------------------------------------------

_VALUE_CLASS_FIELDS: dict[type, FieldType] = {
    HumanHandle: HumanHandleField,
    RealmArchivingConfiguration: RealmArchivingConfigurationField,
}


def as_field_type(spec: Any) -> FieldType:
    """Accept a FieldType, a StrEnum class or a value class (HumanHandle...)."""
    if isinstance(spec, FieldType):
        return spec
    if isinstance(spec, type):
        if issubclass(spec, enum.StrEnum):
            return EnumField(spec)
        if spec in _VALUE_CLASS_FIELDS:
            return _VALUE_CLASS_FIELDS[spec]
    raise TypeError(f"not a field type: {spec!r}")


class Optional(FieldType):
    """`nil` or a T (RequiredOption/Option: the key itself must still be present)."""

    def __init__(self, inner: Any) -> None:
        self.inner = as_field_type(inner)
        self.name = f"Optional<{self.inner.name}>"

    def decode(self, value: Any) -> Any:
        if value is None:
            return None
        return self.inner.decode(value)

    def encode(self, value: Any) -> Any:
        if value is None:
            return None
        return self.inner.encode(value)


class List(FieldType):
    def __init__(self, item: Any) -> None:
        self.item = as_field_type(item)
        self.name = f"List<{self.item.name}>"

    def decode(self, value: Any) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            raise FieldError(f"expected an array, got {_describe(value)}")
        decoded = []
        for position, item in enumerate(value):
            try:
                decoded.append(self.item.decode(item))
            except FieldError as exc:
                raise FieldError(f"item {position}: {exc}") from None
        return decoded

    def encode(self, value: Any) -> list[Any]:
        return [self.item.encode(item) for item in value]


class Map(FieldType):
    def __init__(self, key: Any, value: Any) -> None:
        self.key = as_field_type(key)
        self.value = as_field_type(value)
        self.name = f"Map<{self.key.name}, {self.value.name}>"

    def decode(self, value: Any) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise FieldError(f"expected a map, got {_describe(value)}")
        decoded = {}
        for raw_key, raw_value in value.items():
            try:
                key = self.key.decode(raw_key)
            except FieldError as exc:
                raise FieldError(f"key {_shown(raw_key)}: {exc}") from None
            try:
                decoded[key] = self.value.decode(raw_value)
            except FieldError as exc:
                raise FieldError(f"value of {_shown(raw_key)}: {exc}") from None
        return decoded

    def encode(self, value: Any) -> dict[Any, Any]:
        return {self.key.encode(key): self.value.encode(item) for key, item in value.items()}


class Tuple(FieldType):
    def __init__(self, *items: Any) -> None:
        self.items = tuple(as_field_type(item) for item in items)
        self.name = "(" + ", ".join(item.name for item in self.items) + ")"

    def decode(self, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, (list, tuple)) or len(value) != len(self.items):
            raise FieldError(f"expected an array of {len(self.items)} items")
        decoded = []
        for position, (item_type, item) in enumerate(zip(self.items, value)):
            try:
                decoded.append(item_type.decode(item))
            except FieldError as exc:
                raise FieldError(f"item {position}: {exc}") from None
        return tuple(decoded)

    def encode(self, value: Any) -> list[Any]:
        return [item_type.encode(item) for item_type, item in zip(self.items, value)]


class Struct(FieldType):
    """A nested map with fixed fields; decodes to a dict (unknown keys dropped)."""

    def __init__(self, fields: Mapping[str, Any], name: str = "Struct") -> None:
        self.fields = {key: as_field_type(field) for key, field in fields.items()}
        self.name = name

    def decode(self, value: Any) -> dict[str, Any]:
        return decode_request(self.fields, value)

    def encode(self, value: Mapping[str, Any]) -> dict[str, Any]:
        return encode_fields(self.fields, value)


ActiveUsersLimit: FieldType = Optional(UnsignedInteger)
ReencryptionBatchEntry: FieldType = Struct(
    {"vlob_id": VlobID, "version": Version, "blob": Bytes}, name="ReencryptionBatchEntry"
)
ShamirRecoverySetup: FieldType = Struct(
    {
        "ciphered_data": Bytes,
        "reveal_token": ShamirRevealToken,
        "brief": Bytes,
        "shares": List(Bytes),
    },
    name="ShamirRecoverySetup",
)
UsersPerProfileDetailItem: FieldType = Struct(
    {"profile": UserProfileField, "active": Size, "revoked": Size},
    name="UsersPerProfileDetailItem",
)


class Introduced(FieldType):
    """A field added in a minor API revision (the schemas' `introduced_in`, one version per major).

    Clients older than that revision omit the key, which then decodes to `default` (nil). As in the
    reference, whose decoders treat these keys as optional whoever sends them, an absent key is not
    an error for a newer client either. Replies keep such fields for every peer: the reference
    emits them whatever the client's version, and older clients ignore keys they do not know.
    """

    def __init__(self, inner: Any, *since: str, default: Any = None) -> None:
        self.inner = as_field_type(inner)
        self.since = {int(major): (int(major), int(minor)) for major, _, minor in (v.partition(".") for v in since)}
        self.default = default
        self.name = self.inner.name

    def decode(self, value: Any) -> Any:
        return self.inner.decode(value)

    def encode(self, value: Any) -> Any:
        return self.inner.encode(value)


def decode_request(spec: Mapping[str, Any], raw: Any) -> dict[str, Any]:
    """Decode the fields named in `spec` from the map `raw`; other keys are ignored."""
    if not isinstance(raw, dict):
        raise FieldError(f"expected a map, got {_describe(raw)}")
    decoded: dict[str, Any] = {}
    for field_name, field_spec in spec.items():
        if field_name not in raw:
            if isinstance(field_spec, Introduced):
                decoded[field_name] = field_spec.default
                continue
            raise FieldError(f"missing field `{field_name}`")
        try:
            decoded[field_name] = as_field_type(field_spec).decode(raw[field_name])
        except FieldError as exc:
            raise FieldError(f"invalid field `{field_name}`: {exc}") from None
    return decoded


def decode_command_request(spec: Any, raw: Any) -> dict[str, Any]:
    """A command's request map decoded by its registered spec (a field map, or a FieldType for
    flattened unions and optional keys), for /ws and the HTTP routes alike.

    Only FieldError leaves: an input making a field type fail any other way is still a bad input
    (answered `bad_message`), and a bug of that field type (logged with its traceback)."""
    try:
        if isinstance(spec, FieldType):
            return spec.decode(raw)
        return decode_request(spec, raw)
    except FieldError:
        raise
    except Exception:
        _logger.exception("Field decoding crashed")
        raise FieldError("invalid request") from None


def encode_fields(spec: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of `decode_request`, in spec order."""
    return {
        field_name: as_field_type(field_spec).encode(values[field_name])
        for field_name, field_spec in spec.items()
    }
