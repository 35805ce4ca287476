"""docs/protocol.md#test-vectors: the bytes produced by the 2.17 client library must be
reproduced (encode) and understood (decode) byte for byte."""

from __future__ import annotations

import datetime
import uuid
import zlib

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

from protocol import certificates, codec, types
from protocol.types import HumanHandle, RealmRole, UserProfile
from tests.testkit import certs

TV1_CHALLENGE = bytes.fromhex(
    "86b16261636b656e645f74696d657374616d70d70141d782f840000000bc62616c6c7061726b5f63"
    "6c69656e745f6561726c795f6f6666736574cb4072c00000000000bb62616c6c7061726b5f636c69"
    "656e745f6c6174655f6f6666736574cb4074000000000000a96368616c6c656e6765c43000010203"
    "0405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b"
    "2c2d2e2fa968616e647368616b65a96368616c6c656e6765b6737570706f727465645f6170695f76"
    "657273696f6e739392010392020a920304"
)
TV2_SIGNED_ANSWER_PAYLOAD = bytes.fromhex(
    "82a6616e73776572c430000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d"
    "1e1f202122232425262728292a2b2c2d2e2fa474797065ad7369676e65645f616e73776572"
)
TV3_AUTHENTICATED_ANSWER = bytes.fromhex(
    "87a6616e73776572c48d11905b6268e906beba0e8c43c319820fc5b3c22aac0c613b47d8495768e8"
    "9bb61fb45c468086e60331a14bc9bae95795c53060ffaeef7cadb39cf0177f368f0782a6616e7377"
    "6572c430000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"
    "2425262728292a2b2c2d2e2fa474797065ad7369676e65645f616e73776572b2636c69656e745f61"
    "70695f76657273696f6e920304a96465766963655f6964aa616c6963654064657631a968616e6473"
    "68616b65a6616e73776572af6f7267616e697a6174696f6e5f6964a7436f6f6c4f7267a372766bc4"
    "200bbc346a57667c380120bd9c7fd7e51d2c5fdfea37cd2f5bf405b2c6bf6f2d78a474797065ad41"
    "555448454e54494341544544"
)
TV4_INVITED_ANSWER = bytes.fromhex(
    "86b2636c69656e745f6170695f76657273696f6e920304a968616e647368616b65a6616e73776572"
    "af696e7669746174696f6e5f74797065a6444556494345af6f7267616e697a6174696f6e5f6964a7"
    "436f6f6c4f7267a5746f6b656ed802d864b93ded264aae9ae583fd3d40c45aa474797065a7494e56"
    "49544544"
)
TV5_RESULT_OK = bytes.fromhex(
    "82a968616e647368616b65a6726573756c74a6726573756c74a26f6b"
)
TV5_RESULT_BAD_IDENTITY = bytes.fromhex(
    "83a968616e647368616b65a6726573756c74a468656c70bd496e76616c69642068616e647368616b"
    "6520696e666f726d6174696f6ea6726573756c74ac6261645f6964656e74697479"
)
TV6_USER_CERTIFICATE_PAYLOAD = bytes.fromhex(
    "88a474797065b0757365725f6365727469666963617465a6617574686f72c0a974696d657374616d"
    "70d70141d782f840000000a7757365725f6964a5616c696365ac68756d616e5f68616e646c6592b1"
    "616c696365406578616d706c652e636f6da5416c696365aa7075626c69635f6b6579c420358072d6"
    "365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254a869735f61646d696ec3a770"
    "726f66696c65a541444d494e"
)
TV6_SIGNED_USER_CERTIFICATE = bytes.fromhex(
    "d8a687eb4596adb055ac94c2671136ecc1e199e9819148c84273849154f97f3e7376b0efd6935d5e"
    "b9266e8360bb6bac31276a0f3f7663f8d0fafe057b090206789c01ac0053ff88a474797065b07573"
    "65725f6365727469666963617465a6617574686f72c0a974696d657374616d70d70141d782f84000"
    "0000a7757365725f6964a5616c696365ac68756d616e5f68616e646c6592b1616c69636540657861"
    "6d706c652e636f6da5416c696365aa7075626c69635f6b6579c420358072d6365880d1aeea329adf"
    "9121383851ed21a28e3b75e965d0d2cd166254a869735f61646d696ec3a770726f66696c65a54144"
    "4d494ec34e4c95"
)
TV7_REDACTED_DEVICE_CERTIFICATE_PAYLOAD = bytes.fromhex(
    "86a474797065b26465766963655f6365727469666963617465a6617574686f72c0a974696d657374"
    "616d70d70141d782f840000000a96465766963655f6964aa616c6963654064657631ac6465766963"
    "655f6c6162656cc0aa7665726966795f6b6579c42003a107bff3ce10be1d70dd18e74bc09967e4d6"
    "309ba50d5f1ddc8664125531b8"
)
TV8_REALM_ROLE_CERTIFICATE_PAYLOAD = bytes.fromhex(
    "86a474797065b67265616c6d5f726f6c655f6365727469666963617465a6617574686f72aa616c69"
    "63654064657631a974696d657374616d70d70141d782f840000000a87265616c6d5f6964d802a000"
    "0000000000000000000000000001a7757365725f6964a5616c696365a4726f6c65a54f574e4552"
)
TV9_VLOB_CREATE_REQUEST = bytes.fromhex(
    "87a3636d64ab766c6f625f637265617465a4626c6f62c403666f6fb3656e6372797074696f6e5f72"
    "65766973696f6e01a87265616c6d5f6964d802a0000000000000000000000000000001ae73657175"
    "65737465725f626c6f62c0a974696d657374616d70d70141d782f840000000a7766c6f625f6964d8"
    "02b0000000000000000000000000000002"
)
TV10_BAD_TIMESTAMP_REPLY = bytes.fromhex(
    "86a6737461747573ad6261645f74696d657374616d70b16261636b656e645f74696d657374616d70"
    "d70141d782f840000000bc62616c6c7061726b5f636c69656e745f6561726c795f6f6666736574cb"
    "4072c00000000000bb62616c6c7061726b5f636c69656e745f6c6174655f6f6666736574cb407400"
    "0000000000b0636c69656e745f74696d657374616d70d70141d782f4bc000000a6726561736f6ec0"
)
TV11_EVENTS_LISTEN_REPLY = bytes.fromhex(
    "86a6737461747573a26f6ba56576656e74b37265616c6d2e766c6f62735f75706461746564aa6368"
    "65636b706f696e7403a87265616c6d5f6964d802a0000000000000000000000000000001a6737263"
    "5f6964d802b0000000000000000000000000000002ab7372635f76657273696f6e02"
)
TV2_SIGNATURE = TV3_AUTHENTICATED_ANSWER[10 : 10 + 64]
TV10_OK_REPLY = bytes.fromhex("81a6737461747573a26f6b")
TV12_UNKNOWN_COMMAND = bytes.fromhex(
    "82a6737461747573af756e6b6e6f776e5f636f6d6d616e64a6726561736f6eaf556e6b6e6f776e20636f6d6d616e64"
)
TV12_INVALID_MSG_FORMAT = bytes.fromhex(
    "82a6737461747573b2696e76616c69645f6d73675f666f726d6174a6726561736f6eb6496e76616c6964206d6573"
    "7361676520666f726d6174"
)
TV12_NO_EVENTS = bytes.fromhex("81a6737461747573a96e6f5f6576656e7473")
TV12_NOT_FOUND = bytes.fromhex("82a6737461747573a96e6f745f666f756e64a6726561736f6ec0")

