"""Batch INSERTs: the column-by-column path gives exactly what the row-by-row path gives.

An INSERT of many rows binds, checks and encodes a column at a time, checks its keys
against the store with one scan, and records its rows once in the event (format 2);
a text of many `(?, ..., ?)` rows is parsed from its head and two rows. Each shortcut
must be invisible: the same changes, the same event, the same error (kind, construct
and message) as the plain path, which the spec model is checked against elsewhere.
Hypothesis draws tables (one or two key columns, with or without an index), rows
whose values are sometimes of the wrong type, NULL where NOT NULL, NaN, -0.0, out of
range, lone surrogates, keys repeated in the batch or already stored, and both
parameters and literals; and INSERT texts with any spacing, case and shape.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import verity
from verity.crypto import chain_hash
from verity.errors import InvalidArgument, SqlError
from verity.query import (
    Engine,
    MemoryVersionedStore,
    WritePlan,
    changes_of_event,
    decode_event,
)
from verity.query._events import encode_event
from verity.query._keys import encode_value, encode_values
from verity.query._parse import _parse_many_rows, _parse_text, parse
from verity.query._rows import encode_row, encode_rows
from verity.query._types import ColumnType, coerce, coerce_column

# --- the column-at-a-time helpers against their one-value definitions -------------------

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1]),
    st.floats(allow_nan=True),
    st.sampled_from([0.0, -0.0, math.nan]),
    st.text(max_size=4),
    st.sampled_from(["\ud800", "a\udfff", "é", "a\x00b"]),
    st.binary(max_size=4),
)


def same_values(left: Sequence[object], right: Sequence[object]) -> bool:
    """Equal, and of equal types, with -0.0 told apart from 0.0."""
    return [(type(value), repr(value)) for value in left] == [
        (type(value), repr(value)) for value in right
    ]


@given(column_type=st.sampled_from(list(ColumnType)), values=st.lists(ANY_VALUE, max_size=8))
def test_coerce_column_is_coerce_of_each_value_or_defers(
    column_type: ColumnType, values: list[object]
) -> None:
    bound = coerce_column(column_type, values)
    try:
        expected: list[object] | None = [coerce(column_type, value, "c") for value in values]
    except SqlError:
        expected = None
    if bound is None:
        # Deferring is always allowed; it must happen whenever a value is refused.
        return
    assert expected is not None, "a value coerce refuses passed column-wise"
    assert same_values(bound, expected)


@pytest.mark.parametrize(
    ("column_type", "values"),
    [
        (ColumnType.BIGINT, [1, None, 2**63 - 1, -(2**63)]),
        (ColumnType.TEXT, ["a", None, "é\x00"]),
        (ColumnType.DOUBLE, [1.5, -0.0, None]),
        (ColumnType.BOOLEAN, [True, None, False]),
        (ColumnType.BYTES, [b"", None, b"\x00"]),
        (ColumnType.TIMESTAMP, [None, None]),
    ],
)
def test_coerce_column_binds_values_of_the_column_type(
    column_type: ColumnType, values: list[object]
) -> None:
    bound = coerce_column(column_type, values)
    assert bound is not None
    assert same_values(bound, [coerce(column_type, value, "c") for value in values])


@given(rows=st.lists(st.lists(ANY_VALUE, min_size=3, max_size=3), min_size=1, max_size=6))
def test_encode_rows_is_encode_row_of_each_row(rows: list[list[Any]]) -> None:
    assume(
        all(type(value) is not int or -(2**63) <= value < 2**63 for row in rows for value in row)
    )
    assume(not any(isinstance(value, str) and not _utf8(value) for row in rows for value in row))
    columns = [list(column) for column in zip(*rows, strict=True)]
    assert encode_rows(columns) == [encode_row(row) for row in rows]


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@given(values=st.lists(ANY_VALUE, max_size=6))
def test_encode_values_is_encode_value_of_each(values: list[Any]) -> None:
    assume(not any(isinstance(value, str) and not _utf8(value) for value in values))
    try:
        expected: list[bytes] | str = [encode_value(value) for value in values]
    except InvalidArgument as error:
        expected = str(error)
    try:
        actual: list[bytes] | str = encode_values(values)
    except InvalidArgument as error:
        actual = str(error)
    assert actual == expected


# --- the engine: bulk path against the row-by-row path ---------------------------------

SCHEMAS = {
    "one key, an index": (
        "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE, "
        "flag BOOLEAN, blob BYTES, at TIMESTAMP)",
        "CREATE INDEX t_name ON t (name)",
    ),
    "two keys": (
        "CREATE TABLE t (id BIGINT, name TEXT NOT NULL, score DOUBLE, flag BOOLEAN, "
        "blob BYTES, at TIMESTAMP, PRIMARY KEY (name, id))",
        None,
    ),
}
COLUMNS = ("id", "name", "score", "flag", "blob", "at")
GOOD: dict[str, st.SearchStrategy[Any]] = {
    "id": st.integers(0, 40),
    "name": st.sampled_from(["ada", "bo", "é", "a\x00"]),
    "score": st.one_of(st.none(), st.floats(-2, 2), st.just(-0.0)),
    "flag": st.one_of(st.none(), st.booleans()),
    "blob": st.one_of(st.none(), st.binary(max_size=3)),
    "at": st.one_of(st.none(), st.integers(0, 2**62)),
}
NULLABLE = ("score", "flag", "blob", "at")
BAD = st.sampled_from([None, True, 7, 2.5, math.nan, "x", "\ud800", b"x", 2**63, 3])


@st.composite
def cells(draw: st.DrawFn, column: str) -> tuple[str, object]:
    """(how the SQL writes a good value, the parameter if it is one): mostly a
    parameter, sometimes a literal."""
    roll = draw(st.integers(0, 9))
    if roll == 0 and column in ("id", "at"):
        return str(draw(st.integers(0, 40))), None
    if roll == 1 and column in NULLABLE:
        return "NULL", None
    return "?", draw(GOOD[column])


@st.composite
def inserts(draw: st.DrawFn) -> tuple[str, list[object]]:
    """An INSERT of 1..12 rows and its parameters; half of them have no fault, the
    others a bad parameter or a NULL in a NOT NULL column here and there (besides
    keys that may repeat)."""
    columns = list(COLUMNS)
    if draw(st.booleans()):
        columns = draw(st.permutations(COLUMNS))
        if draw(st.booleans()):
            columns = [c for c in columns if c not in ("blob", "flag")]
    count = draw(st.integers(1, 12))
    grid = [[draw(cells(column)) for column in columns] for _ in range(count)]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        row = draw(st.integers(0, count - 1))
        slot = draw(st.integers(0, len(columns) - 1))
        grid[row][slot] = ("?", draw(BAD)) if draw(st.booleans()) else ("NULL", None)
    params = [param for cells_of_row in grid for text, param in cells_of_row if text == "?"]
    rows = ["(" + ", ".join(text for text, _ in cells_of_row) + ")" for cells_of_row in grid]
    listed = "" if list(columns) == list(COLUMNS) else " (" + ", ".join(columns) + ")"
    return f"INSERT INTO t{listed} VALUES " + ", ".join(rows), params


def outcome(engine: Engine, sql: str, params: list[object]) -> WritePlan | str:
    try:
        return engine.plan_write(sql, params)
    except SqlError as error:
        return f"{error.kind}: {error}"


def engines(schema: str, stored: list[tuple[int, str]]) -> tuple[Engine, Engine]:
    """(bulk, row by row): two engines over equal stores holding rows `stored`."""
    pair = []
    for _ in range(2):
        store = MemoryVersionedStore()
        engine = Engine(store)
        statements = [s for s in SCHEMAS[schema] if s is not None]
        statements += [f"INSERT INTO t (id, name) VALUES ({i}, '{n}')" for i, n in stored]
        for position, sql in enumerate(statements, start=1):
            store.write_batch(position, b"h", engine.plan_write(sql).changes)
        pair.append(engine)
    bulk, rows = pair
    rows._insert_columns = lambda *arguments: None  # type: ignore[method-assign]
    return bulk, rows


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schema=st.sampled_from(sorted(SCHEMAS)),
    stored=st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from(["ada", "bo"])),
        max_size=4,
        unique_by=lambda row: row[0],
    ),
    insert=inserts(),
)
def test_bulk_insert_equals_row_by_row(
    schema: str, stored: list[tuple[int, str]], insert: tuple[str, list[object]]
) -> None:
    bulk, rows = engines(schema, stored)
    sql, params = insert
    expected = outcome(rows, sql, params)
    actual = outcome(bulk, sql, params)
    assert actual == expected
    if isinstance(actual, WritePlan):
        assert changes_of_event(actual.event) == actual.changes
        decoded = decode_event(actual.event)
        assert (decoded.kind, decoded.table, decoded.rows_affected, decoded.sql) == (
            "insert",
            "t",
            actual.rows_affected,
            sql,
        )


def test_a_batch_insert_takes_the_bulk_path_and_records_rows_once() -> None:
    store = MemoryVersionedStore()
    engine = Engine(store)
    plan = engine.plan_write("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT, n BIGINT)")
    store.write_batch(1, b"h", plan.changes)
    called: list[str] = []
    row_by_row = engine._insert_rows

    def spy(*arguments: Any) -> Any:
        called.append("rows")
        return row_by_row(*arguments)

    engine._insert_rows = spy  # type: ignore[method-assign, assignment]
    sql = "INSERT INTO t VALUES " + ", ".join(["(?, ?, ?)"] * 100)
    params: list[object] = [v for i in range(100) for v in (i, f"name {i}", i * 7)]
    plan = engine.plan_write(sql, params)
    assert called == []
    assert plan.rows_affected == 100
    assert len(plan.changes) == 100
    assert changes_of_event(plan.event) == plan.changes
    # Format 2 holds each row once; format 1 would spell out tree, key and value each time.
    listed = encode_event("insert", "t", 100, sql, plan.changes)
    assert len(plan.event) < len(listed) - 100 * len("t:1:t")
    # A bad value sends the statement down the row-by-row path, which names it.
    params[3 * 57 + 2] = "seven"
    with pytest.raises(SqlError) as info:
        engine.plan_write(sql, params)
    assert info.value.kind == "type_mismatch"
    assert "seven" in str(info.value)
    assert called == ["rows"]


def test_keys_among_many_stored_rows_are_checked_one_by_one() -> None:
    # Stored ids 0, 2, ..., 1998; the batch's range spans them all, so the one scan gives
    # up after as many rows as the batch has and `get`s each remaining key instead.
    store = MemoryVersionedStore()
    engine = Engine(store)
    store.write_batch(1, b"h", engine.plan_write("CREATE TABLE t (id BIGINT PRIMARY KEY)").changes)
    sql = "INSERT INTO t VALUES " + ", ".join(["(?)"] * 1000)
    store.write_batch(2, b"h", engine.plan_write(sql, list(range(0, 2000, 2))).changes)
    few = "INSERT INTO t VALUES (?), (?), (?), (?), (?)"
    for second in range(3, 40, 2):
        odd = [1, second, second + 2, 999, 1999]
        assert engine.plan_write(few, odd).rows_affected == 5
        for place in range(5):  # a stored key anywhere in the batch is found
            ids = list(odd)
            ids[place] -= 1
            with pytest.raises(SqlError) as info:
                engine.plan_write(few, ids)
            assert info.value.kind == "constraint"
            assert f"id={ids[place]})" in str(info.value)


# --- events of format 2 ----------------------------------------------------------------


def indexed_plan() -> WritePlan:
    store = MemoryVersionedStore()
    engine = Engine(store)
    for position, sql in enumerate(SCHEMAS["one key, an index"], start=1):
        assert sql is not None
        store.write_batch(position, b"h", engine.plan_write(sql).changes)
    sql = "INSERT INTO t (id, name, score) VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?), (?, ?, ?)"
    return engine.plan_write(sql, [3, "c", 1.5, 1, "a", None, 2, "b\x00", -0.0, 4, "é", 2.0])


LAST_ROW = encode_row([4, "é", 2.0, None, None, None])


def test_an_insert_event_gives_back_its_data_and_index_changes() -> None:
    plan = indexed_plan()
    assert len(plan.changes) == 8  # a row and an index entry for each of 4 rows
    assert [tree for tree, _, _ in plan.changes][:2] == ["t:1:t", "i:2:t_name"]
    assert changes_of_event(plan.event) == plan.changes
    assert plan.event[3] == 2  # format 2: rows once
    assert plan.event.endswith(LAST_ROW)


@pytest.mark.parametrize(
    "damage",
    [
        lambda event: event[:-1],
        lambda event: event + b"\x00",
        lambda event: event[:4] + b"\x01" + event[5:],  # format 2 of a CREATE TABLE
        lambda event: event.replace(b"t:1:t", b"t:1:t" + b"\x00\x00\x00\x00", 1),
        lambda event: event[: -len(LAST_ROW)] + LAST_ROW[:1] + b"\x09" + LAST_ROW[2:],
    ],
    ids=["truncated", "trailing", "kind", "lengths", "row"],
)
def test_damaged_insert_events_are_refused(damage: Any) -> None:
    event = indexed_plan().event
    with pytest.raises(InvalidArgument):
        decode_event(damage(event))


def test_insert_events_of_format_1_still_decode() -> None:
    # Logs written before format 2 hold INSERTs as listed changes; they replay as written.
    plan = indexed_plan()
    listed = encode_event("insert", "t", 4, "INSERT ...", plan.changes)
    assert listed[3] == 1
    assert changes_of_event(listed) == plan.changes


def test_an_event_claiming_too_many_rows_is_refused_before_reading_them() -> None:
    event = indexed_plan().event
    table_end = 5 + 2 + 1  # header, table length, "t"
    huge = event[:table_end] + struct.pack(">Q", 2**60) + event[table_end + 8 :]
    with pytest.raises(InvalidArgument) as info:
        decode_event(huge)
    assert "rows" in str(info.value)


# --- parsing many rows -----------------------------------------------------------------

NAMES = st.sampled_from(["t", "T", "values", "select", "insert", "_x1", "é", "a b", "t.x"])
BLANK = st.sampled_from(["", " ", "  ", "\n", "\t", "\r\n", " \x0c"])


@st.composite
def insert_texts(draw: st.DrawFn) -> str:
    blank = draw(BLANK)
    width = draw(st.integers(1, 4))
    row = "(" + f",{blank}".join(["?"] * width) + ")"
    count = draw(st.integers(1, 6))
    rows = [row] * count
    if draw(st.integers(0, 3)) == 0:
        odd = draw(st.sampled_from(["(?)", "(?, ?, ?, ?, ?)", "(1, ?)", "($1, ?)", "(?, 'x')"]))
        rows[draw(st.integers(0, count - 1))] = odd
    columns = ""
    if draw(st.booleans()):
        names = draw(st.lists(NAMES, min_size=1, max_size=4))
        columns = f"{draw(BLANK)}(" + ", ".join(names) + ")"
    insert = draw(st.sampled_from(["INSERT", "insert", "Insert"]))
    values = draw(st.sampled_from(["VALUES", "values"]))
    tail = draw(st.sampled_from(["", " ", ";", " -- done", "\n"]))
    lead = draw(st.sampled_from(["", " ", "\n"]))
    return (
        f"{lead}{insert} INTO {draw(NAMES)}{columns} {values}{draw(BLANK)}"
        + f",{draw(BLANK)}".join(rows)
        + tail
    )


def parsed_or_error(text: str, parser: Any) -> object:
    try:
        return parser(text)
    except SqlError as error:
        return (type(error), str(error))


@settings(max_examples=400, deadline=None)
@given(text=insert_texts())
def test_parsing_many_rows_equals_parsing_the_whole_text(text: str) -> None:
    expected = parsed_or_error(text, _parse_text)
    shortcut = _parse_many_rows(text)
    if shortcut is not None:
        assert shortcut == expected
    assert parsed_or_error(text, parse) == expected


def test_a_batch_insert_text_is_parsed_from_two_rows() -> None:
    text = "INSERT INTO patients (id, name)\nVALUES " + ",\n ".join(["(?, ?)"] * 1000)
    parsed = _parse_many_rows(text)
    assert parsed is not None
    assert parsed == _parse_text(text)
    assert parsed.parameter_count == 2000
    assert parsed.statement.rows[-1][-1].index == 1999  # type: ignore[union-attr]


# --- through the SDK: receipts, replay ---------------------------------------------------


@pytest.mark.parametrize("every_n_records", [1, 2, 1000], ids=["1", "2", "1000"])
def test_receipts_hold_the_chain_hash_with_or_without_a_checkpoint_after(
    tmp_path: Path, every_n_records: int, caplog: pytest.LogCaptureFixture
) -> None:
    # An automatic checkpoint may follow a statement's record: the receipt still names the
    # statement's own record, and the store's applied hash agrees with the log on reopen.
    policy = verity.CheckpointPolicy(every_n_records=every_n_records)
    sql = "INSERT INTO t VALUES " + ", ".join(["(?, ?)"] * 50)
    with verity.open(tmp_path / "db", checkpoint_policy=policy, create=True) as db:
        t = db.tenant(verity.TenantId(1), create=True)
        receipts = [t.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT)")]
        for batch in range(6):
            ids = range(50 * batch, 50 * batch + 50)
            receipts.append(t.execute(sql, [v for i in ids for v in (i, f"n{i}")]))
        for receipt in receipts:
            proof = t.inclusion_proof(int(receipt.offset), t.log_size())
            assert receipt.hash == chain_hash(proof.leaf)
    with verity.open(tmp_path / "db", checkpoint_policy=policy, create=True) as db:
        t = db.tenant(verity.TenantId(1), create=True)
        assert t.query("SELECT COUNT(*) FROM t").rows == [(300,)]
        assert "rebuilding" not in caplog.text  # the store's applied hash matched the log
        assert t.query("SELECT name FROM t WHERE id = ?", [299]).rows == [("n299",)]


def test_batch_inserts_replay_from_the_log_alone(tmp_path: Path) -> None:
    sql = "INSERT INTO t VALUES " + ", ".join(["(?, ?, ?)"] * 40)
    db = verity.open(tmp_path / "db", create=True)
    t = db.tenant(verity.TenantId(1), create=True)
    t.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, ward TEXT, n BIGINT)")
    t.execute("CREATE INDEX by_ward ON t (ward)")
    for batch in range(5):
        ids = range(40 * batch, 40 * batch + 40)
        t.execute(sql, [v for i in ids for v in (i, f"w{i % 3}", None if i % 7 else i)])
    expected = t.query("SELECT * FROM t WHERE ward = 'w1'").rows
    db._abandon()  # the store was never synced: reopening replays the format-2 events
    with verity.open(tmp_path / "db", create=True) as reopened:
        t = reopened.tenant(verity.TenantId(1), create=True)
        assert t.query("SELECT COUNT(*) FROM t").rows == [(200,)]
        assert t.query("SELECT * FROM t WHERE ward = 'w1'").rows == expected
        assert len(expected) == 67
