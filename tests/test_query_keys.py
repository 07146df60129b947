"""Key and row encodings of `verity.query`: byte order is SQL order, rows round-trip.

The key property is what makes every range scan and index scan correct: for values
of one type, and for tuples of them, comparing encodings bytewise gives the same
answer as comparing the values, with NULL first.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verity.errors import CorruptionError, InvalidArgument
from verity.query._keys import NOT_NULL_LOW, PREFIX_END, encode_key, encode_value
from verity.query._rows import decode_row, encode_row
from verity.query._types import Value

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False)
TEXT = st.text(alphabet=st.sampled_from("\x00\x01a\xffé\U0001f600"), max_size=6) | st.text()
BYTES = st.binary(max_size=8) | st.lists(st.sampled_from([0, 1, 255]), max_size=6).map(bytes)
BOOLS = st.booleans()
TYPED = [INT64, FLOATS, TEXT, BYTES, BOOLS]


def sql_order_key(value: Value) -> tuple[bool, Any]:
    """SQL order on one type: NULL first, then the values' own order."""
    return (value is not None, value)


def sign(number: int) -> int:
    return (number > 0) - (number < 0)


def compare(left: Any, right: Any) -> int:
    return sign((left > right) - (left < right))


@pytest.mark.parametrize("values", TYPED, ids=["int", "float", "str", "bytes", "bool"])
@given(data=st.data())
def test_encoding_orders_values_like_sql(values: st.SearchStrategy[Value], data: Any) -> None:
    optional = st.none() | values
    left, right = data.draw(optional), data.draw(optional)
    expected = compare(sql_order_key(left), sql_order_key(right))
    assert compare(encode_value(left), encode_value(right)) == expected


@pytest.mark.parametrize("values", TYPED, ids=["int", "float", "str", "bytes", "bool"])
@given(data=st.data())
def test_encoding_orders_tuples_lexicographically(
    values: st.SearchStrategy[Value], data: Any
) -> None:
    # A composite key whose columns are of the given type, then of another type.
    other = data.draw(st.sampled_from(TYPED))
    pair = st.tuples(values, other)
    left, right = data.draw(pair), data.draw(pair)
    expected = compare(left, right)
    assert compare(encode_key(left), encode_key(right)) == expected


@given(prefix=st.tuples(INT64, TEXT), rest=st.tuples(BYTES, st.none() | FLOATS))
def test_keys_with_a_prefix_lie_between_prefix_and_prefix_end(
    prefix: tuple[int, str], rest: tuple[bytes, float | None]
) -> None:
    encoded_prefix = encode_key(prefix)
    key = encode_key(prefix + rest)
    assert encoded_prefix < key < encoded_prefix + PREFIX_END


@given(value=st.one_of(*TYPED))
def test_null_sorts_below_not_null_low_below_every_value(value: Value) -> None:
    assert encode_value(None) < NOT_NULL_LOW < encode_value(value)


def test_minus_zero_encodes_as_zero() -> None:
    assert encode_value(-0.0) == encode_value(0.0)
    assert encode_value(-math.inf) < encode_value(-0.0) < encode_value(5e-324)


def test_strings_sort_prefix_first_even_with_nul() -> None:
    assert (
        encode_value("a") < encode_value("a\x00") < encode_value("a\x00\x00") < encode_value("ab")
    )
    assert encode_value(b"a") < encode_value(b"a\x00") < encode_value(b"a\x01")


@pytest.mark.parametrize(
    ("value", "reason"),
    [(math.nan, "NaN"), (2**63, "64-bit"), (-(2**63) - 1, "64-bit"), ([1], "not a SQL value")],
)
def test_values_without_an_order_are_refused(value: Any, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        encode_value(value)


ROW_VALUES = st.one_of(st.none(), BOOLS, INT64, st.floats(allow_nan=False), TEXT, BYTES)


@given(values=st.lists(ROW_VALUES, max_size=8).map(tuple))
def test_rows_round_trip(values: tuple[Value, ...]) -> None:
    decoded = decode_row(encode_row(values))
    assert decoded == values
    assert [type(item) for item in decoded] == [type(item) for item in values]


def test_row_floats_keep_their_sign_and_infinities() -> None:
    decoded = decode_row(encode_row((-0.0, math.inf, -math.inf)))
    assert math.copysign(1.0, decoded[0]) == -1.0  # type: ignore[arg-type]
    assert decoded[1:] == (math.inf, -math.inf)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"",
        lambda data: b"\x02" + data[1:],
        lambda data: data[:-1],
        lambda data: data + b"\x09",
        lambda data: data[:2] + struct.pack(">I", 1000) + data[6:],
    ],
    ids=["empty", "format", "truncated", "unknown_tag", "long_length"],
)
def test_damaged_rows_raise_corruption(damage: Callable[[bytes], bytes]) -> None:
    data = encode_row(("text", 5))
    with pytest.raises(CorruptionError):
        decode_row(damage(data))
