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
from collections.abc import Sequence
from typing import Final, TypeAlias, cast, final

from verity.errors import SqlError
from verity.query._limits import LIMIT_OFFSET_MAX, over_limit

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "ColumnType",
    "Value",
    "check_count",
    "coerce",
    "coerce_column",
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
_SHOWN_TYPES: Final = frozenset({type(None), bool, int, float})


def describe_value(value: object) -> str:
    """`value` as an error message shows it: its type and a truncated repr. Never fails:
    an int too large to print shows its size, and a value of another type its type."""
    name = type(value).__name__
    if type(value) is int and value.bit_length() > 64:
        return f"int of {value.bit_length()} bits"
    if type(value) is str or type(value) is bytes:
        shown = repr(value[:60])
    elif type(value) in _SHOWN_TYPES:
        shown = repr(value)
    else:
        return name
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{name} {shown}"


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


_NONE_TYPE: Final = type(None)
_COLUMN_PYTHON_TYPES: Final[dict[ColumnType, type]] = {
    ColumnType.BIGINT: int,
    ColumnType.INTEGER: int,
    ColumnType.TIMESTAMP: int,
    ColumnType.DOUBLE: float,
    ColumnType.TEXT: str,
    ColumnType.BOOLEAN: bool,
    ColumnType.BYTES: bytes,
}


def coerce_column(column_type: ColumnType, values: Sequence[object]) -> Sequence[Value] | None:
    """`[coerce(column_type, value, ...) for value in values]` when every value is NULL or
    already of the column's own Python type and in range, checked a column at a time;
    None when some value needs `coerce` itself (a conversion, or an error to raise).

    The bulk INSERT path binds a column with this; on None it goes row by row, so that
    errors come in the spec's order.
    """
    kinds = set(map(type, values))
    present = values
    if _NONE_TYPE in kinds:
        kinds.discard(_NONE_TYPE)
        present = [value for value in values if value is not None]
    if not kinds:
        return cast("Sequence[None]", values)
    if len(kinds) != 1 or kinds.pop() is not _COLUMN_PYTHON_TYPES[column_type]:
        return None
    if column_type in _INT_TYPES:
        ints = cast("Sequence[int]", present)
        if min(ints) < INT64_MIN or max(ints) > INT64_MAX:
            return None
    elif column_type is ColumnType.TEXT:
        joined = "".join(cast("Sequence[str]", present))
        if not joined.isascii():
            try:
                joined.encode("utf-8")  # a lone surrogate has no UTF-8 form: refused
            except UnicodeEncodeError:
                return None
    elif column_type is ColumnType.DOUBLE:
        reals = cast("Sequence[float]", present)
        if any(map(math.isnan, reals)):
            return None
        if 0.0 in reals:
            # -0.0 == 0.0: both are stored as 0.0, as `coerce` stores them.
            return [0.0 if value == 0.0 else value for value in cast("Sequence[Value]", values)]
    assert len(present) <= len(values)
    return cast("Sequence[Value]", values)


def _double(real: float, construct: str) -> float:
    if math.isnan(real):
        raise SqlError("type_mismatch", construct, "NaN has no place in SQL order")
    # -0.0 == 0.0 already; storing one zero keeps keys, rows and answers alike.
    return real if real != 0.0 else 0.0


def check_count(value: object, construct: str) -> int:
    """A LIMIT or OFFSET: a non-negative int, else SqlError("type_mismatch"); at most
    `LIMIT_OFFSET_MAX`, else SqlLimitExceeded."""
    if type(value) is int and value >= 0:
        if value > LIMIT_OFFSET_MAX:
            shown = value if value.bit_length() <= 128 else 2**128  # printable
            raise over_limit("LIMIT_OFFSET_MAX", shown, f"{construct} {describe_value(value)}")
        return value
    raise SqlError(
        "type_mismatch", construct, f"must be a non-negative int, got {describe_value(value)}"
    )
