"""The planner: how a statement finds its rows, and running that plan against a store.

A plan is made once per (statement, table definition) and kept; running it binds the
parameters and reads. Names are resolved and literals checked against their columns
when the plan is made; parameters are checked each time they are bound.

Access paths, from the WHERE clause's top-level AND terms (best first):

1. point lookup: every primary key column is bound by `=`: one `get`;
2. range scan over several points: every primary key column bound by `=` or `IN`;
3. index scan with `=` or `IN` on an indexed column;
4. range scan: `=`/`IN` on a leading run of primary key columns and/or a bound
   (`<`, `<=`, `>`, `>=`) on the next one;
5. index scan with a bound on an indexed column;
6. table scan.

The terms an access path answers exactly are dropped from the filter; every other
term is applied to each row with SQL's three-valued logic (a comparison with NULL is
unknown, and only rows where the whole condition is true are kept). Rows come out in
primary key order (an index scan sorts its hits by primary key), which is the order
without ORDER BY and the tie order with it.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any, Final, Literal, TypeAlias, final

from verity.errors import CorruptionError, SqlError
from verity.query._catalog import ColumnDef, IndexDef, TableDef
from verity.query._keys import NOT_NULL_LOW, PREFIX_END, encode_key, encode_value
from verity.query._limits import (
    IN_LIST_MAX,
    KEY_BYTES_MAX,
    QUERY_BYTES_MAX,
    QUERY_ROWS_MAX,
    over_limit,
    row_width,
)
from verity.query._parse import (
    And,
    Comparison,
    InList,
    IsNull,
    Not,
    Operand,
    Or,
    Param,
    Predicate,
    Select,
    predicate_columns,
    render_operand,
)
from verity.query._rows import decode_row
from verity.query._store_protocol import VersionedStore
from verity.query._types import Value, check_count, coerce

__all__ = [
    "Access",
    "CountSource",
    "ReadPlan",
    "Row",
    "SelectPlan",
    "ValueSource",
    "column_position",
    "plan_read",
    "run_select",
]

Row: TypeAlias = tuple[Value, ...]
Filter: TypeAlias = Callable[[Row], bool | None]

_OPERATORS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def column_position(table: TableDef, name: str) -> int:
    """The position of column `name` in `table`, or SqlError("unknown_column")."""
    position = table.column_positions.get(name)
    if position is None:
        raise SqlError("unknown_column", name, f"table {table.name!r} has no column {name!r}")
    return position


@final
class ValueSource:
    """Where a value comes from when a plan runs: a literal (checked when the plan is
    made) or a parameter (checked against the column each time it is bound)."""

    __slots__ = ("column", "constant", "operand", "parameter_index")

    def __init__(self, operand: Operand, column: ColumnDef) -> None:
        self.operand = operand
        self.column = column
        if isinstance(operand, Param):
            assert operand.index >= 0, "a statement with parameter faults never runs"
            self.parameter_index = operand.index
            self.constant: Value = None
        else:
            self.parameter_index = -1
            self.constant = coerce(column.type, operand.value, column.name)

    def get(self, params: Sequence[object]) -> Value:
        """The value, given the statement's parameters (NULL passes: see `coerce`)."""
        if self.parameter_index < 0:
            return self.constant
        column = self.column
        return coerce(column.type, params[self.parameter_index], column.name)


@final
class CountSource:
    """A LIMIT or OFFSET: a non-negative int, literal or parameter, checked each time it
    is read (after the WHERE clause's values, as the spec orders the checks)."""

    __slots__ = ("keyword", "operand")

    def __init__(self, operand: Operand, keyword: str) -> None:
        self.operand = operand
        self.keyword = keyword
        if isinstance(operand, Param):
            assert operand.index >= 0, "a statement with parameter faults never runs"

    def get(self, params: Sequence[object]) -> int:
        """The count, given the statement's parameters."""
        operand = self.operand
        if isinstance(operand, Param):
            return check_count(params[operand.index], self.keyword)
        return check_count(operand.value, self.keyword)


# --- conditions, resolved against a table ----------------------------------------------


@final
class _Compare:
    __slots__ = ("operator", "position", "source", "symbol")

    def __init__(self, position: int, symbol: str, source: ValueSource) -> None:
        self.position = position
        self.symbol = symbol
        self.operator = _OPERATORS[symbol]
        self.source = source


