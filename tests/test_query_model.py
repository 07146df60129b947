"""Random queries against two oracles: a plain Python filter and sort, and SQLite.

Hypothesis draws rows, WHERE trees (comparisons either way round, IN with NULLs,
IS [NOT] NULL, AND, OR, NOT), ORDER BY keys, LIMIT and OFFSET, literals or
parameters, and tables with and without secondary indexes, so that every access
path (point lookup, key ranges, index scans, table scan) answers some of them. Each
answer must equal the oracle's: the model in this file applies the dialect's rules
row by row; SQLite (whose NULL order and three-valued logic match the dialect) is an
independent implementation. Random UPDATE and DELETE statements are checked the same
way, and index scans after them catch a stale index entry.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verity.query import Engine, MemoryVersionedStore

Row = tuple[Any, ...]
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
FLIPPED = {"=": "=", "<>": "<>", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True)
class Table:
    name: str
    ddl: str
    sqlite_ddl: str
    columns: tuple[str, ...]
    primary_key: tuple[str, ...]
    values: dict[str, st.SearchStrategy[Any]]
    indexable: tuple[str, ...]


TEXT = st.text(alphabet="abé", max_size=2)
FLAT = Table(
    name="t",
    ddl="CREATE TABLE t (id BIGINT PRIMARY KEY, a BIGINT, b TEXT, c DOUBLE, f BOOLEAN)",
    sqlite_ddl="CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL, f INTEGER)",
    columns=("id", "a", "b", "c", "f"),
    primary_key=("id",),
    values={
        "id": st.integers(-4, 4),
        "a": st.none() | st.integers(-3, 3),
        "b": st.none() | TEXT,
        "c": st.none() | st.sampled_from([-1.5, 0.0, 0.5, 2.0]) | st.integers(-2, 2),
        "f": st.none() | st.booleans(),
    },
    indexable=("a", "b", "c", "f"),
)
COMPOSITE = Table(
    name="v",
    ddl="CREATE TABLE v (k1 BIGINT, k2 TEXT, n BIGINT, PRIMARY KEY (k1, k2))",
    sqlite_ddl="CREATE TABLE v (k1 INTEGER, k2 TEXT, n INTEGER, PRIMARY KEY (k1, k2))",
    columns=("k1", "k2", "n"),
    primary_key=("k1", "k2"),
    values={"k1": st.integers(-2, 2), "k2": TEXT, "n": st.none() | st.integers(-2, 2)},
    indexable=("n", "k2"),
)


def predicates(table: Table) -> st.SearchStrategy[Any]:
    column = st.sampled_from(table.columns)
    comparison = column.flatmap(
        lambda name: st.tuples(
            st.just("cmp"),
            st.just(name),
            st.sampled_from(sorted(OPS)),
            st.none() | table.values[name],
            st.booleans(),
        )
    )
    within = column.flatmap(
        lambda name: st.tuples(
            st.just("in"),
            st.just(name),
            st.lists(st.none() | table.values[name], min_size=1, max_size=3),
        )
    )
    null = column.flatmap(lambda name: st.tuples(st.just("null"), st.just(name), st.booleans()))
    atoms = comparison | comparison | within | null
    return st.recursive(
        atoms,
        lambda inner: (
            st.tuples(st.just("and"), st.lists(inner, min_size=2, max_size=3))
            | st.tuples(st.just("or"), st.lists(inner, min_size=2, max_size=3))
            | st.tuples(st.just("not"), inner)
        ),
        max_leaves=5,
    )


def literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


class Renderer:
    """Writes a predicate as SQL, values as literals or `?` parameters (in text order)."""

    def __init__(self, use_parameters: bool) -> None:
        self.use_parameters = use_parameters
        self.params: list[Any] = []

    def value(self, value: Any) -> str:
        if self.use_parameters:
            self.params.append(value)
            return "?"
        return literal(value)

    def render(self, predicate: Any) -> str:
        kind = predicate[0]
        if kind == "cmp":
            _, name, op, value, flipped = predicate
            if flipped:
                return f"{self.value(value)} {FLIPPED[op]} {name}"
            return f"{name} {op} {self.value(value)}"
        if kind == "in":
            _, name, values = predicate
            return f"{name} IN ({', '.join(self.value(value) for value in values)})"
        if kind == "null":
            _, name, negated = predicate
            return f"{name} IS {'NOT ' if negated else ''}NULL"
        if kind == "not":
            return f"NOT ({self.render(predicate[1])})"
        joiner = " AND " if kind == "and" else " OR "
        return "(" + joiner.join(self.render(item) for item in predicate[1]) + ")"


def holds(predicate: Any, row: dict[str, Any]) -> bool | None:
    """The dialect's three-valued truth of `predicate` on `row`."""
    kind = predicate[0]
    if kind == "cmp":
        _, name, op, value, _ = predicate
        cell = row[name]
        return None if cell is None or value is None else OPS[op](cell, value)
    if kind == "in":
        _, name, values = predicate
        cell = row[name]
        if cell is None:
            return None
        if any(value is not None and cell == value for value in values):
            return True
        return None if None in values else False
    if kind == "null":
        _, name, negated = predicate
        return bool((row[name] is None) != negated)
    if kind == "not":
        inner = holds(predicate[1], row)
        return None if inner is None else not inner
    outcomes = [holds(item, row) for item in predicate[1]]
    if kind == "and":
        return False if False in outcomes else (None if None in outcomes else True)
    return True if True in outcomes else (None if None in outcomes else False)


