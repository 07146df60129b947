"""The lockstep state machine of the PEP 249 driver: `verity.dbapi` against the tables spec.

Applications written for Python's DB-API reach VerityDB through
`verity.dbapi.connect(path, tenant)`; what they see must be what
`verity_spec.tables` says the same statements give. Hypothesis drives one
connection to a real database folder (an encrypted tenant, fsync on) and the
spec with the same statements: CREATE TABLE and INDEX, INSERT through
`execute` and `executemany` (qmark parameters, wrong types, NULLs, duplicate
keys), UPDATE and DELETE with random WHERE clauses, SELECT read back through
any mix of `fetchone`, `fetchmany(n)`, `fetchmany()` (the cursor's
`arraysize`), `fetchall` and iteration, unsupported and unknown statements,
and the connection closed and opened again. After each statement:

- a SELECT's rows, in order and exactly typed, and its `description`: the
  column names, and a type code equal to the module's type object of the
  column's first non-NULL value (`STRING` when every value is NULL);
  `rowcount` is the number of rows;
- a write's `rowcount` is the rows the spec says it affected (for
  `executemany`, the sum; a failure stops it, the earlier sets stay);
- a refused statement raises the PEP 249 class of the spec's failure kind
  (docs/sdk.md, "DB-API"), and `rowcount` is -1 with no result set;
- fetching without a result set, or through a closed cursor or connection,
  raises `InterfaceError`; `rollback` raises `NotSupportedError`;
- the module's constructors give what PEP 249 and docs/sdk.md say
  (`Timestamp` and `TimestampFromTicks`: ns since the epoch, UTC, the
  TIMESTAMP column's value; `Date`, `Time`, `*FromTicks` in UTC), and its
  type objects equal exactly their type names.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

import verity_spec.tables as spec_tables
from verity import dbapi
from verity_conformance.tables_drivers import encode_value
from verity_conformance.tables_machine import (
    BAD_STATEMENTS,
    COLUMNS,
    TABLES,
    Sql,
    delete_text,
    select_text,
    update_text,
    values_for,
)

NOW_START = 1_767_225_600_000_000_000
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
TYPE_NAMES = {
    "STRING": {"TEXT"},
    "BINARY": {"BYTES"},
    "NUMBER": {"BIGINT", "DOUBLE", "BOOLEAN"},
    "DATETIME": {"TIMESTAMP"},
    "ROWID": set(),
}

# PEP 249's class for each failure kind of the spec (docs/sdk.md, "DB-API").
CLASS_OF_KIND: dict[str, type[dbapi.Error]] = {
    "syntax": dbapi.ProgrammingError,
    "unknown_table": dbapi.ProgrammingError,
    "unknown_column": dbapi.ProgrammingError,
    "table_exists": dbapi.ProgrammingError,
    "parameter": dbapi.ProgrammingError,
    "unsupported": dbapi.NotSupportedError,
    "type_mismatch": dbapi.DataError,
    "limit": dbapi.DataError,
    "constraint": dbapi.IntegrityError,
}


def type_object(values: list[object]) -> object:
    """The module's type object a column's type code must equal (the first non-NULL value's)."""
    for value in values:
        if isinstance(value, bytes):
            return dbapi.BINARY
        if isinstance(value, bool | int | float):
            return dbapi.NUMBER
        if isinstance(value, str):
            return dbapi.STRING
    return dbapi.STRING


class DbapiLockstep(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.work = Path(tempfile.mkdtemp(prefix="verity-dbapi-lockstep-"))
        self.now = NOW_START
        self.history = spec_tables.empty_history()
        self.position = 0
        self.connection = self._connect()
        self.cursor = self.connection.cursor()
        # The rows of the cursor's last SELECT not fetched yet (None: no result set).
        self.pending: list[tuple[object, ...]] | None = None
        self.fresh_id = 100

    def _clock(self) -> int:
        self.now += 1_000
        return self.now

    def _connect(self) -> dbapi.Connection:
        return dbapi.connect(self.work / "db", tenant=7, clock=self._clock)

    # ------------------------------------------------------------ the spec

    def spec(self, sql: str, params: list[object]) -> spec_tables.Outcome:
        self.position += 1
        self.history, outcome = spec_tables.execute(self.history, sql, tuple(params), self.position)
        return outcome

    def check_refusal(self, what: str, outcome: spec_tables.Outcome, failure: Exception) -> None:
        assert isinstance(outcome, spec_tables.Failed), (
            f"{what}: the spec gave {outcome!r}, the driver raised {failure!r}"
        )
        expected = CLASS_OF_KIND[outcome.kind]
        assert type(failure) is expected, (
            f"{what}: the spec's {outcome.kind!r} is {expected.__name__}, "
            f"the driver raised {type(failure).__name__}: {failure}"
        )
        assert self.cursor.rowcount == -1 and self.cursor.description is None, what
        self.pending = None

    def run(self, sql: str, params: list[object]) -> None:
        """`sql` through `cursor.execute` and the spec: the same answer."""
        what = f"execute({sql!r}, {params!r})"
        outcome = self.spec(sql, params)
        try:
            self.cursor.execute(sql, params)
        except dbapi.Error as failure:
            self.check_refusal(what, outcome, failure)
            return
        if isinstance(outcome, spec_tables.Rows):
            columns = [entry[0] for entry in self.cursor.description or ()]
            assert columns == list(outcome.columns), f"{what}: columns {columns}"
            for i, entry in enumerate(self.cursor.description or ()):
                expected_type = type_object([row[i] for row in outcome.rows])
                assert entry[1] == expected_type, f"{what}: type code {entry[1]} of {columns[i]}"
            assert self.cursor.rowcount == len(outcome.rows), f"{what}: rowcount"
            self.pending = list(outcome.rows)
            return
        assert isinstance(outcome, spec_tables.Written), f"{what}: the spec gave {outcome!r}"
        assert self.cursor.rowcount == outcome.rows_affected, (
            f"{what}: rowcount {self.cursor.rowcount}, the spec {outcome.rows_affected}"
        )
        assert self.cursor.description is None, what
        self.pending = None

    # ------------------------------------------------------------ statements

    @rule(table=st.sampled_from(sorted(TABLES)))
    def create_table(self, table: str) -> None:
        self.run(TABLES[table], [])

    @rule(data=st.data(), table=st.sampled_from(sorted(TABLES)))
    def create_index(self, data: st.DataObject, table: str) -> None:
        column = data.draw(st.sampled_from(sorted(COLUMNS[table])))
        self.run(f"CREATE INDEX idx_{column} ON {table} ({column})", [])

    @rule(data=st.data(), table=st.sampled_from(sorted(TABLES)), many=st.booleans())
    def insert(self, data: st.DataObject, table: str, many: bool) -> None:
        columns = sorted(COLUMNS[table])
        chosen = data.draw(st.lists(st.sampled_from(columns), min_size=1, unique=True))
        sql = f"INSERT INTO {table} ({', '.join(chosen)}) VALUES ({', '.join('?' for _ in chosen)})"
        sets = data.draw(
            st.lists(
                st.tuples(*(values_for(COLUMNS[table][c]) for c in chosen)).map(list),
                min_size=1,
                max_size=4 if many else 1,
            )
        )
        if not many:
            self.run(sql, sets[0])
            return
        # executemany: each set in turn, as `execute` would; the first refusal stops it.
        total = 0
        refused: tuple[spec_tables.Outcome, int] | None = None
        for number, params in enumerate(sets):
            outcome = self.spec(sql, params)
            if not isinstance(outcome, spec_tables.Written):
                refused = (outcome, number)
                break
            total += outcome.rows_affected
        what = f"executemany({sql!r}, {sets!r})"
        try:
            self.cursor.executemany(sql, sets)
        except dbapi.Error as failure:
            assert refused is not None, f"{what}: the spec wrote every set, the driver raised"
            self.check_refusal(f"{what}, set {refused[1]}", refused[0], failure)
            return
        assert refused is None, f"{what}: the spec refused set {refused}, the driver did not"
        assert self.cursor.rowcount == total, f"{what}: rowcount {self.cursor.rowcount}"
        self.pending = None

    @rule(count=st.integers(2, 12))
    def many_patients(self, count: int) -> None:
        """Well-formed rows under fresh keys: result sets long enough to fetch in parts."""
        self.run(TABLES["patients"], [])
        first = self.fresh_id
        self.fresh_id += count
        sets = [[k, f"name {k}", k / 4, k % 2 == 0] for k in range(first, first + count)]
        sql = "INSERT INTO patients (id, name, score, active) VALUES (?, ?, ?, ?)"
        for params in sets:
            outcome = self.spec(sql, params)
            assert isinstance(outcome, spec_tables.Written), outcome
        self.cursor.executemany(sql, sets)
        assert self.cursor.rowcount == count, f"executemany of {count} rows: {self.cursor.rowcount}"
        self.pending = None
        self.run("SELECT * FROM patients WHERE id >= ? ORDER BY id", [first])

    # The statements the tables machine draws, with the driver's one parameter style.
    @rule(data=st.data(), table=st.sampled_from(sorted(TABLES)))
    def update(self, data: st.DataObject, table: str) -> None:
        sql = Sql(data, data.draw(st.sampled_from(["literal", "qmark"])))
        self.run(update_text(data, table, sql), sql.params)

    @rule(data=st.data(), table=st.sampled_from(sorted(TABLES)))
    def delete(self, data: st.DataObject, table: str) -> None:
        sql = Sql(data, data.draw(st.sampled_from(["literal", "qmark"])))
        self.run(delete_text(data, table, sql), sql.params)

    @rule(data=st.data(), table=st.sampled_from(sorted(TABLES)))
    def select(self, data: st.DataObject, table: str) -> None:
        sql = Sql(data, data.draw(st.sampled_from(["literal", "qmark"])))
        self.run(select_text(data, table, sql), sql.params)

    @rule(text=st.sampled_from(BAD_STATEMENTS))
    def bad_statement(self, text: str) -> None:
        self.run(text, [])

    # ------------------------------------------------------------ fetching

    @precondition(lambda self: self.pending is not None)
    @rule(
        how=st.sampled_from(["one", "many", "many_default", "all", "iterate"]),
        size=st.integers(0, 5),
        arraysize=st.integers(1, 3),
    )
    def fetch(self, how: str, size: int, arraysize: int) -> None:
        pending = self.pending
        assert pending is not None
        got: Any
        if how == "one":
            got = self.cursor.fetchone()
            expected: Any = pending.pop(0) if pending else None
        elif how == "many":
            got = self.cursor.fetchmany(size)
            expected = pending[:size]
            del pending[:size]
        elif how == "many_default":
            self.cursor.arraysize = arraysize
            got = self.cursor.fetchmany()
            expected = pending[:arraysize]
            del pending[:arraysize]
        elif how == "all":
            got = self.cursor.fetchall()
            expected = list(pending)
            pending.clear()
        else:
            got = list(self.cursor)
            expected = list(pending)
            pending.clear()
        assert _encoded(got) == _encoded(expected), f"fetch {how}: {got!r}, spec {expected!r}"

    @precondition(lambda self: self.pending is None)
    @rule(how=st.sampled_from(["one", "many", "all"]))
    def fetch_without_a_result_set(self, how: str) -> None:
        try:
            if how == "one":
                self.cursor.fetchone()
            elif how == "many":
                self.cursor.fetchmany()
            else:
                self.cursor.fetchall()
        except dbapi.InterfaceError:
            return
        raise AssertionError(f"fetch {how} with no result set did not raise InterfaceError")

    @rule(
        moment=st.datetimes(
            min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2200, 1, 1)
        ),
        ward=st.sampled_from(["w1", "w2"]),
    )
    def timestamps(self, moment: datetime.datetime, ward: str) -> None:
        """A TIMESTAMP written with `Timestamp(...)` reads back as ns since the epoch, UTC."""
        moment = moment.replace(microsecond=0)
        expected = (moment.replace(tzinfo=datetime.UTC) - EPOCH) // datetime.timedelta(seconds=1)
        made = dbapi.Timestamp(
            moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second
        )
        assert made == expected * 1_000_000_000, f"Timestamp({moment}) = {made}"
        assert dbapi.TimestampFromTicks(expected) == made, f"TimestampFromTicks({expected})"
        ticks = expected + 0.25
        ns = dbapi.TimestampFromTicks(ticks)
        assert ns == expected * 1_000_000_000 + 250_000_000, f"TimestampFromTicks({ticks}) = {ns}"
        utc = EPOCH + datetime.timedelta(seconds=ticks)
        assert dbapi.DateFromTicks(ticks) == utc.date(), f"DateFromTicks({ticks})"
        assert dbapi.TimeFromTicks(ticks) == utc.time(), f"TimeFromTicks({ticks})"
        midnight = (moment.replace(hour=0, minute=0, second=0, tzinfo=datetime.UTC) - EPOCH) // (
            datetime.timedelta(seconds=1)
        )
        at_midnight = dbapi.Timestamp(moment.year, moment.month, moment.day)
        assert at_midnight == midnight * 1_000_000_000, f"Timestamp of {moment.date()}"
        assert dbapi.Date(moment.year, moment.month, moment.day) == moment.date()
        assert dbapi.Time(moment.hour, moment.minute, moment.second) == moment.time()
        self.run("INSERT INTO visits (patient, ward, seen) VALUES (?, ?, ?)", [made, ward, made])
        self.run("SELECT seen FROM visits WHERE patient = ? AND ward = ?", [made, ward])

    @rule(
        name=st.sampled_from(sorted(TYPE_NAMES)),
        other=st.sampled_from(
            ["TEXT", "BYTES", "BIGINT", "DOUBLE", "BOOLEAN", "TIMESTAMP", "INT", "text"]
        ),
    )
    def module_constants(self, name: str, other: str) -> None:
        type_object = getattr(dbapi, name)
        assert (type_object == other) == (other in TYPE_NAMES[name]), f"{name} == {other!r}"
        assert type_object == type_object and hash(type_object) == hash(type_object)
        assert (dbapi.apilevel, dbapi.threadsafety, dbapi.paramstyle) == ("2.0", 1, "qmark")
        assert dbapi.Binary(b"\x00\xff") == b"\x00\xff"
        assert type(dbapi.Binary(b"x")) is bytes

    # ------------------------------------------------------------ the connection

    @rule()
    def rollback_is_not_supported(self) -> None:
        self.connection.commit()  # every statement was durable when it returned
        try:
            self.connection.rollback()
        except dbapi.NotSupportedError:
            return
        raise AssertionError("rollback did not raise NotSupportedError")

    @rule()
    def new_cursor(self) -> None:
        old = self.cursor
        self.cursor = self.connection.cursor()
        self.pending = None
        old.close()
        try:
            old.fetchall()
        except dbapi.InterfaceError:
            return
        raise AssertionError("a closed cursor fetched")

    @rule()
    def reconnect(self) -> None:
        old = self.connection
        old.close()
        try:
            self.cursor.execute("SELECT * FROM patients")
        except dbapi.InterfaceError:
            pass
        else:
            raise AssertionError("a cursor of a closed connection executed")
        self.connection = self._connect()
        self.cursor = self.connection.cursor()
        self.pending = None

    def teardown(self) -> None:
        self.connection.close()
        shutil.rmtree(self.work, ignore_errors=True)


def _encoded(rows: Any) -> Any:
    """Rows (or one row, or None) with every value tagged by type, so 1, 1.0 and True differ."""
    if rows is None:
        return None
    if isinstance(rows, tuple):
        return [encode_value(v) for v in rows]
    return [[encode_value(v) for v in row] for row in rows]
