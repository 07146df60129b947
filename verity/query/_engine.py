"""The SQL engine: prepared statements, queries (also as of a log position), and write
plans that the caller records in the log and then applies to the store.

The engine never writes. `plan_write` checks a write statement against the current
state and returns its changes and the event that records them; the caller appends
the event to the log at position p and applies `store.write_batch(p, hash,
plan.changes)`. Writes must be planned and applied one at a time (the caller's write
lock), since a plan is checked against the state it was planned on.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Final, TypeAlias, cast, final

from verity.errors import InvalidArgument, SqlError, SqlSyntaxError, UnsupportedSql
from verity.query._catalog import (
    CATALOG_TREE,
    Catalog,
    ColumnDef,
    IndexDef,
    TableDef,
    encode_object_id,
    encode_table,
    index_key,
    next_object_id_key,
    table_key,
)
from verity.query._events import encode_event, encode_insert_event, insert_changes
from verity.query._keys import encode_key, encode_value, encode_values
from verity.query._limits import (
    EVENT_DELETE_WIDTH,
    EVENT_PUT_WIDTH,
    EVENT_ROW_WIDTH,
    KEY_BYTES_MAX,
    ROW_BYTES_MAX,
    STATEMENT_EVENT_BYTES_MAX,
    event_base_width,
    over_limit,
)
from verity.query._parse import (
    CreateIndex,
    CreateTable,
    Delete,
    DropTable,
    Insert,
    Parsed,
    Select,
    Statement,
    Update,
    parse,
    predicate_columns,
)
from verity.query._plan import (
    ReadPlan,
    SelectPlan,
    ValueSource,
    column_position,
    plan_read,
    run_select,
)
from verity.query._rows import decode_row, encode_row, encode_rows
from verity.query._store_protocol import Change, VersionedStore
from verity.query._types import ColumnType, Value, coerce_column, describe_value

__all__ = ["Engine", "Prepared", "QueryResult", "WritePlan"]

CACHE_SIZE_DEFAULT: Final = 256
# The cache also keeps at most this many characters of SQL text: a parsed statement
# takes some tens of times its text, and 256 texts of SQL_TEXT_BYTES_MAX would not fit.
_CACHE_TEXT_CHARS_MAX: Final = 4 << 20
_PLANS_PER_STATEMENT_MAX: Final = 16  # table definitions a prepared statement keeps plans for

# INSERTs of this many rows or more try the column-by-column path first (so that the
# tables lockstep, whose INSERTs have up to 3 rows, runs it against the spec too).
_BULK_ROWS_MIN: Final = 2
# The bulk path leaves longer keys to the row-by-row path, which refuses them in the
# spec's order of checks.
_BULK_KEY_BYTES_MAX: Final = KEY_BYTES_MAX
# (keys, encoded rows, per index the encoded column value of each row)
_Inserted: TypeAlias = tuple[list[bytes], list[bytes], list[list[bytes]]]
_Strings: TypeAlias = Sequence[str | bytes | None]  # a TEXT or BYTES column's values

_EXPLAIN: Final = re.compile(r"\s*explain\s+", re.IGNORECASE)
_U64_MAX: Final = 2**64 - 1
_PARAMETER_TYPES: Final = frozenset({type(None), bool, int, float, str, bytes})
_KINDS: Final[dict[type, str]] = {
    Select: "select",
    Insert: "insert",
    Update: "update",
    Delete: "delete",
    CreateTable: "create_table",
    CreateIndex: "create_index",
    DropTable: "drop_table",
}


@final
@dataclass(frozen=True, slots=True)
class QueryResult:
    """The answer of a SELECT: column names and rows (tuples in column order)."""

    columns: tuple[str, ...]
    rows: list[tuple[Value, ...]]


@final
@dataclass(frozen=True, slots=True)
class WritePlan:
    """A checked write statement: what it changes and the event that records it.

    Append `event` to the log (position p, chain hash h), then apply
    `store.write_batch(p, h, changes)`; `changes_of_event(event) == changes`.
    """

    kind: str
    """"create_table", "create_index", "drop_table", "insert", "update" or "delete"."""
    rows_affected: int
    """Rows written by INSERT, UPDATE or DELETE; 0 for DDL."""
    changes: list[Change]
    """(tree, key, value or None to delete), for `VersionedStore.write_batch`."""
    event: bytes
    """The log record payload: `changes_of_event(event)` gives `changes` back."""


@final
class _InsertPlan:
    """An INSERT bound to a table: the column each value goes to, checked literals, and
    for the bulk path, how to gather each target column's values from the parameters."""

    __slots__ = ("columns", "rows", "targets")

    def __init__(self, insert: Insert, table: TableDef) -> None:
        # Names, then each row's length, then literal types: the spec's order of checks.
        if insert.columns is None:
            targets = tuple(range(len(table.columns)))
        else:
            targets = tuple(column_position(table, name) for name in insert.columns)
        for row in insert.rows:
            if len(row) != len(targets):
                raise SqlSyntaxError(
                    f"INSERT INTO {table.name}", f"{len(row)} values for {len(targets)} columns"
                )
        assert len(set(targets)) == len(targets), "the parser refuses a column named twice"
        self.targets = targets
        self.rows = tuple(
            tuple(
                ValueSource(operand, table.columns[target])
                for target, operand in zip(targets, row, strict=True)
            )
            for row in insert.rows
        )
        self.columns = tuple(
            _column_gatherer([sources[slot] for sources in self.rows])
            for slot in range(len(targets))
        )