@dataclass(frozen=True)
class Query:
    predicate: Any | None
    projection: str  # "*", "count" or a column name
    order_by: tuple[tuple[str, bool], ...]
    limit: int | None
    offset: int | None
    use_parameters: bool


def queries(table: Table) -> st.SearchStrategy[Query]:
    return st.builds(
        Query,
        predicate=st.none() | predicates(table),
        projection=st.sampled_from(["*", "count", *table.columns]),
        order_by=st.lists(st.tuples(st.sampled_from(table.columns), st.booleans()), max_size=2).map(
            tuple
        ),
        limit=st.none() | st.integers(0, 4),
        offset=st.none() | st.integers(0, 3),
        use_parameters=st.booleans(),
    )


def table_rows(table: Table) -> st.SearchStrategy[list[Row]]:
    row = st.tuples(*(table.values[name] for name in table.columns))
    width = len(table.primary_key)
    return st.lists(row, max_size=9, unique_by=lambda item: item[:width])


def stored(table: Table, row: Row) -> Row:
    # DOUBLE stores an int as a float.
    return tuple(
        float(value) if name == "c" and value is not None else value
        for name, value in zip(table.columns, row, strict=True)
    )


def nulls_low(name: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    """A sort key putting NULL below every value (first ascending, last descending)."""
    return lambda row: (row[name] is not None, row[name])


def model_answer(table: Table, rows: list[Row], query: Query) -> list[Row]:
    named = [dict(zip(table.columns, row, strict=True)) for row in rows]
    key_of = [table.columns.index(name) for name in table.primary_key]
    named.sort(key=lambda row: tuple(row[table.columns[index]] for index in key_of))
    if query.predicate is not None:
        named = [row for row in named if holds(query.predicate, row) is True]
    if query.projection == "count":
        result: list[Row] = [(len(named),)]
    else:
        for name, descending in reversed(query.order_by):
            named.sort(key=nulls_low(name), reverse=descending)
        columns = table.columns if query.projection == "*" else (query.projection,)
        result = [tuple(row[name] for name in columns) for row in named]
    start = query.offset or 0
    end = None if query.limit is None else start + query.limit
    return result[start:end]


def verity_sql(table: Table, query: Query) -> tuple[str, list[Any]]:
    renderer = Renderer(query.use_parameters)
    selected = "COUNT(*)" if query.projection == "count" else query.projection
    sql = f"SELECT {selected} FROM {table.name}"
    if query.predicate is not None:
        sql += " WHERE " + renderer.render(query.predicate)
    if query.order_by and query.projection != "count":
        keys = ", ".join(f"{name} {'DESC' if desc else 'ASC'}" for name, desc in query.order_by)
        sql += f" ORDER BY {keys}"
    if query.limit is not None:
        sql += f" LIMIT {renderer.value(query.limit)}"
    if query.offset is not None:
        sql += f" OFFSET {renderer.value(query.offset)}"
    return sql, renderer.params


def sqlite_sql(table: Table, query: Query) -> tuple[str, list[Any]]:
    renderer = Renderer(query.use_parameters)
    selected = "COUNT(*)" if query.projection == "count" else query.projection
    sql = f"SELECT {selected} FROM {table.name}"
    if query.predicate is not None:
        sql += " WHERE " + renderer.render(query.predicate)
    if query.projection != "count":
        keys = [f"{name} {'DESC' if desc else 'ASC'}" for name, desc in query.order_by]
        sql += " ORDER BY " + ", ".join([*keys, *table.primary_key])  # ties: key order
    if query.limit is not None or query.offset is not None:
        sql += f" LIMIT {-1 if query.limit is None else query.limit} OFFSET {query.offset or 0}"
    return sql, renderer.params


def same_rows(left: Sequence[Row], right: Sequence[Row]) -> bool:
    """Equal answers, also in value types (SQLite gives booleans back as 0 and 1)."""
    return list(left) == list(right) and all(
        type(a) is type(b) or {type(a), type(b)} <= {bool, int}
        for row_a, row_b in zip(left, right, strict=True)
        for a, b in zip(row_a, row_b, strict=True)
    )


class Harness:
    def __init__(self, table: Table, rows: list[Row], indexes: Sequence[str]) -> None:
        self.table = table
        self.store = MemoryVersionedStore()
        self.engine = Engine(self.store)
        self.position = 0
        self.write(table.ddl)
        for name in indexes:
            self.write(f"CREATE INDEX {table.name}_{name} ON {table.name} ({name})")
        if rows:
            marks = ", ".join(["?"] * len(table.columns))
            values = ", ".join([f"({marks})"] * len(rows))
            self.write(f"INSERT INTO {table.name} VALUES {values}", [v for r in rows for v in r])
        self.rows = [stored(table, row) for row in rows]
        self.sqlite = sqlite3.connect(":memory:")
        self.sqlite.execute(table.sqlite_ddl)
        marks = ", ".join(["?"] * len(table.columns))
        self.sqlite.executemany(f"INSERT INTO {table.name} VALUES ({marks})", self.rows)

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        plan = self.engine.plan_write(sql, params)
        self.position += 1
        self.store.write_batch(self.position, b"h", plan.changes)
        return plan.rows_affected

    def check(self, query: Query) -> None:
        expected = model_answer(self.table, self.rows, query)
        sql, params = verity_sql(self.table, query)
        actual = self.engine.query(sql, params).rows
        if not same_rows(actual, expected):
            plan = self.engine.explain(sql)
            raise AssertionError((sql, params, plan, actual, expected))
        lite_sql, lite_params = sqlite_sql(self.table, query)
        lite = self.sqlite.execute(lite_sql, lite_params).fetchall()
        assert same_rows(lite, expected), (lite_sql, lite_params, lite, expected)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_queries_match_the_model_and_sqlite(data: Any) -> None:
    table = data.draw(st.sampled_from([FLAT, COMPOSITE]))
    rows = data.draw(table_rows(table))
    indexes = data.draw(st.lists(st.sampled_from(table.indexable), unique=True, max_size=2))
    harness = Harness(table, rows, indexes)
    for query in data.draw(st.lists(queries(table), min_size=1, max_size=6)):
        harness.check(query)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_updates_and_deletes_match_the_model(data: Any) -> None:
    table = FLAT
    rows = data.draw(table_rows(table))
    indexes = data.draw(st.lists(st.sampled_from(table.indexable), unique=True, max_size=2))
    harness = Harness(table, rows, indexes)
    for _ in range(data.draw(st.integers(1, 3))):
        predicate = data.draw(st.none() | predicates(table))
        renderer = Renderer(data.draw(st.booleans()))
        where = "" if predicate is None else " WHERE " + renderer.render(predicate)
        named = [dict(zip(table.columns, row, strict=True)) for row in harness.rows]
        matched = [predicate is None or holds(predicate, row) is True for row in named]
        if data.draw(st.booleans()):
            sql = f"DELETE FROM t{where}"
            affected = harness.write(sql, renderer.params)
            harness.rows = [row for row, hit in zip(harness.rows, matched, strict=True) if not hit]
        else:
            column = data.draw(st.sampled_from(table.indexable))
            value = data.draw(table.values[column])
            sql = f"UPDATE t SET {column} = {literal(value)}{where}"
            affected = harness.write(sql, renderer.params)
            position = table.columns.index(column)
            harness.rows = [
                stored(table, (*row[:position], value, *row[position + 1 :])) if hit else row
                for row, hit in zip(harness.rows, matched, strict=True)
            ]
        assert affected == sum(matched)
        assert harness.sqlite.execute(sql, renderer.params).rowcount == affected
        harness.check(Query(None, "*", (), None, None, False))
        # Every value of every indexable column finds exactly its rows (index scans).
        for column in table.indexable:
            for value in {row[table.columns.index(column)] for row in harness.rows}:
                if value is not None:
                    harness.check(
                        Query(("cmp", column, "=", value, False), "id", (), None, None, True)
                    )
