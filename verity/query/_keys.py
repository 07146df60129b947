"""Order-preserving byte encoding of SQL values and composite keys.

For values `a`, `b` of one column type, `encode_value(a) < encode_value(b)` (bytewise)
exactly when `a < b` in SQL order, with NULL first; and for tuples of such values,
`encode_key(x) < encode_key(y)` exactly when `x < y` lexicographically. So a tree of
encoded keys is a tree in SQL order, and a range of values is a range of bytes.

Each value is a tag byte and a payload:

- NULL: 0x00, alone (the smallest encoding; `NOT_NULL_LOW` = 0x01 sorts after NULL
  and before every other value);
- FALSE 0x02, TRUE 0x03;
- int 0x04 + 8 bytes big-endian of value + 2**63 (signed order becomes unsigned);
- float 0x05 + 8 bytes: the IEEE 754 bits, sign bit flipped for positive numbers and
  all bits flipped for negative ones (total order); -0.0 is encoded as 0.0; NaN is
  refused;
- str 0x06 + UTF-8 with every 0x00 written 0x00 0xFF, then the terminator 0x00 0x01
  (so "a" < "a\\x00" < "ab": a prefix sorts first);
- bytes 0x07 + the same escaping.

No encoding is a proper prefix of another and no tag is 0xFF, so for an encoded
prefix P every key starting with P lies strictly between P and P + `PREFIX_END`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from typing import Final, cast

from verity.errors import InvalidArgument
from verity.query._types import INT64_MAX, INT64_MIN, Value

__all__ = ["NOT_NULL_LOW", "PREFIX_END", "encode_key", "encode_value", "encode_values"]

NOT_NULL_LOW: Final = b"\x01"
"""Greater than the encoding of NULL, smaller than that of any other value."""

PREFIX_END: Final = b"\xff"
"""Appended to an encoded prefix: greater than every key that starts with it."""

_NULL: Final = b"\x00"
_FALSE: Final = b"\x02"
_TRUE: Final = b"\x03"
_TAG_INT: Final = 0x04
_TAG_FLOAT: Final = 0x05
_TAG_STR: Final = b"\x06"
_TAG_BYTES: Final = b"\x07"
_TERMINATOR: Final = b"\x00\x01"
_TAGGED_U64: Final = struct.Struct(">BQ")
_DOUBLE: Final = struct.Struct(">d")
_U64: Final = struct.Struct(">Q")
_SIGN_BIT: Final = 1 << 63
_U64_MASK: Final = (1 << 64) - 1


def encode_value(value: Value) -> bytes:
    """The order-preserving encoding of one SQL value (see the module docstring)."""
    value_type = type(value)
    if value_type is int:
        assert isinstance(value, int)
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidArgument("value", value, "outside the signed 64-bit range")
        return _TAGGED_U64.pack(_TAG_INT, value + _SIGN_BIT)
    if value_type is str:
        assert isinstance(value, str)
        return _TAG_STR + value.encode("utf-8").replace(b"\x00", b"\x00\xff") + _TERMINATOR
    if value is None:
        return _NULL
    if value_type is bool:
        return _TRUE if value else _FALSE
    if value_type is float:
        assert isinstance(value, float)
        if math.isnan(value):
            raise InvalidArgument("value", value, "NaN has no place in SQL order")
        (bits,) = _U64.unpack(_DOUBLE.pack(value if value != 0.0 else 0.0))
        bits = (~bits & _U64_MASK) if bits & _SIGN_BIT else (bits | _SIGN_BIT)
        return _TAGGED_U64.pack(_TAG_FLOAT, bits)
    if value_type is bytes:
        assert isinstance(value, bytes)
        return _TAG_BYTES + value.replace(b"\x00", b"\x00\xff") + _TERMINATOR
    raise InvalidArgument("value", value, "not a SQL value (None, bool, int, float, str, bytes)")


def encode_key(values: Iterable[Value]) -> bytes:
    """The order-preserving encoding of a tuple of values (a composite key)."""
    return b"".join([encode_value(value) for value in values])


def encode_values(values: Sequence[Value]) -> list[bytes]:
    """`[encode_value(value) for value in values]`, a column at a time: ints and strs (the
    usual key columns) are encoded in one comprehension each."""
    kinds = set(map(type, values))
    if kinds == {int}:
        ints = cast("Sequence[int]", values)
        if min(ints) < INT64_MIN or max(ints) > INT64_MAX:
            return [encode_value(value) for value in values]  # raises for the first outlier
        pack = _TAGGED_U64.pack
        return [pack(_TAG_INT, value + _SIGN_BIT) for value in ints]
    if kinds == {str}:
        texts = cast("Sequence[str]", values)
        tag = _TAG_STR
        terminator = _TERMINATOR
        return [
            tag + text.encode("utf-8").replace(b"\x00", b"\x00\xff") + terminator for text in texts
        ]
    encoded = [encode_value(value) for value in values]
    assert len(encoded) == len(values)
    return encoded
