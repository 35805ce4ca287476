from __future__ import annotations

import datetime
import unicodedata
import uuid
from typing import Any

import pytest

from protocol import codec, types
from protocol.types import FieldError, HumanHandle, RealmArchivingConfiguration

UTC = datetime.timezone.utc
NOW = datetime.datetime(2020, 1, 1, tzinfo=UTC)

VALID_IDENTIFIERS = [
    "CoolOrg",
    "Org_2-b",
    "日本",
    "a",
    "a" * 32,
    "é" * 16,
    "966dc686b4914d0fb4f367188f40bac5",
    "-",
    "_",
    "हिन्दी",  # Devanagari vowel signs are combining marks
]
INVALID_IDENTIFIERS = [
    "",
    "a" * 33,
    "é" * 17,
    "日本日本日本日本日本日",  # 11 characters but 33 bytes
    "Cool.Org",
    "Cool Org",
    "alice@dev1",
    "hello!",
    ".",
    " ",
    "@",
    "!",
    "a\n",
    "a/b",
    "²",
]
NON_STRINGS = [None, 1, b"CoolOrg", ["CoolOrg"], True]


@pytest.mark.parametrize("value", VALID_IDENTIFIERS)
@pytest.mark.parametrize("field_type", [types.OrganizationID, types.UserID, types.DeviceName])
def test_valid_identifiers(field_type: types.FieldType, value: str) -> None:
    assert field_type.decode(value) == value


@pytest.mark.parametrize("value", INVALID_IDENTIFIERS + NON_STRINGS)
@pytest.mark.parametrize("field_type", [types.OrganizationID, types.UserID, types.DeviceName])
def test_invalid_identifiers(field_type: types.FieldType, value: Any) -> None:
    with pytest.raises(FieldError):
        field_type.decode(value)


def test_identifiers_are_nfc_normalised() -> None:
    decomposed = unicodedata.normalize("NFD", "é") * 16
    assert len(decomposed.encode("utf-8")) == 48
    assert types.OrganizationID.decode(decomposed) == "é" * 16
    assert types.validate_user_id(decomposed) == "é" * 16


def test_identifier_helpers() -> None:
    assert types.validate_organization_id("CoolOrg") == "CoolOrg"
    assert types.validate_user_id("alice") == "alice"
    assert types.validate_device_name("dev1") == "dev1"
    assert types.validate_device_id("alice@dev1") == "alice@dev1"
    assert types.validate_device_label("Alice's laptop") == "Alice's laptop"
    for helper in (types.validate_organization_id, types.validate_user_id, types.validate_device_id):
        with pytest.raises(FieldError):
            helper("not valid!")


@pytest.mark.parametrize("value", ["alice@dev1", "日本@端末", "a" * 32 + "@" + "b" * 32])
def test_valid_device_ids(value: str) -> None:
    assert types.DeviceID.decode(value) == value
    user_id, device_name = types.split_device_id(value)
    assert f"{user_id}@{device_name}" == value


@pytest.mark.parametrize(
    "value", ["alice", "alice@", "@dev1", "alice@dev1@x", "al ice@dev1", "a" * 33 + "@dev1", "", None, 1]
)
def test_invalid_device_ids(value: Any) -> None:
    with pytest.raises(FieldError):
        types.DeviceID.decode(value)


def test_device_id_is_normalised() -> None:
    decomposed = unicodedata.normalize("NFD", "é@é")
    assert types.DeviceID.decode(decomposed) == "é@é"


@pytest.mark.parametrize("value", ["My laptop", "a", "x" * 255, "é" * 127, "tab\tand\rcarriage"])
def test_valid_device_labels(value: str) -> None:
    assert types.DeviceLabel.decode(value) == value


@pytest.mark.parametrize("value", ["", "x" * 256, "é" * 128, "two\nlines", "trailing\n", None, b"x"])
def test_invalid_device_labels(value: Any) -> None:
    with pytest.raises(FieldError):
        types.DeviceLabel.decode(value)


# --- human handles ------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    [
        "alice@example.com",
        "bob+tag@ex-ample.org",
        "jean.dupont@example.fr",
        "josé@exämple.com",
        "zack@localhost",
        "o'brien@example.com",
        '"quoted local"@example.com',
        "a@[127.0.0.1]",
    ],
)
def test_valid_emails(email: str) -> None:
    assert HumanHandle(email, "Label").email == email


