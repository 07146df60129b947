"""Row values: a tuple of SQL values as the bytes stored under a row's key.

The format is self-describing, so a row decodes without its table's definition:
a format byte (1), then for each column in table order a tag and a payload:

    0 NULL | 1 FALSE | 2 TRUE | 3 int: 8 bytes big-endian signed
    | 4 float: 8 bytes IEEE 754 big-endian | 5 str: u32 length + UTF-8
    | 6 bytes: u32 length + the bytes

Rows are not compared as bytes (keys are, see `_keys`), so this format only has to
be compact and quick to decode.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final, cast

from verity.errors import CorruptionError, InvalidArgument
from verity.query._types import Value

__all__ = ["decode_row", "encode_row", "encode_rows"]

_FORMAT: Final = 1
_TAG_NULL: Final = 0
_TAG_FALSE: Final = 1
_TAG_TRUE: Final = 2
_TAG_INT: Final = 3
_TAG_FLOAT: Final = 4
_TAG_STR: Final = 5
_TAG_BYTES: Final = 6
_INT: Final = struct.Struct(">Bq")
_FLOAT: Final = struct.Struct(">Bd")
_LENGTH: Final = struct.Struct(">BI")
_FORMAT_BYTE: Final = bytes((_FORMAT,))
_NULL_BYTE: Final = b"\x00"
# The tag and length of each str of fewer than 256 bytes.
_SHORT_STR_HEADS: Final = tuple(_LENGTH.pack(_TAG_STR, length) for length in range(256))
_NONE_TYPE: Final = type(None)
_UNPACK_INT: Final = struct.Struct(">q").unpack_from
_UNPACK_FLOAT: Final = struct.Struct(">d").unpack_from
_UNPACK_LENGTH: Final = struct.Struct(">I").unpack_from


def encode_row(values: Sequence[Value]) -> bytes:
    """The stored form of a row (values already checked against their columns)."""
    parts: list[bytes] = [bytes((_FORMAT,))]
    for value in values:
        value_type = type(value)
        if value is None:
            parts.append(b"\x00")
        elif value_type is bool:
            parts.append(b"\x02" if value else b"\x01")
        elif value_type is int:
            assert isinstance(value, int)
            parts.append(_INT.pack(_TAG_INT, value))
        elif value_type is float:
            assert isinstance(value, float)
            parts.append(_FLOAT.pack(_TAG_FLOAT, value))
        elif value_type is str:
            assert isinstance(value, str)
            raw = value.encode("utf-8")
            parts.append(_LENGTH.pack(_TAG_STR, len(raw)))
            parts.append(raw)
        elif value_type is bytes:
            assert isinstance(value, bytes)
            parts.append(_LENGTH.pack(_TAG_BYTES, len(value)))
            parts.append(value)
        else:
            raise InvalidArgument("value", value, "not a SQL value")
    return b"".join(parts)


def encode_rows(columns: Sequence[Sequence[Value]]) -> list[bytes]:
    """`encode_row` of every row, where row i holds `column[i]` of each of `columns` (in
    table order): the same bytes, made a column at a time, which is several times quicker
    for a many-row INSERT than encoding row by row."""
    assert columns, "a table has columns"
    count = len(columns[0])
    parts: list[Sequence[bytes]] = [[_FORMAT_BYTE] * count]
    for column in columns:
        assert len(column) == count, (len(column), count)
        parts.append(_encode_column(column))
    return list(map(b"".join, zip(*parts, strict=True)))


def _encode_column(values: Sequence[Value]) -> list[bytes]:
    """The encoded field of each of `values` (one column of several rows)."""
    kinds = set(map(type, values))
    has_null = _NONE_TYPE in kinds
    kinds.discard(_NONE_TYPE)
    if kinds == {int}:
        pack_int = _INT.pack
        if not has_null:
            return [pack_int(_TAG_INT, value) for value in cast("Sequence[int]", values)]
        return [
            _NULL_BYTE if value is None else pack_int(_TAG_INT, value)
            for value in cast("Sequence[int | None]", values)
        ]
    if kinds == {str}:
        pack_length = _LENGTH.pack
        if not has_null:
            raws = [value.encode("utf-8") for value in cast("Sequence[str]", values)]
            if max(map(len, raws)) < len(_SHORT_STR_HEADS):
                heads = _SHORT_STR_HEADS  # a lookup is quicker than a pack per value
                return [heads[len(raw)] + raw for raw in raws]
            return [pack_length(_TAG_STR, len(raw)) + raw for raw in raws]
        return [
            _NULL_BYTE if value is None else pack_length(_TAG_STR, len(raw := value.encode())) + raw
            for value in cast("Sequence[str | None]", values)
        ]
    if kinds == {float} and not has_null:
        pack_float = _FLOAT.pack
        return [pack_float(_TAG_FLOAT, value) for value in cast("Sequence[float]", values)]
    # Columns of NULL, bool, bytes or float with NULLs: value by value, as `encode_row` does.
    return [encode_row((value,))[1:] for value in values]


def decode_row(data: bytes) -> tuple[Value, ...]:
    """The values of a row stored by `encode_row`; CorruptionError if it is not one."""
    if not data or data[0] != _FORMAT:
        raise CorruptionError(f"row value does not start with format byte {_FORMAT}")
    values: list[Value] = []
    append = values.append
    offset = 1
    end = len(data)
    try:
        while offset < end:
            tag = data[offset]
            offset += 1
            if tag == _TAG_INT:
                append(_UNPACK_INT(data, offset)[0])
                offset += 8
            elif tag == _TAG_STR:
                (length,) = _UNPACK_LENGTH(data, offset)
                offset += 4 + length
                if offset > end:
                    raise CorruptionError("row value ends inside a string")
                append(data[offset - length : offset].decode("utf-8"))
            elif tag == _TAG_NULL:
                append(None)
            elif tag == _TAG_FLOAT:
                append(_UNPACK_FLOAT(data, offset)[0])
                offset += 8
            elif tag in (_TAG_FALSE, _TAG_TRUE):
                append(tag == _TAG_TRUE)
            elif tag == _TAG_BYTES:
                (length,) = _UNPACK_LENGTH(data, offset)
                offset += 4 + length
                if offset > end:
                    raise CorruptionError("row value ends inside a byte string")
                append(data[offset - length : offset])
            else:
                raise CorruptionError(f"row value has unknown tag {tag} at byte {offset - 1}")
    except (struct.error, UnicodeDecodeError) as error:
        raise CorruptionError(f"row value is malformed: {error}") from None
    return tuple(values)