@final
class _Within:
    __slots__ = ("position", "sources")

    def __init__(self, position: int, sources: tuple[ValueSource, ...]) -> None:
        self.position = position
        self.sources = sources


@final
class _Null:
    __slots__ = ("negated", "position")

    def __init__(self, position: int, negated: bool) -> None:
        self.position = position
        self.negated = negated


@final
class _All:
    __slots__ = ("items",)

    def __init__(self, items: tuple[_Condition, ...]) -> None:
        self.items = items


@final
class _Any:
    __slots__ = ("items",)

    def __init__(self, items: tuple[_Condition, ...]) -> None:
        self.items = items


@final
class _Negate:
    __slots__ = ("item",)

    def __init__(self, item: _Condition) -> None:
        self.item = item


_Condition: TypeAlias = _Compare | _Within | _Null | _All | _Any | _Negate


def _resolve(predicate: Predicate, table: TableDef) -> _Condition:
    if isinstance(predicate, Comparison):
        position = column_position(table, predicate.column)
        source = ValueSource(predicate.operand, table.columns[position])
        return _Compare(position, predicate.op, source)
    if isinstance(predicate, InList):
        position = column_position(table, predicate.column)
        column = table.columns[position]
        return _Within(position, tuple(ValueSource(item, column) for item in predicate.operands))
    if isinstance(predicate, IsNull):
        return _Null(column_position(table, predicate.column), predicate.negated)
    if isinstance(predicate, And):
        return _All(tuple(_resolve(item, table) for item in predicate.items))
    if isinstance(predicate, Or):
        return _Any(tuple(_resolve(item, table) for item in predicate.items))
    assert isinstance(predicate, Not)
    return _Negate(_resolve(predicate.item, table))


def _unknown(row: Row) -> bool | None:
    return None


def _bind(condition: _Condition, params: Sequence[object]) -> Filter:
    """`condition` as a function of a row: True, False, or None (unknown)."""
    if isinstance(condition, _Compare):
        value = condition.source.get(params)
        if value is None:
            return _unknown
        position = condition.position
        compare = condition.operator

        def compare_row(row: Row) -> bool | None:
            cell = row[position]
            return None if cell is None else bool(compare(cell, value))

        return compare_row
    if isinstance(condition, _Within):
        values = [source.get(params) for source in condition.sources]
        members = frozenset(value for value in values if value is not None)
        # `x IN (1, NULL)` is true for 1 and unknown otherwise, never false.
        otherwise: bool | None = None if None in values else False
        position = condition.position

        def within_row(row: Row) -> bool | None:
            cell = row[position]
            if cell is None:
                return None
            return True if cell in members else otherwise

        return within_row
    if isinstance(condition, _Null):
        position = condition.position
        negated = condition.negated
        return lambda row: (row[position] is None) is not negated
    if isinstance(condition, _All):
        parts = [_bind(item, params) for item in condition.items]

        def all_row(row: Row) -> bool | None:
            result: bool | None = True
            for part in parts:
                outcome = part(row)
                if outcome is False:
                    return False
                if outcome is None:
                    result = None
            return result

        return all_row
    if isinstance(condition, _Any):
        parts = [_bind(item, params) for item in condition.items]

        def any_row(row: Row) -> bool | None:
            result: bool | None = False
            for part in parts:
                outcome = part(row)
                if outcome is True:
                    return True
                if outcome is None:
                    result = None
            return result

        return any_row
    inner = _bind(condition.item, params)

    def negate_row(row: Row) -> bool | None:
        outcome = inner(row)
        return None if outcome is None else not outcome

    return negate_row


# --- access paths ----------------------------------------------------------------------

AccessKind: TypeAlias = Literal["point", "points", "range", "index", "table"]
_Found: TypeAlias = tuple[bytes, Row, int]  # (encoded primary key, row, its stored width)
_Bound: TypeAlias = tuple[ValueSource, bool]  # (value, inclusive)
_NULL_KEY: Final = encode_value(None)
_Span: TypeAlias = tuple[bytes, bytes | None, bool]  # (low, high, high_inclusive)