CHALLENGE = bytes(range(48))
TIMESTAMP = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
CLIENT_TIMESTAMP = datetime.datetime(2019, 12, 31, 23, tzinfo=datetime.timezone.utc)
DEVICE_SIGNING_KEY = SigningKey(bytes(range(32)))
ROOT_SIGNING_KEY = SigningKey(bytes(range(100, 132)))
USER_PRIVATE_KEY = PrivateKey(bytes(range(32, 64)))
DEVICE_VERIFY_KEY = bytes.fromhex("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")
ROOT_VERIFY_KEY = bytes.fromhex("0bbc346a57667c380120bd9c7fd7e51d2c5fdfea37cd2f5bf405b2c6bf6f2d78")
USER_PUBLIC_KEY = bytes.fromhex("358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254")
REALM_ID = uuid.UUID("a0000000-0000-0000-0000-000000000001")
VLOB_ID = uuid.UUID("b0000000-0000-0000-0000-000000000002")
INVITATION_TOKEN = uuid.UUID("d864b93ded264aae9ae583fd3d40c45a")


@pytest.fixture
def device() -> certs.TestDevice:
    return certs.TestDevice(
        organization_id="CoolOrg",
        user_id="alice",
        device_name="dev1",
        signing_key=DEVICE_SIGNING_KEY,
        private_key=USER_PRIVATE_KEY,
        profile="ADMIN",
        human_handle=("alice@example.com", "Alice"),
        device_label=None,
        root_signing_key=ROOT_SIGNING_KEY,
    )


