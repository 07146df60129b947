"""The lockstep state machine of tables: the spec model against the SQL engine, twice.

Three sides run every step: the spec (`verity_spec.tables`), `verity.query.Engine`
over the real, sealed projection store (`verity.store`), and the same engine over
`verity.query.MemoryVersionedStore` (the public reference store in memory). All
three must answer alike after every step.

Hypothesis writes random SQL over a small schema (so keys collide and
predicates match): CREATE TABLE (good and bad), CREATE INDEX, DROP TABLE,
INSERT of several rows (right and wrong types, NULLs, duplicate keys),
UPDATE and DELETE with random WHERE clauses, SELECT with WHERE / ORDER BY /
LIMIT / OFFSET / COUNT(*), parameters in both styles, unsupported constructs
and unknown names. Positions grow by random gaps, as other records of the
tenant log would interleave. Queries also run `query_at` random past
positions. Statements just within and just over the bounds of "Limits"
(nesting, `$n`, names, numeric literals, LIMIT/OFFSET also far past 2**128,
the text's length, key and index entry widths) are cheap to build, so every
run has some. Wrong-typed arguments: parameters given as a str (of the
statement's parameter count), bytes, an int or None ("parameter"), and
`query_at` at a str, a float, a bool, -1 or 2**64 (`invalid_argument`, after
the text and the parameters). The implementations are closed and reopened,
and rebuilt from their recorded events alone; after every step all answer the
same (a "limit" failure names the same bound). The bounds of a write's event
and of an answer (64 MiB) are in the vectors (`tables-event-bound`), one step
each, not drawn here.

Every operation is a step of the `tables` vector format, performed on both
sides by the vector runner's own `perform` and kept in `self.recording`, so
a failing run becomes a reproduction vector.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

import verity_spec.tables as spec_tables
from verity_conformance._runner import Recording, step_fields
from verity_conformance.tables_drivers import (
    FORGERIES,
    EngineTablesDriver,
    MemoryTablesDriver,
    Observation,
    SpecTablesDriver,
    encode_value,
    params_to_json,
)
from verity_conformance.tables_vectors import Step, perform

TABLES = {
    "patients": "CREATE TABLE patients (id BIGINT PRIMARY KEY, name TEXT NOT NULL, "
    "score DOUBLE, active BOOLEAN)",
    "visits": "CREATE TABLE visits (patient BIGINT, ward TEXT, note BYTES, seen TIMESTAMP, "
    "PRIMARY KEY (patient, ward))",
    # Long keys and values over a leaf's half: page splits, trees of several levels and
    # overflow chains in the store.
    "docs": "CREATE TABLE docs (k TEXT PRIMARY KEY, n BIGINT NOT NULL, body BYTES)",
}
COLUMNS = {
    "patients": {"id": "int", "name": "text", "score": "float", "active": "bool"},
    "visits": {"patient": "int", "ward": "text", "note": "bytes", "seen": "int"},
    "docs": {"k": "text", "n": "int", "body": "bytes"},
}
KEYS = {"patients": ["id"], "visits": ["patient", "ward"], "docs": ["k"]}
# A TEXT key of n characters (no NUL) is n + 3 bytes wide.
DOC_KEY_CHARS_MAX = spec_tables.KEY_BYTES_MAX - 3
DOC_KEY_PADS = [0, 40, 400, DOC_KEY_CHARS_MAX - 6]
DOC_BODY_BYTES = [0, 24, 700, 2_500, 9_000]
BAD_STATEMENTS = [
    "SELECT * FROM patients JOIN visits ON patients.id = visits.patient",
    "SELECT * FROM (SELECT * FROM patients)",
    "SELECT upper(name) FROM patients",
    "SELECT * FROM nowhere",
    "SELECT missing FROM patients",
    "CREATE TABLE nokey (a BIGINT)",
    "INSERT INTO patients VALUES (1, 'x', 1.0, TRUE, 5)",
    "SELEC * FROM patients",
    "UPDATE patients SET id = 3 WHERE id = 1",
    "SELECT name FROM patients GROUP BY name",
]


def _depth(over: int) -> tuple[str, list[object]]:
    depth = spec_tables.EXPRESSION_DEPTH_MAX + over
    return "SELECT id FROM patients WHERE " + "(" * depth + "id = 1" + ")" * depth, []


def _nots(over: int) -> tuple[str, list[object]]:
    depth = spec_tables.EXPRESSION_DEPTH_MAX + over
    return "SELECT id FROM patients WHERE " + "NOT " * depth + "id > 1", []


def _dollar(over: int) -> tuple[str, list[object]]:
    # Within the bound, the numbers leave a gap ("parameter"); over it, "limit" comes first.
    return f"SELECT id FROM patients WHERE id = ${spec_tables.PARAMETERS_MAX + over}", [1]


def _name(over: int) -> tuple[str, list[object]]:
    name = "n" * (spec_tables.NAME_BYTES_MAX + over)
    return f"SELECT {name} FROM patients", []


def _number(over: int) -> tuple[str, list[object]]:
    digits = "1" + "0" * (spec_tables.NUMBER_CHARS_MAX - 1 + over)
    return f"SELECT id FROM patients WHERE score < {digits}", []


def _limit(over: int) -> tuple[str, list[object]]:
    return "SELECT id FROM patients LIMIT ? OFFSET ?", [2, spec_tables.LIMIT_OFFSET_MAX + over]


def _text(over: int) -> tuple[str, list[object]]:
    # Only over the bound: reading a text of 1 MiB takes seconds.
    text = "SELECT id FROM patients -- "
    return text + "\u00e9" * (spec_tables.SQL_TEXT_BYTES_MAX // 2 - len(text) + 1), []


def _key(over: int) -> tuple[str, list[object]]:
    # visits' key is (patient BIGINT, ward TEXT): 9 + 3 + len(ward) bytes.
    ward = "w" * (spec_tables.KEY_BYTES_MAX - 12 + over)
    return "INSERT INTO visits (patient, ward) VALUES (?, ?)", [7, ward]


def _index_entry(over: int) -> tuple[str, list[object]]:
    # With an index on ward (idx_a or idx_b), its entry is the ward and then the key:
    # (3 + n) + (9 + 3 + n) bytes.
    ward = "e" * ((spec_tables.KEY_BYTES_MAX - 15) // 2 + over)
    return "INSERT INTO visits (patient, ward) VALUES (?, ?)", [8, ward]


def _huge_limit(over: int) -> tuple[str, list[object]]:
    # Far over the bound: 2**127, 2**128, 2**129 (too long to print whole past 2**128).
    return "SELECT id FROM patients LIMIT ? OFFSET ?", [1, 2 ** (128 + over)]


NEAR_A_BOUND = [
    _depth,
    _nots,
    _dollar,
    _name,
    _number,
    _limit,
    _text,
    _key,
    _index_entry,
    _huge_limit,
]
# Statements of two parameters, and parameters arguments that are not a tuple or list.
TWO_PARAMETERS = [
    "SELECT id FROM patients WHERE id = ? OR name = ?",
    "INSERT INTO visits (ward, note) VALUES ($1, $2)",
    "UPDATE patients SET name = ? WHERE name = ?",
]
WRONG_PARAMETERS: list[object] = ["ab", "a", b"\x01\x02", 12, None, 2.5]
# `query_at` positions that are no log position (and one that is: the largest).
WRONG_POSITIONS: list[object] = ["3", 1.5, True, -1, 2**64, 2**64 - 1]
QUERIES_AT_A_WRONG_POSITION = [
    ("SELECT * FROM patients", []),
    ("SELECT * FROM nowhere", []),
    ("SELECT id FROM patients WHERE id = ?", []),
    ("SELEC id FROM patients", []),
    ("DELETE FROM patients", []),
    ("SELECT name FROM visits WHERE patient = $1", [3]),
]


def literal_values(kind: str) -> st.SearchStrategy[object]:
    by_kind: dict[str, st.SearchStrategy[object]] = {
        "int": st.integers(-3, 6),
        "text": st.sampled_from(["a", "b", "ward-1", "Zed", ""]),
        "float": st.sampled_from([0.0, 1.5, -2.25, 3.0]),
        "bool": st.booleans(),
        "bytes": st.sampled_from([b"", b"\x00", b"\xff\x01"]),
    }
    return by_kind[kind]


def values_for(kind: str) -> st.SearchStrategy[object]:
    """Mostly the column's type, sometimes NULL, sometimes a wrong type (or NaN, never stored)."""
    wrong = st.sampled_from([1, "text", 2.5, True, b"\x01", float("nan")])
    return st.one_of(literal_values(kind), literal_values(kind), st.none(), wrong)


