from __future__ import annotations

import datetime
import math
import struct
import uuid
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec

UTC = datetime.timezone.utc
NEW_YEAR_2020 = datetime.datetime(2020, 1, 1, tzinfo=UTC)
# Above 2**33 seconds (year 2242) a float64 is coarser than a microsecond.
LAST_MICROSECOND_EXACT_INSTANT = datetime.datetime(2242, 3, 16, tzinfo=UTC)
# Above 2**53 microseconds (mid-2255) float(total_microseconds) itself rounds.
LAST_ECHO_EXACT_INSTANT = datetime.datetime(2255, 6, 5, tzinfo=UTC)


def test_datetime_is_fixext8_type_1() -> None:
    assert codec.packb(NEW_YEAR_2020) == bytes.fromhex("d70141d782f840000000")
    assert codec.unpackb(bytes.fromhex("d70141d782f840000000")) == NEW_YEAR_2020


def test_datetime_accepts_ext8_encoding() -> None:
    assert codec.unpackb(bytes.fromhex("c7080141d782f840000000")) == NEW_YEAR_2020


def test_decoded_datetime_is_aware_utc() -> None:
    decoded = codec.unpackb(codec.packb(NEW_YEAR_2020))
    assert decoded.tzinfo is not None
    assert decoded.utcoffset() == datetime.timedelta(0)


def test_non_utc_datetime_is_encoded_as_the_same_instant() -> None:
    paris = datetime.timezone(datetime.timedelta(hours=1))
    assert codec.packb(datetime.datetime(2020, 1, 1, 1, tzinfo=paris)) == codec.packb(NEW_YEAR_2020)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(TypeError):
        codec.packb(datetime.datetime(2020, 1, 1))


def test_uuid_is_fixext16_type_2() -> None:
    value = uuid.UUID("a0000000-0000-0000-0000-000000000001")
    packed = codec.packb(value)
    assert packed == bytes.fromhex("d802a0000000000000000000000000000001")
    assert codec.unpackb(packed) == value


def test_str_bin_tuple_float_encodings() -> None:
    assert codec.packb("ab") == b"\xa2ab"
    assert codec.packb(b"ab") == b"\xc4\x02ab"
    assert codec.packb((1, 2)) == b"\x92\x01\x02"
    assert codec.packb(300.0) == bytes.fromhex("cb4072c00000000000")
    assert codec.packb(None) == b"\xc0"


def test_objects_with_to_wire_are_packed_as_their_wire_form() -> None:
    class WireThing:
        def to_wire(self) -> list[str]:
            return ["a", "b"]

    assert codec.packb({"x": WireThing()}) == codec.packb({"x": ["a", "b"]})


def test_unknown_object_is_refused() -> None:
    with pytest.raises(TypeError):
        codec.packb(object())


def test_unpack_keeps_non_str_map_keys() -> None:
    vlob_id = uuid.uuid4()
    data = codec.packb({vlob_id: 1, 2: "two"})
    assert codec.unpackb(data) == {vlob_id: 1, 2: "two"}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="never-used-byte"),
        pytest.param(b"\x92\x01", id="truncated-array"),
        pytest.param(b"\x01\x02", id="trailing-data"),
        pytest.param(b"\xa2\xff\xfe", id="invalid-utf8-str"),
        pytest.param(b"\xd4\x05\x00", id="unknown-ext-type"),
        pytest.param(b"\xd6\xff\x00\x00\x00\x01", id="msgpack-timestamp-ext"),
        pytest.param(b"\x81\xd6\xff\x00\x00\x00\x01\x01", id="msgpack-timestamp-ext-as-key"),
        pytest.param(b"\xd6\x01\x00\x00\x00\x00", id="datetime-4-bytes"),
        pytest.param(b"\xd8\x01" + bytes(16), id="datetime-16-bytes"),
        pytest.param(b"\xd7\x02" + bytes(8), id="uuid-8-bytes"),
        pytest.param(b"\xd7\x01" + struct.pack(">d", math.nan), id="datetime-nan"),
        pytest.param(b"\xd7\x01" + struct.pack(">d", math.inf), id="datetime-inf"),
        pytest.param(b"\xd7\x01" + struct.pack(">d", 1e20), id="datetime-out-of-range"),
        pytest.param(b"\x81\x91\x01\x01", id="unhashable-map-key"),
        # msgpack's timestamp in every encoding it decodes, nested: the scan must find each.
        pytest.param(b"\x91\x91\xd7\xff" + bytes(8), id="msgpack-timestamp-fixext8-nested"),
        pytest.param(b"\x91\xc7\x0c\xff" + bytes(12), id="msgpack-timestamp-ext8-96-bit"),
        pytest.param(b"\x91\xc7\x04\xff" + bytes(4), id="msgpack-timestamp-ext8-32-bit"),
        pytest.param(b"\x91\xc8\x00\x08\xff" + bytes(8), id="msgpack-timestamp-ext16"),
        pytest.param(b"\x91\xc9\x00\x00\x00\x0c\xff" + bytes(12), id="msgpack-timestamp-ext32"),
        pytest.param(b"\x91" * 1000 + b"\xd6\xff" + bytes(4), id="msgpack-timestamp-1000-levels-deep"),
        # Large documents: of few items (walked at once), of many items (their bytes searched first).
        pytest.param(b"\x92\xc5\x20\x00" + bytes(8192) + b"\xd6\xff" + bytes(4), id="msgpack-timestamp-beside-a-large-bin"),
        pytest.param(b"\xdc\x00\x65" + (b"\xc4\x3c" + bytes(60)) * 100 + b"\xd6\xff" + bytes(4), id="msgpack-timestamp-after-many-bins"),
        pytest.param(b"\x91" * 1025 + b"\xc0", id="deeper-than-1024-levels"),
    ],
)
def test_decode_errors(data: bytes) -> None:
    with pytest.raises(codec.DecodeError):
        codec.unpackb(data)