@final
class Access:
    """An access path: which tree, which key components and bounds, and its EXPLAIN."""

    __slots__ = (
        "components",
        "constant_key",
        "description",
        "index",
        "kind",
        "lower",
        "upper",
    )

    def __init__(
        self,
        kind: AccessKind,
        index: IndexDef | None,
        components: tuple[tuple[ValueSource, ...], ...],
        lower: _Bound | None,
        upper: _Bound | None,
        description: str,
    ) -> None:
        if kind == "index":
            assert index is not None
        if kind == "point":
            assert all(len(sources) == 1 for sources in components)
        self.kind = kind
        self.index = index
        self.components = components
        self.lower = lower
        self.upper = upper
        self.description = description
        self.constant_key: bytes | None = None
        if kind == "point" and all(sources[0].parameter_index < 0 for sources in components):
            values = [sources[0].constant for sources in components]
            if None not in values:
                self.constant_key = encode_key(values)


def _render(condition: _Condition, table: TableDef) -> str:
    if isinstance(condition, _Compare):
        name = table.columns[condition.position].name
        return f"{name} {condition.symbol} {render_operand(condition.source.operand)}"
    assert isinstance(condition, _Within)
    name = table.columns[condition.position].name
    shown = ", ".join(render_operand(source.operand) for source in condition.sources)
    return f"{name} IN ({shown})"


@final
class _Candidate:
    """An access path under consideration: the terms it uses and how good it is."""

    __slots__ = ("complete", "components", "lower", "score", "upper", "used")

    def __init__(self) -> None:
        self.used: list[int] = []
        self.components: list[tuple[ValueSource, ...]] = []
        self.lower: _Bound | None = None
        self.upper: _Bound | None = None
        self.complete = False
        self.score = 0


def _candidate(positions: tuple[int, ...], conjuncts: Sequence[_Condition]) -> _Candidate:
    """What the terms `conjuncts` pin down of a key made of columns `positions`."""
    equal: dict[int, int] = {}
    within: dict[int, int] = {}
    lower: dict[int, int] = {}
    upper: dict[int, int] = {}
    for number, condition in enumerate(conjuncts):
        if isinstance(condition, _Compare):
            if condition.symbol == "=":
                equal.setdefault(condition.position, number)
            elif condition.symbol in (">", ">="):
                lower.setdefault(condition.position, number)
            elif condition.symbol in ("<", "<="):
                upper.setdefault(condition.position, number)
        elif isinstance(condition, _Within):
            within.setdefault(condition.position, number)
    candidate = _Candidate()
    has_in = False
    combinations = 1  # of key prefixes to read: the product of the IN lists' lengths
    for position in positions:
        if position in equal:
            compare = conjuncts[equal[position]]
            assert isinstance(compare, _Compare)
            candidate.components.append((compare.source,))
            candidate.used.append(equal[position])
        elif position in within:
            members = conjuncts[within[position]]
            assert isinstance(members, _Within)
            combinations *= len(members.sources)
            if combinations > IN_LIST_MAX:
                break  # too many keys to list: the rest of the key is filtered instead
            candidate.components.append(members.sources)
            candidate.used.append(within[position])
            has_in = True
        else:
            break
    else:
        candidate.complete = True
        candidate.score = 1 if has_in else 0
        return candidate
    following = positions[len(candidate.components)]
    if following in lower:
        bound = conjuncts[lower[following]]
        assert isinstance(bound, _Compare)
        candidate.lower = (bound.source, bound.symbol == ">=")
        candidate.used.append(lower[following])
    if following in upper:
        bound = conjuncts[upper[following]]
        assert isinstance(bound, _Compare)
        candidate.upper = (bound.source, bound.symbol == "<=")
        candidate.used.append(upper[following])
    candidate.score = 3 if candidate.used else 6
    return candidate


def _choose_access(
    table: TableDef, conjuncts: Sequence[_Condition]
) -> tuple[Access, frozenset[int]]:
    """The best access path for `conjuncts` and the terms it answers exactly."""
    best = _candidate(table.primary_key, conjuncts)
    best_index: IndexDef | None = None
    for index in table.indexes:
        candidate = _candidate((index.column,), conjuncts)
        if candidate.complete:
            candidate.score = 2
        elif candidate.used:
            candidate.score = 4
        if candidate.score < best.score:
            best, best_index = candidate, index
    used = frozenset(best.used)
    condition_text = ", ".join(_render(conjuncts[number], table) for number in best.used)
    components = tuple(best.components)
    if best.score == 6:
        return Access("table", None, (), None, None, f"table scan on {table.name}"), used
    if best_index is not None:
        description = f"index scan {best_index.name} on {table.name} ({condition_text})"
        access = Access("index", best_index, components, best.lower, best.upper, description)
        return access, used
    if best.score == 0:
        description = f"point lookup on {table.name} ({condition_text})"
        return Access("point", None, components, None, None, description), used
    description = f"range scan on {table.name} ({condition_text})"
    if best.score == 1:
        return Access("points", None, components, None, None, description), used
    return Access("range", None, components, best.lower, best.upper, description), used


