"""The bounds on every size a SQL statement or its parameters can choose.

One SQL string must not take the process down: each size that comes from the
caller has a documented bound, checked before anything proportional to it is
built, and exceeding it raises `SqlLimitExceeded` (a `SqlError` of kind "limit")
whose `limit` is the constant's name. The spec (`verity_spec.tables`, "Limits")
holds the same bounds and the same order of checks; docs/sdk.md, "SQL limits",
lists them for users.

Widths are measured as the stored forms measure them, so that a bound on the
measure is a bound on the bytes: a row's width is `len(encode_row(values))` (1,
plus 1 for NULL, TRUE and FALSE, 9 for a number, 5 + length for text in UTF-8
and for bytes); a key's width is `len(encode_key(values))` (1 for NULL, TRUE and
FALSE, 9 for a number, 3 + length + the number of zero bytes for text and bytes).

A write's event (`_events`) is its log record, sealed, and a record is at most the
log's `PAYLOAD_BYTES_MAX`: `STATEMENT_EVENT_BYTES_MAX` bounds the event's *width*, an
upper bound on its bytes that the spec computes from the statement and the tables
alone (it knows no object ids, so each tree name counts as the longest its id allows):

- `EVENT_BASE_WIDTH` plus the text's UTF-8 bytes, plus `EVENT_INDEX_WIDTH` for each
  index of the table (with a new one for CREATE INDEX; none for CREATE TABLE), plus
  `EVENT_DEFINITION_WIDTH` for the table's definition (CREATE TABLE, CREATE INDEX,
  DROP TABLE);
- INSERT: per row, `EVENT_ROW_WIDTH` + its key's width + its width;
- UPDATE: per matched row, a put of (data tree, key, new row), and per index whose
  value the row changes, a delete of the old entry and a put of (new entry, key);
- DELETE: per row, a delete of its key and a delete of each of its index entries;
- CREATE INDEX: per row of the table, a put of (entry, key);

where a put into the tree of a table or index named n counts `EVENT_PUT_WIDTH` + the
UTF-8 bytes of n + the key's and value's widths, and a delete `EVENT_DELETE_WIDTH` + n
+ the key's width (an index entry's width is the indexed value's key width plus the
primary key's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from verity.crypto import GCM_TAG_BYTES
from verity.errors import SqlLimitExceeded
from verity.storage import PAYLOAD_BYTES_MAX

__all__ = [
    "EVENT_BASE_WIDTH",
    "EVENT_DEFINITION_WIDTH",
    "EVENT_DELETE_WIDTH",
    "EVENT_INDEX_WIDTH",
    "EVENT_PUT_WIDTH",
    "EVENT_ROW_WIDTH",
    "EXPRESSION_DEPTH_MAX",
    "IN_LIST_MAX",
    "KEY_BYTES_MAX",
    "LIMITS",
    "LIMIT_OFFSET_MAX",
    "NAME_BYTES_MAX",
    "NUMBER_CHARS_MAX",
    "PARAMETERS_MAX",
    "QUERY_BYTES_MAX",
    "QUERY_ROWS_MAX",
    "ROW_BYTES_MAX",
    "SEALED_EVENT_OVERHEAD_BYTES",
    "SQL_TEXT_BYTES_MAX",
    "STATEMENT_EVENT_BYTES_MAX",
    "TABLE_COLUMNS_MAX",
    "event_base_width",
    "over_limit",
    "row_width",
]

SQL_TEXT_BYTES_MAX: Final = 1 << 20
"""The longest SQL text: 1 MiB of UTF-8 (SQLite's default limit is 1,000,000 bytes).
A text near it can take seconds to parse; pass large values as parameters."""

EXPRESSION_DEPTH_MAX: Final = 32
"""How deeply a statement may nest, counted on its tokens: each `(`, `[`, `{` or CASE
opens a level until its closing token, and each prefix operator (NOT, `-`, `+`, `~`,
...) one until the next AND, OR or comma or the end of its bracket. sqlglot's parser
recurses 20 to 25 Python frames per level and Python allows 1,000: 32 levels parse on
any thread's fresh stack."""

PARAMETERS_MAX: Final = 65_535
"""The most `?` in a statement, and the highest `$n` (PostgreSQL's bound: a 16-bit count)."""

NUMBER_CHARS_MAX: Final = 1_000
"""The longest numeric literal, in characters (a float has at most 309 digits; Python
refuses to read an int of more than 4,300)."""

NAME_BYTES_MAX: Final = 63
"""The longest table, column or index name, in UTF-8 bytes after lower-casing
(PostgreSQL's NAMEDATALEN - 1; a store tree is named after its table or index)."""

TABLE_COLUMNS_MAX: Final = 1_600
"""The most columns CREATE TABLE may declare (PostgreSQL's MaxHeapAttributeNumber)."""

IN_LIST_MAX: Final = 10_000
"""The most values one IN list may hold; a key lookup over several IN lists also reads
at most this many keys (the planner filters the rest)."""

LIMIT_OFFSET_MAX: Final = 2**63 - 1
"""The largest LIMIT or OFFSET (PostgreSQL's: a bigint). Nothing is allocated in
proportion to either; a negative value or another type is "type_mismatch"."""

ROW_BYTES_MAX: Final = 4 << 20
"""The widest row an INSERT or UPDATE may write: 4 MiB of `encode_row`. A statement's
log record holds its rows, and a record is at most 64 MiB."""

KEY_BYTES_MAX: Final = 1_000
"""The widest primary key, and index entry (indexed value, then primary key), a written
row may have: 1,000 bytes of `encode_key`, the projection store's key bound."""

QUERY_ROWS_MAX: Final = 100_000
"""The most rows one SELECT may answer; page with LIMIT/OFFSET or a key range."""

QUERY_BYTES_MAX: Final = 64 << 20
"""The most bytes (the sum of the answer rows' widths) one SELECT may answer: 64 MiB."""

SEALED_EVENT_OVERHEAD_BYTES: Final = 1 + 4 + GCM_TAG_BYTES + 1
"""What sealing adds to a write's event in its log record (docs/formats.md 5.3): the
envelope marker 0x02 and the DEK id (u32) before the AES-256-GCM ciphertext, the GCM
tag after it, and the tables marker 0x03 sealed in front of the event."""

STATEMENT_EVENT_BYTES_MAX: Final = PAYLOAD_BYTES_MAX - SEALED_EVENT_OVERHEAD_BYTES
"""The widest event a write statement may record (its width, above): the sealed event
is one log record, and a record holds at most `PAYLOAD_BYTES_MAX` (64 MiB) bytes. Split
a larger INSERT, UPDATE or DELETE into several statements."""

EVENT_BASE_WIDTH: Final = 256
"""An event's fixed fields, its table's name and (INSERT) its data tree's name: at most
23 + 63 bytes (format 1) or 23 + 63 + 23 + 63 (format 2), besides the text."""

EVENT_INDEX_WIDTH: Final = 1024
"""What one index of the table adds at most: its tree in an INSERT event (4 + 23 + 63),
its entry in the table's definition (53 + two JSON strings of at most 380 bytes: a name
of 63 UTF-8 bytes escaped), or the delete of its catalog key by DROP TABLE (83)."""

EVENT_DEFINITION_WIDTH: Final = 2 << 20
"""What the catalog changes of CREATE TABLE, CREATE INDEX or DROP TABLE add at most,
besides `EVENT_INDEX_WIDTH` per index: three changes of the catalog tree, and the
definition's JSON of up to `TABLE_COLUMNS_MAX` columns (at most 97 + 380 + 1,600 *
(425 + 381) bytes, about 1.3 MB)."""

EVENT_PUT_WIDTH: Final = 34
"""A put's framing (tree length u16, key length u32, flag, value length u32: 11 bytes)
and its tree name's prefix: "t:" or "i:", an object id (a u64: at most 20 digits), ":"."""

EVENT_DELETE_WIDTH: Final = 30
"""A delete's framing (tree length u16, key length u32, flag: 7 bytes) and the 23 bytes
of its tree name's prefix."""

EVENT_ROW_WIDTH: Final = 8
"""A row's framing in an INSERT event (its key's and its own length, u32 each)."""

LIMITS: Final[dict[str, int]] = {
    "SQL_TEXT_BYTES_MAX": SQL_TEXT_BYTES_MAX,
    "EXPRESSION_DEPTH_MAX": EXPRESSION_DEPTH_MAX,
    "PARAMETERS_MAX": PARAMETERS_MAX,
    "NUMBER_CHARS_MAX": NUMBER_CHARS_MAX,
    "NAME_BYTES_MAX": NAME_BYTES_MAX,
    "TABLE_COLUMNS_MAX": TABLE_COLUMNS_MAX,
    "IN_LIST_MAX": IN_LIST_MAX,
    "LIMIT_OFFSET_MAX": LIMIT_OFFSET_MAX,
    "ROW_BYTES_MAX": ROW_BYTES_MAX,
    "KEY_BYTES_MAX": KEY_BYTES_MAX,
    "QUERY_ROWS_MAX": QUERY_ROWS_MAX,
    "QUERY_BYTES_MAX": QUERY_BYTES_MAX,
    "STATEMENT_EVENT_BYTES_MAX": STATEMENT_EVENT_BYTES_MAX,
}
"""Every bound by name (the names `SqlLimitExceeded.limit` takes)."""


def over_limit(limit: str, value: int, construct: str = "") -> SqlLimitExceeded:
    """The error for a size `value` over the bound named `limit`."""
    maximum = LIMITS[limit]
    assert value > maximum, (limit, value)
    return SqlLimitExceeded(limit, value, maximum, construct)


def event_base_width(sql: str, indexes: int, definition: bool) -> int:
    """The width of a write's event before its rows and entries: `EVENT_BASE_WIDTH`, the
    UTF-8 bytes of `sql`, `EVENT_INDEX_WIDTH` per index of the table, and for DDL
    `EVENT_DEFINITION_WIDTH`."""
    text = len(sql) if sql.isascii() else len(sql.encode("utf-8"))
    width = EVENT_BASE_WIDTH + text + EVENT_INDEX_WIDTH * indexes
    return width + EVENT_DEFINITION_WIDTH if definition else width


_NONE_TYPE: Final = type(None)


def row_width(values: Sequence[object]) -> int:
    """`len(encode_row(values))`, without encoding: 1, plus 1 for NULL, TRUE and FALSE,
    9 for a number, 5 + the UTF-8 length for text, 5 + the length for bytes."""
    width = 1
    for value in values:
        value_type = type(value)
        if value_type is int or value_type is float:
            width += 9
        elif value_type is str:
            assert isinstance(value, str)
            width += 5 + (len(value) if value.isascii() else len(value.encode("utf-8")))
        elif value_type is bytes:
            assert isinstance(value, bytes)
            width += 5 + len(value)
        else:
            assert value_type is bool or value_type is _NONE_TYPE, value_type
            width += 1
    return width