@pytest.mark.parametrize(
    "email",
    [
        "",
        "alice",
        "@example.com",
        "alice@",
        "a b@example.com",
        "alice@@example.com",
        "alice@example..com",
        ".alice@example.com",
        "alice.@example.com",
        "alice@.example.com",
        "alice@example.com.",
        "Alice <alice@example.com>",
        "alice@exa mple.com",
        "alice@example.com\n",
        "al\x00ice@example.com",
    ],
)
def test_invalid_emails(email: str) -> None:
    with pytest.raises(FieldError):
        HumanHandle(email, "Label")


def test_email_length_limit() -> None:
    domain = "@example.com"
    assert HumanHandle("a" * (254 - len(domain)) + domain, "Label")
    with pytest.raises(FieldError):
        HumanHandle("a" * (255 - len(domain)) + domain, "Label")


@pytest.mark.parametrize("char", list('<>@,:;\\"[]'))
def test_human_label_forbidden_characters(char: str) -> None:
    with pytest.raises(FieldError):
        HumanHandle("alice@example.com", f"Al{char}ice")


def test_human_label_length() -> None:
    assert HumanHandle("alice@example.com", "x" * 254).label == "x" * 254
    for label in ("", "x" * 255):
        with pytest.raises(FieldError):
            HumanHandle("alice@example.com", label)


def test_human_handle_equality_is_by_email() -> None:
    assert HumanHandle("alice@example.com", "Alice") == HumanHandle("alice@example.com", "Other")
    assert HumanHandle("alice@example.com", "Alice") != HumanHandle("bob@example.com", "Alice")
    assert len({HumanHandle("alice@example.com", "A"), HumanHandle("alice@example.com", "B")}) == 1
    assert HumanHandle("alice@example.com", "Alice") != ["alice@example.com", "Alice"]


def test_human_handle_wire_form() -> None:
    handle = types.HumanHandleField.decode(["alice@example.com", "Alice"])
    assert handle == HumanHandle("alice@example.com", "Alice")
    assert handle.label == "Alice"
    assert handle.to_wire() == ["alice@example.com", "Alice"]
    assert types.HumanHandleField.encode(handle) == ["alice@example.com", "Alice"]
    assert codec.packb(handle) == codec.packb(["alice@example.com", "Alice"])
    assert str(handle) == "Alice <alice@example.com>"


def test_human_handle_is_nfc_normalised() -> None:
    handle = HumanHandle(unicodedata.normalize("NFD", "josé@example.com"), unicodedata.normalize("NFD", "José"))
    assert handle.email == "josé@example.com"
    assert handle.label == "José"


@pytest.mark.parametrize(
    "value",
    [None, "alice@example.com", ["alice@example.com"], ["a@b.c", "A", "x"], [1, "A"], ["a@b.c", None]],
)
def test_invalid_human_handle_shapes(value: Any) -> None:
    with pytest.raises(FieldError):
        types.HumanHandleField.decode(value)


# --- scalars --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_type", "valid", "invalid"),
    [
        (types.String, ["", "x"], [None, b"x", 1]),
        (types.Boolean, [True, False], [0, 1, None, "true"]),
        (types.Integer, [0, -(2**63), 2**63 - 1], [2**63, -(2**63) - 1, True, 1.0, "1"]),
        (types.Index, [0, 2**64 - 1], [-1, 2**64, False]),
        (types.Size, [0, 5], [-1, True]),
        (types.Version, [0, 1], [-1, None]),
        (types.UnsignedInteger, [0, 2**64 - 1], [-1, 2**64]),
        (types.NonZeroInteger, [1, 2**64 - 1], [0, -1, True]),
        (types.IntegerBetween1And100, [1, 50, 100], [0, 101, True]),
        (types.DurationInSeconds, [0, 2592000], [-1, 1.5]),
        (types.Bytes, [b"", b"x" * 10], ["x", None, [1]]),
        (types.VerifyKey, [b"k" * 32], [b"k" * 31, b"k" * 33, "k" * 32]),
        (types.PublicKey, [b"k" * 32], [b"k" * 31, None]),
        (types.HashDigest, [b"h" * 32], [b"h" * 64]),
        (types.DateTime, [NOW], [1577836800.0, "2020-01-01", None]),
        (types.RealmID, [uuid.uuid4()], [uuid.uuid4().hex, uuid.uuid4().bytes, None]),
    ],
)
def test_scalar_types(field_type: types.FieldType, valid: list[Any], invalid: list[Any]) -> None:
    for value in valid:
        assert field_type.decode(value) == value
    for value in invalid:
        with pytest.raises(FieldError):
            field_type.decode(value)