def _prefixes(
    components: Sequence[tuple[ValueSource, ...]], params: Sequence[object]
) -> list[bytes]:
    """Every encoded combination of the components' values, in key order (NULLs, which
    equal nothing, are left out)."""
    # Every value is bound (and so checked) before any is found to match nothing.
    encoded_components = [
        sorted({encode_value(source.get(params)) for source in sources} - {_NULL_KEY})
        for sources in components
    ]
    prefixes = [b""]
    for encoded in encoded_components:
        # Encodings are prefix-free, so sorted prefixes extended in sorted order stay sorted.
        prefixes = [prefix + tail for prefix in prefixes for tail in encoded]
    return prefixes


def _ranges(access: Access, params: Sequence[object]) -> list[_Span]:
    """The key ranges (low, high, high_inclusive; low is inclusive) `access` reads."""
    prefixes = _prefixes(access.components, params)
    lower = None if access.lower is None else access.lower[0].get(params)
    upper = None if access.upper is None else access.upper[0].get(params)
    lower_key = upper_key = b""
    if access.lower is not None:
        if lower is None:
            return []  # a comparison with NULL is never true
        lower_key = encode_value(lower) + (b"" if access.lower[1] else PREFIX_END)
    if access.upper is not None:
        if upper is None:
            return []
        upper_key = encode_value(upper) + (PREFIX_END if access.upper[1] else b"")
    ranges: list[_Span] = []
    for prefix in prefixes:
        # NOT_NULL_LOW: a bound excludes NULLs, which only an index holds.
        low = prefix + lower_key if access.lower is not None else prefix or NOT_NULL_LOW
        high: bytes | None
        if access.upper is not None:
            high, high_inclusive = prefix + upper_key, bool(access.upper[1])
        else:
            high, high_inclusive = (prefix + PREFIX_END if prefix else None), True
        if high is not None and (low > high or (low == high and not high_inclusive)):
            continue
        ranges.append((low, high, high_inclusive))
    return ranges


def _read(
    store: VersionedStore,
    table: TableDef,
    access: Access,
    params: Sequence[object],
    as_of: int | None,
) -> Iterator[_Found]:
    """The rows `access` finds, as (encoded primary key, row, stored width), in primary
    key order (the width is `row_width(row)`, the length of its stored form).

    Every value is bound (and so checked) now, before the first row is read, so a bad
    value fails the same way on an empty table.
    """
    kind = access.kind
    if kind == "point" or kind == "points":
        keys: Sequence[bytes]
        if access.constant_key is not None:
            keys = (access.constant_key,)
        else:
            keys = _prefixes(access.components, params)
        return _get_rows(store, table.data_tree, keys, as_of)
    if kind == "table":
        return _scan_rows(store, table.data_tree, None, as_of)
    if kind == "range":
        return _scan_rows(store, table.data_tree, _ranges(access, params), as_of)
    assert kind == "index" and access.index is not None
    return _index_rows(store, table, access.index, _ranges(access, params), as_of)


def _get_rows(
    store: VersionedStore, tree: str, keys: Sequence[bytes], as_of: int | None
) -> Iterator[_Found]:
    for key in keys:
        if len(key) > KEY_BYTES_MAX:
            continue  # no row has such a key (writes refuse it), and a store may refuse it
        data = store.get(tree, key, as_of)
        if data is not None:
            yield key, decode_row(data), len(data)


def _scan_rows(
    store: VersionedStore, tree: str, spans: list[_Span] | None, as_of: int | None
) -> Iterator[_Found]:
    if spans is None:
        for key, data in store.scan(tree, as_of=as_of):
            yield key, decode_row(data), len(data)
        return
    for low, high, high_inclusive in spans:
        for key, data in store.scan(tree, low, high, as_of=as_of, high_inclusive=high_inclusive):
            yield key, decode_row(data), len(data)


