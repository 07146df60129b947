"""Fuzzing the SQL parser, planner and engine: one SQL string must not take the process down.

Every input gives an answer or a `SqlError`; any other exception (MemoryError,
RecursionError, ValueError, OverflowError, IndexError, UnicodeError, struct.error,
an AssertionError...) is a bug. Hypothesis writes:

- random text, and soups of SQL tokens;
- grammar-shaped SQL of the dialect and around it (CREATE TABLE/INDEX, INSERT,
  UPDATE, DELETE, SELECT with WHERE/ORDER BY/LIMIT/OFFSET/IN/BETWEEN), with nested
  parentheses and NOTs, `?` and `$n` parameters, huge numbers, long names, deep
  nesting, wide rows;
- random parameters: ints of any size, floats (NaN, infinities), text (lone
  surrogates too), bytes, None, bool, nested lists, dicts, other objects.

Each campaign runs in a subprocess whose address space is limited (RLIMIT_AS, 2
GiB), so an allocation in proportion to some number in the input fails the test
instead of the machine. Statements run through the engine over a memory store
(query, plan_write, explain, query as of a position); through the spec
(`verity_spec.tables`) beside the engine over the real projection store, which
must give the same observation (the tables lockstep's drivers; a sequence of
grammar-shaped statements, or one random text); and a few through the SDK
(`verity.open(...).tenant(...)`).

Every campaign prints `seed=N`; `VERITY_FUZZ_SEED=N` reruns it, and a failure also
prints Hypothesis's falsifying example and `@reproduce_failure` blob. The default
run takes well under a minute; `-m slow` runs the campaigns at full size
(`VERITY_CAMPAIGN_SCALE` scales them).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
ADDRESS_SPACE_BYTES = 2 << 30

# --- what the campaigns write ---------------------------------------------------------------

SCHEMA = [
    "CREATE TABLE a (id BIGINT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE, "
    "flag BOOLEAN, data BYTES, seen TIMESTAMP)",
    "CREATE TABLE b (x BIGINT, y TEXT, note TEXT, PRIMARY KEY (x, y))",
    "CREATE INDEX b_note ON b (note)",
    "INSERT INTO a VALUES (1, 'ada', 1.5, TRUE, X'00ff', 10), (2, 'bob', NULL, FALSE, NULL, 20)",
    "INSERT INTO b VALUES (1, 'p', 'n1'), (1, 'q', NULL), (2, 'p', 'n2')",
]
COLUMNS = {
    "a": ["id", "name", "score", "flag", "data", "seen"],
    "b": ["x", "y", "note"],
}
TABLE_NAMES = ["a", "b", "A", '"b"', "nope", "t" * 63, "t" * 64, "\u00e9" * 40]
COLUMN_NAMES = [*COLUMNS["a"], *COLUMNS["b"], "missing", "ID", '"name"', "a.id", "*", "c" * 64]
KEYWORDS = [
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "IS", "NULL", "TRUE", "FALSE",
    "INSERT", "INTO", "VALUES", "UPDATE", "SET", "DELETE", "CREATE", "TABLE", "INDEX",
    "ON", "DROP", "PRIMARY", "KEY", "ORDER", "BY", "DESC", "ASC", "LIMIT", "OFFSET",
    "COUNT", "BETWEEN", "CASE", "WHEN", "THEN", "END", "JOIN", "GROUP", "UNION", "WITH",
    "EXISTS", "ANY", "ALL", "INTERVAL", "CAST", "AS", "NULLS", "FIRST", "EXPLAIN",
    "BIGINT", "TEXT", "DOUBLE", "BYTES", "BOOLEAN", "TIMESTAMP", "VARCHAR(3)",
]  # fmt: skip
PUNCTUATION = [
    "(", ")", "[", "]", "{", "}", ",", ";", "*", "=", "<>", "!=", "<", ">", "<=", ">=",
    "-", "+", "~", "|/", "||", "::", ".", "?", "$1", "$0", "$65536", ":x", "%s", "@a",
    "'", '"', "--", "/*", "*/", "$$", "X'0'", "0x1f", "1e999", "-0.0", "'\ud800'",
]  # fmt: skip
HUGE_DIGITS = [19, 20, 309, 400, 999, 1000, 1001, 4300, 4301, 6000]


def quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Statement:
    """One statement's text and the parameters drawn for it.

    Most choices keep to the schema (known tables and columns, values of the column's
    type), so that statements get past the parser into the planner, the engine and the
    store; the rest are anything.
    """

    def __init__(self, data: st.DataObject, style: str) -> None:
        self.data = data
        self.style = style  # "?", "$", or "literal"
        self.params: list[object] = []

    def draw(self, strategy: st.SearchStrategy[Any]) -> Any:
        return self.data.draw(strategy)

    def rarely(self) -> bool:
        """True about once in thirty draws: for the inputs that take long to read."""
        return bool(self.draw(st.integers(0, 29)) == 0)

    def sometimes(self) -> bool:
        """True about once in six draws."""
        return bool(self.draw(st.integers(0, 5)) == 0)

    def parameter(self, value: object) -> str:
        self.params.append(value)
        return "?" if self.style == "?" else f"${len(self.params)}"

    def value(self, kind: str = "any", *, clean: bool = False) -> str:
        """A value for a column of `kind` ("int", "float", "text", "bool", "bytes"): a
        literal or a parameter of that type mostly (when `clean`, an ordinary non-NULL
        one), else anything near a value."""
        if kind != "any" and not self.rarely():
            typed = self.draw(CLEAN_VALUES[kind] if clean else typed_values(kind))
            if self.style != "literal" and self.draw(st.booleans()):
                return self.parameter(typed)
            return literal(typed)
        shape = self.draw(
            st.sampled_from(
                ["int", "float", "text", "bytes", "null", "bool", "param", "param", "huge", "odd"]
            )
        )
        if shape == "int":
            return str(self.draw(st.integers(-(2**70), 2**70)))
        if shape == "float":
            return self.draw(
                st.one_of(
                    st.floats(allow_nan=False, allow_infinity=False).map(repr),
                    st.sampled_from(["1.", ".5", "1e3", "1e999", "1E-400", "-2.5e10"]),
                )
            )
        if shape == "text":
            return quoted(self.draw(st.text(max_size=12)))
        if shape == "bytes":
            return f"X'{self.draw(st.binary(max_size=8)).hex()}'"
        if shape == "null":
            return "NULL"
        if shape == "bool":
            return str(self.draw(st.sampled_from(["TRUE", "FALSE"])))
        if shape == "param":
            if self.style == "literal":
                return str(self.draw(st.sampled_from(["?", "$1", "$2", ":name", "$0", "%s"])))
            return self.parameter(self.draw(parameter_values()))
        if shape == "huge":
            digits = self.draw(st.sampled_from(HUGE_DIGITS if self.rarely() else HUGE_DIGITS[:4]))
            forms = [
                "9" * digits,
                "-" + "9" * digits,
                "1" + "0" * digits + ".5",
                "$" + "9" * digits,
            ]
            return str(self.draw(st.sampled_from(forms)))
        return str(self.draw(st.sampled_from(ODD_VALUES)))

    def column(self, table: str) -> str:
        if table in COLUMNS and not self.rarely():
            return str(self.draw(st.sampled_from(COLUMNS[table])))
        return str(self.draw(st.sampled_from(COLUMN_NAMES)))

    def kind_of(self, table: str, column: str) -> str:
        return KINDS_OF.get(table, {}).get(column, "any")

    def predicate(self, table: str, depth: int = 0) -> str:
        shapes = ["cmp", "cmp", "cmp", "flip", "in", "in", "null"]
        if depth < 4:
            shapes += ["and", "and", "or", "not", "paren"]
        if self.sometimes():
            shapes += ["between", "deep"]
        shape = self.draw(st.sampled_from(shapes))
        column = self.column(table)
        kind = self.kind_of(table, column)
        if shape == "cmp":
            op = self.draw(st.sampled_from(["=", "=", "<>", "!=", "<", ">", "<=", ">="]))
            return f"{column} {op} {self.value(kind)}"
        if shape == "flip":
            return f"{self.value(kind)} {self.draw(st.sampled_from(['=', '<', '>=']))} {column}"
        if shape == "in":
            count = self.draw(st.integers(1, 6) if not self.rarely() else st.integers(0, 6))
            if self.rarely():
                count = self.draw(st.sampled_from([9_999, 10_000, 10_001]))
            if count > 6:
                item = self.value(kind)
                return f"{column} IN ({', '.join([item] * count)})"
            return f"{column} IN ({', '.join(self.value(kind) for _ in range(count))})"
        if shape == "null":
            return f"{column} IS {self.draw(st.sampled_from(['NULL', 'NOT NULL', 'TRUE']))}"
        if shape == "between":
            return f"{column} BETWEEN {self.value(kind)} AND {self.value(kind)}"
        if shape == "not":
            return f"NOT {self.predicate(table, depth + 1)}"
        if shape == "paren":
            return f"({self.predicate(table, depth + 1)})"
        if shape == "deep":
            levels = self.draw(st.sampled_from([15, 16, 17, 31, 32, 33, 34]))
            if self.rarely():
                levels = self.draw(st.sampled_from([200, 5000]))
            opening = self.draw(st.sampled_from(["(", "NOT (", "NOT ", "- ", "CASE WHEN ", "["]))
            closing = {"(": ")", "NOT (": ")", "CASE WHEN ": " THEN 1 END", "[": "]"}
            inner = self.predicate(table, 4)
            return opening * levels + inner + closing.get(opening, "") * levels
        left = self.predicate(table, depth + 1)
        right = self.predicate(table, depth + 1)
        return f"{left} {shape.upper()} {right}"

    def table(self) -> str:
        if not self.sometimes():
            return str(self.draw(st.sampled_from(["a", "b"])))
        return str(self.draw(st.sampled_from(TABLE_NAMES)))

    def select(self) -> str:
        table = self.table()
        projection = self.draw(st.sampled_from(["*", "COUNT(*)", "columns", "columns"]))
        if projection == "columns":
            projection = ", ".join(self.column(table) for _ in range(self.draw(st.integers(1, 3))))
        text = f"SELECT {projection} FROM {table}"
        if self.draw(st.booleans()):
            text += f" WHERE {self.predicate(table)}"
        if self.draw(st.booleans()):
            keys = [
                f"{self.column(table)} {self.draw(st.sampled_from(['', 'ASC', 'DESC']))}"
                for _ in range(self.draw(st.integers(1, 3)))
            ]
            text += " ORDER BY " + ", ".join(keys)
        for clause in ("LIMIT", "OFFSET"):
            if self.draw(st.booleans()):
                text += f" {clause} {self.count()}"
        return text

    def count(self) -> str:
        if self.style != "literal" and self.draw(st.booleans()):
            edges = [2**63 - 1, 2**63, 10**5000, -(10**5000), 1.0, None, True]
            number = st.integers(-1, 5) if not self.sometimes() else st.sampled_from(edges)
            return self.parameter(self.draw(number))
        edges_text = ["-1", str(2**63 - 1), str(2**63), "ALL", "'1'", "1.0"]
        if self.sometimes():
            return str(self.draw(st.sampled_from(edges_text)))
        return str(self.draw(st.integers(0, 5)))

    def insert(self) -> str:
        table = self.table()
        columns = COLUMNS.get(table, ["id"])
        listed = self.draw(st.booleans())
        if listed:
            chosen = self.draw(st.lists(st.sampled_from(columns), min_size=1, unique=True))
            keys = {"a": ["id"], "b": ["x", "y"]}.get(table, [])
            if not self.sometimes():  # the key columns, mostly
                chosen = keys + [column for column in chosen if column not in keys]
        else:
            chosen = list(columns)
        targets = list(chosen)
        if self.sometimes():
            targets = targets[:-1] if self.draw(st.booleans()) else [*targets, "id"]
        clean = self.draw(st.booleans())  # half of them, rows that fit
        rows = [
            "("
            + ", ".join(self.value(self.kind_of(table, column), clean=clean) for column in targets)
            + ")"
            for _ in range(self.draw(st.integers(1, 4)))
        ]
        head = f"INSERT INTO {table} ({', '.join(chosen)})" if listed else f"INSERT INTO {table}"
        return f"{head} VALUES {', '.join(rows)}"

    def update(self) -> str:
        table = self.table()
        assigned = []
        for _ in range(self.draw(st.integers(1, 3))):
            column = self.column(table)
            assigned.append(f"{column} = {self.value(self.kind_of(table, column))}")
        where = f" WHERE {self.predicate(table)}" if self.draw(st.booleans()) else ""
        return f"UPDATE {table} SET {', '.join(assigned)}{where}"

    def delete(self) -> str:
        table = self.table()
        where = f" WHERE {self.predicate(table)}" if self.draw(st.booleans()) else ""
        return f"DELETE FROM {table}{where}"

    def create_table(self) -> str:
        name = self.draw(st.sampled_from(["c", "d", *TABLE_NAMES]))
        count = self.draw(st.integers(1, 4))
        if self.rarely():
            count = self.draw(st.sampled_from([1_600, 1_601]))
        types = ["BIGINT", "TEXT", "DOUBLE", "BOOLEAN", "BYTES", "TIMESTAMP", "INT", "VARCHAR(3)"]
        columns = [
            f"k{number} {self.draw(st.sampled_from(types))}" for number in range(min(count, 4))
        ]
        columns += [f"k{number} BIGINT" for number in range(4, count)]
        key = self.draw(st.sampled_from(["k0", "k0", "k0, k1", "missing", ""]))
        primary = f", PRIMARY KEY ({key})" if key else ""
        return f"CREATE TABLE {name} ({', '.join(columns)}{primary})"

    def create_index(self) -> str:
        table = self.table()
        name = self.draw(st.sampled_from(["i1", "i2", "b_note", "i" * 64]))
        return f"CREATE INDEX {name} ON {table} ({self.column(table)})"

    def statement(self) -> str:
        kind = self.draw(
            st.sampled_from(
                [
                    "select",
                    "select",
                    "select",
                    "insert",
                    "insert",
                    "insert",
                    "update",
                    "update",
                    "delete",
                    "create_table",
                    "create_index",
                    "drop",
                ]
            )
        )
        if kind == "drop":
            return f"DROP TABLE {self.table()}"
        builder: Callable[[], str] = getattr(self, kind)
        return builder()


KINDS_OF = {
    "a": {"id": "int", "name": "text", "score": "float", "flag": "bool", "data": "bytes",
          "seen": "int"},
    "b": {"x": "int", "y": "text", "note": "text"},
}  # fmt: skip
ODD_VALUES = [
    "- -1", "-?", "1 + 1", "'a' || 'b'", "lower('x')", "(SELECT 1)", "0x10", "E'x'",
    "CAST(1 AS TEXT)", "$99999999999", "$65535", "$65536", "DEFAULT",
]  # fmt: skip


CLEAN_VALUES: dict[str, st.SearchStrategy[object]] = {
    "int": st.integers(-20, 60),
    "float": st.floats(-1e6, 1e6),
    "text": st.text(st.characters(codec="utf-8"), max_size=8),
    "bool": st.booleans(),
    "bytes": st.binary(max_size=8),
}


def typed_values(kind: str) -> st.SearchStrategy[object]:
    """Values of a column type, mostly small (so keys collide), with edges and NULLs."""
    by_kind: dict[str, st.SearchStrategy[object]] = {
        "int": st.one_of(
            st.integers(-3, 9),
            st.integers(-3, 9),
            st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1]),
        ),
        "float": st.one_of(st.sampled_from([0.0, -0.0, 1.5, -2.25]), st.floats()),
        "text": st.one_of(
            st.sampled_from(["p", "q", "", "n1"]),
            st.sampled_from(["p", "q", "", "n1"]),
            st.text(max_size=6),
            st.sampled_from(["k" * 996, "k" * 998, "\x00" * 498, "x" * 500]),
        ),
        "bool": st.booleans(),
        "bytes": st.one_of(st.binary(max_size=6), st.sampled_from([b"\x00" * 498, b"z" * 999])),
    }
    return st.one_of(by_kind[kind], by_kind[kind], by_kind[kind], st.none())


def literal(value: object) -> str:
    """`value` written as SQL (floats as Python writes them: `inf` and `nan` are names)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return quoted(value)
    assert isinstance(value, bytes)
    return f"X'{value.hex()}'"