def _column_gatherer(sources: list[ValueSource]) -> Callable[[Sequence[object]], Sequence[object]]:
    """A function of the parameters giving the (unchecked) values of `sources`, one target
    column of every row: a slice of the parameters when they come in row order."""
    indexes = [source.parameter_index for source in sources]
    if min(indexes) < 0:  # some literal: constants stay, parameters are looked up
        pairs = [(source.parameter_index, source.constant) for source in sources]
        return lambda params: [params[index] if index >= 0 else value for index, value in pairs]
    if len(indexes) == 1:
        only = indexes[0]
        return lambda params: [params[only]]
    step = indexes[1] - indexes[0]
    if step > 0 and indexes == list(range(indexes[0], indexes[-1] + 1, step)):
        every = slice(indexes[0], indexes[-1] + 1, step)
        return lambda params: params[every]
    return itemgetter(*indexes)


@final
class _UpdatePlan:
    """An UPDATE bound to a table: its read plan and the checked assignments."""

    __slots__ = ("assignments", "read")

    def __init__(self, update: Update, table: TableDef) -> None:
        # Names (SET, then WHERE), then the key rule, then literal types: the spec's order.
        positions = [column_position(table, name) for name, _ in update.assignments]
        for name in predicate_columns(update.where):
            column_position(table, name)
        for position in positions:
            if position in table.primary_key:
                raise UnsupportedSql(
                    table.columns[position].name,
                    "a primary key column cannot be updated; DELETE and INSERT instead",
                )
        self.assignments = tuple(
            (position, ValueSource(operand, table.columns[position]))
            for position, (_, operand) in zip(positions, update.assignments, strict=True)
        )
        self.read = plan_read(table, update.where)


_Plan = SelectPlan | ReadPlan | _InsertPlan | _UpdatePlan


