"""Column types and the one rule for which Python value a column accepts.

Types (the dialect): BIGINT, INTEGER/INT and TIMESTAMP hold an `int` (not a `bool`)
in the signed 64-bit range; TIMESTAMP counts nanoseconds since the epoch. DOUBLE
(also REAL, FLOAT) holds a `float` and accepts an `int`, stored as `float`. TEXT
(VARCHAR) holds a `str`, BOOLEAN (BOOL) a `bool`, BYTES (BLOB) `bytes`. NULL fits
any column's type (NOT NULL is a constraint, checked apart). Anything else is
`SqlError("type_mismatch")`.

Choices the dialect leaves open, made here once for every use (INSERT, UPDATE, WHERE
values, index keys) and as the spec makes them: a DOUBLE `-0.0` is stored as `0.0`
(SQL has one zero); NaN is refused, since it has no place in SQL order; a `str` with a
lone surrogate is refused, since it has no UTF-8 encoding.
"""

from __future__ import annotations

import enum
import math
from typing import Final, TypeAlias, final

from verity.errors import SqlError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "ColumnType",
    "Value",
    "check_count",
    "coerce",
    "describe_value",
]

Value: TypeAlias = bool | int | float | str | bytes | None
"""A SQL value as Python sees it."""

INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1


@final
class ColumnType(enum.Enum):
    """A column's declared type; the value is its canonical SQL name."""

    BIGINT = "BIGINT"
    INTEGER = "INTEGER"
    TIMESTAMP = "TIMESTAMP"
    DOUBLE = "DOUBLE"
    TEXT = "TEXT"
    BOOLEAN = "BOOLEAN"
    BYTES = "BYTES"


_INT_TYPES: Final = frozenset({ColumnType.BIGINT, ColumnType.INTEGER, ColumnType.TIMESTAMP})


def describe_value(value: object) -> str:
    """`value` as an error message shows it: its type and a truncated repr."""
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{type(value).__name__} {shown}"


def coerce(column_type: ColumnType, value: object, construct: str) -> Value:
    """`value` as a column of type `column_type` stores it, or SqlError("type_mismatch").

    NULL passes: NOT NULL is a constraint, checked apart (after every value's type).
    `construct` names the column (or other place) in the error message.
    """
    if value is None:
        return None
    # bool is an int subclass, so it is tested first: TRUE is not 1 here.
    if isinstance(value, bool):
        if column_type is ColumnType.BOOLEAN:
            return bool(value)
    elif isinstance(value, int):
        if column_type in _INT_TYPES:
            if INT64_MIN <= value <= INT64_MAX:
                return int(value)
            reason = f"{describe_value(value)} is outside the signed 64-bit range"
            raise SqlError("type_mismatch", construct, reason)
        if column_type is ColumnType.DOUBLE:
            try:
                return _double(float(value), construct)
            except OverflowError:
                reason = f"{describe_value(value)} is too large for a DOUBLE"
                raise SqlError("type_mismatch", construct, reason) from None
    elif isinstance(value, float):
        if column_type is ColumnType.DOUBLE:
            return _double(float(value), construct)
    elif isinstance(value, str):
        if column_type is ColumnType.TEXT:
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    reason = f"{describe_value(value)} is not valid Unicode (a lone surrogate)"
                    raise SqlError("type_mismatch", construct, reason) from None
            return str(value)
    elif isinstance(value, bytes) and column_type is ColumnType.BYTES:
        return bytes(value)
    reason = f"{column_type.value} does not accept {describe_value(value)}"
    raise SqlError("type_mismatch", construct, reason)


def _double(real: float, construct: str) -> float:
    if math.isnan(real):
        raise SqlError("type_mismatch", construct, "NaN has no place in SQL order")
    # -0.0 == 0.0 already; storing one zero keeps keys, rows and answers alike.
    return real if real != 0.0 else 0.0


def check_count(value: object, construct: str) -> int:
    """A LIMIT or OFFSET: a non-negative int, else SqlError("type_mismatch")."""
    if type(value) is int and value >= 0:
        return value
    raise SqlError(
        "type_mismatch", construct, f"must be a non-negative int, got {describe_value(value)}"
    )
