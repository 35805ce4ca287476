"""msgpack codec of the Parsec wire format (docs/protocol.md#msgpack).

DateTime travels as ext 1 (float64 seconds since the epoch), UUID as ext 2
(16 raw bytes). Text is msgpack str, binary data is msgpack bin.
"""

from __future__ import annotations

import datetime
import math
import re
import struct
import uuid
from typing import Any

import msgpack

__all__ = [
    "EXT_DATETIME",
    "EXT_UUID",
    "MAX_BIN_LEN",
    "DecodeError",
    "packb",
    "unpackb",
    "datetime_to_float",
    "float_to_datetime",
]

EXT_DATETIME = 1
EXT_UUID = 2
MAX_BIN_LEN = 1_048_576

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_ONE_MICROSECOND = datetime.timedelta(microseconds=1)
_FLOAT64 = struct.Struct(">d")


class DecodeError(ValueError):
    """The bytes are not a valid protocol msgpack document."""


def datetime_to_float(dt: datetime.datetime) -> float:
    """Seconds since the epoch, computed from integer microseconds so that the
    float is the one the client produces for the same instant."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise TypeError(f"naive datetime cannot be encoded: {dt!r}")
    total_microseconds = (dt - _EPOCH) // _ONE_MICROSECOND
    return float(total_microseconds) / 1e6


def _round_half_away_from_zero(value: float) -> int:
    # The client rounds like Rust's f64::round, not like Python's banker's round().
    if value >= 0:
        return math.floor(value + 0.5)
    return -math.floor(-value + 0.5)


def float_to_datetime(timestamp: float) -> datetime.datetime:
    """Inverse of `datetime_to_float`, using the client's decoding rule.

    Raises ValueError for NaN, infinities and instants outside years 1..9999.
    """
    if not math.isfinite(timestamp):
        raise ValueError(f"non-finite timestamp: {timestamp!r}")
    seconds = math.trunc(timestamp)
    microseconds = _round_half_away_from_zero((timestamp - seconds) * 1e6)
    if microseconds >= 1_000_000:
        seconds += 1
        microseconds -= 1_000_000
    elif microseconds < 0:
        seconds -= 1
        microseconds += 1_000_000
    try:
        return _EPOCH + datetime.timedelta(seconds=seconds, microseconds=microseconds)
    except OverflowError as exc:
        raise ValueError(f"timestamp out of range: {timestamp!r}") from exc


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, datetime.datetime):
        return msgpack.ExtType(EXT_DATETIME, _FLOAT64.pack(datetime_to_float(obj)))
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(EXT_UUID, obj.bytes)
    # Value objects of protocol.types (HumanHandle, RealmArchivingConfiguration...)
    # know their own wire form, so replies can carry them directly.
    to_wire = getattr(obj, "to_wire", None)
    if to_wire is not None:
        return to_wire()
    raise TypeError(f"cannot serialize {type(obj).__name__} to msgpack: {obj!r}")


def packb(obj: Any) -> bytes:
    """Serialize `obj` (str as str, bytes as bin, tuples as arrays, floats as float64)."""
    return msgpack.packb(obj, use_bin_type=True, default=_pack_default, datetime=False)


def _ext_hook(code: int, payload: bytes) -> Any:
    if code == EXT_DATETIME:
        if len(payload) != 8:
            raise DecodeError(f"DateTime ext payload must be 8 bytes, got {len(payload)}")
        (timestamp,) = _FLOAT64.unpack(payload)
        try:
            return float_to_datetime(timestamp)
        except ValueError as exc:
            raise DecodeError(f"invalid DateTime: {exc}") from exc
    if code == EXT_UUID:
        if len(payload) != 16:
            raise DecodeError(f"UUID ext payload must be 16 bytes, got {len(payload)}")
        return uuid.UUID(bytes=payload)
    raise DecodeError(f"unknown msgpack ext type {code}")


# The encodings msgpack decodes as its own timestamp (ext -1 of 4, 8 or 12 bytes): fixext 4/8, and
# ext 8/16/32 with those lengths. Only a document holding one of these byte runs can hold one.
_TIMESTAMP_HEADER = re.compile(
    rb"[\xd6\xd7]\xff|\xc7[\x04\x08\x0c]\xff|\xc8\x00[\x04\x08\x0c]\xff|\xc9\x00\x00\x00[\x04\x08\x0c]\xff"
)


# A document above this size with at most this many items is walked without searching its bytes
# first: a 512 KiB block is a handful of items but half a millisecond of search (and its random
# bytes hold these byte runs by chance anyway). Below it the search costs less than the walk.
_WALK_FIRST_ABOVE_BYTES = 4096
_WALK_FIRST_ITEMS = 64


def _contains_msgpack_timestamp(obj: Any, max_items: int | None = None) -> bool | None:
    """None: the document has more than `max_items` items (not decided)."""
    # An explicit stack, not recursion: msgpack nests up to 1024 levels, deeper than Python's
    # default recursion limit once a few frames are already on the stack.
    pending = [obj]
    while pending:
        if max_items is not None:
            max_items -= 1
            if max_items < 0:
                return None
        item = pending.pop()
        if isinstance(item, msgpack.Timestamp):
            return True
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
    return False


def unpackb(data: bytes) -> Any:
    """Deserialize one complete msgpack document; raises DecodeError on any problem."""
    if isinstance(data, memoryview):
        data = data.tobytes()
    if not isinstance(data, (bytes, bytearray)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    # A str/array/map can't be longer than the document itself, so len(data)
    # disables msgpack's default caps on them while bin keeps the 1 MiB protocol cap.
    size_cap = max(len(data), 1)
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            ext_hook=_ext_hook,
            max_bin_len=MAX_BIN_LEN,
            max_str_len=size_cap,
            max_array_len=size_cap,
            max_map_len=size_cap,
            max_ext_len=size_cap,
        )
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises many unrelated exception types (StackError past 1024 levels...)
        raise DecodeError(f"invalid msgpack: {str(exc)[:200] or type(exc).__name__}") from exc
    # msgpack decodes ext -1 itself without calling ext_hook; it is not a protocol type. A large
    # document of few items is walked at once; any other only if its bytes hold a timestamp
    # header, which (nearly) none do.
    found = _contains_msgpack_timestamp(obj, _WALK_FIRST_ITEMS) if len(data) > _WALK_FIRST_ABOVE_BYTES else None
    if found is None:
        found = _TIMESTAMP_HEADER.search(data) is not None and _contains_msgpack_timestamp(obj)
    if found:
        raise DecodeError("unknown msgpack ext type -1")
    return obj
