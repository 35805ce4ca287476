"""Hypothesis strategies for protocol requests, built from the wire schemas (`wire_requests.json`).

`request(family, cmd)` draws a well-typed request for the command (every field of its API 3
flavour, union variants included), then mutates it or not: a field of the wrong type, a field
missing, extra keys, a huge string or bytes, deep nesting. `frame()` adds what is not a request map
at all. Every draw is msgpack-encodable: the property is about the server, not the encoder.
"""
from __future__ import annotations

import datetime
import json
import re
import string
from functools import lru_cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from protocol import codec

SCHEMAS_PATH = Path(__file__).with_name("wire_requests.json")

INT64 = (-(2**63), 2**63 - 1)
UINT64_MAX = 2**64 - 1
MAX_BIN = codec.MAX_BIN_LEN

ENUMS = {
    "UserProfile": ["ADMIN", "STANDARD", "OUTSIDER"],
    "RealmRole": ["OWNER", "MANAGER", "CONTRIBUTOR", "READER"],
    "InvitationType": ["USER", "DEVICE", "SHAMIR_RECOVERY"],
    "InvitationStatus": ["IDLE", "READY", "DELETED"],
    "InvitationDeletedReason": ["FINISHED", "CANCELLED", "ROTTEN"],
    "InvitationEmailSentStatus": ["SUCCESS", "NOT_AVAILABLE", "BAD_RECIPIENT"],
    "MaintenanceType": ["REENCRYPTION", "GARBAGE_COLLECTION"],
}
UUID_TYPES = {
    "RealmID", "VlobID", "BlockID", "ChunkID", "EntryID", "InvitationToken", "ShamirRevealToken", "EnrollmentID",
    "SequesterServiceID",
}
KEY_TYPES = {"VerifyKey", "PublicKey", "HashDigest"}


@lru_cache(maxsize=1)
def wire_requests() -> dict[str, dict[str, Any]]:
    return json.loads(SCHEMAS_PATH.read_text())


def commands(family: str) -> list[str]:
    return sorted(wire_requests()[family])


# --- any msgpack value ------------------------------------------------------------------------------

datetimes = st.datetimes(
    min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2100, 1, 1),
    timezones=st.just(datetime.timezone.utc),
).map(lambda dt: dt.replace(microsecond=dt.microsecond))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT64[0], max_value=UINT64_MAX),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.uuids(),
    datetimes,
)

any_value = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers(0, 10), st.uuids()), children, max_size=5),
    ),
    max_leaves=20,
)


# --- well-typed values ------------------------------------------------------------------------------

identifier = st.from_regex(r"\A[A-Za-z0-9_\-]{1,32}\Z")
emails = st.builds(
    lambda local, domain: f"{local}@{domain}.example",
    st.text(string.ascii_lowercase + string.digits + "._+-", min_size=1, max_size=20),
    st.text(string.ascii_lowercase, min_size=1, max_size=10),
) | st.text(max_size=30)  # claimer e-mails are plain strings: anything goes
labels = st.text(min_size=1, max_size=30)


def _split_generic(expression: str) -> tuple[str, list[str]]:
    """`Map<K, V>` -> ("Map", ["K", "V"]); `(A, B)` -> ("Tuple", ["A", "B"]); `T` -> ("T", [])."""
    expression = expression.strip()
    if expression.startswith("(") and expression.endswith(")"):
        return "Tuple", _split_arguments(expression[1:-1])
    match = re.fullmatch(r"(\w+)<(.*)>", expression)
    if match is None:
        return expression, []
    return match.group(1), _split_arguments(match.group(2))


def _split_arguments(text: str) -> list[str]:
    arguments, depth, current = [], 0, ""
    for char in text:
        if char in "<(":
            depth += 1
        elif char in ">)":
            depth -= 1
        if char == "," and depth == 0:
            arguments.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        arguments.append(current.strip())
    return arguments