def test_nesting_up_to_msgpack_limit_is_accepted() -> None:
    # -1 (0xff) at the bottom: a byte that used to trigger the (recursive) timestamp scan.
    assert codec.unpackb(b"\x91" * 1024 + b"\xff") is not None


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(codec.DecodeError, ValueError)


def test_unpack_refuses_non_bytes() -> None:
    with pytest.raises(codec.DecodeError):
        codec.unpackb("not bytes")  # type: ignore[arg-type]


def test_unpack_accepts_bytearray_and_memoryview() -> None:
    data = codec.packb({"a": b"\xff"})
    assert codec.unpackb(bytearray(data)) == {"a": b"\xff"}
    assert codec.unpackb(memoryview(data)) == {"a": b"\xff"}


def test_bin_of_exactly_one_mebibyte_is_accepted() -> None:
    blob = b"\x00" * 1_048_576
    assert codec.unpackb(codec.packb({"blob": blob})) == {"blob": blob}


def test_bin_over_one_mebibyte_is_rejected() -> None:
    with pytest.raises(codec.DecodeError):
        codec.unpackb(codec.packb({"blob": b"\x00" * 1_048_577}))


def test_other_big_values_are_not_capped() -> None:
    big_str = "x" * 2_000_000
    assert codec.unpackb(codec.packb(big_str)) == big_str
    big_array = [None] * 1_100_000
    assert codec.unpackb(codec.packb(big_array)) == big_array
    big_map = {index: None for index in range(1_100_000)}
    assert codec.unpackb(codec.packb(big_map)) == big_map
    several_bins = [b"\x00" * 1_048_576, b"\x01" * 1_048_576]
    assert codec.unpackb(codec.packb(several_bins)) == several_bins


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (1577836800.0, datetime.datetime(2020, 1, 1, tzinfo=UTC)),
        (1577836800.5, datetime.datetime(2020, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
        (0.0, datetime.datetime(1970, 1, 1, tzinfo=UTC)),
        (-0.5, datetime.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)),
        # 0.9999996 s rounds to 1_000_000 µs, which carries into the seconds.
        (0.9999996, datetime.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)),
        (-0.9999996, datetime.datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
        # 2**-7 s is exactly 7812.5 µs: the client rounds half away from zero.
        (0.0078125, datetime.datetime(1970, 1, 1, 0, 0, 0, 7813, tzinfo=UTC)),
        (-0.0078125, datetime.datetime(1969, 12, 31, 23, 59, 59, 992187, tzinfo=UTC)),
    ],
)
def test_float_to_datetime_rule(timestamp: float, expected: datetime.datetime) -> None:
    assert codec.float_to_datetime(timestamp) == expected


def test_far_future_datetimes_stay_within_float_precision() -> None:
    value = datetime.datetime(9999, 6, 1, 12, 34, 56, 789012, tzinfo=UTC)
    decoded = codec.unpackb(codec.packb(value))
    assert abs(decoded - value) <= datetime.timedelta(microseconds=32)


def test_datetime_to_float_uses_integer_microseconds() -> None:
    value = datetime.datetime(2021, 6, 7, 8, 9, 10, 123456, tzinfo=UTC)
    assert codec.datetime_to_float(value) == 1623053350123456 / 1e6


@given(
    st.datetimes(
        min_value=datetime.datetime(1970, 1, 1),
        max_value=LAST_MICROSECOND_EXACT_INSTANT.replace(tzinfo=None),
        timezones=st.just(UTC),
    )
)
def test_datetime_round_trips_exactly(value: datetime.datetime) -> None:
    decoded = codec.unpackb(codec.packb(value))
    assert decoded == value
    assert decoded.microsecond == value.microsecond


@given(
    st.datetimes(
        min_value=datetime.datetime(1970, 1, 1),
        max_value=LAST_ECHO_EXACT_INSTANT.replace(tzinfo=None),
        timezones=st.just(UTC),
    )
)
def test_client_timestamps_are_echoed_byte_for_byte(value: datetime.datetime) -> None:
    # Between 2242 and 2255 a float64 can't hold every microsecond, so the
    # datetime may move by a µs, but the server still re-emits the client's bytes.
    client_bytes = codec.packb(value)
    assert codec.packb(codec.unpackb(client_bytes)) == client_bytes


_MSGPACK_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.uuids()
    | st.datetimes(
        min_value=datetime.datetime(1970, 1, 1),
        max_value=LAST_MICROSECOND_EXACT_INSTANT.replace(tzinfo=None),
        timezones=st.just(UTC),
    )
)
_MAP_KEYS = st.text() | st.integers(min_value=0, max_value=2**64 - 1) | st.uuids() | st.binary()
_MSGPACK_DOCUMENTS = st.recursive(
    _MSGPACK_SCALARS,
    lambda children: st.lists(children) | st.dictionaries(_MAP_KEYS, children),
    max_leaves=30,
)


@given(_MSGPACK_DOCUMENTS)
def test_arbitrary_documents_round_trip(document: Any) -> None:
    assert codec.unpackb(codec.packb(document)) == document


@given(st.binary(max_size=64))
def test_unpack_never_raises_anything_but_decode_error(data: bytes) -> None:
    try:
        codec.unpackb(data)
    except codec.DecodeError:
        pass


def test_packb_matches_plain_msgpack_for_plain_values() -> None:
    document = {"cmd": "ping", "ping": "hello", "n": [1, -2, 3.5, True, None, b"\x00"]}
    assert codec.packb(document) == msgpack.packb(document, use_bin_type=True)