@final
class Prepared:
    """A statement parsed once; plans for it are made once per table definition.

    Read-only attributes: `sql`, `kind` ("select", "insert", "update", "delete",
    "create_table", "create_index", "drop_table"), `parameter_count` (how many
    parameters a call passes), `parameter_style` ("?", "$" or "") and `is_query`.
    """

    __slots__ = (
        "_plans",
        "kind",
        "parameter_count",
        "parameter_fault",
        "parameter_style",
        "sql",
        "statement",
    )

    def __init__(self, sql: str, parsed: Parsed) -> None:
        self.sql = sql
        self.statement: Statement = parsed.statement
        self.kind = _KINDS[type(parsed.statement)]
        self.parameter_count = parsed.parameter_count
        self.parameter_style = parsed.parameter_style
        self.parameter_fault = parsed.parameter_fault
        self._plans: dict[TableDef, _Plan] = {}

    @property
    def is_query(self) -> bool:
        """Whether the statement answers with rows (a SELECT)."""
        return self.kind == "select"

    def __repr__(self) -> str:
        return f"Prepared({self.kind}, {self.sql!r})"

    def checked(self, params: Sequence[object]) -> Sequence[object]:
        """`params` if they fit the statement one to one, else SqlError("parameter")."""
        if self.parameter_fault is not None:
            raise SqlError("parameter", self.sql[:80], self.parameter_fault)
        if type(params) is not tuple and type(params) is not list:
            if isinstance(params, str | bytes | bytearray) or not isinstance(params, Sequence):
                raise SqlError(
                    "parameter", type(params).__name__, "parameters are a list or tuple of values"
                )
            params = tuple(params)
        if len(params) != self.parameter_count:
            raise SqlError(
                "parameter",
                f"{len(params)} parameters",
                f"the statement takes {self.parameter_count}",
            )
        if _PARAMETER_TYPES.issuperset(map(type, params)):
            return params  # the usual case, checked in one pass
        for number, value in enumerate(params, start=1):
            if type(value) not in _PARAMETER_TYPES:
                raise SqlError(
                    "parameter",
                    f"${number} = {describe_value(value)}",
                    "a parameter is None, bool, int, float, str or bytes",
                )
        raise AssertionError("some parameter is of a type not allowed")

    def plan(self, table: TableDef) -> _Plan:
        """The plan of this statement against `table` (made on first use, then kept)."""
        plan = self._plans.get(table)
        if plan is not None:
            return plan
        statement = self.statement
        if isinstance(statement, Select):
            plan = SelectPlan(statement, table)
        elif isinstance(statement, Insert):
            plan = _InsertPlan(statement, table)
        elif isinstance(statement, Update):
            plan = _UpdatePlan(statement, table)
        else:
            assert isinstance(statement, Delete)
            plan = plan_read(table, statement.where)
        if len(self._plans) >= _PLANS_PER_STATEMENT_MAX:
            self._plans.clear()
        self._plans[table] = plan
        return plan


