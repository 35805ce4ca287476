"""The unsigned `zlib(msgpack(map))` payloads of PKI enrollment (docs/protocol.md#certificate-types).

The server only checks that they decode; their fields mean something to the clients alone.
"""
from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

from protocol import codec, types

# Real payloads are a few hundred bytes; the cap defeats zlib bombs.
MAX_PAYLOAD_SIZE = 1_048_576

SUBMIT_PAYLOAD_TYPE = "pki_enrollment_submit_payload"
SUBMIT_PAYLOAD_FIELDS: Mapping[str, types.FieldType] = {
    "verify_key": types.VerifyKey,
    "public_key": types.PublicKey,
    "requested_device_label": types.DeviceLabel,
}

ANSWER_PAYLOAD_TYPE = "pki_enrollment_answer_payload"
ANSWER_PAYLOAD_FIELDS: Mapping[str, types.FieldType] = {
    "device_id": types.DeviceID,
    "device_label": types.Optional(types.DeviceLabel),
    "human_handle": types.Optional(types.HumanHandleField),
    "profile": types.UserProfileField,
    "root_verify_key": types.VerifyKey,
}


class InvalidPayload(ValueError):
    pass


def _load(raw_payload: bytes, payload_type: str, fields: Mapping[str, types.FieldType]) -> dict[str, Any]:
    decompressor = zlib.decompressobj()
    try:
        packed = decompressor.decompress(raw_payload, MAX_PAYLOAD_SIZE)
    except zlib.error as exc:
        raise InvalidPayload(f"Invalid compression: {exc}") from None
    if decompressor.unconsumed_tail:
        raise InvalidPayload("Payload is too big")
    if not decompressor.eof or decompressor.unused_data:
        raise InvalidPayload("Invalid compression: truncated or trailing bytes")
    try:
        data = codec.unpackb(packed)
    except codec.DecodeError as exc:
        raise InvalidPayload(f"Invalid serialization: {exc}") from None
    if not isinstance(data, dict) or data.get("type") != payload_type:
        raise InvalidPayload(f"Invalid serialization: expected a {payload_type}")
    try:
        return types.decode_request(fields, data)
    except types.FieldError as exc:
        raise InvalidPayload(f"Invalid {payload_type}: {exc}") from None


def load_submit_payload(raw_payload: bytes) -> dict[str, Any]:
    return _load(raw_payload, SUBMIT_PAYLOAD_TYPE, SUBMIT_PAYLOAD_FIELDS)


def load_answer_payload(raw_payload: bytes) -> dict[str, Any]:
    return _load(raw_payload, ANSWER_PAYLOAD_TYPE, ANSWER_PAYLOAD_FIELDS)