def test_seed_derived_keys() -> None:
    assert bytes(DEVICE_SIGNING_KEY.verify_key) == DEVICE_VERIFY_KEY
    assert bytes(ROOT_SIGNING_KEY.verify_key) == ROOT_VERIFY_KEY
    assert bytes(USER_PRIVATE_KEY.public_key) == USER_PUBLIC_KEY


def test_tv1_challenge() -> None:
    challenge = {
        "backend_timestamp": TIMESTAMP,
        "ballpark_client_early_offset": 300.0,
        "ballpark_client_late_offset": 320.0,
        "challenge": CHALLENGE,
        "handshake": "challenge",
        "supported_api_versions": [(1, 3), (2, 10), (3, 4)],
    }
    assert len(TV1_CHALLENGE) == 217
    assert codec.packb(challenge) == TV1_CHALLENGE
    decoded = codec.unpackb(TV1_CHALLENGE)
    assert decoded == {**challenge, "supported_api_versions": [[1, 3], [2, 10], [3, 4]]}
    assert decoded["backend_timestamp"].tzinfo is not None
    assert type(decoded["ballpark_client_early_offset"]) is float


def test_tv2_signed_answer(device: certs.TestDevice) -> None:
    payload = codec.packb({"answer": CHALLENGE, "type": "signed_answer"})
    assert payload == TV2_SIGNED_ANSWER_PAYLOAD
    assert len(payload) == 77
    signed = device.signed_answer(CHALLENGE)
    assert len(signed) == 141
    assert signed == TV2_SIGNATURE + TV2_SIGNED_ANSWER_PAYLOAD
    message = VerifyKey(DEVICE_VERIFY_KEY).verify(signed)
    assert codec.unpackb(message) == {"answer": CHALLENGE, "type": "signed_answer"}


def test_tv3_authenticated_answer(device: certs.TestDevice) -> None:
    assert len(TV3_AUTHENTICATED_ANSWER) == 292
    answer = device.authenticated_answer(CHALLENGE)
    assert codec.packb(answer) == TV3_AUTHENTICATED_ANSWER
    decoded = codec.unpackb(TV3_AUTHENTICATED_ANSWER)
    assert decoded == {
        "answer": TV2_SIGNATURE + TV2_SIGNED_ANSWER_PAYLOAD,
        "client_api_version": [3, 4],
        "device_id": "alice@dev1",
        "handshake": "answer",
        "organization_id": "CoolOrg",
        "rvk": ROOT_VERIFY_KEY,
        "type": "AUTHENTICATED",
    }
    fields = types.decode_request(
        {
            "organization_id": types.OrganizationID,
            "device_id": types.DeviceID,
            "rvk": types.VerifyKey,
            "answer": types.Bytes,
        },
        decoded,
    )
    assert fields["device_id"] == "alice@dev1"


def test_tv4_invited_answer() -> None:
    assert len(TV4_INVITED_ANSWER) == 124
    answer = {
        "client_api_version": (3, 4),
        "handshake": "answer",
        "invitation_type": "DEVICE",
        "organization_id": "CoolOrg",
        "token": INVITATION_TOKEN,
        "type": "INVITED",
    }
    assert codec.packb(answer) == TV4_INVITED_ANSWER
    decoded = codec.unpackb(TV4_INVITED_ANSWER)
    assert decoded == {**answer, "client_api_version": [3, 4]}
    fields = types.decode_request(
        {"invitation_type": types.InvitationTypeField, "token": types.InvitationToken}, decoded
    )
    assert fields == {"invitation_type": types.InvitationType.DEVICE, "token": INVITATION_TOKEN}