def sql_literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    assert isinstance(value, bytes)
    return f"X'{value.hex()}'"


class Sql:
    """Builds one statement's text and parameters, choosing literals or parameters."""

    def __init__(self, data: st.DataObject, style: str) -> None:
        self.data = data
        self.style = style
        self.params: list[object] = []

    def value(self, value: object) -> str:
        if self.style == "literal" or (self.style == "mixed" and self.data.draw(st.booleans())):
            return sql_literal(value)
        self.params.append(value)
        return "?" if self.style == "qmark" else f"${len(self.params)}"


def where_clause(sql: Sql, table: str, depth: int = 0) -> str:
    data = sql.data
    columns = COLUMNS[table]
    column = data.draw(st.sampled_from(sorted(columns)))
    kind = columns[column]
    shape = data.draw(st.sampled_from(["cmp", "cmp", "in", "null", "and", "or", "not"]))
    if depth >= 2 and shape in ("and", "or", "not"):
        shape = "cmp"
    if shape == "cmp":
        op = data.draw(st.sampled_from(["=", "<>", "<", ">", "<=", ">="]))
        return f"{column} {op} {sql.value(data.draw(values_for(kind)))}"
    if shape == "in":
        items = data.draw(st.lists(values_for(kind), min_size=1, max_size=3))
        return f"{column} IN ({', '.join(sql.value(v) for v in items)})"
    if shape == "null":
        return f"{column} IS {data.draw(st.sampled_from(['NULL', 'NOT NULL']))}"
    if shape == "not":
        return f"NOT ({where_clause(sql, table, depth + 1)})"
    left = where_clause(sql, table, depth + 1)
    right = where_clause(sql, table, depth + 1)
    return f"({left}) {shape.upper()} ({right})"


