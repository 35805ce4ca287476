from __future__ import annotations

import dataclasses
import datetime
import uuid
import zlib
from typing import Any, Callable

import pytest
from nacl.signing import SigningKey

from protocol import certificates, codec, types
from protocol.certificates import InvalidCertification
from protocol.types import HumanHandle, RealmArchivingConfiguration, RealmRole, UserProfile
from tests.testkit import certs

UTC = datetime.timezone.utc
NOW = datetime.datetime(2021, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
REALM_ID = uuid.UUID("a0000000-0000-0000-0000-000000000001")


@pytest.fixture(scope="module")
def author() -> certs.TestDevice:
    return certs.TestDevice.generate("CoolOrg", "alice", "dev1", profile="ADMIN")


@pytest.fixture(scope="module")
def root_key() -> SigningKey:
    return SigningKey.generate()


def _user_map(**overrides: Any) -> dict[str, Any]:
    cert_map = certs.user_certificate_map(
        author="alice@dev1",
        timestamp=NOW,
        user_id="bob",
        human_handle=("bob@example.com", "Bob"),
        public_key=b"p" * 32,
        profile="STANDARD",
    )
    cert_map.update(overrides)
    return cert_map


# --- every certificate type loads ----------------------------------------------------------


def _all_certificates(author: certs.TestDevice) -> list[tuple[type, dict[str, Any], Any]]:
    return [
        (
            certificates.UserCertificate,
            _user_map(),
            certificates.UserCertificate(
                author="alice@dev1",
                timestamp=NOW,
                user_id="bob",
                human_handle=HumanHandle("bob@example.com", "Bob"),
                public_key=b"p" * 32,
                profile=UserProfile.STANDARD,
                is_admin=False,
            ),
        ),
        (
            certificates.DeviceCertificate,
            certs.device_certificate_map(
                author="alice@dev1",
                timestamp=NOW,
                device_id="bob@laptop",
                device_label="Bob's laptop",
                verify_key=b"v" * 32,
            ),
            certificates.DeviceCertificate(
                author="alice@dev1",
                timestamp=NOW,
                device_id="bob@laptop",
                device_label="Bob's laptop",
                verify_key=b"v" * 32,
            ),
        ),
        (
            certificates.RevokedUserCertificate,
            certs.revoked_user_certificate_map(author="alice@dev1", timestamp=NOW, user_id="bob"),
            certificates.RevokedUserCertificate(author="alice@dev1", timestamp=NOW, user_id="bob"),
        ),
        (
            certificates.RealmRoleCertificate,
            certs.realm_role_certificate_map(
                author="alice@dev1", timestamp=NOW, realm_id=REALM_ID, user_id="bob", role=None
            ),
            certificates.RealmRoleCertificate(
                author="alice@dev1", timestamp=NOW, realm_id=REALM_ID, user_id="bob", role=None
            ),
        ),
        (
            certificates.RealmArchivingCertificate,
            certs.realm_archiving_certificate_map(
                author="alice@dev1",
                timestamp=NOW,
                realm_id=REALM_ID,
                configuration=RealmArchivingConfiguration.deletion_planned(NOW),
            ),
            certificates.RealmArchivingCertificate(
                author="alice@dev1",
                timestamp=NOW,
                realm_id=REALM_ID,
                configuration=RealmArchivingConfiguration.deletion_planned(NOW),
            ),
        ),
        (
            certificates.SequesterAuthorityCertificate,
            certs.sequester_authority_certificate_map(timestamp=NOW, verify_key_der=b"0\x82der"),
            certificates.SequesterAuthorityCertificate(author=None, timestamp=NOW, verify_key_der=b"0\x82der"),
        ),
        (
            certificates.ShamirRecoveryBriefCertificate,
            certs.shamir_recovery_brief_certificate_map(
                author="alice@dev1", timestamp=NOW, threshold=2, per_recipient_shares={"bob": 1, "carl": 2}
            ),
            certificates.ShamirRecoveryBriefCertificate(
                author="alice@dev1", timestamp=NOW, threshold=2, per_recipient_shares={"bob": 1, "carl": 2}
            ),
        ),
        (
            certificates.ShamirRecoveryShareCertificate,
            certs.shamir_recovery_share_certificate_map(
                author="alice@dev1", timestamp=NOW, recipient="bob", ciphered_share=b"share"
            ),
            certificates.ShamirRecoveryShareCertificate(
                author="alice@dev1", timestamp=NOW, recipient="bob", ciphered_share=b"share"
            ),
        ),
    ]


CERTIFICATE_CASES = [pytest.param(index, id=f"case{index}") for index in range(8)]


@pytest.mark.parametrize("index", CERTIFICATE_CASES)
@pytest.mark.parametrize("compression", ["stored", "deflate"])
def test_certificates_load(author: certs.TestDevice, index: int, compression: certs.Compression) -> None:
    cert_class, cert_map, expected = _all_certificates(author)[index]
    signed = certs.sign_certificate(author.signing_key, cert_map, compression=compression)
    assert cert_class.verify_and_load(signed, author.verify_key) == expected
    assert cert_class.verify_and_load(signed, author.signing_key.verify_key) == expected
    assert cert_class.unsecure_load(signed) == expected
    # What a PostgreSQL bytea column gives back.
    assert cert_class.verify_and_load(memoryview(signed), memoryview(author.verify_key)) == expected
    assert cert_class.unsecure_load(memoryview(signed)) == expected
    assert cert_class.TYPE == cert_map["type"]


@pytest.mark.parametrize("index", CERTIFICATE_CASES)
def test_certificates_refuse_another_type(author: certs.TestDevice, index: int) -> None:
    cases = _all_certificates(author)
    cert_class, _, _ = cases[index]
    _, other_map, _ = cases[(index + 1) % len(cases)]
    signed = certs.sign_certificate(author.signing_key, other_map)
    with pytest.raises(InvalidCertification, match="Expected"):
        cert_class.verify_and_load(signed, author.verify_key)


@pytest.mark.parametrize("index", CERTIFICATE_CASES)
def test_certificates_refuse_a_missing_field(author: certs.TestDevice, index: int) -> None:
    cert_class, cert_map, _ = _all_certificates(author)[index]
    # Even where `author` may be nil, its key must be present.
    for missing in ("timestamp", "author"):
        truncated_map = {key: value for key, value in cert_map.items() if key != missing}
        signed = certs.sign_certificate(author.signing_key, truncated_map)
        with pytest.raises(InvalidCertification, match=missing):
            cert_class.verify_and_load(signed, author.verify_key)


# --- failure modes ---------------------------------------------------------------------------


def _signed_user_certificate(signer: certs.TestDevice, **overrides: Any) -> bytes:
    return certs.sign_certificate(signer.signing_key, _user_map(**overrides))


def test_wrong_key(author: certs.TestDevice) -> None:
    signed = _signed_user_certificate(author)
    with pytest.raises(InvalidCertification) as exc_info:
        certificates.UserCertificate.verify_and_load(signed, bytes(SigningKey.generate().verify_key))
    assert exc_info.value.reason == "Invalid signature"


def test_invalid_verify_key(author: certs.TestDevice) -> None:
    signed = _signed_user_certificate(author)
    with pytest.raises(InvalidCertification):
        certificates.UserCertificate.verify_and_load(signed, b"k" * 31)


@pytest.mark.parametrize("length", [0, 10, 63, 64, 100])
def test_truncated_blob(author: certs.TestDevice, length: int) -> None:
    signed = _signed_user_certificate(author)
    with pytest.raises(InvalidCertification):
        certificates.UserCertificate.verify_and_load(signed[:length], author.verify_key)


def test_unsecure_load_of_short_or_truncated_blobs(author: certs.TestDevice) -> None:
    signed = _signed_user_certificate(author)
    for truncated in (signed[:63], signed[:64], signed[:-5]):
        with pytest.raises(InvalidCertification):
            certificates.UserCertificate.unsecure_load(truncated)


def test_tampered_blob(author: certs.TestDevice) -> None:
    signed = bytearray(_signed_user_certificate(author))
    signed[-10] ^= 0x01
    with pytest.raises(InvalidCertification):
        certificates.UserCertificate.verify_and_load(bytes(signed), author.verify_key)


def _sign_raw(author: certs.TestDevice, message: bytes) -> bytes:
    return bytes(author.signing_key.sign(message))


def test_bad_zlib(author: certs.TestDevice) -> None:
    for message in (codec.packb(_user_map()), b"", b"\x78\x9c\x00garbage"):
        with pytest.raises(InvalidCertification, match="compressed"):
            certificates.UserCertificate.verify_and_load(_sign_raw(author, message), author.verify_key)


def test_trailing_bytes_after_zlib_stream(author: certs.TestDevice) -> None:
    message = zlib.compress(codec.packb(_user_map())) + b"extra"
    with pytest.raises(InvalidCertification):
        certificates.UserCertificate.verify_and_load(_sign_raw(author, message), author.verify_key)


def test_zlib_bomb(author: certs.TestDevice) -> None:
    message = zlib.compress(b"\x00" * 4_000_000)
    with pytest.raises(InvalidCertification, match="too big"):
        certificates.UserCertificate.verify_and_load(_sign_raw(author, message), author.verify_key)


@pytest.mark.parametrize(
    "payload",
    [b"\xc1", codec.packb([1, 2]), codec.packb("user_certificate"), codec.packb(_user_map()) + b"\x00"],
)
def test_bad_msgpack_payload(author: certs.TestDevice, payload: bytes) -> None:
    with pytest.raises(InvalidCertification):
        certificates.UserCertificate.verify_and_load(_sign_raw(author, zlib.compress(payload)), author.verify_key)


@pytest.mark.parametrize(
    "overrides",
    [
        {"user_id": "bob!"},
        {"author": "alice"},
        {"timestamp": 1614834367.890123},
        {"public_key": b"p" * 31},
        {"profile": "SUPERUSER"},
        {"is_admin": 1},
        {"human_handle": ["not an email", "Bob"]},
        {"type": "device_certificate"},
        {"type": None},
    ],
)
def test_bad_field(author: certs.TestDevice, overrides: dict[str, Any]) -> None:
    signed = _signed_user_certificate(author, **overrides)
    with pytest.raises(InvalidCertification):
        certificates.UserCertificate.verify_and_load(signed, author.verify_key)


def test_unknown_keys_are_ignored(author: certs.TestDevice) -> None:
    signed = _signed_user_certificate(author, future_field=[1, 2, 3])
    assert certificates.UserCertificate.verify_and_load(signed, author.verify_key).user_id == "bob"


def test_invalid_certification_carries_a_reason() -> None:
    error = InvalidCertification("because")
    assert error.reason == "because"
    assert str(error) == "because"


# --- legacy certificates --------------------------------------------------------------------------


@pytest.mark.parametrize(("is_admin", "profile"), [(True, UserProfile.ADMIN), (False, UserProfile.STANDARD)])
def test_legacy_user_certificate(author: certs.TestDevice, is_admin: bool, profile: UserProfile) -> None:
    cert_map = _user_map(is_admin=is_admin)
    del cert_map["human_handle"]
    del cert_map["profile"]
    signed = certs.sign_certificate(author.signing_key, cert_map)
    certificate = certificates.UserCertificate.verify_and_load(signed, author.verify_key)
    assert certificate.human_handle is None
    assert certificate.profile is profile
    assert certificate.is_admin is is_admin


def test_profile_takes_precedence_over_is_admin(author: certs.TestDevice) -> None:
    signed = _signed_user_certificate(author, is_admin=True, profile="OUTSIDER")
    assert certificates.UserCertificate.verify_and_load(signed, author.verify_key).profile is UserProfile.OUTSIDER


def test_legacy_user_certificate_still_needs_is_admin(author: certs.TestDevice) -> None:
    cert_map = _user_map()
    del cert_map["is_admin"]
    del cert_map["profile"]
    with pytest.raises(InvalidCertification, match="is_admin"):
        certificates.UserCertificate.verify_and_load(
            certs.sign_certificate(author.signing_key, cert_map), author.verify_key
        )


def test_legacy_device_certificate(author: certs.TestDevice) -> None:
    cert_map = certs.device_certificate_map(
        author=None, timestamp=NOW, device_id="alice@dev1", device_label="x", verify_key=author.verify_key
    )
    del cert_map["device_label"]
    signed = certs.sign_certificate(author.signing_key, cert_map)
    assert certificates.DeviceCertificate.verify_and_load(signed, author.verify_key).device_label is None


# --- redacted twins ----------------------------------------------------------------------------------


def test_redacted_twins(root_key: SigningKey) -> None:
    new_device = certs.TestDevice.generate("CoolOrg", "bob", "laptop", email="bob@example.com", label="Bob")
    blobs = certs.user_creation_certificates(root_key, new_device, NOW)
    verify_key = bytes(root_key.verify_key)
    user = certificates.UserCertificate.verify_and_load(blobs["user_certificate"], verify_key)
    redacted_user = certificates.UserCertificate.verify_and_load(blobs["redacted_user_certificate"], verify_key)
    device = certificates.DeviceCertificate.verify_and_load(blobs["device_certificate"], verify_key)
    redacted_device = certificates.DeviceCertificate.verify_and_load(
        blobs["redacted_device_certificate"], verify_key
    )
    assert user.human_handle == HumanHandle("bob@example.com", "Bob")
    assert redacted_user.human_handle is None
    assert device.device_label == "Device laptop"
    assert redacted_device.device_label is None

    assert redacted_user.is_redacted_twin_of(user)
    assert redacted_device.is_redacted_twin_of(device)
    assert certificates.redacted_matches(user, redacted_user, "human_handle")
    assert certificates.redacted_matches(device, redacted_device, "device_label")

    # The full certificate is not a redacted twin (its field is not None).
    assert not user.is_redacted_twin_of(user)
    assert not device.is_redacted_twin_of(device)
    # Any other difference breaks the twinship.
    one_microsecond_later = NOW + datetime.timedelta(microseconds=1)
    assert not dataclasses.replace(redacted_user, timestamp=one_microsecond_later).is_redacted_twin_of(user)
    assert not dataclasses.replace(redacted_user, profile=UserProfile.ADMIN).is_redacted_twin_of(user)
    assert not dataclasses.replace(redacted_user, public_key=b"x" * 32).is_redacted_twin_of(user)
    assert not dataclasses.replace(redacted_device, verify_key=b"x" * 32).is_redacted_twin_of(device)
    assert not dataclasses.replace(redacted_device, device_id="bob@other").is_redacted_twin_of(device)
    assert not certificates.redacted_matches(user, redacted_device, "human_handle")


# --- testkit -----------------------------------------------------------------------------------------


def test_bootstrap_material() -> None:
    material = certs.bootstrap_material("CoolOrg", "alice", "dev1", "alice@example.com", "Alice", timestamp=NOW)
    root_signing_key, device, fields = material
    assert set(fields) == {
        "root_verify_key",
        "user_certificate",
        "device_certificate",
        "redacted_user_certificate",
        "redacted_device_certificate",
        "sequester_authority_certificate",
    }
    assert fields["sequester_authority_certificate"] is None
    assert fields["root_verify_key"] == bytes(root_signing_key.verify_key) == device.root_verify_key
    root_verify_key = fields["root_verify_key"]
    user = certificates.UserCertificate.verify_and_load(fields["user_certificate"], root_verify_key)
    assert user == certificates.UserCertificate(
        author=None,
        timestamp=NOW,
        user_id="alice",
        human_handle=HumanHandle("alice@example.com", "Alice"),
        public_key=device.public_key,
        profile=UserProfile.ADMIN,
        is_admin=True,
    )
    device_certificate = certificates.DeviceCertificate.verify_and_load(fields["device_certificate"], root_verify_key)
    assert device_certificate.device_id == device.device_id == "alice@dev1"
    assert device_certificate.verify_key == device.verify_key
    assert device_certificate.timestamp == user.timestamp
    redacted_user = certificates.UserCertificate.verify_and_load(fields["redacted_user_certificate"], root_verify_key)
    redacted_device = certificates.DeviceCertificate.verify_and_load(
        fields["redacted_device_certificate"], root_verify_key
    )
    assert redacted_user.is_redacted_twin_of(user)
    assert redacted_device.is_redacted_twin_of(device_certificate)
    request = codec.unpackb(codec.packb({"cmd": "organization_bootstrap", "bootstrap_token": "t", **fields}))
    assert request["user_certificate"] == fields["user_certificate"]


def test_device_creation_by_a_device(author: certs.TestDevice) -> None:
    new_device = author.new_device("dev2")
    assert new_device.user_id == author.user_id
    assert new_device.public_key == author.public_key
    assert new_device.verify_key != author.verify_key
    blobs = certs.device_creation_certificates(author, new_device, NOW)
    device = certificates.DeviceCertificate.verify_and_load(blobs["device_certificate"], author.verify_key)
    assert device.author == "alice@dev1"
    assert device.device_id == "alice@dev2"
    assert device.device_label == "Device dev2"


def test_testkit_builders_sign_with_given_key(author: certs.TestDevice) -> None:
    builders: list[tuple[Callable[..., bytes], type, dict[str, Any]]] = [
        (
            certs.revoked_user_certificate,
            certificates.RevokedUserCertificate,
            dict(author=author.device_id, timestamp=NOW, user_id="bob"),
        ),
        (
            certs.realm_role_certificate,
            certificates.RealmRoleCertificate,
            dict(author=author.device_id, timestamp=NOW, realm_id=REALM_ID, user_id="bob", role=RealmRole.READER),
        ),
        (
            certs.realm_archiving_certificate,
            certificates.RealmArchivingCertificate,
            dict(author=author.device_id, timestamp=NOW, realm_id=REALM_ID, configuration={"type": "ARCHIVED"}),
        ),
        (
            certs.shamir_recovery_share_certificate,
            certificates.ShamirRecoveryShareCertificate,
            dict(author=author.device_id, timestamp=NOW, recipient="bob", ciphered_share=b"s"),
        ),
    ]
    for builder, cert_class, fields in builders:
        certificate = cert_class.verify_and_load(builder(author.signing_key, **fields), author.verify_key)
        assert certificate.author == author.device_id
        assert certificate.timestamp == NOW


def test_authenticated_answer_verifies(author: certs.TestDevice, root_key: SigningKey) -> None:
    device = dataclasses.replace(author, root_signing_key=root_key)
    challenge = bytes(48)
    answer = codec.unpackb(codec.packb(device.authenticated_answer(challenge)))
    fields = types.decode_request(
        {"organization_id": types.OrganizationID, "device_id": types.DeviceID, "rvk": types.VerifyKey}, answer
    )
    assert fields == {"organization_id": "CoolOrg", "device_id": "alice@dev1", "rvk": bytes(root_key.verify_key)}
    signed_message = certificates.verify_signed_blob(answer["answer"], device.verify_key)
    assert codec.unpackb(signed_message) == {"answer": challenge, "type": "signed_answer"}
