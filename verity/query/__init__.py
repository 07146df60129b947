"""VerityDB's SQL engine: tables as projections of the log, queried as of any position.

Use:

    engine = Engine(store)                       # any VersionedStore
    plan = engine.plan_write("INSERT INTO users VALUES ($1, $2)", [1, "ada"])
    position, log_hash = <append plan.event to the tenant's log>
    store.write_batch(position, log_hash, plan.changes)
    engine.query("SELECT * FROM users WHERE id = ?", [1])            # latest state
    engine.query("SELECT COUNT(*) FROM users", as_of=position - 1)   # time travel
    engine.explain("SELECT * FROM users WHERE id = ?")  # 'point lookup on users (id = ?)'

Public API:

- `Engine(store, *, cache_size=256)`: `prepare(sql) -> Prepared`, `query(sql, params=(),
  as_of=None) -> QueryResult`, `plan_write(sql, params=()) -> WritePlan`,
  `explain(sql, as_of=None) -> str`.
- `QueryResult(columns, rows)`, `WritePlan(kind, rows_affected, changes, event)`,
  `Prepared` (sql, kind, parameter_count, parameter_style, is_query).
- `changes_of_event(event)` and `decode_event(event) -> DecodedEvent`: the changes an
  event records, so the store can be rebuilt from the log alone.
- `VersionedStore` (the Protocol the engine reads through), `Change`, and
  `MemoryVersionedStore` (a reference store in memory, for tests and tools).
- The bounds on every size a statement or its parameters choose (`_limits`; docs/sdk.md,
  "SQL limits"): `SQL_TEXT_BYTES_MAX`, `EXPRESSION_DEPTH_MAX`, `PARAMETERS_MAX`,
  `NUMBER_CHARS_MAX`, `NAME_BYTES_MAX`, `TABLE_COLUMNS_MAX`, `IN_LIST_MAX`,
  `LIMIT_OFFSET_MAX`, `ROW_BYTES_MAX`, `KEY_BYTES_MAX`, `QUERY_ROWS_MAX`,
  `QUERY_BYTES_MAX`, `STATEMENT_EVENT_BYTES_MAX` (a write's event, so that its sealed
  log record fits the log's `PAYLOAD_BYTES_MAX`), and `LIMITS` (all of them by name).
  Exceeding one raises `SqlLimitExceeded` (kind "limit") whose `limit` names it, before
  anything of that size is built (a write over `STATEMENT_EVENT_BYTES_MAX` keeps no
  more than that bound's worth of changes) and before anything is appended.

Design:

- Parsing (`_parse`): sqlglot with the Postgres grammar; a whitelist walk turns its
  tree into frozen statement objects and refuses anything else with `SqlError`.
  Parsing happens once per SQL text (LRU cache in the engine); a cached statement
  never calls sqlglot again.
- Storage layout (`_catalog`, `_keys`, `_rows`): tree `catalog` holds table
  definitions (JSON) by name, so schema has history like data. Each table
  incarnation's rows live in tree `t:<object id>:<name>`, keyed by an
  order-preserving encoding of the primary key (bytewise order == SQL order), valued
  by a tagged row encoding. An index lives in `i:<object id>:<index>`, keyed by
  encode(value) + encode(primary key). Object ids come from a counter in the catalog,
  so a dropped and re-created table starts empty while older positions still read the
  old table, and a write plan is complete before its log position is known.
- Planning (`_plan`): once per (statement, table definition), choosing a point lookup,
  a primary key range scan, an index scan or a table scan; the rest of WHERE filters
  rows with three-valued logic.
- Writes: the engine never writes. `plan_write` checks the statement against the
  latest state (types, NOT NULL, duplicate keys also within the statement, names) and
  returns the changes and an event (`_events`) that holds them verbatim, plus the
  statement's kind, table, rows affected and text. A failed statement raises and
  produces no event.

Where the dialect is silent, this engine makes the choices the spec model
(`verity_spec.tables`, the authority) documents, so conformance compares equal
answers and equal error kinds; among them:

- Checks come in a fixed order, so a statement with several faults reports the
  first: the text ("limit", "syntax", "unsupported"), parameters ("parameter"), names
  ("unknown_table", "table_exists", "unknown_column"), an INSERT row's length
  ("syntax"), every value's type ("type_mismatch"), constraints ("constraint"), the
  widths of written rows ("limit"), and last the width of a write's event or the size
  of an answer ("limit").
- A value compared with a column must be one the column accepts (so a float
  against BIGINT is "type_mismatch"); DOUBLE compares with `float(value)`. NaN and
  strings with lone surrogates are refused; DOUBLE -0.0 is stored as 0.0. NULL, as
  a value, fits every type: NULL into a NOT NULL column (explicit or missing) is
  "constraint", as is SET col = NULL of a NOT NULL column even when no row matches.
- Refused as "unsupported": qualified columns (`t.a`), NULLS FIRST/LAST (sqlglot
  cannot tell them from the default), `0x..`, a minus before anything but a number,
  `EXPLAIN` as SQL text (use `Engine.explain`), types with a length (`VARCHAR(10)`).
  "syntax": a name twice, two primary keys, `IN ()`, a wrong number of INSERT values,
  not exactly one statement, a text with a lone surrogate.
- Parameters: the numbers used must be exactly 1..n; `?` with `$n`, `$0`, `:name`,
  a gap, a wrong count, or a value that is not exactly None, bool, int, float, str
  or bytes is "parameter". A `$n` over `PARAMETERS_MAX`, or more `?` than that, is
  "limit", found while the text is read (before anything of that size is made).
- Index names form their own namespace (a duplicate is "table_exists"); DROP TABLE
  drops the table's indexes.
"""