@final
class Engine:
    """VerityDB's SQL engine over a `VersionedStore` (see the package docstring).

    Thread-safe for queries; write plans must be made and applied one at a time.
    Checks come in the spec's order: the text ("limit", "syntax", "unsupported"),
    then parameters ("parameter"), names ("unknown_table", "table_exists",
    "unknown_column"), INSERT row lengths ("syntax"), every value's type
    ("type_mismatch"), the constraints ("constraint"), and last the widths of
    written rows, then the width of a write's event or the size of an answer ("limit",
    `verity.query.LIMITS`).
    Prepared statements are cached by text: at most `cache_size` of them, and at
    most 4 Mi characters of text in all.
    """

    def __init__(self, store: VersionedStore, *, cache_size: int = CACHE_SIZE_DEFAULT) -> None:
        if not isinstance(cache_size, int) or isinstance(cache_size, bool) or cache_size < 1:
            raise InvalidArgument("cache_size", cache_size, "must be an int >= 1")
        self._store = store
        self._catalog = Catalog(store)
        self._cache_size = cache_size
        self._cache: OrderedDict[str, Prepared] = OrderedDict()
        self._cache_chars = 0  # the characters of the cached texts
        self._cache_lock = threading.Lock()

    def prepare(self, sql: str) -> Prepared:
        """`sql` parsed and checked; cached by its text, so the same text is parsed once."""
        if not isinstance(sql, str):
            raise InvalidArgument("sql", sql, "must be a str")
        with self._cache_lock:
            prepared = self._cache.get(sql)
            if prepared is not None:
                self._cache.move_to_end(sql)
                return prepared
        prepared = Prepared(sql, parse(sql))
        with self._cache_lock:
            if sql not in self._cache:
                self._cache_chars += len(sql)
            self._cache[sql] = prepared
            while len(self._cache) > self._cache_size or (
                self._cache_chars > _CACHE_TEXT_CHARS_MAX and len(self._cache) > 1
            ):
                evicted, _ = self._cache.popitem(last=False)
                self._cache_chars -= len(evicted)
            assert self._cache_chars >= 0
        return prepared

    def query(
        self, sql: str, params: Sequence[object] = (), as_of: int | None = None
    ) -> QueryResult:
        """The answer of SELECT `sql` as of log position `as_of`: the state after every
        write whose position is <= `as_of` (None: the latest state)."""
        prepared = self.prepare(sql)
        statement = prepared.statement
        if not isinstance(statement, Select):
            raise UnsupportedSql(
                prepared.kind.replace("_", " ").upper(),
                "query() answers SELECT; writes go through plan_write()",
            )
        checked = prepared.checked(params)
        plan = prepared.plan(self._table(statement.table, as_of))
        assert isinstance(plan, SelectPlan)
        return QueryResult(plan.columns, run_select(plan, self._store, checked, as_of))

    def explain(self, sql: str, as_of: int | None = None) -> str:
        """How SELECT, UPDATE or DELETE `sql` (optionally written `EXPLAIN ...`) finds its
        rows, e.g. "point lookup on users (id = $1)" or "table scan on users"."""
        if not isinstance(sql, str):
            raise InvalidArgument("sql", sql, "must be a str")
        explained = _EXPLAIN.match(sql)
        prepared = self.prepare(sql[explained.end() :] if explained is not None else sql)
        statement = prepared.statement
        if not isinstance(statement, Select | Update | Delete):
            raise UnsupportedSql(
                f"EXPLAIN {prepared.kind.replace('_', ' ').upper()}",
                "EXPLAIN shows how SELECT, UPDATE or DELETE find rows",
            )
        if prepared.parameter_fault is not None:
            raise SqlError("parameter", prepared.sql[:80], prepared.parameter_fault)
        plan = prepared.plan(self._table(statement.table, as_of))
        if isinstance(plan, SelectPlan | _UpdatePlan):
            return plan.read.access.description
        assert isinstance(plan, ReadPlan)
        return plan.access.description

    def plan_write(self, sql: str, params: Sequence[object] = ()) -> WritePlan:
        """Check write statement `sql` against the latest state and return its changes
        and event. Raises SqlError, changing nothing, if the statement cannot run."""
        prepared = self.prepare(sql)
        statement = prepared.statement
        if isinstance(statement, Select):
            raise UnsupportedSql("SELECT", "plan_write() takes writes; query() answers SELECT")
        checked = prepared.checked(params)
        if isinstance(statement, Insert):
            changes, event = self._insert(prepared, statement, checked)
            return WritePlan(prepared.kind, len(statement.rows), changes, event)
        # Each way gives the event's width (`_limits`), refused over STATEMENT_EVENT_BYTES_MAX.
        if isinstance(statement, Update):
            changes, rows_affected, width = self._update(prepared, statement, checked)
        elif isinstance(statement, Delete):
            changes, rows_affected, width = self._delete(prepared, statement, checked)
        elif isinstance(statement, CreateTable):
            changes, rows_affected, width = self._create_table(statement, sql)
        elif isinstance(statement, CreateIndex):
            changes, rows_affected, width = self._create_index(statement, sql)
        else:
            assert isinstance(statement, DropTable)
            changes, rows_affected, width = self._drop_table(statement, sql)
        _check_event_width(width, prepared.kind, statement.table)
        event = encode_event(prepared.kind, statement.table, rows_affected, sql, changes)
        assert len(event) <= width, (len(event), width)
        return WritePlan(prepared.kind, rows_affected, changes, event)

    # --- reads ---------------------------------------------------------------------------

    def _table(self, name: str, as_of: int | None) -> TableDef:
        if as_of is not None and (
            not isinstance(as_of, int) or isinstance(as_of, bool) or not 0 <= as_of <= _U64_MAX
        ):
            shown = as_of if not isinstance(as_of, int) or as_of.bit_length() <= 128 else "<int>"
            raise InvalidArgument("as_of", shown, "must be a log position (an int in 0..2**64-1)")
        table = self._catalog.table(name, as_of)
        if table is None:
            when = "" if as_of is None else f" as of position {as_of}"
            raise SqlError("unknown_table", name, f"no table {name!r}{when}")
        return table

    # --- writes --------------------------------------------------------------------------

    def _insert(
        self, prepared: Prepared, insert: Insert, params: Sequence[object]
    ) -> tuple[list[Change], bytes]:
        """The changes and event of an INSERT. Many rows go column by column when every
        value is already of its column's type and no constraint fails; otherwise (and
        for an error, which must be the one the row-by-row order meets first) row by row.
        """
        table = self._table(insert.table, None)
        plan = prepared.plan(table)
        assert isinstance(plan, _InsertPlan)
        base = event_base_width(prepared.sql, len(table.indexes), definition=False)
        inserted = None
        if len(plan.rows) >= _BULK_ROWS_MIN:
            inserted = self._insert_columns(table, plan, params, base)
        if inserted is None:
            inserted = self._insert_rows(table, plan, params, base)
        keys, rows, index_values = inserted
        assert len(keys) == len(rows) == len(plan.rows)
        width = _insert_event_width(base, keys, rows)
        assert width <= STATEMENT_EVENT_BYTES_MAX, width
        changes = insert_changes(
            table.data_tree, [index.tree for index in table.indexes], keys, rows, index_values
        )
        event = encode_insert_event(
            insert.table,
            prepared.sql,
            table.data_tree,
            [(index.column, index.tree) for index in table.indexes],
            keys,
            rows,
        )
        assert len(event) <= width, (len(event), width)
        return changes, event

    def _insert_rows(
        self, table: TableDef, plan: _InsertPlan, params: Sequence[object], base: int
    ) -> _Inserted:
        """Row by row, in the spec's order of checks: (keys, rows, index values). `base`
        is the event's width before its rows (`event_base_width`)."""
        width = len(table.columns)
        rows: list[list[Value]] = []
        for sources in plan.rows:  # every value's type before any constraint
            values: list[Value] = [None] * width
            for target, source in zip(plan.targets, sources, strict=True):
                values[target] = source.get(params)
            rows.append(values)
        keys: list[bytes] = []
        seen: set[bytes] = set()
        for values in rows:
            _check_not_null(table, values)
            key = encode_key([values[position] for position in table.primary_key])
            # A key over KEY_BYTES_MAX is in no store (and a store may refuse to look it
            # up); it is refused below, after every constraint, as the spec orders it.
            stored = len(key) <= KEY_BYTES_MAX and self._store.get(table.data_tree, key) is not None
            if key in seen or stored:
                shown = ", ".join(
                    f"{table.columns[position].name}={values[position]!r}"
                    for position in table.primary_key
                )
                raise SqlError("constraint", f"{table.name}({shown})", "duplicate primary key")
            seen.add(key)
            keys.append(key)
        assert len(seen) == len(rows)
        # Each row's widths in turn; the event's width last. Rows past that bound are
        # measured and checked but not kept, so a statement far over it holds no more
        # than the bound's worth of encoded rows.
        event_width = base + EVENT_ROW_WIDTH * len(rows)
        maximum = STATEMENT_EVENT_BYTES_MAX
        index_columns = [index.column for index in table.indexes]
        encoded: list[bytes] = []
        keep_row = encoded.append
        entries_of_rows: list[list[bytes]] = []
        keep_entries = entries_of_rows.append
        for values, key in zip(rows, keys, strict=True):
            row = encode_row(values)
            entries = [encode_value(values[column]) for column in index_columns]
            _check_widths(table, row, key, entries)
            event_width += len(key) + len(row)
            if event_width <= maximum:
                keep_row(row)
                keep_entries(entries)
        _check_event_width(event_width, "insert", table.name)
        index_values = [list(values) for values in zip(*entries_of_rows, strict=True)]
        assert len(index_values) == len(table.indexes)
        return keys, encoded, index_values

    def _insert_columns(
        self, table: TableDef, plan: _InsertPlan, params: Sequence[object], base: int
    ) -> _Inserted | None:
        """Column by column: (keys, rows, index values), or None when some value needs a
        conversion or some check fails, for `_insert_rows` to redo (and raise in order).
        `base` is the event's width before its rows (`event_base_width`)."""
        count = len(plan.rows)
        columns: list[Sequence[Value]] = [[None] * count for _ in table.columns]
        for target, gather in zip(plan.targets, plan.columns, strict=True):
            column = table.columns[target]
            bound = coerce_column(column.type, gather(params))
            if bound is None:
                return None
            columns[target] = bound
        for column, values in zip(table.columns, columns, strict=True):
            if column.not_null and None in values:
                return None
        key_columns = [encode_values(columns[position]) for position in table.primary_key]
        if len(key_columns) == 1:
            keys = key_columns[0]
        else:
            keys = list(map(b"".join, zip(*key_columns, strict=True)))
        if len(set(keys)) != count or max(map(len, keys)) > _BULK_KEY_BYTES_MAX:
            return None
        if self._any_stored(table.data_tree, keys):
            return None
        # The text and bytes alone over the event's bound: leave it to the row-by-row
        # path, which refuses it without encoding every row.
        lengths = base
        for column, values in zip(table.columns, columns, strict=True):
            if column.type is ColumnType.TEXT or column.type is ColumnType.BYTES:
                lengths += sum(map(len, filter(None, cast("_Strings", values))))
        if lengths > STATEMENT_EVENT_BYTES_MAX:
            return None
        index_values = [encode_values(columns[index.column]) for index in table.indexes]
        rows = encode_rows(columns)
        assert len(rows) == len(keys) == count
        if max(map(len, rows)) > ROW_BYTES_MAX:
            return None
        if _insert_event_width(base, keys, rows) > STATEMENT_EVENT_BYTES_MAX:
            return None
        for values in index_values:
            if max(map(len, values)) + max(map(len, keys)) > KEY_BYTES_MAX and any(
                len(value) + len(key) > KEY_BYTES_MAX
                for value, key in zip(values, keys, strict=True)
            ):
                return None
        return keys, rows, index_values

    def _any_stored(self, tree: str, keys: list[bytes]) -> bool:
        """Whether any of `keys` (distinct) is live in `tree`: one scan over their range,
        which is one seek when they lie past every stored key (ascending ids); if the
        range holds many more stored keys than `keys`, a `get` per key instead."""
        ordered = sorted(keys)
        wanted = set(keys)
        budget = len(ordered)
        for stored_key, _ in self._store.scan(tree, ordered[0], ordered[-1]):
            if stored_key in wanted:
                return True
            budget -= 1
            if budget < 0:
                rest = ordered[bisect_right(ordered, stored_key) :]
                return any(self._store.get(tree, key) is not None for key in rest)
        return False

    def _update(
        self, prepared: Prepared, update: Update, params: Sequence[object]
    ) -> tuple[list[Change], int, int]:
        """The changes, rows matched and event width of an UPDATE. Rows past the event's
        bound are still checked (their widths come first in the spec's order of checks)
        but their changes are not kept."""
        table = self._table(update.table, None)
        plan = prepared.plan(table)
        assert isinstance(plan, _UpdatePlan)
        assigned = [(position, source.get(params)) for position, source in plan.assignments]
        found = plan.read.rows(self._store, params, None)  # binds (checks) WHERE's values
        for position, value in assigned:
            column = table.columns[position]
            if value is None and column.not_null:
                raise SqlError("constraint", column.name, "NULL in a NOT NULL column")
        width = event_base_width(prepared.sql, len(table.indexes), definition=False)
        put_row = EVENT_PUT_WIDTH + _name_bytes(table.name)
        index_widths = [
            (
                EVENT_PUT_WIDTH + _name_bytes(index.name),
                EVENT_DELETE_WIDTH + _name_bytes(index.name),
            )
            for index in table.indexes
        ]
        changes: list[Change] = []
        matched = 0
        for key, row in found:
            matched += 1
            values = list(row)
            for position, value in assigned:
                values[position] = value
            encoded = encode_row(values)
            afters = [encode_value(values[index.column]) for index in table.indexes]
            _check_widths(table, encoded, key, afters)
            width += put_row + len(key) + len(encoded)
            row_changes: list[Change] = [(table.data_tree, key, encoded)]
            for index, after, (put, delete) in zip(
                table.indexes, afters, index_widths, strict=True
            ):
                before = encode_value(row[index.column])
                if before != after:
                    width += delete + len(before) + put + len(after) + 3 * len(key)
                    row_changes.append((index.tree, before + key, None))
                    row_changes.append((index.tree, after + key, key))
            if width <= STATEMENT_EVENT_BYTES_MAX:
                changes.extend(row_changes)
        return changes, matched, width

    def _delete(
        self, prepared: Prepared, delete: Delete, params: Sequence[object]
    ) -> tuple[list[Change], int, int]:
        """The changes, rows deleted and event width of a DELETE; refused (as the spec
        refuses it) as soon as the event is over its bound: nothing else is checked."""
        table = self._table(delete.table, None)
        plan = prepared.plan(table)
        assert isinstance(plan, ReadPlan)
        found = plan.rows(self._store, params, None)
        width = event_base_width(prepared.sql, len(table.indexes), definition=False)
        delete_row = EVENT_DELETE_WIDTH + _name_bytes(table.name)
        indexes = [
            (index.column, index.tree, EVENT_DELETE_WIDTH + _name_bytes(index.name))
            for index in table.indexes
        ]
        data_tree = table.data_tree
        maximum = STATEMENT_EVENT_BYTES_MAX
        changes: list[Change] = []
        append = changes.append
        for key, row in found:
            width += delete_row + len(key)
            append((data_tree, key, None))
            for column, tree, delete_entry in indexes:
                entry = encode_value(row[column]) + key
                width += delete_entry + len(entry)
                append((tree, entry, None))
            if width > maximum:
                _check_event_width(width, "delete", table.name)
        matched, rest = divmod(len(changes), 1 + len(indexes))
        assert rest == 0
        return changes, matched, width

    def _create_table(self, create: CreateTable, sql: str) -> tuple[list[Change], int, int]:
        if self._catalog.table(create.table) is not None:
            raise SqlError("table_exists", create.table, f"table {create.table!r} exists")
        positions = {column.name: position for position, column in enumerate(create.columns)}
        for name in create.primary_key:
            if name not in positions:
                raise SqlError("unknown_column", name, "PRIMARY KEY names no column of the table")
        object_id = self._catalog.next_object_id()
        # Primary key columns are NOT NULL whether or not the SQL says so.
        columns = tuple(
            ColumnDef(
                column.name, column.type, column.not_null or column.name in create.primary_key
            )
            for column in create.columns
        )
        primary_key = tuple(positions[name] for name in create.primary_key)
        table = TableDef(create.table, object_id, columns, primary_key, ())
        changes: list[Change] = [
            (CATALOG_TREE, table_key(table.name), encode_table(table)),
            (CATALOG_TREE, next_object_id_key(), encode_object_id(object_id + 1)),
        ]
        return changes, 0, event_base_width(sql, 0, definition=True)

    def _create_index(self, create: CreateIndex, sql: str) -> tuple[list[Change], int, int]:
        table = self._table(create.table, None)
        position = column_position(table, create.column)
        owner = self._catalog.index_owner(create.index)
        if owner is not None:
            raise SqlError(
                "table_exists", create.index, f"index {create.index!r} exists (on {owner!r})"
            )
        object_id = self._catalog.next_object_id()
        index = IndexDef(create.index, position, object_id)
        changes: list[Change] = [
            (CATALOG_TREE, table_key(table.name), encode_table(table.with_index(index))),
            (CATALOG_TREE, index_key(index.name), table.name.encode("utf-8")),
            (CATALOG_TREE, next_object_id_key(), encode_object_id(object_id + 1)),
        ]
        # Every entry's width is checked; the event's width after them, as the spec
        # orders it, so entries past its bound are not kept.
        width = event_base_width(sql, len(table.indexes) + 1, definition=True)
        put_entry = EVENT_PUT_WIDTH + _name_bytes(index.name)
        for key, data in self._store.scan(table.data_tree):
            entry = encode_value(decode_row(data)[position]) + key
            if len(entry) > KEY_BYTES_MAX:
                raise over_limit("KEY_BYTES_MAX", len(entry), f"an entry of index {index.name}")
            width += put_entry + len(entry) + len(key)
            if width <= STATEMENT_EVENT_BYTES_MAX:
                changes.append((index.tree, entry, key))
        return changes, 0, width

    def _drop_table(self, drop: DropTable, sql: str) -> tuple[list[Change], int, int]:
        table = self._table(drop.table, None)
        changes: list[Change] = [(CATALOG_TREE, table_key(table.name), None)]
        changes.extend((CATALOG_TREE, index_key(index.name), None) for index in table.indexes)
        return changes, 0, event_base_width(sql, len(table.indexes), definition=True)