def _index_rows(
    store: VersionedStore, table: TableDef, index: IndexDef, spans: list[_Span], as_of: int | None
) -> Iterator[_Found]:
    primary_keys: set[bytes] = set()
    for low, high, high_inclusive in spans:
        for _, primary_key in store.scan(
            index.tree, low, high, as_of=as_of, high_inclusive=high_inclusive
        ):
            primary_keys.add(primary_key)
    for key in sorted(primary_keys):  # the answer's order is primary key order
        data = store.get(table.data_tree, key, as_of)
        if data is None:
            raise CorruptionError(
                f"index {index.name!r} lists key {key.hex()} that table {table.name!r} lacks"
            )
        yield key, decode_row(data), len(data)


@final
class ReadPlan:
    """How a statement finds its rows in one table: an access path and a filter."""

    __slots__ = ("access", "residual", "table")

    def __init__(self, table: TableDef, access: Access, residual: _Condition | None) -> None:
        self.table = table
        self.access = access
        self.residual = residual

    def rows(
        self, store: VersionedStore, params: Sequence[object], as_of: int | None
    ) -> Iterator[tuple[bytes, Row]]:
        """The rows where the WHERE clause is true, as (encoded primary key, row), in
        primary key order. Every value is bound and checked by the time this returns,
        before the first row is read."""
        return ((key, row) for key, row, _ in self.found(store, params, as_of))

    def found(
        self, store: VersionedStore, params: Sequence[object], as_of: int | None
    ) -> Iterator[_Found]:
        """`rows`, each with its stored width (`row_width(row)`) third."""
        found = _read(store, self.table, self.access, params, as_of)
        if self.residual is None:
            return found
        keep = _bind(self.residual, params)
        return (item for item in found if keep(item[1]) is True)


def plan_read(table: TableDef, where: Predicate | None) -> ReadPlan:
    """The plan that finds the rows of `table` where `where` is true.

    Every column name is checked ("unknown_column") before any literal's type
    ("type_mismatch"), as the spec orders them.
    """
    for name in predicate_columns(where):
        column_position(table, name)
    if where is None:
        return ReadPlan(
            table, Access("table", None, (), None, None, f"table scan on {table.name}"), None
        )
    condition = _resolve(where, table)
    conjuncts = condition.items if isinstance(condition, _All) else (condition,)
    access, used = _choose_access(table, conjuncts)
    rest = tuple(item for number, item in enumerate(conjuncts) if number not in used)
    residual: _Condition | None
    if not rest:
        residual = None
    elif len(rest) == 1:
        residual = rest[0]
    else:
        residual = _All(rest)
    return ReadPlan(table, access, residual)


# --- SELECT ----------------------------------------------------------------------------


@final
class SelectPlan:
    """A SELECT bound to one table definition."""

    __slots__ = ("columns", "count", "limit", "offset", "order", "project", "read", "width_factor")

    def __init__(self, select: Select, table: TableDef) -> None:
        # Names first (projection, WHERE, ORDER BY), then literal values, as the spec.
        positions = tuple(column_position(table, name) for name in select.columns or ())
        for name in predicate_columns(select.where):
            column_position(table, name)
        # A column named again in ORDER BY changes nothing (its ties are already broken):
        # it is dropped, so the sorts are at most one per column, whatever the text says.
        order: dict[int, bool] = {}
        for key in select.order_by:
            order.setdefault(column_position(table, key.column), key.descending)
        self.order = tuple(order.items())
        self.read = plan_read(table, select.where)
        self.count = select.count
        self.project: Callable[[Row], Row] | None = None
        if select.count:
            self.columns: tuple[str, ...] = ("count",)
        elif select.columns is None:
            self.columns = tuple(column.name for column in table.columns)
        else:
            self.columns = select.columns
            if len(positions) == 1:
                only = positions[0]
                self.project = lambda row: (row[only],)
            elif positions != tuple(range(len(table.columns))):
                self.project = operator.itemgetter(*positions)
        # An answered row is at most this many times as wide as its stored row.
        self.width_factor = max(Counter(positions).values(), default=1)
        self.limit = None if select.limit is None else CountSource(select.limit, "LIMIT")
        self.offset = None if select.offset is None else CountSource(select.offset, "OFFSET")