class Weird:
    """An object that is none of the parameter types, whose methods all fail."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    def __hash__(self) -> int:
        raise RuntimeError("no hash")


def parameter_values() -> st.SearchStrategy[object]:
    """Values a caller might pass: the six parameter types at their edges, and others."""
    scalars: st.SearchStrategy[object] = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**64), 2**64),
        st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 10**400, 10**5000, -(10**5000)]),
        st.floats(),
        st.text(st.characters(exclude_categories=()), max_size=10),
        st.binary(max_size=10),
        st.sampled_from(["\x00" * 600, "k" * 998, "k" * 1001, b"\x00" * 600, "\ud800"]),
    )
    others: st.SearchStrategy[object] = st.one_of(
        st.lists(scalars, max_size=3),
        st.dictionaries(st.text(max_size=3), scalars, max_size=2),
        st.builds(bytearray, st.binary(max_size=4)),
        st.just(Decimal("1.5")),
        st.just(1j),
        st.builds(Weird),
    )
    return st.one_of(scalars, scalars, scalars, others)


@st.composite
def statements(draw: st.DrawFn) -> tuple[str, list[object]]:
    """One grammar-shaped statement and its parameters (sometimes one too many or few)."""
    data = draw(st.data())
    statement = Statement(data, draw(st.sampled_from(["?", "$", "literal"])))
    text = statement.statement()
    params = list(statement.params)
    change = draw(st.sampled_from(["", "", "", "", "", "", "", "", "drop", "add", "wide"]))
    if change == "drop" and params:
        params.pop()
    elif change == "add":
        params.append(draw(parameter_values()))
    elif change == "wide" and params and statement.rarely():
        # A value near the row bound (4 MiB), so INSERT and UPDATE meet ROW_BYTES_MAX.
        size = draw(st.sampled_from([(4 << 20) - 40, (4 << 20) + 1]))
        params[-1] = draw(st.sampled_from(["w" * size, b"w" * size]))
    return text, params


token_soup = st.lists(
    st.one_of(
        st.sampled_from(KEYWORDS),
        st.sampled_from(PUNCTUATION),
        st.sampled_from(TABLE_NAMES + COLUMN_NAMES),
        st.integers().map(str),
        st.text(max_size=4).map(quoted),
    ),
    max_size=40,
).map(" ".join)
random_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=80),
    token_soup,
    token_soup.map(lambda text: "SELECT * FROM a WHERE " + text),
)


# --- running one input ----------------------------------------------------------------------


def run_on_engine(sql: str, params: Sequence[object]) -> None:
    """`sql` against the engine over a memory store: an answer, or a SqlError (checked)."""
    from verity.errors import SqlError, SqlLimitExceeded
    from verity.query import LIMITS, Engine, MemoryVersionedStore

    store = MemoryVersionedStore()
    engine = Engine(store)
    for position, text in enumerate(SCHEMA, start=1):
        store.write_batch(position, b"h", engine.plan_write(text).changes)
    applied = store.applied()
    for call in (
        lambda: engine.query(sql, params),
        lambda: engine.plan_write(sql, params),
        lambda: engine.explain(sql),
        lambda: engine.query(sql, params, as_of=2),
    ):
        try:
            call()
        except SqlError as error:
            assert error.kind in KINDS, error
            if isinstance(error, SqlLimitExceeded):
                assert error.limit in LIMITS, error
                assert error.maximum == LIMITS[error.limit], error
        assert store.applied() == applied  # the engine never writes


KINDS = frozenset(
    {
        "syntax",
        "unsupported",
        "unknown_table",
        "unknown_column",
        "type_mismatch",
        "constraint",
        "table_exists",
        "parameter",
        "limit",
    }
)


def run_in_lockstep(batch: list[tuple[str, list[object]]]) -> None:
    """The statements through the spec and through the engine over the real store:
    the same observation each time (and never another exception)."""
    from verity_conformance.tables_drivers import EngineTablesDriver, SpecTablesDriver

    spec = SpecTablesDriver()
    with tempfile.TemporaryDirectory(prefix="verity-fuzz-") as folder:
        engine = EngineTablesDriver(Path(folder))
        try:
            position = 0
            for sql, params in [*((text, []) for text in SCHEMA), *batch]:
                position += 2
                expected = spec.execute(sql, tuple(params), position)
                actual = engine.execute(sql, tuple(params), position)
                assert actual == expected, (sql[:300], params[:3], expected, actual)
                if "written" in expected:
                    back = position - 1
                    expected = spec.query_at("SELECT COUNT(*) FROM a", (), back)
                    assert engine.query_at("SELECT COUNT(*) FROM a", (), back) == expected
        finally:
            engine.close()


def run_on_sdk(sql: str, params: Sequence[object]) -> None:
    """`sql` through the SDK: an answer or a SqlError; a refused write appends nothing."""
    import verity
    from verity import TenantId
    from verity.errors import InvalidArgument, SqlError

    with (
        tempfile.TemporaryDirectory(prefix="verity-fuzz-sdk-") as folder,
        verity.open(Path(folder) / "db", create=True) as db,
    ):
        tenant = db.tenant(TenantId(1), create=True)
        for text in SCHEMA:
            tenant.execute(text)
        size = tenant.log_size()
        try:
            tenant.query(sql, list(params))
        except SqlError:
            pass
        except InvalidArgument as error:  # a write passed to query()
            assert error.name == "sql", error
        assert tenant.log_size() == size
        try:
            tenant.execute(sql, list(params))
        except SqlError:
            assert tenant.log_size() == size
        except InvalidArgument as error:  # a query passed to execute()
            assert error.name == "sql", error
            assert tenant.log_size() == size


# --- campaigns (each run inside the limited subprocess) ----------------------------------


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        print_blob=True,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )


def campaign_text(examples: int, fuzz_seed: int) -> None:
    @seed(fuzz_seed)
    @settings(fuzz_settings(examples))
    @given(sql=random_text, params=st.lists(parameter_values(), max_size=3))
    def text(sql: str, params: list[object]) -> None:
        run_on_engine(sql, params)

    text()


def campaign_grammar(examples: int, fuzz_seed: int) -> None:
    @seed(fuzz_seed)
    @settings(fuzz_settings(examples))
    @given(statement=statements())
    def grammar(statement: tuple[str, list[object]]) -> None:
        run_on_engine(*statement)

    grammar()


def campaign_text_lockstep(examples: int, fuzz_seed: int) -> None:
    @seed(fuzz_seed)
    @settings(fuzz_settings(examples))
    @given(sql=random_text, params=st.lists(parameter_values(), max_size=3))
    def text_lockstep(sql: str, params: list[object]) -> None:
        run_in_lockstep([(sql, params)])

    text_lockstep()


def campaign_lockstep(examples: int, fuzz_seed: int) -> None:
    @seed(fuzz_seed)
    @settings(fuzz_settings(examples))
    @given(batch=st.lists(statements(), min_size=1, max_size=4))
    def lockstep(batch: list[tuple[str, list[object]]]) -> None:
        run_in_lockstep(batch)

    lockstep()


def campaign_sdk(examples: int, fuzz_seed: int) -> None:
    @seed(fuzz_seed)
    @settings(fuzz_settings(examples))
    @given(statement=st.one_of(statements(), st.tuples(random_text, st.just([]))))
    def sdk(statement: tuple[str, list[object]]) -> None:
        run_on_sdk(*statement)

    sdk()


def campaign_unbounded(examples: int, fuzz_seed: int) -> None:
    """Not a campaign: proves the harness fails (naming the seed) on an unbounded allocation."""

    @seed(fuzz_seed)
    @settings(fuzz_settings(examples), database=None)
    @given(size=st.integers(3 << 30, 4 << 30))
    def unbounded(size: int) -> None:
        bytearray(size)

    unbounded()


CAMPAIGNS: dict[str, Callable[[int, int], None]] = {
    "text": campaign_text,
    "text-lockstep": campaign_text_lockstep,
    "grammar": campaign_grammar,
    "lockstep": campaign_lockstep,
    "sdk": campaign_sdk,
    "unbounded": campaign_unbounded,
}


def run_campaigns(plan: list[tuple[str, int]], fuzz_seed: int) -> None:
    """Run `plan` (campaign, examples) with Hypothesis seeded by `fuzz_seed`, in at most
    `ADDRESS_SPACE_BYTES` of address space."""
    import logging
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_BYTES, ADDRESS_SPACE_BYTES))
    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # "falling back to a Command"
    print(f"seed={fuzz_seed} (rerun with VERITY_FUZZ_SEED={fuzz_seed})", flush=True)
    for name, examples in plan:
        print(f"campaign {name}: {examples} examples", flush=True)
        CAMPAIGNS[name](examples, fuzz_seed)
    print("ok", flush=True)


# --- the tests: each runs campaigns in a subprocess under RLIMIT_AS ---------------------------


def in_subprocess(plan: list[tuple[str, int]], timeout_s: float) -> tuple[bool, str]:
    """Run `plan` in a limited subprocess: (whether it passed, its output naming the seed)."""
    fuzz_seed = int(os.environ.get("VERITY_FUZZ_SEED") or random.randrange(2**32))
    command = [
        sys.executable,
        str(Path(__file__)),
        str(fuzz_seed),
        *(f"{name}={examples}" for name, examples in plan),
    ]
    result = subprocess.run(
        command,
        cwd=REPO,
        # This tree's `verity`, after whatever PYTHONPATH already names first (the
        # mutation harness puts a mutant copy there).
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)])),
        },
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    output = result.stdout + result.stderr
    passed = result.returncode == 0 and output.rstrip().endswith("ok")
    return passed, f"seed={fuzz_seed} (rerun with VERITY_FUZZ_SEED={fuzz_seed})\n{output}"


def test_fuzz_text_grammar_parameters_lockstep_and_sdk() -> None:
    plan = [
        ("text", 600),
        ("text-lockstep", 60),
        ("grammar", 600),
        ("lockstep", 100),
        ("sdk", 12),
    ]
    passed, output = in_subprocess(plan, timeout_s=300)
    assert passed, "a fuzz campaign failed:\n" + output[-20_000:]


@pytest.mark.slow
def test_fuzz_long_campaign() -> None:
    from _campaign import campaign

    plan = [
        ("text", campaign(5_000)),
        ("text-lockstep", campaign(1_000)),
        ("grammar", campaign(5_000)),
        ("lockstep", campaign(1_000)),
        ("sdk", campaign(200)),
    ]
    passed, output = in_subprocess(plan, timeout_s=3_600)
    assert passed, "a fuzz campaign failed:\n" + output[-20_000:]


# What the fuzzer (and the reading that led to it) found, each fixed at its root. The
# old answers: ValueError (Python reads at most 4,300 digits into an int, and cannot
# print a larger one), UnicodeEncodeError (a lone surrogate in a comment reached the
# event), struct.error (a name longer than the event's u16 length), MemoryError
# (`$99999999999`: see test_query_bounds), and the spec answering `SELECT FROM a` as
# `SELECT *` while the engine said "syntax".
FINDINGS: list[tuple[str, list[object]]] = [
    ("SELECT id FROM a WHERE id = " + "7" * 5000, []),
    ("SELECT id FROM a WHERE id = -" + "7" * 5000, []),
    ("SELECT id FROM a WHERE id = ?", [10**5000]),
    ("SELECT id FROM a LIMIT ?", [10**5000]),
    ("UPDATE a SET seen = ? WHERE id = 1", [-(10**5000)]),
    ("DELETE FROM a WHERE id = 1 -- \ud800", []),
    (f"CREATE TABLE {'y' * 70_000} (k BIGINT PRIMARY KEY)", []),
    ("SELECT", []),
    ("SELECT FROM a", []),
    ("SELECT FROM a WHERE id = 1", []),
    ("SELECT id FROM a WHERE id = ?", [Weird()]),
]


@pytest.mark.parametrize(("sql", "params"), FINDINGS)
def test_what_the_fuzzer_found_stays_fixed(sql: str, params: list[object]) -> None:
    from verity.errors import SqlError
    from verity.query import Engine, MemoryVersionedStore

    run_on_engine(sql, params)
    run_in_lockstep([(sql, params)])
    store = MemoryVersionedStore()
    engine = Engine(store)
    for position, text in enumerate(SCHEMA, start=1):
        store.write_batch(position, b"h", engine.plan_write(text).changes)
    with pytest.raises(SqlError) as raised:
        if sql.startswith("SELECT"):
            engine.query(sql, params)
        else:
            engine.plan_write(sql, params)
    assert raised.value.kind in ("syntax", "limit", "type_mismatch", "parameter")


def test_an_unbounded_allocation_fails_the_campaign_not_the_machine() -> None:
    passed, output = in_subprocess([("unbounded", 2)], timeout_s=120)
    assert not passed
    assert "MemoryError" in output
    assert "seed=" in output and "reproduce_failure" in output


if __name__ == "__main__":
    run_campaigns(
        [(name, int(examples)) for name, examples in (arg.split("=") for arg in sys.argv[2:])],
        int(sys.argv[1]),
    )