def test_float_type() -> None:
    assert types.Float.decode(1.5) == 1.5
    decoded = types.Float.decode(300)
    assert decoded == 300.0 and type(decoded) is float
    for value in (True, "1.5", None):
        with pytest.raises(FieldError):
            types.Float.decode(value)
    assert type(types.Float.encode(300)) is float


@pytest.mark.parametrize(
    "field_type",
    [
        types.RealmID,
        types.VlobID,
        types.BlockID,
        types.ChunkID,
        types.EntryID,
        types.InvitationToken,
        types.ShamirRevealToken,
        types.EnrollmentID,
        types.SequesterServiceID,
    ],
)
def test_uuid_types(field_type: types.FieldType) -> None:
    value = uuid.uuid4()
    assert field_type.decode(value) is value
    with pytest.raises(FieldError):
        field_type.decode(str(value))


def test_uuid_text_forms() -> None:
    token = uuid.UUID("d864b93d-ed26-4aae-9ae5-83fd3d40c45a")
    assert types.uuid_to_text(token) == "d864b93ded264aae9ae583fd3d40c45a"
    assert types.uuid_from_text("d864b93ded264aae9ae583fd3d40c45a") == token
    assert types.uuid_from_text("d864b93d-ed26-4aae-9ae5-83fd3d40c45a") == token
    for text in ("", "nope", "d864b93ded264aae9ae583fd3d40c45", None):
        with pytest.raises(FieldError):
            types.uuid_from_text(text)  # type: ignore[arg-type]


# --- enums ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_type", "enum_class", "values"),
    [
        (types.UserProfileField, types.UserProfile, ["ADMIN", "STANDARD", "OUTSIDER"]),
        (types.RealmRoleField, types.RealmRole, ["OWNER", "MANAGER", "CONTRIBUTOR", "READER"]),
        (types.InvitationTypeField, types.InvitationType, ["USER", "DEVICE", "SHAMIR_RECOVERY"]),
        (types.InvitationStatusField, types.InvitationStatus, ["IDLE", "READY", "DELETED"]),
        (
            types.InvitationDeletedReasonField,
            types.InvitationDeletedReason,
            ["FINISHED", "CANCELLED", "ROTTEN"],
        ),
        (
            types.InvitationEmailSentStatusField,
            types.InvitationEmailSentStatus,
            ["SUCCESS", "NOT_AVAILABLE", "BAD_RECIPIENT"],
        ),
        (types.MaintenanceTypeField, types.MaintenanceType, ["REENCRYPTION", "GARBAGE_COLLECTION"]),
    ],
)
def test_enum_fields(field_type: types.FieldType, enum_class: type, values: list[str]) -> None:
    assert [member.value for member in enum_class] == values
    for value in values:
        decoded = field_type.decode(value)
        assert decoded is enum_class(value)
        assert decoded == value
        assert field_type.encode(decoded) == value
        assert codec.packb(decoded) == codec.packb(value)
    for invalid in (values[0].lower(), "", None, 1, values[0].encode()):
        with pytest.raises(FieldError):
            field_type.decode(invalid)


def test_enum_classes_can_be_used_as_field_types() -> None:
    spec = {"profile": types.UserProfile, "role": types.Optional(types.RealmRole)}
    decoded = types.decode_request(spec, {"profile": "OUTSIDER", "role": None})
    assert decoded == {"profile": types.UserProfile.OUTSIDER, "role": None}
    assert types.as_field_type(HumanHandle) is types.HumanHandleField
    with pytest.raises(TypeError):
        types.as_field_type(int)


# --- realm archiving configuration ------------------------------------------------------------