def test_tv5_results() -> None:
    assert codec.packb({"handshake": "result", "result": "ok"}) == TV5_RESULT_OK
    bad_identity = {
        "handshake": "result",
        "help": "Invalid handshake information",
        "result": "bad_identity",
    }
    assert codec.packb(bad_identity) == TV5_RESULT_BAD_IDENTITY
    assert codec.unpackb(TV5_RESULT_BAD_IDENTITY) == bad_identity


def test_tv6_user_certificate_payload(device: certs.TestDevice) -> None:
    cert_map = certs.user_certificate_map(
        author=None,
        timestamp=TIMESTAMP,
        user_id="alice",
        human_handle=("alice@example.com", "Alice"),
        public_key=device.public_key,
        profile="ADMIN",
    )
    assert codec.packb(cert_map) == TV6_USER_CERTIFICATE_PAYLOAD
    assert len(TV6_USER_CERTIFICATE_PAYLOAD) == 172


def test_tv6_signed_user_certificate_reproduced(device: certs.TestDevice) -> None:
    zlib_stream = TV6_SIGNED_USER_CERTIFICATE[64:]
    assert len(TV6_SIGNED_USER_CERTIFICATE) == 247
    assert len(zlib_stream) == 183
    assert zlib_stream[:7] == bytes.fromhex("789c01ac0053ff")
    assert certs.zlib_stored(TV6_USER_CERTIFICATE_PAYLOAD) == zlib_stream
    assert zlib.decompress(zlib_stream) == TV6_USER_CERTIFICATE_PAYLOAD
    # Ed25519 is deterministic: signing the same 183 bytes gives the same signature.
    assert bytes(ROOT_SIGNING_KEY.sign(zlib_stream)) == TV6_SIGNED_USER_CERTIFICATE
    rebuilt = certs.user_certificate(
        ROOT_SIGNING_KEY,
        author=None,
        timestamp=TIMESTAMP,
        user_id="alice",
        human_handle=("alice@example.com", "Alice"),
        public_key=device.public_key,
        profile="ADMIN",
    )
    assert rebuilt == TV6_SIGNED_USER_CERTIFICATE


def test_tv6_signed_user_certificate_loaded() -> None:
    certificate = certificates.UserCertificate.verify_and_load(
        TV6_SIGNED_USER_CERTIFICATE, ROOT_VERIFY_KEY
    )
    assert certificate == certificates.UserCertificate(
        author=None,
        timestamp=TIMESTAMP,
        user_id="alice",
        human_handle=HumanHandle("alice@example.com", "Alice"),
        public_key=USER_PUBLIC_KEY,
        profile=UserProfile.ADMIN,
        is_admin=True,
    )
    assert certificate.human_handle is not None
    assert certificate.human_handle.label == "Alice"
    assert certificates.UserCertificate.unsecure_load(TV6_SIGNED_USER_CERTIFICATE) == certificate
    with pytest.raises(certificates.InvalidCertification):
        certificates.UserCertificate.verify_and_load(TV6_SIGNED_USER_CERTIFICATE, DEVICE_VERIFY_KEY)


def test_tv7_redacted_device_certificate() -> None:
    cert_map = certs.device_certificate_map(
        author=None,
        timestamp=TIMESTAMP,
        device_id="alice@dev1",
        device_label=None,
        verify_key=DEVICE_VERIFY_KEY,
    )
    assert codec.packb(cert_map) == TV7_REDACTED_DEVICE_CERTIFICATE_PAYLOAD
    signed = certs.device_certificate(ROOT_SIGNING_KEY, **{k: v for k, v in cert_map.items() if k != "type"})
    assert len(signed) == 208
    certificate = certificates.DeviceCertificate.verify_and_load(signed, ROOT_VERIFY_KEY)
    assert certificate == certificates.DeviceCertificate(
        author=None,
        timestamp=TIMESTAMP,
        device_id="alice@dev1",
        device_label=None,
        verify_key=DEVICE_VERIFY_KEY,
    )
    assert (certificate.user_id, certificate.device_name) == ("alice", "dev1")


