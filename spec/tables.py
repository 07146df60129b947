"""The tables of a tenant, as plain dictionaries per log position.

This module is the reference for what VerityDB's SQL does. Every successful
write statement (CREATE TABLE, CREATE INDEX, DROP TABLE, INSERT, UPDATE,
DELETE) is one log record at one log position; the tables after it are kept
here whole, as a `TablesState` of plain dictionaries, in a `History` of
(position, state) pairs. Reading as of position p means: take the state of
the last write whose position is <= p (the empty state if there is none).
Nothing is cached, indexed or planned: `verity.query` and `verity.store` must
give the same answers (rows, affected counts and error kinds) with B+trees,
secondary indexes and a plan cache (conformance/).

    execute(history, sql, params, position) -> (history, outcome)
    query_at(history, sql, params, position) -> outcome

An outcome is `Written(rows_affected)`, `Rows(columns, rows)` or
`Failed(kind, construct, limit)`. A failed statement changes nothing. The kinds
are "syntax", "unsupported", "unknown_table", "unknown_column", "type_mismatch",
"constraint", "table_exists", "parameter" and "limit" (`verity.errors.SqlError`;
for "limit", `limit` names the bound, as `SqlLimitExceeded.limit` does).

The dialect (docs: issue 4, "The SQL dialect"), with the choices this module
makes where that text is silent marked [choice]:

Text and names
- The text is read by sqlglot's PostgreSQL reader. It must hold exactly one
  statement; a trailing `;` and empty statements (`;;`) are ignored. A text
  sqlglot cannot read, or with no or several statements, is "syntax".
- Chains of AND or OR, and lists, may be of any length within the limits
  below; nesting may not (see "Limits").
- Identifiers are case-insensitive: every table, column and index name is
  lower-cased, quoted or not. [choice] An empty name (`""`) is "syntax".
- Anything the dialect does not name is "unsupported": JOIN, subqueries, WITH,
  UNION, DISTINCT, GROUP BY, HAVING, aliases (`a AS b`, `FROM t x`), qualified
  names (`t.a`, `s.t`), casts, functions other than `COUNT(*)`, RETURNING,
  ON CONFLICT, `IF [NOT] EXISTS`, TEMP tables, CASCADE, EXPLAIN, transactions.

Types
- BIGINT/INTEGER/INT and TIMESTAMP hold Python ints in the signed 64-bit
  range (never bool); DOUBLE/REAL/FLOAT hold floats and accept ints, which are
  stored as `float(value)` (an int too large for a float is "type_mismatch");
  TEXT/VARCHAR holds str; BOOLEAN/BOOL holds bool; BYTES/BLOB holds bytes.
  Canonical names are kept: BIGINT, TEXT, BOOLEAN, DOUBLE, TIMESTAMP, BYTES.
- [choice] Synonyms that sqlglot reads as one of these types are the same
  type (INT4, INT8, FLOAT4, FLOAT8, DOUBLE PRECISION, STRING, CHARACTER
  VARYING, BYTEA); any other type, or one with a length or precision
  (`VARCHAR(10)`), is "unsupported".
- [choice] DOUBLE refuses NaN ("type_mismatch": NaN equals nothing, so it
  could not be a key nor compared) and stores -0.0 as 0.0 (they are equal).
- [choice] TEXT refuses a str that is not valid Unicode (a lone surrogate
  cannot be encoded as UTF-8): "type_mismatch". Text compares by code point.
- Literals: `123` is an int, `1.5`, `1.` and `1e3` are floats (so `1.0` does
  not fit BIGINT) [choice], `'x'` is a str, TRUE/FALSE are bools, `X'00ff'`
  is bytes, NULL is None. A minus before a numeric literal negates it; a value
  in parentheses is that value. [choice] A minus before anything else (`-?`,
  `- -1`) is "unsupported"; so are `0x10` (an integer in PostgreSQL, bytes to
  sqlglot) and `E'...'` strings; `X'...'` with an odd number of hex digits is
  "syntax". A decimal literal too large for a float reads as infinity, as
  Python's `float()` reads it.

DDL
- `CREATE TABLE t (a BIGINT, b TEXT NOT NULL, PRIMARY KEY (a, ...))` or
  `a BIGINT PRIMARY KEY`. Primary key columns are NOT NULL. [choice] The only
  column constraints are NOT NULL and PRIMARY KEY (an explicit NULL, DEFAULT,
  UNIQUE, CHECK, REFERENCES and named CONSTRAINTs are "unsupported"). No
  primary key: "unsupported"; two primary key clauses, or a column named twice
  (in the table or in its key): "syntax"; a key naming an unknown column:
  "unknown_column"; an existing table: "table_exists".
- `CREATE INDEX name ON t (col)`: one plain column, ascending. [choice] An
  unnamed, UNIQUE, multi-column, expression, DESC, USING or partial index is
  "unsupported". Index names form one namespace over all tables, apart from
  table names; a name in use is "table_exists"; DROP TABLE drops the table's
  indexes with it. Indexes never change an answer.
- `DROP TABLE t`; the name may be created again as a new, empty table.

DML
- `INSERT INTO t [(cols)] VALUES (...), ...`: without a column list the
  values are for every column in table order. [choice] A row with another
  number of values than target columns is "syntax"; DEFAULT is "unsupported".
  A missing or NULL value for a NOT NULL column is "constraint" [choice: also
  an explicit NULL, as PostgreSQL's not-null violation is a constraint error].
  A key already present, or twice in the statement, is "constraint".
- `UPDATE t SET col = value, ... [WHERE ...]`: values are literals or
  parameters; a primary key column is "unsupported". [choice] SET of NULL on a
  NOT NULL column is "constraint" even when no row matches. `rows_affected`
  counts the rows the WHERE matched, changed or not.
- `DELETE FROM t [WHERE ...]`.

SELECT
- `SELECT * | col, ... | COUNT(*) FROM t [WHERE] [ORDER BY] [LIMIT] [OFFSET]`.
  [choice] `*` and `COUNT(*)` stand alone; nothing selected (`SELECT FROM t`)
  is "syntax"; a column may be listed twice; ORDER BY names columns of the
  table (selected or not). `COUNT(*)` with ORDER BY is "unsupported" (nothing
  to order); LIMIT/OFFSET apply to its one row.
- Rows come in ascending primary key order unless ORDER BY says otherwise;
  ORDER BY puts NULLs first ascending and last descending, and ties keep
  primary key order. [choice] `NULLS FIRST/LAST` and `ORDER BY 1` are
  "unsupported" (PostgreSQL's default NULL order is the opposite of ours, so
  these must not be silently ignored).
- LIMIT and OFFSET are non-negative ints, literal or parameter, else
  "type_mismatch" (NULL too) [choice]; `LIMIT ALL` and FETCH are
  "unsupported".

WHERE
- `col op value` or `value op col` with op in =, <>, !=, <, >, <=, >=;
  `col [NOT] IN (values)`, `col IS [NOT] NULL`, AND, OR, NOT, parentheses.
  [choice] column-to-column and value-to-value comparisons are "unsupported";
  an empty IN list is "syntax".
- A value must fit the column's type as an INSERT would ("type_mismatch"
  otherwise, checked before any row is read, so even on an empty table);
  NULL fits any column. A DOUBLE column compares with `float(value)`.
- [choice] Three-valued logic as in SQL: a comparison with NULL (either side)
  is unknown; NOT unknown is unknown; `x IN (..., NULL)` is true on a match
  and unknown otherwise; a row is kept only when the condition is true.

Parameters
- `?` (numbered in order of appearance in the text) or `$1`, `$2`, ...; both
  in one statement is "parameter". [choice] The numbers used must be exactly
  1..len(params), so a gap (`$1, $3`) or an extra parameter is "parameter";
  other styles (`:name`, `%s`, `$name`, `$0`) are "parameter"; a value whose
  type is not exactly NoneType, bool, int, float, str or bytes is
  "parameter".
- The parameters are given as a tuple or a list of values. [choice] Any other
  sequence stands for the tuple of its items; a str, bytes or bytearray (a
  sequence, but of characters or byte values, never meant as parameters), or
  anything that is not a sequence, is "parameter".

Limits [choice]. Every size that comes from the statement or its parameters
has a bound; a statement over one fails with kind "limit" naming it, before
anything proportional to the size is built. A written row's *width* is 1 byte,
plus per value 1 for NULL, TRUE and FALSE, 9 for a number, and 5 plus the
length for text (in UTF-8) and bytes (what a row takes stored). A key's
*width* is, per value, 1 for NULL, TRUE and FALSE, 9 for a number, and 3 plus
the length plus the number of zero bytes for text (UTF-8) and bytes (the
order-preserving key encoding).
- `SQL_TEXT_BYTES_MAX`: the text's length in UTF-8 bytes (a lone surrogate,
  which is then "syntax", counts 3);
- `EXPRESSION_DEPTH_MAX`: how deeply the text nests, counted on its tokens:
  each opening bracket (`(`, `[`, `{`, CASE) opens a level until its closing
  one (`)`, `]`, `}`, END); each prefix operator (NOT, `-`, `+`, `~` and the
  other keywords in `PREFIX_TOKENS`) opens a level until the next AND, OR or
  comma, or the end of the bracket it stands in (sqlglot's parser recurses
  about twenty Python frames per level, and Python allows a thousand: a
  bound on the tokens keeps the answer the same on every caller's stack; a
  parse that still runs out of stack is "limit" too);
- `PARAMETERS_MAX`: the number of `?`, and the highest `$n`;
- `NUMBER_CHARS_MAX`: the characters of one numeric literal;
- `NAME_BYTES_MAX`: a table, column or index name, in UTF-8 bytes (after
  lower-casing);
- `TABLE_COLUMNS_MAX`: the columns of CREATE TABLE;
- `IN_LIST_MAX`: the values of one IN list;
- `LIMIT_OFFSET_MAX`: the value of LIMIT or OFFSET (a larger int is
  "limit"; a negative one or another type stays "type_mismatch");
- `ROW_BYTES_MAX`: the width of a row an INSERT or UPDATE writes;
- `KEY_BYTES_MAX`: the width of a written row's primary key, and of each of
  its index entries (the indexed value followed by the primary key);
- `QUERY_ROWS_MAX`, then `QUERY_BYTES_MAX`: the rows of a SELECT's answer
  and the sum of their widths;
- `STATEMENT_EVENT_BYTES_MAX`: the *event width* of a write, which bounds
  the bytes of the event that records it (docs/formats.md 5.3: the text and
  every change to the store, sealed into one log record of at most
  `PAYLOAD_BYTES_MAX` bytes). It counts what the event holds, each tree
  name as the longest its object id allows: `EVENT_BASE_WIDTH` plus the
  text's UTF-8 bytes, plus `EVENT_INDEX_WIDTH` per index of the table
  (counting the new one of CREATE INDEX), plus `EVENT_DEFINITION_WIDTH` for
  CREATE TABLE, CREATE INDEX and DROP TABLE; then for INSERT per row
  `EVENT_ROW_WIDTH` plus its key's width plus its width; for UPDATE per
  matched row a put of its key and new row, and per index whose value the
  row changes a delete of the old entry and a put of the new one (its
  value: the key); for DELETE per row a delete of its key and of each of
  its index entries; for CREATE INDEX per row a put of its entry (value:
  the key). A put into the tree of the table or index named n counts
  `EVENT_PUT_WIDTH` plus n's UTF-8 bytes plus the widths of its key and
  value, a delete `EVENT_DELETE_WIDTH` plus n's bytes plus its key's width;
  an index entry's width is that of the key (indexed value, primary key
  values).
- [choice] The text must be valid Unicode (no lone surrogate): "syntax".

Order of checks [choice]. When a statement has several faults, the kind
reported is the first of: (1) reading the text: its length ("limit"),
Unicode ("syntax"), tokens ("syntax"), depth and the number of `?`
("limit"), the parse and the statement count ("syntax"); (2) its shape:
`0x..` and NULLS FIRST/LAST, then the statement in the order the code below
meets its parts ("unsupported", "limit", and "syntax" for malformed lists);
(3) parameters ("parameter"); (4) names against the state ("unknown_table",
"table_exists", "unknown_column"; an UPDATE of a key column is "unsupported"
after these); (5) an INSERT row's length ("syntax"); (6) value types
("type_mismatch", every value before any constraint; LIMIT and OFFSET last);
(7) constraints; (8) the widths of written rows, row by row in the order
they are written: the row, its key, its index entries in index order
("limit"); (9) for a write, its event width, for a SELECT, the size of its
answer ("limit").

Positions: `execute` needs a position >= 0 and greater than every position in
the history, even for a SELECT [choice]. `query_at` takes a log position: an
int (never bool) in 0..2**64-1, as the log numbers its records. [choice]
Anything else (a str, a float, a bool, a negative int, 2**64) is refused with
`InvalidArgumentError` (`verity.errors.InvalidArgument`), not a SQL failure: it
is the caller's argument, not the statement, that is wrong. The position is
checked after the text and the parameters (a query that is no SELECT, or
whose parameters do not fit, fails as such whatever the position) and before
any name.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import final

import icontract
import sqlglot
import sqlglot.errors
from sqlglot import exp
from sqlglot.tokenizer_core import Token, TokenType

from verity_spec.errors import InvalidArgumentError
from verity_spec.records import PAYLOAD_BYTES_MAX

__all__ = [
    "BIGINT",
    "BOOLEAN",
    "BYTES",
    "COLUMN_TYPES",
    "DOUBLE",
    "ERROR_KINDS",
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
    "TEXT",
    "TIMESTAMP",
    "ColumnDef",
    "Failed",
    "History",
    "IndexDef",
    "Outcome",
    "Rows",
    "TableDef",
    "TablesState",
    "Written",
    "empty_history",
    "empty_state",
    "execute",
    "fits_column",
    "is_history",
    "key_width",
    "is_state",
    "latest_state",
    "query_at",
    "row_width",
    "state_at",
]

BIGINT = "BIGINT"
TEXT = "TEXT"
BOOLEAN = "BOOLEAN"
DOUBLE = "DOUBLE"
TIMESTAMP = "TIMESTAMP"
BYTES = "BYTES"
COLUMN_TYPES = (BIGINT, TEXT, BOOLEAN, DOUBLE, TIMESTAMP, BYTES)
"""The canonical column types; every accepted type name maps to one of these."""

ERROR_KINDS = (
    "syntax",
    "unsupported",
    "unknown_table",
    "unknown_column",
    "type_mismatch",
    "constraint",
    "table_exists",
    "parameter",
    "limit",
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
U64_MAX = 2**64 - 1

SqlValue = None | bool | int | float | str | bytes
"""A value in a row, a literal or a parameter."""

PARAMETER_TYPES = (type(None), bool, int, float, str, bytes)
"""The exact Python types a parameter value may have."""

# How sqlglot's PostgreSQL reader names the accepted types.
DATA_TYPES = {
    exp.DataType.Type.BIGINT: BIGINT,
    exp.DataType.Type.INT: BIGINT,
    exp.DataType.Type.TEXT: TEXT,
    exp.DataType.Type.VARCHAR: TEXT,
    exp.DataType.Type.BOOLEAN: BOOLEAN,
    exp.DataType.Type.DOUBLE: DOUBLE,
    exp.DataType.Type.FLOAT: DOUBLE,
    exp.DataType.Type.TIMESTAMP: TIMESTAMP,
    exp.DataType.Type.VARBINARY: BYTES,
}

COMPARISONS: dict[type[exp.Expr], str] = {
    exp.EQ: "=",
    exp.NEQ: "<>",
    exp.LT: "<",
    exp.GT: ">",
    exp.LTE: "<=",
    exp.GTE: ">=",
}

# `1 < a` says `a > 1`.
FLIPPED = {"=": "=", "<>": "<>", "<": ">", ">": "<", "<=": ">=", ">=": "<="}

INTEGER_LITERAL = re.compile(r"[0-9]+")
DECIMAL_LITERAL = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
HEX_DIGITS = re.compile(r"([0-9a-fA-F]{2})*")

# ---------------------------------------------------------------- limits

SQL_TEXT_BYTES_MAX = 1 << 20
"""The longest SQL text: 1 MiB of UTF-8 (SQLite's default is 1,000,000 bytes)."""
EXPRESSION_DEPTH_MAX = 32
"""How deeply a text may nest brackets and prefix operators (`expression_depth`)."""
PARAMETERS_MAX = 65_535
"""The most `?` in a text, and the highest `$n` (PostgreSQL's limit of bind parameters)."""
NUMBER_CHARS_MAX = 1_000
"""The longest numeric literal, in characters (a float has at most 309 digits)."""
NAME_BYTES_MAX = 63
"""The longest table, column or index name, in UTF-8 bytes (PostgreSQL's NAMEDATALEN - 1)."""
TABLE_COLUMNS_MAX = 1_600
"""The most columns a table may have (PostgreSQL's MaxHeapAttributeNumber)."""
IN_LIST_MAX = 10_000
"""The most values one IN list may hold."""
LIMIT_OFFSET_MAX = 2**63 - 1
"""The largest LIMIT or OFFSET (PostgreSQL's: a bigint)."""
ROW_BYTES_MAX = 4 << 20
"""The widest row an INSERT or UPDATE may write: 4 MiB (`row_width`)."""
KEY_BYTES_MAX = 1_000
"""The widest primary key, and index entry, a written row may have (`key_width`)."""
QUERY_ROWS_MAX = 100_000
"""The most rows one SELECT may answer; page with LIMIT and OFFSET or a key range."""
QUERY_BYTES_MAX = 64 << 20
"""The most bytes (the sum of `row_width`) one SELECT may answer: 64 MiB."""
SEALED_EVENT_OVERHEAD_BYTES = 1 + 4 + 16 + 1
"""What sealing adds to a write's event in its log record: the envelope marker and the
DEK id (u32), the AES-256-GCM tag, and the tables marker sealed with the event."""
STATEMENT_EVENT_BYTES_MAX = PAYLOAD_BYTES_MAX - SEALED_EVENT_OVERHEAD_BYTES
"""The largest event width of a write (see "Limits"): its sealed event fits a log record."""
EVENT_BASE_WIDTH = 256
"""An event's fixed fields and its table's (and data tree's) name, besides the text."""
EVENT_INDEX_WIDTH = 1024
"""What one index of the table may add: its tree (INSERT), its definition, its name."""
EVENT_DEFINITION_WIDTH = 2 << 20
"""What a table's definition may add (CREATE TABLE, CREATE INDEX, DROP TABLE)."""
EVENT_PUT_WIDTH = 34
"""A put's framing and its tree name's prefix (a u64 object id at most 20 digits)."""
EVENT_DELETE_WIDTH = 30
"""A delete's framing and its tree name's prefix."""
EVENT_ROW_WIDTH = 8
"""A row's framing in an INSERT's event."""

LIMITS = {
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
"""Every bound by name: the names a "limit" failure may give."""

# Tokens that open a level of `expression_depth` until their closing token.
OPENING_TOKENS = frozenset(
    {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE}
)
CLOSING_TOKENS = frozenset(
    {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END}
)
# Tokens sqlglot reads by recursing into what follows them: each opens a level until
# the next AND, OR or comma, or the end of the bracket it stands in.
PREFIX_TOKENS = frozenset(
    {
        TokenType.NOT,
        TokenType.DASH,
        TokenType.PLUS,
        TokenType.TILDE,
        TokenType.RLIKE,  # `~` in the PostgreSQL reader
        TokenType.PIPE_SLASH,
        TokenType.DPIPE_SLASH,
        TokenType.INTERVAL,
        TokenType.ANY,
        TokenType.ALL,
        TokenType.SOME,
        TokenType.EXISTS,
        TokenType.VARIADIC,
    }
)
PREFIX_ENDS = frozenset({TokenType.AND, TokenType.OR, TokenType.COMMA})


# ---------------------------------------------------------------- tables and state


@final
@dataclass(frozen=True)
class ColumnDef:
    """One column of a table."""

    name: str
    """Lower case."""
    type: str
    """One of `COLUMN_TYPES`."""
    not_null: bool
    """True for NOT NULL columns and every primary key column."""


@final
@dataclass(frozen=True)
class IndexDef:
    """A secondary index: a name and the one column it covers. It never changes an answer."""

    name: str
    column: str


@final
@dataclass(frozen=True)
class TableDef:
    """The definition of one table."""

    name: str
    columns: tuple[ColumnDef, ...]
    """In table order: the order of `SELECT *` and of an INSERT without a column list."""
    primary_key: tuple[str, ...]
    """The key's column names, in key order (one or more)."""
    indexes: tuple[IndexDef, ...]
    """In creation order."""


Key = tuple[SqlValue, ...]
Row = tuple[SqlValue, ...]


@final
@dataclass(frozen=True)
class TablesState:
    """Every table and its rows after some write. Never mutated: each write builds new dicts."""

    tables: Mapping[str, TableDef]
    """Table name -> definition."""
    rows: Mapping[str, Mapping[Key, Row]]
    """Table name -> (primary key values -> the whole row, in column order)."""


@final
@dataclass(frozen=True)
class History:
    """The state after each successful write statement, oldest first."""

    versions: tuple[tuple[int, TablesState], ...]
    """(log position of the write, state after it); positions strictly increase."""


# ---------------------------------------------------------------- outcomes


@final
@dataclass(frozen=True)
class Written:
    """A write statement succeeded and is one log record."""

    rows_affected: int
    """Rows inserted, updated (matched) or deleted; 0 for DDL."""


@final
@dataclass(frozen=True)
class Rows:
    """The answer to a SELECT."""

    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]


@final
@dataclass(frozen=True)
class Failed:
    """The statement was refused and changed nothing."""

    kind: str
    """One of `ERROR_KINDS`; conformance compares it (and `limit`)."""
    construct: str
    """The offending construct, for a human."""
    limit: str | None = None
    """For kind "limit", the name of the bound (a key of `LIMITS`); else None."""


Outcome = Written | Rows | Failed


class StatementFailed(Exception):
    """Raised inside this module where a statement fails; `execute` turns it into `Failed`."""

    def __init__(self, kind: str, construct: str, limit: str | None = None) -> None:
        assert kind in ERROR_KINDS
        assert (kind == "limit") == (limit in LIMITS)
        self.kind = kind
        self.construct = construct
        self.limit = limit
        super().__init__(f"{kind}: {construct}")


def over_limit(limit: str, value: int) -> StatementFailed:
    """The failure of a size `value` over the bound named `limit`."""
    assert value > LIMITS[limit]
    return StatementFailed("limit", f"{limit} is {LIMITS[limit]}, got {value}", limit)


def shown(value: object) -> str:
    """A value as a message shows it: short, and never failing (a huge int has no repr)."""
    if type(value) is int and value.bit_length() > 64:
        return f"an int of {value.bit_length()} bits"
    if type(value) is str or type(value) is bytes:
        return repr(value[:60]) + ("..." if len(value) > 60 else "")
    if type(value) in (type(None), bool, int, float):
        return repr(value)
    return f"a value of type {type(value).__name__}"


# ---------------------------------------------------------------- invariants


def fits_column(column: ColumnDef, value: object) -> bool:
    """`value` is exactly how a row stores a value of `column`."""
    if value is None:
        return not column.not_null
    if column.type in (BIGINT, TIMESTAMP):
        return type(value) is int and INT64_MIN <= value <= INT64_MAX
    if column.type == DOUBLE:
        if type(value) is not float or math.isnan(value):
            return False
        return not (value == 0.0 and math.copysign(1.0, value) < 0)
    if column.type == TEXT:
        return type(value) is str and is_unicode(value)
    if column.type == BOOLEAN:
        return type(value) is bool
    return column.type == BYTES and type(value) is bytes


def is_unicode(text: str) -> bool:
    """`text` can be encoded as UTF-8 (it has no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def value_width(value: object) -> int:
    """The bytes one value takes in a stored row: see "Limits"."""
    if value is None or type(value) is bool:
        return 1
    if type(value) is int or type(value) is float:
        return 9
    if isinstance(value, str):
        return 5 + len(value.encode("utf-8"))
    assert isinstance(value, bytes)
    return 5 + len(value)


def row_width(row: tuple[object, ...]) -> int:
    """The width of a row: 1, plus the width of each value."""
    return 1 + sum(value_width(value) for value in row)


def value_key_width(value: SqlValue) -> int:
    """The bytes one value takes in a key: see "Limits"."""
    if value is None or type(value) is bool:
        return 1
    if type(value) is int or type(value) is float:
        return 9
    raw = value.encode("utf-8") if type(value) is str else value
    assert type(raw) is bytes
    return 3 + len(raw) + raw.count(0)


def key_width(values: tuple[SqlValue, ...]) -> int:
    """The width of a key made of `values`, in key order."""
    return sum(value_key_width(value) for value in values)


def is_table(table: TableDef, rows: Mapping[Key, Row]) -> bool:
    """`table` is well defined and every row fits it, stored under its own key."""
    names = [column.name for column in table.columns]
    if len(set(names)) != len(names) or not all(name and name == name.lower() for name in names):
        return False
    if any(column.type not in COLUMN_TYPES for column in table.columns):
        return False
    key = table.primary_key
    if not key or len(set(key)) != len(key) or not set(key) <= set(names):
        return False
    if not all(column.not_null for column in table.columns if column.name in key):
        return False
    if not all(index.column in names for index in table.indexes):
        return False
    for stored_key, row in rows.items():
        if len(row) != len(table.columns) or stored_key != key_of(table, row):
            return False
        if too_wide(table, row) is not None:
            return False
        if not all(
            fits_column(column, value) for column, value in zip(table.columns, row, strict=True)
        ):
            return False
    return True


def is_state(state: TablesState) -> bool:
    """Tables and rows agree, every table is well formed, index names are unique."""
    if set(state.tables) != set(state.rows):
        return False
    index_names = [index.name for table in state.tables.values() for index in table.indexes]
    if len(set(index_names)) != len(index_names):
        return False
    return all(
        table.name == name and is_table(table, state.rows[name])
        for name, table in state.tables.items()
    )


def is_position(position: object) -> bool:
    return type(position) is int


def is_log_position(position: object) -> bool:
    """`position` may number a record of the log: an int (not bool) in 0..2**64-1."""
    return type(position) is int and 0 <= position <= U64_MAX


def is_history(history: History) -> bool:
    """A `History` of (int position, TablesState) pairs with strictly increasing positions.

    The states themselves are checked by `execute`'s postcondition when each is made.
    """
    if not isinstance(history, History) or not isinstance(history.versions, tuple):
        return False
    previous = None
    for version in history.versions:
        if not isinstance(version, tuple) or len(version) != 2:
            return False
        position, state = version
        if not is_position(position) or not isinstance(state, TablesState):
            return False
        if previous is not None and position <= previous:
            return False
        previous = position
    return True


def last_position(history: History) -> int | None:
    """The position of the newest write, or None for an empty history."""
    if not history.versions:
        return None
    return history.versions[-1][0]


def may_execute_at(history: History, position: object) -> bool:
    """`position` is a log position after every write in `history`."""
    if not is_position(position):
        return False
    assert isinstance(position, int)
    previous = last_position(history)
    return position >= 0 and (previous is None or position > previous)


def is_failed_kind(outcome: Outcome) -> bool:
    """A failure has a known kind, and names a bound exactly when its kind is "limit"."""
    if not isinstance(outcome, Failed):
        return True
    return outcome.kind in ERROR_KINDS and (outcome.kind == "limit") == (outcome.limit in LIMITS)


def answer_fits(outcome: Outcome) -> bool:
    """An answer is within `QUERY_ROWS_MAX` and `QUERY_BYTES_MAX`."""
    if not isinstance(outcome, Rows):
        return True
    within_rows = len(outcome.rows) <= QUERY_ROWS_MAX
    return within_rows and sum(row_width(row) for row in outcome.rows) <= QUERY_BYTES_MAX


def rows_are_rectangular(outcome: Outcome) -> bool:
    """Every answered row has one value per column."""
    if not isinstance(outcome, Rows):
        return True
    return all(len(row) == len(outcome.columns) for row in outcome.rows)


def history_follows(history: History, position: int, result: tuple[History, Outcome]) -> bool:
    """Only a write changes the history, and it appends exactly (position, a valid state)."""
    new_history, outcome = result
    if not isinstance(outcome, Written):
        return new_history is history
    return (
        new_history.versions[:-1] == history.versions
        and new_history.versions[-1][0] == position
        and is_state(new_history.versions[-1][1])
        and outcome.rows_affected >= 0
    )


# ---------------------------------------------------------------- history


@icontract.ensure(lambda result: is_state(result) and not result.tables)
def empty_state() -> TablesState:
    """No tables."""
    return TablesState(tables={}, rows={})


@icontract.ensure(lambda result: is_history(result) and not result.versions)
def empty_history() -> History:
    """The history of a tenant that has written nothing."""
    return History(versions=())


@icontract.require(lambda history: is_history(history))
def latest_state(history: History) -> TablesState:
    """The state after the newest write (the empty state if there is none)."""
    if not history.versions:
        return empty_state()
    return history.versions[-1][1]


@icontract.require(lambda history: is_history(history))
@icontract.require(lambda position: is_position(position))
def state_at(history: History, position: int) -> TablesState:
    """The state after the last write whose position is <= `position`."""
    found = empty_state()
    for written_at, state in history.versions:
        if written_at <= position:
            found = state
    return found


# ---------------------------------------------------------------- statements, as read


@final
@dataclass(frozen=True)
class Literal:
    """A value written in the statement."""

    value: SqlValue


@final
@dataclass(frozen=True)
class Param:
    """A parameter: `$number`, or the number-th `?`. Number 0: a style the dialect lacks."""

    number: int


Value = Literal | Param


@final
@dataclass(frozen=True)
class Comparison:
    """A comparison of a column with a value."""

    column: str
    operator: str
    """One of =, <>, <, >, <=, >=, with the column on the left."""
    value: Value


@final
@dataclass(frozen=True)
class InList:
    """`column IN (values)`."""

    column: str
    values: tuple[Value, ...]


@final
@dataclass(frozen=True)
class IsNull:
    """`column IS NULL` or `column IS NOT NULL`."""

    column: str
    negated: bool
    """True for IS NOT NULL."""


@final
@dataclass(frozen=True)
class Not:
    """NOT: true when the operand is false; unknown stays unknown."""

    operand: Condition


@final
@dataclass(frozen=True)
class And:
    """AND of its operands."""

    operands: tuple[Condition, ...]
    """Two or more: `x AND y AND z` is one And, so a long chain needs no deep recursion."""


@final
@dataclass(frozen=True)
class Or:
    """OR of its operands."""

    operands: tuple[Condition, ...]
    """Two or more, like And."""


Condition = Comparison | InList | IsNull | Not | And | Or


@final
@dataclass(frozen=True)
class CreateTable:
    """`CREATE TABLE`, as written."""

    table: str
    columns: tuple[ColumnDef, ...]
    """As declared: `not_null` is not yet forced on the key columns."""
    primary_key: tuple[str, ...]


@final
@dataclass(frozen=True)
class CreateIndex:
    """`CREATE INDEX index ON table (column)`."""

    index: str
    table: str
    column: str


@final
@dataclass(frozen=True)
class DropTable:
    """`DROP TABLE`."""

    table: str


@final
@dataclass(frozen=True)
class Insert:
    """`INSERT INTO table [(columns)] VALUES ...`."""

    table: str
    columns: tuple[str, ...] | None
    """None: every column, in table order."""
    rows: tuple[tuple[Value, ...], ...]


@final
@dataclass(frozen=True)
class Update:
    """`UPDATE table SET column = value, ... [WHERE ...]`."""

    table: str
    assignments: tuple[tuple[str, Value], ...]
    where: Condition | None


@final
@dataclass(frozen=True)
class Delete:
    """`DELETE FROM table [WHERE ...]`."""

    table: str
    where: Condition | None


@final
@dataclass(frozen=True)
class Select:
    """`SELECT ... FROM table ...`."""

    table: str
    columns: tuple[str, ...] | None
    """None: `*` (or COUNT(*))."""
    count: bool
    """True for `SELECT COUNT(*)`."""
    where: Condition | None
    order_by: tuple[tuple[str, bool], ...]
    """(column, descending) pairs, most significant first."""
    limit: Value | None
    offset: Value | None


Statement = CreateTable | CreateIndex | DropTable | Insert | Update | Delete | Select


@final
@dataclass(frozen=True)
class Parsed:
    """A statement and the parameter styles its text used."""

    statement: Statement
    question_marks: int
    """How many `?` the text holds."""
    dollar_parameters: int
    """How many `$n` (or other `$`/`@` parameters) the text holds."""


# ---------------------------------------------------------------- reading the text


def unsupported(node: exp.Expr | str) -> StatementFailed:
    construct = node if isinstance(node, str) else node.sql(dialect="postgres")
    return StatementFailed("unsupported", construct)


def malformed(construct: str) -> StatementFailed:
    return StatementFailed("syntax", construct)


def is_absent(value: object) -> bool:
    """sqlglot leaves an argument the text did not use as None, False or []."""
    return value is None or value is False or (isinstance(value, list) and not value)


def require_only(node: exp.Expr, allowed: set[str]) -> None:
    """Every argument of `node` the text used is one the dialect knows."""
    for key, value in node.args.items():
        if key not in allowed and not is_absent(value):
            raise unsupported(node)


def expect(node: object, kind: type[exp.Expr]) -> exp.Expr:
    """`node` is exactly a `kind` node (not a subclass, not missing)."""
    if type(node) is not kind:
        if isinstance(node, exp.Expr):
            raise unsupported(node)
        raise unsupported(f"missing {kind.__name__}")
    assert isinstance(node, exp.Expr)
    return node


def strip_parens(node: exp.Expr) -> exp.Expr:
    while type(node) is exp.Paren:
        require_only(node, {"this"})
        node = node.this
    return node


def name_of(node: object) -> str:
    """A lower-cased identifier."""
    identifier = expect(node, exp.Identifier)
    require_only(identifier, {"this", "quoted"})
    name = str(identifier.this).lower()
    if not name:
        raise malformed('""')
    if len(name.encode("utf-8")) > NAME_BYTES_MAX:
        raise over_limit("NAME_BYTES_MAX", len(name.encode("utf-8")))
    return name


def table_of(node: object) -> str:
    """The name of a plain table reference (no schema, no alias)."""
    table = expect(node, exp.Table)
    require_only(table, {"this"})
    return name_of(table.this)


def column_of(node: object) -> str:
    """The name of a plain column reference (no table qualifier)."""
    column = expect(node, exp.Column)
    require_only(column, {"this"})
    return name_of(column.this)


def no_duplicates(names: list[str], what: str) -> None:
    """No name is in `names` twice (the first one met again is reported)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise malformed(f"{what} {name} named twice")
        seen.add(name)


def number_of(text: str) -> int | float:
    """A numeric literal: digits only is an int; with a point or exponent, a float."""
    if len(text) > NUMBER_CHARS_MAX:
        raise over_limit("NUMBER_CHARS_MAX", len(text))
    if INTEGER_LITERAL.fullmatch(text):
        return int(text)
    if DECIMAL_LITERAL.fullmatch(text):
        return float(text)
    raise malformed(text)


def value_of(node: exp.Expr) -> Value:
    """A literal, a parameter, a value in parentheses, or minus a numeric literal."""
    node = strip_parens(node)
    kind = type(node)
    if kind is exp.Null:
        return Literal(None)
    if kind is exp.Boolean:
        require_only(node, {"this"})
        return Literal(bool(node.this))
    if kind is exp.Literal:
        require_only(node, {"this", "is_string"})
        if node.args.get("is_string"):
            return Literal(str(node.this))
        return Literal(number_of(str(node.this)))
    if kind is exp.Neg:
        require_only(node, {"this"})
        number = strip_parens(node.this)
        if type(number) is not exp.Literal or number.args.get("is_string"):
            raise unsupported(node)  # only a number may follow a minus: `-?`, `- -1` may not
        require_only(number, {"this", "is_string"})
        return Literal(-number_of(str(number.this)))
    if kind is exp.HexString:
        require_only(node, {"this"})
        digits = str(node.this)
        if not HEX_DIGITS.fullmatch(digits):
            raise malformed(f"X'{digits}'")
        return Literal(bytes.fromhex(digits))
    if kind is exp.Parameter:
        number = node.this
        is_numbered = type(number) is exp.Literal and INTEGER_LITERAL.fullmatch(str(number.this))
        if not is_numbered:
            return Param(0)
        digits = str(number.this).lstrip("0") or "0"
        if len(digits) > 20:  # not worth reading: reported as 10**20
            raise over_limit("PARAMETERS_MAX", 10**20)
        if int(digits) > PARAMETERS_MAX:
            raise over_limit("PARAMETERS_MAX", int(digits))
        return Param(int(digits))
    if kind is exp.Placeholder:
        return Param(0)  # `:name` or `%s`: every `?` was numbered before parsing
    raise unsupported(node)


def chain_of(node: exp.Expr, kind: type[exp.Expr]) -> list[exp.Expr]:
    """The operands of `a AND b AND c` (or OR), left to right; sqlglot nests the chain leftwards."""
    operands: list[exp.Expr] = []
    pending = [node]
    while pending:
        current = pending.pop()
        if type(current) is kind:
            require_only(current, {"this", "expression"})
            pending.append(current.expression)
            pending.append(current.this)
        else:
            operands.append(current)
    assert len(operands) >= 2
    return operands


def condition_of(node: exp.Expr) -> Condition:
    """A WHERE condition."""
    node = strip_parens(node)
    kind = type(node)
    if kind is exp.And:
        return And(tuple(condition_of(operand) for operand in chain_of(node, exp.And)))
    if kind is exp.Or:
        return Or(tuple(condition_of(operand) for operand in chain_of(node, exp.Or)))
    if kind is exp.Not:
        require_only(node, {"this"})
        return Not(condition_of(node.this))
    if kind in COMPARISONS:
        require_only(node, {"this", "expression"})
        left, right = strip_parens(node.this), strip_parens(node.expression)
        operator = COMPARISONS[kind]
        if type(left) is exp.Column and type(right) is not exp.Column:
            return Comparison(column_of(left), operator, value_of(right))
        if type(right) is exp.Column and type(left) is not exp.Column:
            return Comparison(column_of(right), FLIPPED[operator], value_of(left))
        raise unsupported(node)
    if kind is exp.In:
        require_only(node, {"this", "expressions"})
        column = column_of(strip_parens(node.this))
        if not node.expressions:
            raise malformed("IN ()")
        if len(node.expressions) > IN_LIST_MAX:
            raise over_limit("IN_LIST_MAX", len(node.expressions))
        return InList(column, tuple(value_of(value) for value in node.expressions))
    if kind is exp.Is:
        require_only(node, {"this", "expression", "negate"})
        if type(node.expression) is not exp.Null:
            raise unsupported(node)
        return IsNull(column_of(strip_parens(node.this)), bool(node.args.get("negate")))
    raise unsupported(node)


def where_of(node: object) -> Condition | None:
    if node is None:
        return None
    where = expect(node, exp.Where)
    require_only(where, {"this"})
    return condition_of(where.this)


def column_type_of(node: object) -> str:
    """The canonical type of a declared column type."""
    data_type = expect(node, exp.DataType)
    require_only(data_type, {"this", "kind", "nested"})
    if data_type.this == exp.DataType.Type.USERDEFINED:
        declared = data_type.args.get("kind")
        if type(declared) is exp.Identifier and str(declared.this).lower() == "bytes":
            return BYTES
        raise unsupported(data_type)
    if data_type.args.get("kind") is not None or data_type.this not in DATA_TYPES:
        raise unsupported(data_type)
    return DATA_TYPES[data_type.this]


def require_empty_index_parameters(node: object) -> None:
    """sqlglot attaches an empty IndexParameters to every PRIMARY KEY; INCLUDE etc. fill it."""
    if node is not None:
        require_only(expect(node, exp.IndexParameters), set())


def create_table_of(node: exp.Expr) -> CreateTable:
    require_only(node, {"this", "kind"})
    schema = expect(node.this, exp.Schema)  # CREATE TABLE ... AS SELECT has no Schema
    require_only(schema, {"this", "expressions"})
    table = table_of(schema.this)
    column_count = sum(1 for item in schema.expressions if type(item) is exp.ColumnDef)
    if column_count > TABLE_COLUMNS_MAX:
        raise over_limit("TABLE_COLUMNS_MAX", column_count)
    columns: list[ColumnDef] = []
    primary_keys: list[tuple[str, ...]] = []
    for item in schema.expressions:
        if type(item) is exp.ColumnDef:
            require_only(item, {"this", "kind", "constraints"})
            name = name_of(item.this)
            if item.args.get("kind") is None:
                raise malformed(f"column {name} has no type")
            not_null = False
            for constraint in item.args.get("constraints") or []:
                require_only(expect(constraint, exp.ColumnConstraint), {"kind"})
                rule = constraint.args.get("kind")
                if type(rule) is exp.NotNullColumnConstraint:
                    require_only(rule, set())  # `allow_null`: an explicit NULL
                    not_null = True
                elif type(rule) is exp.PrimaryKeyColumnConstraint:
                    require_only(rule, {"include"})
                    require_empty_index_parameters(rule.args.get("include"))
                    primary_keys.append((name,))
                else:
                    raise unsupported(constraint)
            columns.append(
                ColumnDef(name=name, type=column_type_of(item.args["kind"]), not_null=not_null)
            )
        elif type(item) is exp.PrimaryKey:
            require_only(item, {"expressions", "include"})
            require_empty_index_parameters(item.args.get("include"))
            key = [name_of(part) for part in item.expressions]
            no_duplicates(key, "primary key column")
            primary_keys.append(tuple(key))
        else:
            raise unsupported(item)
    if not primary_keys:
        raise unsupported(f"table {table} without a primary key")
    if len(primary_keys) > 1:
        raise malformed(f"table {table} with several primary keys")
    no_duplicates([column.name for column in columns], "column")
    return CreateTable(table=table, columns=tuple(columns), primary_key=primary_keys[0])


def create_index_of(node: exp.Expr) -> CreateIndex:
    require_only(node, {"this", "kind"})
    index = expect(node.this, exp.Index)
    require_only(index, {"this", "table", "params"})
    if index.this is None:
        raise unsupported(f"index on {index.args['table']} without a name")
    name = name_of(index.this)
    table = table_of(index.args.get("table"))
    parameters = expect(index.args.get("params"), exp.IndexParameters)
    require_only(parameters, {"columns"})
    parts = parameters.args.get("columns") or []
    if len(parts) != 1:
        raise unsupported(parameters)
    part = expect(parts[0], exp.Ordered)
    require_only(part, {"this", "nulls_first"})  # `desc`: a descending index
    return CreateIndex(index=name, table=table, column=column_of(part.this))


def drop_table_of(node: exp.Expr) -> DropTable:
    require_only(node, {"kind", "tables"})
    tables = node.args.get("tables") or []
    if str(node.args.get("kind")).upper() != "TABLE" or len(tables) != 1:
        raise unsupported(node)
    return DropTable(table=table_of(tables[0]))


def insert_of(node: exp.Expr) -> Insert:
    require_only(node, {"this", "expression"})
    target = node.this
    columns: tuple[str, ...] | None = None
    if type(target) is exp.Schema:
        require_only(target, {"this", "expressions"})
        names = [name_of(part) for part in target.expressions]
        no_duplicates(names, "column")
        columns = tuple(names)
        target = target.this
    table = table_of(target)
    values = expect(node.expression, exp.Values)
    require_only(values, {"expressions"})
    rows: list[tuple[Value, ...]] = []
    for row in values.expressions:
        require_only(expect(row, exp.Tuple), {"expressions"})
        rows.append(tuple(value_of(value) for value in row.expressions))
    return Insert(table=table, columns=columns, rows=tuple(rows))


def update_of(node: exp.Expr) -> Update:
    require_only(node, {"this", "expressions", "where"})
    table = table_of(node.this)
    assignments: list[tuple[str, Value]] = []
    for assignment in node.expressions:
        require_only(expect(assignment, exp.EQ), {"this", "expression"})
        assignments.append((column_of(assignment.this), value_of(assignment.expression)))
    no_duplicates([column for column, _ in assignments], "column")
    return Update(
        table=table, assignments=tuple(assignments), where=where_of(node.args.get("where"))
    )


def delete_of(node: exp.Expr) -> Delete:
    require_only(node, {"this", "where"})
    return Delete(table=table_of(node.this), where=where_of(node.args.get("where")))


def select_of(node: exp.Expr) -> Select:
    require_only(node, {"expressions", "from_", "where", "order", "limit", "offset"})
    outputs = node.expressions
    count = len(outputs) == 1 and type(outputs[0]) is exp.Count
    columns: tuple[str, ...] | None = None
    if count:
        require_only(outputs[0], {"this", "big_int"})
        require_only(expect(outputs[0].this, exp.Star), set())
    elif len(outputs) == 1 and type(outputs[0]) is exp.Star:
        require_only(outputs[0], set())
    else:
        columns = tuple(column_of(output) for output in outputs)
        if not columns:
            raise malformed("SELECT with nothing selected")
    source = node.args.get("from_")
    if source is None:
        raise unsupported("SELECT without FROM")
    require_only(expect(source, exp.From), {"this"})
    table = table_of(source.this)
    where = where_of(node.args.get("where"))
    order_by: list[tuple[str, bool]] = []
    order = node.args.get("order")
    if order is not None:
        require_only(expect(order, exp.Order), {"expressions"})
        for part in order.expressions:
            # `nulls_first` is sqlglot's PostgreSQL default, not ours; explicit NULLS
            # FIRST/LAST was refused from the tokens.
            require_only(expect(part, exp.Ordered), {"this", "desc", "nulls_first"})
            order_by.append((column_of(part.this), bool(part.args.get("desc"))))
    if count and order_by:
        raise unsupported("COUNT(*) with ORDER BY")
    limit: Value | None = None
    if node.args.get("limit") is not None:
        clause = expect(node.args["limit"], exp.Limit)
        require_only(clause, {"expression"})
        limit = value_of(clause.expression)
    offset: Value | None = None
    if node.args.get("offset") is not None:
        clause = expect(node.args["offset"], exp.Offset)
        require_only(clause, {"expression"})
        offset = value_of(clause.expression)
    return Select(
        table=table,
        columns=columns,
        count=count,
        where=where,
        order_by=tuple(order_by),
        limit=limit,
        offset=offset,
    )


def statement_of(node: exp.Expr) -> Statement:
    kind = type(node)
    if kind is exp.Create:
        created = str(node.args.get("kind")).upper()
        if created == "TABLE":
            return create_table_of(node)
        if created == "INDEX":
            return create_index_of(node)
    if kind is exp.Drop:
        return drop_table_of(node)
    if kind is exp.Insert:
        return insert_of(node)
    if kind is exp.Update:
        return update_of(node)
    if kind is exp.Delete:
        return delete_of(node)
    if kind is exp.Select:
        return select_of(node)
    raise unsupported(node)


def first_line(error: Exception) -> str:
    lines = str(error).splitlines()
    return lines[0] if lines else type(error).__name__


def tokens_of(sql: str) -> list[Token]:
    try:
        return sqlglot.tokenize(sql, read="postgres")
    except sqlglot.errors.SqlglotError as error:
        raise malformed(first_line(error)) from None


def refused_by_tokens(sql: str, tokens: list[Token]) -> str | None:
    """Constructs sqlglot's tree cannot tell apart from ones we accept: `0x..`, NULLS FIRST/LAST."""
    for token, following in zip(tokens, [*tokens[1:], None], strict=True):
        text = sql[token.start : token.end + 1]
        if token.token_type == TokenType.HEX_STRING and text[:2].upper() != "X'":
            return text
        after = "" if following is None else following.text.upper()
        if token.text.upper() == "NULLS" and after in ("FIRST", "LAST"):
            return f"NULLS {after}"
    return None


def expression_depth(tokens: list[Token]) -> int:
    """How deeply the tokens nest: the most levels open at once (see "Limits").

    Each opening bracket opens a level until its closing token; each prefix operator
    opens one until the next AND, OR or comma, or the end of its bracket. sqlglot's
    parser recurses about twenty Python frames per level.
    """
    open_levels: list[TokenType] = []  # innermost last
    deepest = 0
    for token in tokens:
        kind = token.token_type
        if kind in CLOSING_TOKENS or kind in PREFIX_ENDS:
            while open_levels and open_levels[-1] in PREFIX_TOKENS:
                open_levels.pop()
            if kind in CLOSING_TOKENS and open_levels:
                open_levels.pop()
        elif kind in OPENING_TOKENS or kind in PREFIX_TOKENS:
            open_levels.append(kind)
            deepest = max(deepest, len(open_levels))
    return deepest


def numbered_question_marks(sql: str, tokens: list[Token]) -> str:
    """The text with its k-th `?` token (never one in a string or comment) read as `$k`."""
    pieces: list[str] = []
    copied_up_to = 0
    number = 0
    for token in tokens:
        if token.token_type == TokenType.PLACEHOLDER and token.text == "?":
            assert sql[token.start : token.end + 1] == "?"
            number += 1
            pieces.append(sql[copied_up_to : token.start])
            pieces.append(f" ${number} ")
            copied_up_to = token.end + 1
    pieces.append(sql[copied_up_to:])
    return "".join(pieces)


def parse(sql: str) -> Parsed:
    """Read one statement of the dialect.

    sqlglot's parser recurses about twenty Python frames per level of nesting, and
    Python allows a thousand per thread: a caller whose own stack is already deep must
    get the same answer, so a reading that runs out of stack is done again on a new
    thread's empty stack. Out of stack there too, the statement nests too deeply.

    :raises StatementFailed: "syntax", "unsupported" or "limit".
    """
    try:
        return read_statement(sql)
    except RecursionError:
        pass
    outcome: list[Parsed | BaseException] = []

    def read_on_this_thread() -> None:
        try:
            outcome.append(read_statement(sql))
        except BaseException as error:  # handed to the caller's thread
            outcome.append(error)

    thread = threading.Thread(target=read_on_this_thread, name="verity-spec-parse")
    thread.start()
    thread.join()
    [result] = outcome
    if isinstance(result, RecursionError):
        raise StatementFailed(
            "limit", "a statement nested too deeply for the parser", "EXPRESSION_DEPTH_MAX"
        )
    if isinstance(result, BaseException):
        raise result
    return result


def read_statement(sql: str) -> Parsed:
    """`parse`, on the caller's stack."""
    if len(sql) > SQL_TEXT_BYTES_MAX:  # a character is at least one byte
        raise over_limit("SQL_TEXT_BYTES_MAX", len(sql))
    text_bytes = len(sql.encode("utf-8", "surrogatepass"))
    if text_bytes > SQL_TEXT_BYTES_MAX:
        raise over_limit("SQL_TEXT_BYTES_MAX", text_bytes)
    if not is_unicode(sql):
        raise malformed("a text that is not valid Unicode (a lone surrogate)")
    tokens = tokens_of(sql)
    depth = expression_depth(tokens)
    if depth > EXPRESSION_DEPTH_MAX:
        raise over_limit("EXPRESSION_DEPTH_MAX", depth)
    question_marks = sum(
        1 for t in tokens if t.token_type == TokenType.PLACEHOLDER and t.text == "?"
    )
    if question_marks > PARAMETERS_MAX:
        raise over_limit("PARAMETERS_MAX", question_marks)
    dollar_parameters = sum(1 for t in tokens if t.token_type == TokenType.PARAMETER)
    text = numbered_question_marks(sql, tokens)
    try:
        trees = sqlglot.parse(text, read="postgres")
    except sqlglot.errors.SqlglotError as error:
        raise malformed(first_line(error)) from None
    statements = [tree for tree in trees if tree is not None]
    if len(statements) != 1:
        raise malformed(f"{len(statements)} statements; exactly one is needed")
    refused = refused_by_tokens(sql, tokens)
    if refused is not None:
        raise unsupported(refused)
    return Parsed(statement_of(statements[0]), question_marks, dollar_parameters)


# ---------------------------------------------------------------- parameters


def values_in_condition(condition: Condition | None) -> list[Value]:
    if condition is None:
        return []
    if isinstance(condition, Comparison):
        return [condition.value]
    if isinstance(condition, InList):
        return list(condition.values)
    if isinstance(condition, IsNull):
        return []
    if isinstance(condition, Not):
        return values_in_condition(condition.operand)
    return [value for operand in condition.operands for value in values_in_condition(operand)]


def values_in(statement: Statement) -> list[Value]:
    """Every value the statement holds (where a parameter may stand)."""
    if isinstance(statement, Insert):
        return [value for row in statement.rows for value in row]
    if isinstance(statement, Update):
        assigned = [value for _, value in statement.assignments]
        return assigned + values_in_condition(statement.where)
    if isinstance(statement, Delete):
        return values_in_condition(statement.where)
    if isinstance(statement, Select):
        bounds = [value for value in (statement.limit, statement.offset) if value is not None]
        return values_in_condition(statement.where) + bounds
    return []


def parameters_of(params: object) -> tuple[object, ...]:
    """The parameter values `params` gives: a tuple, a list, or another sequence of them.

    :raises StatementFailed: "parameter", for a str, bytes, bytearray or a non-sequence.
    """
    if isinstance(params, str | bytes | bytearray) or not isinstance(params, Sequence):
        raise StatementFailed("parameter", f"parameters given as {type(params).__name__}")
    return tuple(params)


def check_parameters(parsed: Parsed, params: tuple[object, ...]) -> None:
    """The statement's parameters and `params` match one to one.

    :raises StatementFailed: "parameter".
    """
    if parsed.question_marks and parsed.dollar_parameters:
        raise StatementFailed("parameter", "both ? and $n")
    numbers = {value.number for value in values_in(parsed.statement) if isinstance(value, Param)}
    if 0 in numbers:
        raise StatementFailed("parameter", "a parameter style other than ? or $n, or $0")
    expected = set(range(1, len(params) + 1))
    if numbers != expected:
        used = ", ".join(f"${number}" for number in sorted(numbers)) or "none"
        raise StatementFailed("parameter", f"parameters used: {used}; given: {len(params)}")
    for number, value in enumerate(params, start=1):
        if type(value) not in PARAMETER_TYPES:
            raise StatementFailed("parameter", f"${number} = {shown(value)}")


def resolve(value: Value, params: tuple[object, ...]) -> SqlValue:
    """The value a literal or (checked) parameter stands for."""
    if isinstance(value, Literal):
        return value.value
    bound = params[value.number - 1]
    assert bound is None or isinstance(bound, bool | int | float | str | bytes)
    return bound


# ---------------------------------------------------------------- names and types


def table_named(state: TablesState, name: str) -> TableDef:
    if name not in state.tables:
        raise StatementFailed("unknown_table", name)
    return state.tables[name]


def column_named(table: TableDef, name: str) -> ColumnDef:
    for column in table.columns:
        if column.name == name:
            return column
    raise StatementFailed("unknown_column", f"{table.name}.{name}")


def column_index(table: TableDef, name: str) -> int:
    return [column.name for column in table.columns].index(name)


def key_of(table: TableDef, row: Row) -> Key:
    """The primary key values of `row`, in key order."""
    return tuple(row[column_index(table, name)] for name in table.primary_key)


def index_entry_width(table: TableDef, index: IndexDef, row: Row) -> int:
    """The width of `row`'s entry in `index`: its indexed value, then its primary key."""
    return key_width((row[column_index(table, index.column)], *key_of(table, row)))


def too_wide(table: TableDef, row: Row) -> StatementFailed | None:
    """Why `row` may not be written to `table`: its width, its key's, or an index
    entry's, checked in that order (then indexes in creation order); None if it may."""
    if row_width(row) > ROW_BYTES_MAX:
        return over_limit("ROW_BYTES_MAX", row_width(row))
    if key_width(key_of(table, row)) > KEY_BYTES_MAX:
        return over_limit("KEY_BYTES_MAX", key_width(key_of(table, row)))
    for index in table.indexes:
        if index_entry_width(table, index, row) > KEY_BYTES_MAX:
            return over_limit("KEY_BYTES_MAX", index_entry_width(table, index, row))
    return None


def event_base_width(sql: str, indexes: int, definition: bool) -> int:
    """A write's event width before its rows and entries ("Limits")."""
    width = EVENT_BASE_WIDTH + len(sql.encode("utf-8")) + EVENT_INDEX_WIDTH * indexes
    return width + (EVENT_DEFINITION_WIDTH if definition else 0)


def put_width(name: str, key: int, value: int) -> int:
    """What a put of a key and value of these widths into the tree of `name` counts."""
    return EVENT_PUT_WIDTH + len(name.encode("utf-8")) + key + value


def delete_width(name: str, key: int) -> int:
    """What a delete of a key of this width from the tree of `name` counts."""
    return EVENT_DELETE_WIDTH + len(name.encode("utf-8")) + key


def check_event_width(width: int) -> None:
    """A write's event width is within `STATEMENT_EVENT_BYTES_MAX`.

    :raises StatementFailed: "limit".
    """
    if width > STATEMENT_EVENT_BYTES_MAX:
        raise over_limit("STATEMENT_EVENT_BYTES_MAX", width)


def check_widths(table: TableDef, rows: list[Row]) -> None:
    """Every row of `rows`, in order, may be written to `table`.

    :raises StatementFailed: "limit".
    """
    for row in rows:
        failure = too_wide(table, row)
        if failure is not None:
            raise failure


def as_double(value: SqlValue) -> SqlValue:
    """An int or float as a DOUBLE column stores it; any other value unchanged."""
    if type(value) is int:
        try:
            value = float(value)
        except OverflowError:
            return value  # too large for a float: stays an int, which DOUBLE refuses
    if type(value) is float and value == 0.0:
        return 0.0  # -0.0 and 0.0 are one value
    return value


def stored(column: ColumnDef, value: SqlValue) -> SqlValue:
    """`value` as `column` stores it; NULL passes (NOT NULL is a constraint, checked apart).

    :raises StatementFailed: "type_mismatch".
    """
    if value is None:
        return None
    converted = as_double(value) if column.type == DOUBLE else value
    nullable = ColumnDef(name=column.name, type=column.type, not_null=False)
    if not fits_column(nullable, converted):
        raise StatementFailed("type_mismatch", f"{column.name} {column.type}: {shown(value)}")
    return converted


def columns_in_condition(condition: Condition | None) -> list[str]:
    if condition is None:
        return []
    if isinstance(condition, Comparison | InList | IsNull):
        return [condition.column]
    if isinstance(condition, Not):
        return columns_in_condition(condition.operand)
    return [name for operand in condition.operands for name in columns_in_condition(operand)]


def typed_condition(table: TableDef, condition: Condition, params: tuple[object, ...]) -> Condition:
    """The condition with every value bound and stored as its column stores it.

    :raises StatementFailed: "type_mismatch".
    """
    if isinstance(condition, Comparison):
        column = column_named(table, condition.column)
        value = stored(column, resolve(condition.value, params))
        return Comparison(condition.column, condition.operator, Literal(value))
    if isinstance(condition, InList):
        column = column_named(table, condition.column)
        values = tuple(Literal(stored(column, resolve(v, params))) for v in condition.values)
        return InList(condition.column, values)
    if isinstance(condition, IsNull):
        return condition
    if isinstance(condition, Not):
        return Not(typed_condition(table, condition.operand, params))
    operands = tuple(typed_condition(table, operand, params) for operand in condition.operands)
    return And(operands) if isinstance(condition, And) else Or(operands)


def typed_where(
    table: TableDef, condition: Condition | None, params: tuple[object, ...]
) -> Condition | None:
    return None if condition is None else typed_condition(table, condition, params)


# ---------------------------------------------------------------- evaluating a condition


def compare(left: SqlValue, operator: str, right: SqlValue) -> bool:
    """Two non-NULL values of one column type."""
    assert left is not None and right is not None
    if operator == "=":
        return left == right
    if operator == "<>":
        return left != right
    if operator == "<":
        return left < right  # type: ignore[operator]
    if operator == ">":
        return left > right  # type: ignore[operator]
    if operator == "<=":
        return left <= right  # type: ignore[operator]
    assert operator == ">="
    return left >= right  # type: ignore[operator]


def compare_values(left: SqlValue, right: SqlValue) -> int:
    """-1, 0 or 1, with NULL before every other value."""
    if left is None or right is None:
        return (left is not None) - (right is not None)
    return compare(left, ">", right) - compare(left, "<", right)


def truth(condition: Condition, table: TableDef, row: Row) -> bool | None:
    """SQL's three-valued truth of a typed condition on `row`: True, False or None (unknown)."""
    if isinstance(condition, Comparison):
        actual = row[column_index(table, condition.column)]
        assert isinstance(condition.value, Literal)
        if actual is None or condition.value.value is None:
            return None
        return compare(actual, condition.operator, condition.value.value)
    if isinstance(condition, InList):
        actual = row[column_index(table, condition.column)]
        assert all(isinstance(value, Literal) for value in condition.values)
        listed = [value.value for value in condition.values if isinstance(value, Literal)]
        if actual is None:
            return None
        if any(value is not None and value == actual for value in listed):
            return True
        return None if any(value is None for value in listed) else False
    if isinstance(condition, IsNull):
        is_null = row[column_index(table, condition.column)] is None
        return not is_null if condition.negated else is_null
    if isinstance(condition, Not):
        inner = truth(condition.operand, table, row)
        return None if inner is None else not inner
    truths = [truth(operand, table, row) for operand in condition.operands]
    if isinstance(condition, And):
        if any(value is False for value in truths):
            return False
        return True if all(value is True for value in truths) else None
    if any(value is True for value in truths):
        return True
    return False if all(value is False for value in truths) else None


def compare_keys(left: Key, right: Key) -> int:
    """-1, 0 or 1: primary keys in ascending order, column by column."""
    for left_value, right_value in zip(left, right, strict=True):
        outcome = compare_values(left_value, right_value)
        if outcome != 0:
            return outcome
    return 0


def matching_keys(
    table: TableDef, rows: Mapping[Key, Row], condition: Condition | None
) -> list[Key]:
    """Keys of the rows where `condition` is true (all rows without one), in key order."""
    keys = sorted(rows, key=functools.cmp_to_key(compare_keys))
    return [key for key in keys if condition is None or truth(condition, table, rows[key]) is True]


# ---------------------------------------------------------------- write statements


def with_table(state: TablesState, table: TableDef, rows: Mapping[Key, Row]) -> TablesState:
    """`state` with `table` (new or replaced) holding `rows`."""
    tables = dict(state.tables)
    all_rows = dict(state.rows)
    tables[table.name] = table
    all_rows[table.name] = rows
    return TablesState(tables=tables, rows=all_rows)


def create_table(state: TablesState, statement: CreateTable, sql: str) -> tuple[TablesState, int]:
    if statement.table in state.tables:
        raise StatementFailed("table_exists", statement.table)
    names = [column.name for column in statement.columns]
    for name in statement.primary_key:
        if name not in names:
            raise StatementFailed("unknown_column", f"{statement.table}.{name}")
    columns = tuple(
        ColumnDef(
            name=column.name,
            type=column.type,
            not_null=column.not_null or column.name in statement.primary_key,
        )
        for column in statement.columns
    )
    table = TableDef(
        name=statement.table, columns=columns, primary_key=statement.primary_key, indexes=()
    )
    check_event_width(event_base_width(sql, 0, definition=True))
    return with_table(state, table, {}), 0


def create_index(state: TablesState, statement: CreateIndex, sql: str) -> tuple[TablesState, int]:
    table = table_named(state, statement.table)
    column_named(table, statement.column)
    for other in state.tables.values():
        if any(index.name == statement.index for index in other.indexes):
            raise StatementFailed("table_exists", f"index {statement.index}")
    index = IndexDef(name=statement.index, column=statement.column)
    indexed = TableDef(
        name=table.name,
        columns=table.columns,
        primary_key=table.primary_key,
        indexes=(*table.indexes, index),
    )
    rows = state.rows[table.name]
    for key in sorted(rows, key=functools.cmp_to_key(compare_keys)):
        if index_entry_width(indexed, index, rows[key]) > KEY_BYTES_MAX:
            raise over_limit("KEY_BYTES_MAX", index_entry_width(indexed, index, rows[key]))
    check_event_width(
        event_base_width(sql, len(indexed.indexes), definition=True)
        + sum(
            put_width(index.name, index_entry_width(indexed, index, row), key_width(key))
            for key, row in rows.items()
        )
    )
    return with_table(state, indexed, rows), 0


def drop_table(state: TablesState, statement: DropTable, sql: str) -> tuple[TablesState, int]:
    dropped = table_named(state, statement.table)
    check_event_width(event_base_width(sql, len(dropped.indexes), definition=True))
    tables = {name: table for name, table in state.tables.items() if name != statement.table}
    rows = {name: rows for name, rows in state.rows.items() if name != statement.table}
    return TablesState(tables=tables, rows=rows), 0


def insert(
    state: TablesState, statement: Insert, params: tuple[object, ...], sql: str
) -> tuple[TablesState, int]:
    table = table_named(state, statement.table)
    if statement.columns is None:
        targets = [column.name for column in table.columns]
    else:
        targets = list(statement.columns)
    for name in targets:
        column_named(table, name)
    for row in statement.rows:
        if len(row) != len(targets):
            raise malformed(f"a row of {len(row)} values for {len(targets)} columns")
    # Every value's type first, then the constraints, row by row.
    new_rows: list[Row] = []
    for row in statement.rows:
        given = {
            name: stored(column_named(table, name), resolve(value, params))
            for name, value in zip(targets, row, strict=True)
        }
        new_rows.append(tuple(given.get(column.name) for column in table.columns))
    rows = dict(state.rows[table.name])
    for new_row in new_rows:
        for column, value in zip(table.columns, new_row, strict=True):
            if value is None and column.not_null:
                raise StatementFailed("constraint", f"NOT NULL {table.name}.{column.name}")
        key = key_of(table, new_row)
        if key in rows:
            raise StatementFailed(
                "constraint", f"duplicate primary key {shown(key)} in {table.name}"
            )
        rows[key] = new_row
    check_widths(table, new_rows)
    check_event_width(
        event_base_width(sql, len(table.indexes), definition=False)
        + sum(EVENT_ROW_WIDTH + key_width(key_of(table, row)) + row_width(row) for row in new_rows)
    )
    return with_table(state, table, rows), len(new_rows)


def update(
    state: TablesState, statement: Update, params: tuple[object, ...], sql: str
) -> tuple[TablesState, int]:
    table = table_named(state, statement.table)
    for name, _ in statement.assignments:
        column_named(table, name)
    for name in columns_in_condition(statement.where):
        column_named(table, name)
    for name, _ in statement.assignments:
        if name in table.primary_key:
            raise unsupported(f"UPDATE of primary key column {table.name}.{name}")
    assigned = {
        name: stored(column_named(table, name), resolve(value, params))
        for name, value in statement.assignments
    }
    condition = typed_where(table, statement.where, params)
    for name, value in assigned.items():
        if value is None and column_named(table, name).not_null:
            raise StatementFailed("constraint", f"NOT NULL {table.name}.{name}")
    rows = dict(state.rows[table.name])
    matched = matching_keys(table, rows, condition)
    for key in matched:
        rows[key] = tuple(
            assigned.get(column.name, value)
            for column, value in zip(table.columns, rows[key], strict=True)
        )
    check_widths(table, [rows[key] for key in matched])
    width = event_base_width(sql, len(table.indexes), definition=False)
    for key in matched:
        old, new = state.rows[table.name][key], rows[key]
        width += put_width(table.name, key_width(key), row_width(new))
        for index in table.indexes:
            position = column_index(table, index.column)
            if old[position] != new[position]:
                width += delete_width(index.name, index_entry_width(table, index, old))
                width += put_width(index.name, index_entry_width(table, index, new), key_width(key))
    check_event_width(width)
    return with_table(state, table, rows), len(matched)


def delete(
    state: TablesState, statement: Delete, params: tuple[object, ...], sql: str
) -> tuple[TablesState, int]:
    table = table_named(state, statement.table)
    for name in columns_in_condition(statement.where):
        column_named(table, name)
    condition = typed_where(table, statement.where, params)
    rows = dict(state.rows[table.name])
    matched = matching_keys(table, rows, condition)
    check_event_width(
        event_base_width(sql, len(table.indexes), definition=False)
        + sum(
            delete_width(table.name, key_width(key))
            + sum(
                delete_width(index.name, index_entry_width(table, index, rows[key]))
                for index in table.indexes
            )
            for key in matched
        )
    )
    for key in matched:
        del rows[key]
    return with_table(state, table, rows), len(matched)


def write(
    state: TablesState, statement: Statement, params: tuple[object, ...], sql: str
) -> tuple[TablesState, int]:
    """The state after a write statement (read from `sql`), and its `rows_affected`.

    :raises StatementFailed: the statement is refused.
    """
    if isinstance(statement, CreateTable):
        return create_table(state, statement, sql)
    if isinstance(statement, CreateIndex):
        return create_index(state, statement, sql)
    if isinstance(statement, DropTable):
        return drop_table(state, statement, sql)
    if isinstance(statement, Insert):
        return insert(state, statement, params, sql)
    if isinstance(statement, Update):
        return update(state, statement, params, sql)
    assert isinstance(statement, Delete)
    return delete(state, statement, params, sql)


# ---------------------------------------------------------------- SELECT


def row_bound(value: Value | None, params: tuple[object, ...], clause: str) -> int | None:
    """A LIMIT or OFFSET: a non-negative int, at most `LIMIT_OFFSET_MAX`.

    :raises StatementFailed: "type_mismatch" or "limit".
    """
    if value is None:
        return None
    bound = resolve(value, params)
    if type(bound) is not int or bound < 0:
        raise StatementFailed("type_mismatch", f"{clause} {shown(bound)}")
    if bound > LIMIT_OFFSET_MAX:
        raise StatementFailed(
            "limit", f"{clause} {shown(bound)} over {LIMIT_OFFSET_MAX}", "LIMIT_OFFSET_MAX"
        )
    return bound


def select(state: TablesState, statement: Select, params: tuple[object, ...]) -> Rows:
    """The answer of a SELECT against `state`.

    :raises StatementFailed: the statement is refused.
    """
    table = table_named(state, statement.table)
    for name in statement.columns or ():
        column_named(table, name)
    for name in columns_in_condition(statement.where):
        column_named(table, name)
    for name, _ in statement.order_by:
        column_named(table, name)
    condition = typed_where(table, statement.where, params)
    limit = row_bound(statement.limit, params, "LIMIT")
    offset = row_bound(statement.offset, params, "OFFSET")
    rows = state.rows[table.name]
    keys = matching_keys(table, rows, condition)

    def order(left: Key, right: Key) -> int:
        for name, descending in statement.order_by:
            position = column_index(table, name)
            outcome = compare_values(rows[left][position], rows[right][position])
            if outcome != 0:
                return -outcome if descending else outcome
        return compare_keys(left, right)  # ties: primary key order

    keys.sort(key=functools.cmp_to_key(order))
    start = offset or 0
    end = None if limit is None else start + limit
    answered: tuple[tuple[object, ...], ...]
    if statement.count:
        columns: tuple[str, ...] = ("count",)
        answered = ((len(keys),),)[start:end]
    else:
        columns = statement.columns or tuple(column.name for column in table.columns)
        positions = [column_index(table, name) for name in columns]
        answered = tuple(tuple(rows[key][p] for p in positions) for key in keys[start:end])
    if len(answered) > QUERY_ROWS_MAX:
        raise over_limit("QUERY_ROWS_MAX", len(answered))
    answered_bytes = sum(row_width(row) for row in answered)
    if answered_bytes > QUERY_BYTES_MAX:
        raise over_limit("QUERY_BYTES_MAX", answered_bytes)
    return Rows(columns=columns, rows=answered)


# ---------------------------------------------------------------- the operations


@icontract.require(lambda history: is_history(history))
@icontract.require(lambda sql: isinstance(sql, str))
@icontract.require(lambda history, position: may_execute_at(history, position))
@icontract.ensure(lambda history, position, result: history_follows(history, position, result))
@icontract.ensure(lambda result: is_failed_kind(result[1]))
@icontract.ensure(lambda result: rows_are_rectangular(result[1]))
@icontract.ensure(lambda result: answer_fits(result[1]))
def execute(history: History, sql: str, params: object, position: int) -> tuple[History, Outcome]:
    """Run one statement, with the parameter values `params` (a tuple or a list),
    against the newest state.

    A write that succeeds appends (position, new state) and returns `Written`;
    a SELECT returns `Rows` and leaves the history as it was; a statement that
    fails returns `Failed` and leaves the history as it was.
    """
    state = latest_state(history)
    try:
        parsed = parse(sql)
        values = parameters_of(params)
        check_parameters(parsed, values)
        if isinstance(parsed.statement, Select):
            return history, select(state, parsed.statement, values)
        new_state, rows_affected = write(state, parsed.statement, values, sql)
    except StatementFailed as failure:
        return history, Failed(failure.kind, failure.construct, failure.limit)
    return History(versions=(*history.versions, (position, new_state))), Written(rows_affected)


@icontract.require(lambda history: is_history(history))
@icontract.require(lambda sql: isinstance(sql, str))
@icontract.ensure(lambda result: not isinstance(result, Written))
@icontract.ensure(lambda result: is_failed_kind(result))
@icontract.ensure(lambda result: rows_are_rectangular(result))
@icontract.ensure(lambda result: answer_fits(result))
def query_at(history: History, sql: str, params: object, position: object) -> Outcome:
    """Answer a SELECT as of `position`: it sees every write whose position is <= `position`.

    Any other statement is "unsupported" (a past state cannot be written).

    :raises InvalidArgumentError: `position` is not a log position (an int in
        0..2**64-1), and the text and the parameters are good.
    """
    try:
        parsed = parse(sql)
        if not isinstance(parsed.statement, Select):
            raise unsupported(f"{type(parsed.statement).__name__} in a query as of a position")
        values = parameters_of(params)
        check_parameters(parsed, values)
        if not is_log_position(position):
            raise InvalidArgumentError("position", position, "must be an int in 0..2**64-1")
        assert isinstance(position, int)
        return select(state_at(history, position), parsed.statement, values)
    except StatementFailed as failure:
        return Failed(failure.kind, failure.construct, failure.limit)