def select_text(data: st.DataObject, table: str, sql: Sql) -> str:
    """A SELECT of `table`: projection, WHERE, ORDER BY, LIMIT/OFFSET, each drawn."""
    columns = sorted(COLUMNS[table])
    projection = data.draw(
        st.one_of(
            st.just("*"),
            st.just("COUNT(*)"),
            st.lists(st.sampled_from(columns), min_size=1, max_size=3).map(", ".join),
        )
    )
    text = f"SELECT {projection} FROM {table}"
    if data.draw(st.booleans()):
        text += f" WHERE {where_clause(sql, table)}"
    if projection != "COUNT(*)" and data.draw(st.booleans()):
        keys = data.draw(st.lists(st.sampled_from(columns), min_size=1, max_size=2))
        text += " ORDER BY " + ", ".join(
            f"{k} {data.draw(st.sampled_from(['ASC', 'DESC', '']))}".strip() for k in keys
        )
    if data.draw(st.booleans()):
        text += f" LIMIT {sql.value(data.draw(st.integers(0, 4)))}"
        if data.draw(st.booleans()):
            text += f" OFFSET {sql.value(data.draw(st.integers(0, 3)))}"
    return text


def update_text(data: st.DataObject, table: str, sql: Sql) -> str:
    """An UPDATE of one non-key column of `table`, with or without a WHERE."""
    settable = [c for c in sorted(COLUMNS[table]) if c not in KEYS[table]]
    column = data.draw(st.sampled_from(settable))
    value = sql.value(data.draw(values_for(COLUMNS[table][column])))
    where = f" WHERE {where_clause(sql, table)}" if data.draw(st.booleans()) else ""
    return f"UPDATE {table} SET {column} = {value}{where}"