def value_of(expression: str, nested: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A well-typed value of a schema type expression."""
    name, arguments = _split_generic(expression)
    if name in ("RequiredOption", "NonRequiredOption", "Option"):
        return st.none() | value_of(arguments[0], nested)
    if name == "List":
        return st.lists(value_of(arguments[0], nested), max_size=3)
    if name == "Map":
        return st.dictionaries(value_of(arguments[0], nested), value_of(arguments[1], nested), max_size=3)
    if name == "Tuple":
        return st.tuples(*(value_of(argument, nested) for argument in arguments)).map(list)
    if name in nested:
        return _nested_value(nested[name], nested)
    if name in ENUMS:
        return st.sampled_from(ENUMS[name])
    if name in UUID_TYPES:
        return st.uuids()
    if name in KEY_TYPES:
        return st.binary(min_size=32, max_size=32)
    simple = {
        "String": st.text(max_size=40),
        "Boolean": st.booleans(),
        "Integer": st.integers(*INT64),
        "Index": st.integers(0, UINT64_MAX),
        "Size": st.integers(0, UINT64_MAX),
        "Version": st.integers(0, UINT64_MAX),
        "UnsignedInteger": st.integers(0, UINT64_MAX),
        "NonZeroInteger": st.integers(1, UINT64_MAX),
        "IntegerBetween1And100": st.integers(1, 100),
        "Float": st.floats(allow_nan=False),
        "DurationInSeconds": st.integers(0, INT64[1]),
        "Bytes": st.binary(max_size=64),
        "SequesterVerifyKeyDer": st.binary(max_size=64),
        "SequesterPublicKeyDer": st.binary(max_size=64),
        "DateTime": datetimes,
        "OrganizationID": identifier,
        "UserID": identifier,
        "DeviceName": identifier,
        "DeviceID": st.builds(lambda user, device: f"{user}@{device}", identifier, identifier),
        "DeviceLabel": labels,
        "HumanHandle": st.tuples(emails, labels).map(list),
        "ActiveUsersLimit": st.none() | st.integers(0, UINT64_MAX),
        # Shared types defined outside the command schemas (docs/protocol.md#field-types).
        "ReencryptionBatchEntry": st.fixed_dictionaries(
            {"vlob_id": st.uuids(), "version": st.integers(0, UINT64_MAX), "blob": st.binary(max_size=64)}
        ),
        "RealmArchivingConfiguration": st.one_of(
            st.just({"type": "AVAILABLE"}), st.just({"type": "ARCHIVED"}),
            datetimes.map(lambda date: {"type": "DELETION_PLANNED", "deletion_date": date}),
        ),
    }
    if name not in simple:
        raise KeyError(f"no strategy for schema type {expression!r}")
    return simple[name]


def _fields_value(fields: list[dict[str, Any]], nested: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({field["name"]: value_of(field["type"], nested) for field in fields})


def _nested_value(definition: dict[str, Any], nested: dict[str, Any]) -> st.SearchStrategy[Any]:
    variants = definition.get("variants")
    if variants is None:
        return _fields_value(definition.get("fields", []), nested)
    discriminant = definition.get("discriminant_field")
    if discriminant is None:  # a plain string enum
        return st.sampled_from([variant["discriminant_value"] for variant in variants])
    return st.one_of(*(
        _fields_value(variant.get("fields") or [], nested).map(
            lambda fields, value=variant["discriminant_value"]: {discriminant: value, **fields}
        )
        for variant in variants
    ))


def well_typed_request(family: str, cmd: str) -> st.SearchStrategy[dict[str, Any]]:
    schema = wire_requests()[family][cmd]
    nested = {definition["name"]: definition for definition in schema["nested_types"]}
    body = _fields_value(schema["fields"], nested)
    if "unit" in schema:
        unit = _nested_value(nested[schema["unit"]], nested)
        body = st.tuples(body, unit).map(lambda parts: {**parts[0], **parts[1]})
    return body.map(lambda fields: {"cmd": cmd, **fields})


# --- mutations --------------------------------------------------------------------------------------


def nested_deep(depth: int, leaf: Any = None) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


huge = st.one_of(
    st.integers(1, 4).map(lambda k: "x" * (k * 100_000)),
    st.integers(1, 4).map(lambda k: "\x00é" * (k * 50_000)),
    st.just(b"\x00" * MAX_BIN),
    st.just(b"\x00" * (MAX_BIN + 1)),
    st.just(list(range(50_000))),
    st.just({str(i): i for i in range(20_000)}),
)
# Python-built values stay under msgpack-python's packing limit (511 levels); deeper ones go as raw `frames`.
deep = st.integers(100, 500).map(nested_deep)


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    request = dict(base)
    keys = [key for key in request if key != "cmd"]
    kind = draw(st.sampled_from(["none", "wrong_type", "missing", "extra", "huge", "deep", "several"]))
    if kind == "none":
        return request
    for _ in range(draw(st.integers(2, 4)) if kind == "several" else 1):
        action = kind if kind != "several" else draw(st.sampled_from(["wrong_type", "missing", "extra", "huge", "deep"]))
        if action in ("wrong_type", "huge", "deep", "missing") and keys:
            key = draw(st.sampled_from(keys))
            if action == "missing":
                request.pop(key, None)
            else:
                request[key] = draw({"wrong_type": any_value, "huge": huge, "deep": deep}[action])
        else:
            request[draw(st.text(max_size=12).filter(lambda k: k != "cmd"))] = draw(any_value | deep)
    return request


def request(family: str, cmd: str) -> st.SearchStrategy[dict[str, Any]]:
    return well_typed_request(family, cmd).flatmap(mutated)


def deep_frame(depth: int, leaf: bytes = b"\xc0") -> bytes:
    """`depth` nested one-item arrays/maps as raw msgpack, without building them in Python."""
    head = b"".join(b"\x91" if level % 2 else b"\x81\xa1k" for level in range(depth))
    return head + leaf


# Around msgpack's own limit of 1024 levels; the leaf -1 (0xff) is the byte that made the codec
# look for ext -1 timestamps in the whole tree.
depths = st.one_of(st.integers(200, 1100), st.integers(1000, 100_000))
leaves = st.sampled_from([b"\xc0", b"\xff", b"\xd6\xff\x00\x00\x00\x00"])


# Frames that are not a request map, or not msgpack at all.
frames = st.one_of(
    any_value.map(codec.packb),
    st.binary(max_size=64),
    st.builds(deep_frame, depths, leaves),
    # {"cmd": "ping", "ping": <deep>}: a known command with a deeply nested field.
    st.builds(lambda depth, leaf: b"\x82\xa3cmd\xa4ping\xa4ping" + deep_frame(depth, leaf), depths, leaves),
)