def test_realm_archiving_configuration() -> None:
    field = types.RealmArchivingConfigurationField
    assert field.decode({"type": "AVAILABLE"}) == RealmArchivingConfiguration.available()
    assert field.decode({"type": "ARCHIVED"}) == RealmArchivingConfiguration.archived()
    planned = field.decode({"type": "DELETION_PLANNED", "deletion_date": NOW})
    assert planned == RealmArchivingConfiguration.deletion_planned(NOW)
    assert planned.type is types.RealmArchivingConfigurationType.DELETION_PLANNED
    assert planned.deletion_date == NOW
    # Only DELETION_PLANNED carries a date; elsewhere it is an ignored unknown key.
    assert field.decode({"type": "ARCHIVED", "deletion_date": NOW}).deletion_date is None
    assert planned.to_wire() == {"type": "DELETION_PLANNED", "deletion_date": NOW}
    assert RealmArchivingConfiguration.available().to_wire() == {"type": "AVAILABLE"}
    assert field.encode(planned) == planned.to_wire()
    assert codec.unpackb(codec.packb(planned)) == {"type": "DELETION_PLANNED", "deletion_date": NOW}


@pytest.mark.parametrize(
    "value",
    [
        None,
        "AVAILABLE",
        {},
        {"type": "available"},
        {"type": "DELETION_PLANNED"},
        {"type": "DELETION_PLANNED", "deletion_date": None},
        {"type": "DELETION_PLANNED", "deletion_date": 1577836800.0},
    ],
)
def test_invalid_realm_archiving_configurations(value: Any) -> None:
    with pytest.raises(FieldError):
        types.RealmArchivingConfigurationField.decode(value)


def test_realm_archiving_configuration_invariant() -> None:
    with pytest.raises(FieldError):
        RealmArchivingConfiguration(types.RealmArchivingConfigurationType.DELETION_PLANNED)
    with pytest.raises(FieldError):
        RealmArchivingConfiguration(types.RealmArchivingConfigurationType.AVAILABLE, NOW)


# --- composites --------------------------------------------------------------------------------


def test_optional() -> None:
    field = types.Optional(types.Bytes)
    assert field.decode(None) is None
    assert field.decode(b"x") == b"x"
    with pytest.raises(FieldError):
        field.decode("x")
    assert field.encode(None) is None
    assert types.Optional(types.HumanHandleField).encode(HumanHandle("a@b.c", "A")) == ["a@b.c", "A"]


def test_list() -> None:
    field = types.List(types.Bytes)
    assert field.decode([b"a", b"b"]) == [b"a", b"b"]
    assert field.decode([]) == []
    assert field.decode((b"a",)) == [b"a"]
    for invalid in (b"ab", [b"a", "b"], None, {b"a": 1}):
        with pytest.raises(FieldError):
            field.decode(invalid)


def test_map_with_uuid_int_and_str_keys() -> None:
    vlob_id = uuid.uuid4()
    assert types.Map(types.VlobID, types.Index).decode({vlob_id: 3}) == {vlob_id: 3}
    assert types.Map(types.Index, types.Bytes).decode({1: b"x"}) == {1: b"x"}
    assert types.Map(types.UserID, types.Bytes).decode({"alice": b"x"}) == {"alice": b"x"}
    with pytest.raises(FieldError):
        types.Map(types.VlobID, types.Index).decode({vlob_id.hex: 3})
    with pytest.raises(FieldError):
        types.Map(types.VlobID, types.Index).decode({vlob_id: -3})
    with pytest.raises(FieldError):
        types.Map(types.UserID, types.Bytes).decode([("alice", b"x")])


def test_tuple() -> None:
    field = types.Tuple(types.DateTime, types.DeviceID)
    assert field.decode([NOW, "alice@dev1"]) == (NOW, "alice@dev1")
    assert field.encode((NOW, "alice@dev1")) == [NOW, "alice@dev1"]
    for invalid in ([NOW], [NOW, "alice@dev1", 1], ["alice@dev1", NOW], None):
        with pytest.raises(FieldError):
            field.decode(invalid)
    versions = types.Map(types.Index, field)
    assert versions.decode({1: [NOW, "alice@dev1"]}) == {1: (NOW, "alice@dev1")}