def _sort(rows: list[Row], order: tuple[tuple[int, bool], ...]) -> None:
    # Stable sorts, least significant key first; ties keep primary key order. NULL sorts
    # below every value: first ascending, last descending.
    for position, descending in reversed(order):
        rows.sort(key=lambda row: (row[position] is not None, row[position]), reverse=descending)


def run_select(
    plan: SelectPlan, store: VersionedStore, params: Sequence[object], as_of: int | None
) -> list[Row]:
    """The answer rows of `plan`: at most `QUERY_ROWS_MAX` rows of at most
    `QUERY_BYTES_MAX` bytes in all (`row_width`), else SqlLimitExceeded naming the
    first bound the answer is over (rows first, as the spec checks them).

    Widths cost nothing while the stored widths show the answer fits: an answered row
    is its stored row, or a projection at most `plan.width_factor` times as wide.
    """
    found = plan.read.found(store, params, as_of)  # binds (checks) WHERE's values first
    limit = None if plan.limit is None else plan.limit.get(params)
    offset = 0 if plan.offset is None else plan.offset.get(params)
    if plan.count:
        counted: list[Row] = [(sum(1 for _ in found),)]
        return counted[offset:] if limit is None else counted[offset : offset + limit]
    project = plan.project
    if plan.order:
        # More than this many matching rows make an answer too long: no need to sort them.
        gathered_max = None if limit is not None and limit <= QUERY_ROWS_MAX else offset
        rows: list[Row] = []
        stored_bytes = 0
        for _, row, width in found:
            rows.append(row)
            stored_bytes += width
            if gathered_max is not None and len(rows) - gathered_max > QUERY_ROWS_MAX:
                raise over_limit("QUERY_ROWS_MAX", QUERY_ROWS_MAX + 1, "more answer rows")
        _sort(rows, plan.order)
        rows = rows[offset:] if limit is None else rows[offset : offset + limit]
        if len(rows) > QUERY_ROWS_MAX:
            raise over_limit("QUERY_ROWS_MAX", len(rows), "answer rows")
        if stored_bytes * plan.width_factor <= QUERY_BYTES_MAX:  # it fits, whatever is answered
            return rows if project is None else [project(row) for row in rows]
        answer: list[Row] = []  # it may not fit: measured row by row, projected one at a time
        answer_bytes = 0
        for row in rows:
            answered = row if project is None else project(row)
            answer_bytes += row_width(answered)
            if answer_bytes > QUERY_BYTES_MAX:
                raise over_limit("QUERY_BYTES_MAX", answer_bytes, "answer bytes")
            answer.append(answered)
        return answer
    # Rows come in answer order: skip the offset, stop at the limit.
    if offset:
        found = islice(found, offset, None)
    if limit is not None:
        found = islice(found, limit)
    return _streamed_answer(found, project, plan.width_factor)


def _streamed_answer(
    found: Iterator[_Found], project: Callable[[Row], Row] | None, width_factor: int
) -> list[Row]:
    """The answer rows of `found`, projected, or SqlLimitExceeded: for more than
    `QUERY_ROWS_MAX` rows, else for more than `QUERY_BYTES_MAX` bytes. At most one row
    more than fits is kept; past the byte bound, rows are only counted."""
    rows: list[Row] = []
    answer_bytes = 0  # exact, or (projected, until measured) at least the answer's bytes
    measured = project is None
    for _, stored, width in found:
        row = stored if project is None else project(stored)
        if measured:
            answer_bytes += width if project is None else row_width(row)
        else:
            answer_bytes += width * width_factor
            if answer_bytes > QUERY_BYTES_MAX:  # the bound no longer shows it fits
                answer_bytes = sum(map(row_width, rows)) + row_width(row)
                measured = True
        if answer_bytes > QUERY_BYTES_MAX:
            # Over in bytes; the spec reports rows first, so count the rest (not kept).
            counted = len(rows) + 1 + sum(1 for _ in islice(found, QUERY_ROWS_MAX))
            if counted > QUERY_ROWS_MAX:
                raise over_limit("QUERY_ROWS_MAX", counted, "answer rows")
            raise over_limit("QUERY_BYTES_MAX", answer_bytes, "answer bytes")
        rows.append(row)
        if len(rows) > QUERY_ROWS_MAX:
            raise over_limit("QUERY_ROWS_MAX", len(rows), "answer rows")
    return rows