from verity.query._engine import Engine as Engine
from verity.query._engine import Prepared as Prepared
from verity.query._engine import QueryResult as QueryResult
from verity.query._engine import WritePlan as WritePlan
from verity.query._events import DecodedEvent as DecodedEvent
from verity.query._events import changes_of_event as changes_of_event
from verity.query._events import decode_event as decode_event
from verity.query._limits import EXPRESSION_DEPTH_MAX as EXPRESSION_DEPTH_MAX
from verity.query._limits import IN_LIST_MAX as IN_LIST_MAX
from verity.query._limits import KEY_BYTES_MAX as KEY_BYTES_MAX
from verity.query._limits import LIMIT_OFFSET_MAX as LIMIT_OFFSET_MAX
from verity.query._limits import LIMITS as LIMITS
from verity.query._limits import NAME_BYTES_MAX as NAME_BYTES_MAX
from verity.query._limits import NUMBER_CHARS_MAX as NUMBER_CHARS_MAX
from verity.query._limits import PARAMETERS_MAX as PARAMETERS_MAX
from verity.query._limits import QUERY_BYTES_MAX as QUERY_BYTES_MAX
from verity.query._limits import QUERY_ROWS_MAX as QUERY_ROWS_MAX
from verity.query._limits import ROW_BYTES_MAX as ROW_BYTES_MAX
from verity.query._limits import SQL_TEXT_BYTES_MAX as SQL_TEXT_BYTES_MAX
from verity.query._limits import STATEMENT_EVENT_BYTES_MAX as STATEMENT_EVENT_BYTES_MAX
from verity.query._limits import TABLE_COLUMNS_MAX as TABLE_COLUMNS_MAX
from verity.query._memory_store import MemoryVersionedStore as MemoryVersionedStore
from verity.query._store_protocol import Change as Change
from verity.query._store_protocol import VersionedStore as VersionedStore
from verity.query._types import Value as Value

__all__ = [
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
    "SQL_TEXT_BYTES_MAX",
    "STATEMENT_EVENT_BYTES_MAX",
    "TABLE_COLUMNS_MAX",
    "Change",
    "DecodedEvent",
    "Engine",
    "MemoryVersionedStore",
    "Prepared",
    "QueryResult",
    "Value",
    "VersionedStore",
    "WritePlan",
    "changes_of_event",
    "decode_event",
]