def test_reencryption_batch_entry() -> None:
    vlob_id = uuid.uuid4()
    batch = types.List(types.ReencryptionBatchEntry)
    raw = [{"vlob_id": vlob_id, "version": 2, "blob": b"data", "extra": 1}]
    assert batch.decode(raw) == [{"vlob_id": vlob_id, "version": 2, "blob": b"data"}]
    with pytest.raises(FieldError, match="version"):
        batch.decode([{"vlob_id": vlob_id, "blob": b"data"}])
    with pytest.raises(FieldError):
        batch.decode([{"vlob_id": vlob_id, "version": 2, "blob": "data"}])


def test_shamir_recovery_setup() -> None:
    token = uuid.uuid4()
    raw = {"ciphered_data": b"c", "reveal_token": token, "brief": b"b", "shares": [b"s1", b"s2"]}
    field = types.Optional(types.ShamirRecoverySetup)
    assert field.decode(raw) == raw
    assert field.decode(None) is None
    with pytest.raises(FieldError):
        field.decode({**raw, "shares": b"s1"})


def test_struct_encode() -> None:
    field = types.UsersPerProfileDetailItem
    value = {"profile": types.UserProfile.ADMIN, "active": 1, "revoked": 0}
    assert field.encode(value) == {"profile": "ADMIN", "active": 1, "revoked": 0}
    assert field.decode({"profile": "ADMIN", "active": 1, "revoked": 0}) == value


# --- decode_request --------------------------------------------------------------------------------

VLOB_CREATE_SPEC = {
    "realm_id": types.RealmID,
    "encryption_revision": types.Index,
    "vlob_id": types.VlobID,
    "timestamp": types.DateTime,
    "blob": types.Bytes,
    "sequester_blob": types.Optional(types.Map(types.SequesterServiceID, types.Bytes)),
}


def _vlob_create_request() -> dict[str, Any]:
    return {
        "cmd": "vlob_create",
        "realm_id": uuid.uuid4(),
        "encryption_revision": 1,
        "vlob_id": uuid.uuid4(),
        "timestamp": NOW,
        "blob": b"foo",
        "sequester_blob": None,
        "unknown_key": "ignored",
    }


def test_decode_request_returns_spec_fields_only() -> None:
    raw = _vlob_create_request()
    decoded = types.decode_request(VLOB_CREATE_SPEC, raw)
    assert list(decoded) == list(VLOB_CREATE_SPEC)
    assert decoded == {key: raw[key] for key in VLOB_CREATE_SPEC}


def test_decode_request_missing_field_is_named() -> None:
    raw = _vlob_create_request()
    del raw["blob"]
    with pytest.raises(FieldError, match="blob"):
        types.decode_request(VLOB_CREATE_SPEC, raw)


def test_decode_request_required_option_key_must_be_present() -> None:
    raw = _vlob_create_request()
    del raw["sequester_blob"]
    with pytest.raises(FieldError, match="sequester_blob"):
        types.decode_request(VLOB_CREATE_SPEC, raw)


def test_decode_request_bad_type_is_named() -> None:
    raw = {**_vlob_create_request(), "encryption_revision": -1}
    with pytest.raises(FieldError, match="encryption_revision"):
        types.decode_request(VLOB_CREATE_SPEC, raw)


def test_decode_request_requires_a_map() -> None:
    with pytest.raises(FieldError):
        types.decode_request(VLOB_CREATE_SPEC, [1, 2])


def test_decode_request_from_wire_bytes() -> None:
    raw = _vlob_create_request()
    decoded = types.decode_request(VLOB_CREATE_SPEC, codec.unpackb(codec.packb(raw)))
    assert decoded["timestamp"] == NOW
    assert decoded["realm_id"] == raw["realm_id"]


def test_encode_fields() -> None:
    spec = {"human_handle": types.Optional(types.HumanHandleField), "profile": types.UserProfileField}
    values = {"human_handle": HumanHandle("a@b.c", "A"), "profile": types.UserProfile.STANDARD, "x": 1}
    assert types.encode_fields(spec, values) == {"human_handle": ["a@b.c", "A"], "profile": "STANDARD"}


def test_field_error_is_a_value_error() -> None:
    assert issubclass(FieldError, ValueError)