def test_tv8_realm_role_certificate(device: certs.TestDevice) -> None:
    cert_map = certs.realm_role_certificate_map(
        author="alice@dev1", timestamp=TIMESTAMP, realm_id=REALM_ID, user_id="alice", role="OWNER"
    )
    assert codec.packb(cert_map) == TV8_REALM_ROLE_CERTIFICATE_PAYLOAD
    expected = certificates.RealmRoleCertificate(
        author="alice@dev1",
        timestamp=TIMESTAMP,
        realm_id=REALM_ID,
        user_id="alice",
        role=RealmRole.OWNER,
    )
    # The client's 182-byte blob holds a 118-byte deflate stream from Rust's
    # miniz_oxide, which Python's zlib does not reproduce bit for bit; both the
    # stored and the zlib-deflated framings must load to the same certificate.
    for compression in ("stored", "deflate"):
        signed = certs.sign_certificate(DEVICE_SIGNING_KEY, cert_map, compression=compression)
        loaded = certificates.RealmRoleCertificate.verify_and_load(signed, device.verify_key)
        assert loaded == expected


def test_tv9_vlob_create_request() -> None:
    request = {
        "cmd": "vlob_create",
        "blob": b"foo",
        "encryption_revision": 1,
        "realm_id": REALM_ID,
        "sequester_blob": None,
        "timestamp": TIMESTAMP,
        "vlob_id": VLOB_ID,
    }
    assert len(TV9_VLOB_CREATE_REQUEST) == 137
    assert codec.packb(request) == TV9_VLOB_CREATE_REQUEST
    decoded = codec.unpackb(TV9_VLOB_CREATE_REQUEST)
    assert decoded == request
    fields = types.decode_request(
        {
            "realm_id": types.RealmID,
            "encryption_revision": types.Index,
            "vlob_id": types.VlobID,
            "timestamp": types.DateTime,
            "blob": types.Bytes,
            "sequester_blob": types.Optional(types.Map(types.SequesterServiceID, types.Bytes)),
        },
        decoded,
    )
    assert fields == {
        "realm_id": REALM_ID,
        "encryption_revision": 1,
        "vlob_id": VLOB_ID,
        "timestamp": TIMESTAMP,
        "blob": b"foo",
        "sequester_blob": None,
    }


def test_tv10_vlob_create_replies() -> None:
    assert codec.packb({"status": "ok"}) == TV10_OK_REPLY
    bad_timestamp = {
        "status": "bad_timestamp",
        "backend_timestamp": TIMESTAMP,
        "ballpark_client_early_offset": 300.0,
        "ballpark_client_late_offset": 320.0,
        "client_timestamp": CLIENT_TIMESTAMP,
        "reason": None,
    }
    assert codec.packb(bad_timestamp) == TV10_BAD_TIMESTAMP_REPLY
    assert codec.unpackb(TV10_BAD_TIMESTAMP_REPLY) == bad_timestamp


def test_tv11_events_listen_reply() -> None:
    reply = {
        "status": "ok",
        "event": "realm.vlobs_updated",
        "checkpoint": 3,
        "realm_id": REALM_ID,
        "src_id": VLOB_ID,
        "src_version": 2,
    }
    assert codec.packb(reply) == TV11_EVENTS_LISTEN_REPLY
    assert codec.unpackb(TV11_EVENTS_LISTEN_REPLY) == reply


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"status": "unknown_command", "reason": "Unknown command"}, TV12_UNKNOWN_COMMAND),
        ({"status": "invalid_msg_format", "reason": "Invalid message format"}, TV12_INVALID_MSG_FORMAT),
        ({"status": "no_events"}, TV12_NO_EVENTS),
        ({"status": "not_found", "reason": None}, TV12_NOT_FOUND),
    ],
)
def test_tv12_generic_error_replies(reply: dict[str, object], expected: bytes) -> None:
    assert codec.packb(reply) == expected
    assert codec.unpackb(expected) == reply