def _check_widths(table: TableDef, row: bytes, key: bytes, index_values: Sequence[bytes]) -> None:
    """A row may be written: its encoding (`row`) within `ROW_BYTES_MAX`, its key and
    each index entry (`index_values[i]` + key, in index order) within `KEY_BYTES_MAX`;
    checked in that order, as the spec checks them."""
    assert len(index_values) == len(table.indexes)
    if len(row) > ROW_BYTES_MAX:
        raise over_limit("ROW_BYTES_MAX", len(row), f"a row of {table.name}")
    if len(key) > KEY_BYTES_MAX:
        raise over_limit("KEY_BYTES_MAX", len(key), f"the primary key of a row of {table.name}")
    for index, value in zip(table.indexes, index_values, strict=True):
        if len(value) + len(key) > KEY_BYTES_MAX:
            raise over_limit(
                "KEY_BYTES_MAX", len(value) + len(key), f"an entry of index {index.name}"
            )


def _name_bytes(name: str) -> int:
    """The UTF-8 length of a table or index name (in an event, part of a tree's name)."""
    return len(name) if name.isascii() else len(name.encode("utf-8"))


def _insert_event_width(base: int, keys: Sequence[bytes], rows: Sequence[bytes]) -> int:
    """The width of an INSERT's event (`_limits`): `base`, then per row its framing, key
    and row."""
    return base + EVENT_ROW_WIDTH * len(rows) + sum(map(len, keys)) + sum(map(len, rows))


def _check_event_width(width: int, kind: str, table: str) -> None:
    """A write's event of `width` fits its log record: at most STATEMENT_EVENT_BYTES_MAX."""
    if width > STATEMENT_EVENT_BYTES_MAX:
        statement = kind.replace("_", " ").upper()
        raise over_limit(
            "STATEMENT_EVENT_BYTES_MAX", width, f"the log record of {statement} on {table}"
        )


def _check_not_null(table: TableDef, values: Sequence[Value]) -> None:
    for column, value in zip(table.columns, values, strict=True):
        if value is None and column.not_null:
            raise SqlError("constraint", column.name, "NULL in a NOT NULL column")