def delete_text(data: st.DataObject, table: str, sql: Sql) -> str:
    return f"DELETE FROM {table} WHERE {where_clause(sql, table)}"


class TablesLockstep(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.work = Path(tempfile.mkdtemp(prefix="verity-tables-lockstep-"))
        self.spec = SpecTablesDriver()
        self.impl = EngineTablesDriver(self.work)
        self.memory = MemoryTablesDriver()
        self.position = 0
        self.positions: list[int] = []
        self.recording = Recording("tables")

    def both(self, step: Step) -> Observation:
        """Perform `step` on the spec and on the engine over each store: the observations
        must agree."""
        self.recording.add(step)
        expected = perform(self.spec, step)
        actual = perform(self.impl, step)
        # The message is built only on failure: a step may hold a 1 MiB statement.
        assert actual == expected, (
            f"{step_fields(step)}: spec gave {expected!r}, implementation gave {actual!r}"
        )
        in_memory = perform(self.memory, step)
        assert in_memory == expected, (
            f"{step_fields(step)}: spec gave {expected!r}, "
            f"the engine over MemoryVersionedStore gave {in_memory!r}"
        )
        return expected

    def run(self, text: str, params: list[object], params_value: object = ()) -> None:
        """Execute `text` with `params`, or (not a tuple) the parameters `params_value`."""
        self.position += 1
        step: Step = {"op": "execute", "sql": text, "position": self.position}
        if isinstance(params_value, tuple):
            step["params"] = params_to_json(tuple(params))
        else:
            step["params_value"] = encode_value(params_value)
        expected = self.both(step)
        if "written" in expected:
            self.positions.append(self.position)
        # Other records of the tenant log (stream appends, checkpoints) take positions too.
        self.position += 1

    @rule(table=st.sampled_from(sorted(TABLES)))
    def create_table(self, table: str) -> None:
        self.run(TABLES[table], [])

    @rule(table=st.sampled_from(sorted(TABLES)))
    def drop_table(self, table: str) -> None:
        self.run(f"DROP TABLE {table}", [])

    @rule(data=st.data(), table=st.sampled_from(sorted(TABLES)))
    def create_index(self, data: st.DataObject, table: str) -> None:
        column = data.draw(st.sampled_from(sorted(COLUMNS[table])))
        name = data.draw(st.sampled_from(["idx_a", "idx_b"]))
        self.run(f"CREATE INDEX {name} ON {table} ({column})", [])

    @rule(
        data=st.data(),
        table=st.sampled_from(sorted(TABLES)),
        style=st.sampled_from(["literal", "qmark", "dollar"]),
    )
    def insert(self, data: st.DataObject, table: str, style: str) -> None:
        sql = Sql(data, style)
        columns = sorted(COLUMNS[table])
        chosen = data.draw(st.lists(st.sampled_from(columns), min_size=1, unique=True))
        rows = data.draw(st.lists(st.just(None), min_size=1, max_size=3))
        rendered = []
        for _ in rows:
            values = [sql.value(data.draw(values_for(COLUMNS[table][c]))) for c in chosen]
            rendered.append(f"({', '.join(values)})")
        self.run(
            f"INSERT INTO {table} ({', '.join(chosen)}) VALUES {', '.join(rendered)}", sql.params
        )

    @rule(data=st.data(), table=st.sampled_from(sorted(TABLES)))
    def update(self, data: st.DataObject, table: str) -> None:
        sql = Sql(data, data.draw(st.sampled_from(["literal", "qmark", "dollar"])))
        self.run(update_text(data, table, sql), sql.params)

    @rule(data=st.data(), table=st.sampled_from(sorted(TABLES)))
    def delete(self, data: st.DataObject, table: str) -> None:
        sql = Sql(data, data.draw(st.sampled_from(["literal", "qmark", "dollar"])))
        self.run(delete_text(data, table, sql), sql.params)

    @rule(data=st.data(), table=st.sampled_from(sorted(TABLES)))
    def select(self, data: st.DataObject, table: str) -> None:
        sql = Sql(data, data.draw(st.sampled_from(["literal", "qmark", "dollar"])))
        self.run(select_text(data, table, sql), sql.params)

    @precondition(lambda self: bool(self.positions))
    @rule(data=st.data(), table=st.sampled_from(sorted(TABLES)))
    def select_at(self, data: st.DataObject, table: str) -> None:
        sql = Sql(data, data.draw(st.sampled_from(["literal", "qmark"])))
        text = select_text(data, table, sql)
        position = data.draw(st.integers(0, self.position), label="position")
        self.both(
            {
                "op": "query_at",
                "sql": text,
                "params": params_to_json(tuple(sql.params)),
                "position": position,
            }
        )

    @rule(text=st.sampled_from(BAD_STATEMENTS))
    def bad_statement(self, text: str) -> None:
        self.run(text, [])

    @rule(text=st.sampled_from(TWO_PARAMETERS), params=st.sampled_from(WRONG_PARAMETERS))
    def wrong_typed_parameters(self, text: str, params: object) -> None:
        """The parameters as one str (of as many characters as the statement has
        parameters), bytes, an int or None: "parameter", not values."""
        self.run(text, [], params_value=params)

    @rule(
        query=st.sampled_from(QUERIES_AT_A_WRONG_POSITION),
        position=st.sampled_from(WRONG_POSITIONS),
    )
    def query_at_wrong_position(self, query: tuple[str, list[object]], position: object) -> None:
        """`query_at` a position that is no log position: invalid_argument, once the text
        and the parameters are found good."""
        text, params = query
        self.both(
            {
                "op": "query_at",
                "sql": text,
                "params": params_to_json(tuple(params)),
                "position_value": encode_value(position),
            }
        )

    @rule(data=st.data(), over=st.integers(-1, 1))
    def near_a_bound(self, data: st.DataObject, over: int) -> None:
        """A statement `over` away from one of the bounds (-1: within, 1: over)."""
        text, params = data.draw(st.sampled_from(NEAR_A_BOUND))(over)
        self.run(text, params)

    @rule(
        count=st.integers(2, 40),
        start=st.integers(0, 1_000),
        nan_at=st.one_of(st.none(), st.integers(0, 39)),
    )
    def bulk_patients(self, count: int, start: int, nan_at: int | None) -> None:
        """Many `patients` rows in one INSERT through parameters (the bulk path binds a
        column at a time); `nan_at` puts a NaN score in one row, which must refuse it all."""
        params: list[object] = []
        for i in range(count):
            score = float("nan") if i == nan_at else (start + i) / 8
            params += [start + i, f"p{start + i}", score, i % 2 == 0]
        rows = ", ".join(["(?, ?, ?, ?)"] * count)
        self.run(f"INSERT INTO patients (id, name, score, active) VALUES {rows}", params)

    @rule(
        data=st.data(),
        count=st.integers(2, 320),
        pad=st.sampled_from(DOC_KEY_PADS),
        body=st.sampled_from(DOC_BODY_BYTES),
        start=st.integers(0, 2_000),
        over=st.sampled_from([0, 0, 1, 1, 2, 7]),
    )
    def bulk_insert(
        self, data: st.DataObject, count: int, pad: int, body: int, start: int, over: int
    ) -> None:
        """One INSERT of up to hundreds of `docs` rows with long keys and large values
        (splits, deep trees, overflow pages); `over` > 0 makes one key just too long."""
        if data.draw(st.booleans(), label="create docs first"):
            self.run(TABLES["docs"], [])
        params: list[object] = []
        for i in range(count):
            number = start + i * 3
            key = f"{number:06d}" + "k" * pad
            if over and i == count // 2:
                key = f"{number:06d}".ljust(DOC_KEY_CHARS_MAX + over, "K")
            value = bytes((number + j) % 251 for j in range(min(body, 64))) * (1 + body // 64)
            params += [key, number, value[:body] if i % 5 else None]
        rows = ", ".join(["(?, ?, ?)"] * count)
        self.run(f"INSERT INTO docs (k, n, body) VALUES {rows}", params)
        # A store holding trees, reopened under a forged superblock copy.
        forgery = data.draw(st.sampled_from([None, *FORGERIES]), label="forgery")
        if forgery is not None:
            self.forged_superblock(forgery)

    @rule(
        low=st.integers(0, 3_000),
        span=st.integers(1, 1_000),
        how=st.sampled_from(["delete", "update"]),
    )
    def bulk_change(self, low: int, span: int, how: str) -> None:
        """DELETE or UPDATE a range of `docs` rows: tombstones, rewritten leaves, and
        pages freed by one commit that the next ones reuse."""
        if how == "delete":
            self.run("DELETE FROM docs WHERE n >= ? AND n < ?", [low, low + span])
        else:
            self.run(
                "UPDATE docs SET body = ? WHERE n >= ? AND n < ?", [b"u" * 300, low, low + span]
            )

    @precondition(lambda self: bool(self.positions))
    @rule(
        data=st.data(),
        table=st.sampled_from(sorted(TABLES)),
        projection=st.sampled_from(["COUNT(*)", "*"]),
    )
    def time_travel_everywhere(self, data: st.DataObject, table: str, projection: str) -> None:
        """`query_at` just before, at and just after every version, forward then backward."""
        boundaries = sorted({q for p in self.positions for q in (p - 1, p, p + 1) if q >= 0})
        order = "" if projection == "COUNT(*)" else " ORDER BY " + ", ".join(KEYS[table])
        text = f"SELECT {projection} FROM {table}{order}"
        for position in [*boundaries, *reversed(boundaries)]:
            self.both({"op": "query_at", "sql": text, "params": [], "position": position})

    @rule(forgery=st.sampled_from(FORGERIES))
    def forged_superblock(self, forgery: str) -> None:
        """A newer superblock copy of another format version is passed over; one whose
        free list leaves the pages in use is refused (and the file put back). Then every
        table answers as before."""
        outcome = self.impl.forge(forgery)
        expected = "opened" if forgery == "version" else "refused"
        assert outcome == expected, f"open after a forged superblock ({forgery}): {outcome}"
        self.impl.store.verify()
        for table in sorted(TABLES):
            text = f"SELECT * FROM {table} ORDER BY {', '.join(KEYS[table])}"
            self.both({"op": "query_at", "sql": text, "params": [], "position": self.position})

    @rule(
        data=st.data(),
        count=st.integers(2, 60),
        body=st.sampled_from(DOC_BODY_BYTES),
        start=st.integers(0, 2_000),
    )
    def insert_under_short_writes(
        self, data: st.DataObject, count: int, body: int, start: int
    ) -> None:
        """An INSERT while every page write comes back short; then reopen and verify."""
        with self.impl.short_writes():
            self.bulk_insert(data, count, 40, body, start, 0)
        self.reopen()

    @rule()
    def verify_store(self) -> None:
        """The implementation's store passes its own full check (every page from disk)."""
        self.impl.store.verify()

    @rule(forgery=st.sampled_from([None, *FORGERIES]))
    def reopen(self, forgery: str | None = None) -> None:
        """Close and reopen (and verify) the store; most often a forged superblock first."""
        self.both({"op": "reopen"})
        self.impl.store.verify()
        if forgery is not None:
            self.forged_superblock(forgery)

    @rule()
    def rebuild_from_events(self) -> None:
        self.both({"op": "rebuild"})

    def teardown(self) -> None:
        self.impl.close()
        self.memory.close()
        shutil.rmtree(self.work, ignore_errors=True)
