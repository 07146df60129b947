"""The SQL limits: every size a statement or its parameters choose is bounded.

Issue 10 §4, "One SQL string must not take the process down": `SELECT * FROM x WHERE
id = $99999999999` once built `set(range(1, n))` and was killed at 23 GB. Each bound
is a public constant of `verity.query` (docs/sdk.md, "SQL limits"); a statement just
within it runs, one just over it raises `SqlLimitExceeded` (kind "limit") naming it
and appends nothing. The spec (`verity_spec.tables`) gives the same answers.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

import verity
import verity.query as query
import verity.query._engine as engine_module
import verity.query._limits as limits
import verity_spec.tables as spec
from verity import TenantId
from verity.crypto import PageKey
from verity.errors import SqlError, SqlLimitExceeded
from verity.query import (
    EXPRESSION_DEPTH_MAX,
    IN_LIST_MAX,
    KEY_BYTES_MAX,
    LIMIT_OFFSET_MAX,
    NAME_BYTES_MAX,
    NUMBER_CHARS_MAX,
    PARAMETERS_MAX,
    QUERY_BYTES_MAX,
    QUERY_ROWS_MAX,
    ROW_BYTES_MAX,
    SQL_TEXT_BYTES_MAX,
    STATEMENT_EVENT_BYTES_MAX,
    TABLE_COLUMNS_MAX,
    Engine,
    MemoryVersionedStore,
    VersionedStore,
    WritePlan,
)
from verity.store import open_store
from verity_conformance.tables_drivers import EngineTablesDriver, SpecTablesDriver

REPO = Path(__file__).resolve().parent.parent


class Db:
    """An engine over a store, with writes applied at positions 1, 2, ..."""

    def __init__(self, store: VersionedStore | None = None) -> None:
        self.store = store if store is not None else MemoryVersionedStore()
        self.engine = Engine(self.store)
        self.position = 0

    def write(self, sql: str, params: Sequence[object] = ()) -> WritePlan:
        plan = self.engine.plan_write(sql, params)
        self.position += 1
        self.store.write_batch(self.position, b"hash-%d" % self.position, plan.changes)
        return plan

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        return list(self.engine.query(sql, params).rows)

    def over(
        self, sql: str, params: Sequence[object] = (), *, write: bool = False
    ) -> SqlLimitExceeded:
        """The SqlLimitExceeded `sql` raises; the store did not move."""
        applied = self.store.applied()
        with pytest.raises(SqlLimitExceeded) as raised:
            if write:
                self.engine.plan_write(sql, params)
            else:
                self.engine.query(sql, params)
        assert self.store.applied() == applied
        error = raised.value
        assert error.kind == "limit"
        assert error.maximum == query.LIMITS[error.limit]
        assert error.value > error.maximum
        assert error.limit in str(error)
        return error


@pytest.fixture
def db() -> Db:
    db = Db()
    db.write("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE, photo BYTES)")
    db.write("INSERT INTO t VALUES (1, 'ada', 1.5, X'00'), (2, 'bob', NULL, NULL)")
    return db


# --- the bounds themselves --------------------------------------------------------------


def test_every_bound_is_public_and_the_same_in_the_spec() -> None:
    assert query.LIMITS == spec.LIMITS
    for name, value in query.LIMITS.items():
        assert name in query.__all__
        assert getattr(query, name) == value == getattr(spec, name)


def test_every_bound_is_documented_with_its_value() -> None:
    text = (REPO / "docs" / "sdk.md").read_text(encoding="utf-8")
    section = text[text.index("## SQL limits") :]
    for name, value in query.LIMITS.items():
        [row] = [line for line in section.splitlines() if line.startswith(f"| `{name}`")]
        assert f"{value:,}" in row, (name, row)
    assert "SqlLimitExceeded" in section


def test_the_event_bound_is_what_one_log_record_holds_sealed() -> None:
    # The tenant seals a write's event as 0x02, dek_id u32, AES-GCM(0x03 + event): the
    # widest event the bound lets through is one log record of exactly PAYLOAD_BYTES_MAX.
    from verity._tenant import ENVELOPE_HEADER_BYTES
    from verity.crypto import GCM_TAG_BYTES
    from verity.storage import PAYLOAD_BYTES_MAX
    from verity_spec.records import PAYLOAD_BYTES_MAX as SPEC_PAYLOAD_BYTES_MAX

    sealed = ENVELOPE_HEADER_BYTES + 1 + STATEMENT_EVENT_BYTES_MAX + GCM_TAG_BYTES
    assert sealed == PAYLOAD_BYTES_MAX == SPEC_PAYLOAD_BYTES_MAX
    assert spec.SEALED_EVENT_OVERHEAD_BYTES == ENVELOPE_HEADER_BYTES + 1 + GCM_TAG_BYTES
    for name in _EVENT_WIDTHS:
        assert getattr(limits, name) == getattr(spec, name), name


_EVENT_WIDTHS = (
    "EVENT_BASE_WIDTH",
    "EVENT_INDEX_WIDTH",
    "EVENT_DEFINITION_WIDTH",
    "EVENT_PUT_WIDTH",
    "EVENT_DELETE_WIDTH",
    "EVENT_ROW_WIDTH",
)


def test_the_event_widths_bound_the_widest_events() -> None:
    # The widths the spec counts without object ids or JSON are upper bounds of the
    # bytes: tried on the widest names (63 bytes that JSON escapes six-fold), the
    # largest object id and a table of TABLE_COLUMNS_MAX columns, all in its key.
    from verity.query._catalog import (
        CATALOG_TREE,
        ColumnDef,
        IndexDef,
        TableDef,
        encode_object_id,
        encode_table,
        index_key,
        next_object_id_key,
        table_key,
    )
    from verity.query._events import encode_event, encode_insert_event
    from verity.query._types import ColumnType

    biggest = 2**64 - 1

    def name(number: int) -> str:  # 63 control characters, each \u00XX in JSON
        digits = [number // 31**2 % 31, number // 31 % 31, number % 31]
        return "\x01" * (NAME_BYTES_MAX - 3) + "".join(chr(1 + digit) for digit in digits)

    columns = tuple(ColumnDef(name(n), ColumnType.TIMESTAMP, False) for n in range(1600))
    assert len(columns) == TABLE_COLUMNS_MAX
    table = TableDef(name(9999), biggest, columns, tuple(range(len(columns))), ())
    sql = "x"
    for indexes in (0, 1, 5):
        index_defs = tuple(IndexDef(name(8000 + n), 1599, biggest) for n in range(indexes))
        indexed = TableDef(table.name, biggest, columns, table.primary_key, index_defs)
        catalog: list[query.Change] = [
            (CATALOG_TREE, table_key(table.name), encode_table(indexed)),
            (CATALOG_TREE, index_key(name(8000)), table.name.encode("utf-8")),
            (CATALOG_TREE, next_object_id_key(), encode_object_id(biggest)),
        ]
        dropped: list[query.Change] = [(CATALOG_TREE, table_key(table.name), None)]
        dropped += [(CATALOG_TREE, index_key(index.name), None) for index in index_defs]
        ddl = limits.event_base_width(sql, indexes, definition=True)
        for kind, changes in (("create_index", catalog), ("drop_table", dropped)):
            assert len(encode_event(kind, table.name, 0, sql, changes)) <= ddl, kind
        header = encode_insert_event(
            table.name,
            sql,
            indexed.data_tree,
            [(1599, index.tree) for index in index_defs],
            [],
            [],
        )
        assert len(header) <= limits.event_base_width(sql, indexes, definition=False)
    # One change more in a format 1 event, into the tree of the longest name.
    key, value = b"k" * 10, b"v" * 20
    tree = TableDef(name(1), biggest, columns, (0,), ()).data_tree
    empty = len(encode_event("delete", table.name, 0, sql, []))
    put = len(encode_event("update", table.name, 0, sql, [(tree, key, value)])) - empty
    assert put <= limits.EVENT_PUT_WIDTH + NAME_BYTES_MAX + len(key) + len(value)
    delete = len(encode_event("delete", table.name, 0, sql, [(tree, key, None)])) - empty
    assert delete <= limits.EVENT_DELETE_WIDTH + NAME_BYTES_MAX + len(key)


def test_the_key_bound_is_the_stores() -> None:
    from verity.store import KEY_BYTES_MAX as STORE_KEY_BYTES_MAX

    assert KEY_BYTES_MAX == STORE_KEY_BYTES_MAX


# --- the statement that took the process down ----------------------------------------------

_OOM_SCRIPT = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from verity.errors import SqlLimitExceeded
from verity.query import Engine, MemoryVersionedStore
store = MemoryVersionedStore()
engine = Engine(store)
plan = engine.plan_write("CREATE TABLE x (id BIGINT PRIMARY KEY)")
store.write_batch(1, b"h", plan.changes)
started = time.monotonic()
for call in (
    lambda: engine.query("SELECT * FROM x WHERE id = $99999999999"),
    lambda: engine.plan_write("DELETE FROM x WHERE id = $99999999999"),
    lambda: engine.explain("SELECT * FROM x WHERE id = $99999999999"),
    lambda: engine.query("SELECT * FROM x WHERE id = $" + "9" * 100_000),
):
    try:
        call()
    except SqlLimitExceeded as error:
        print(error.limit, error.maximum)
    else:
        sys.exit("no SqlLimitExceeded")
print("seconds", time.monotonic() - started)
"""


def test_a_huge_parameter_number_is_refused_at_once_in_1_GiB() -> None:
    result = subprocess.run(
        # -P: the child imports the `verity` this process imports (installed, or a
        # mutant copy on PYTHONPATH), not the checkout's folder by accident of cwd.
        [sys.executable, "-P", "-c", _OOM_SCRIPT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [f"PARAMETERS_MAX {PARAMETERS_MAX}"] * 4
    assert float(lines[4].split()[1]) < 5.0


# --- the text -------------------------------------------------------------------------------


def test_text_up_to_the_bound_runs_and_one_byte_more_is_refused(db: Db) -> None:
    head = "SELECT id FROM t -- "
    assert db.rows(head + "x" * (SQL_TEXT_BYTES_MAX - len(head))) == [(1,), (2,)]
    error = db.over(head + "x" * (SQL_TEXT_BYTES_MAX - len(head) + 1))
    assert (error.limit, error.value) == ("SQL_TEXT_BYTES_MAX", SQL_TEXT_BYTES_MAX + 1)
    # Counted in UTF-8 bytes: fewer characters than the bound, more bytes.
    error = db.over(head + "\u00e9" * (SQL_TEXT_BYTES_MAX // 2))
    assert error.limit == "SQL_TEXT_BYTES_MAX"
    assert error.value == len(head) + SQL_TEXT_BYTES_MAX


def test_a_gigantic_text_is_refused_before_it_is_read(db: Db) -> None:
    text = "SELECT " + "(" * (64 << 20)
    started = time.monotonic()
    assert db.over(text).limit == "SQL_TEXT_BYTES_MAX"
    assert time.monotonic() - started < 1.0


def test_a_lone_surrogate_anywhere_in_the_text_is_a_syntax_error(db: Db) -> None:
    # It used to pass the parse (in a comment) and fail to encode the event: UnicodeEncodeError.
    for sql in (
        "DELETE FROM t WHERE id = 1 -- \ud800",
        'CREATE TABLE "\udc80" (a BIGINT PRIMARY KEY)',
        "SELECT id FROM t WHERE name = 'a\ud800'",
    ):
        with pytest.raises(SqlError) as raised:
            db.engine.plan_write(sql) if not sql.startswith("SELECT") else db.engine.query(sql)
        assert raised.value.kind == "syntax"


# --- nesting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opening", "closing"),
    [("(", ")"), ("NOT (", ")"), ("NOT ", ""), ("- ", ""), ("CASE WHEN ", " END")],
)
def test_nesting_beyond_the_bound_is_refused_before_parsing(
    db: Db, opening: str, closing: str
) -> None:
    text = "SELECT id FROM t WHERE " + opening * 10_000 + "id = 1" + closing * 10_000
    started = time.monotonic()
    error = db.over(text)
    assert error.limit == "EXPRESSION_DEPTH_MAX"
    assert time.monotonic() - started < 2.0


def test_nesting_up_to_the_bound_parses_on_a_deep_caller_stack(db: Db) -> None:
    # Nested NOT ( ... ): the dialect's deepest shape, on a stack that is nearly full.
    levels = EXPRESSION_DEPTH_MAX // 2
    deepest = "SELECT id FROM t WHERE " + "NOT (" * levels + "id = 1" + ")" * levels
    expected = [(1,)] if levels % 2 == 0 else [(2,)]

    def descend(frames: int) -> list[tuple[object, ...]]:
        if frames > 0:
            return descend(frames - 1)
        return Db.rows(db, deepest)

    # Room for the engine's own walk and plan, not for sqlglot's recursive parse.
    headroom = 250
    depth_here = len(_frames())
    assert descend(sys.getrecursionlimit() - depth_here - headroom) == expected
    assert db.rows(deepest) == expected  # and again from the plan cache


def _frames() -> list[object]:
    frame = sys._getframe()
    frames: list[object] = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back  # type: ignore[assignment]
    return frames


def test_parses_from_many_threads_at_once_agree(db: Db) -> None:
    texts = [
        "SELECT id FROM t WHERE " + "(" * depth + f"id = {depth % 3}" + ")" * depth
        for depth in range(EXPRESSION_DEPTH_MAX + 1)
    ]
    answers: dict[int, list[tuple[object, ...]]] = {}

    def run(depth: int) -> None:
        answers[depth] = Db.rows(db, texts[depth])

    threads = [threading.Thread(target=run, args=(depth,)) for depth in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {depth: [(depth % 3,)] if depth % 3 else [] for depth in range(len(texts))}


# --- parameters, numbers, names, columns, IN lists ------------------------------------------


def test_parameter_numbers_are_bounded_like_postgresql(db: Db) -> None:
    assert db.over(f"SELECT id FROM t WHERE id = ${PARAMETERS_MAX + 1}").value == 65_536
    # Within the bound, a lone high number is a gap in the numbers: "parameter".
    with pytest.raises(SqlError) as raised:
        db.rows(f"SELECT id FROM t WHERE id = ${PARAMETERS_MAX}", [1])
    assert raised.value.kind == "parameter"
    error = db.over("SELECT id FROM t WHERE id = $000" + "9" * 5000)
    assert (error.limit, error.value) == ("PARAMETERS_MAX", 10**20)


def test_the_most_question_marks_insert_and_one_more_is_refused() -> None:
    db = Db()
    db.write("CREATE TABLE n (k BIGINT PRIMARY KEY)")
    rows = ",".join(["(?)"] * PARAMETERS_MAX)
    plan = db.write(f"INSERT INTO n VALUES {rows}", list(range(PARAMETERS_MAX)))
    assert plan.rows_affected == PARAMETERS_MAX
    over = db.over(f"INSERT INTO n VALUES {rows},(?)", list(range(PARAMETERS_MAX + 1)), write=True)
    assert (over.limit, over.value) == ("PARAMETERS_MAX", PARAMETERS_MAX + 1)
    over = db.over("SELECT k FROM n WHERE k IN (" + "?," * PARAMETERS_MAX + "?)")
    assert over.limit == "PARAMETERS_MAX"


def test_numeric_literals_are_bounded(db: Db) -> None:
    tiny = "0." + "0" * (NUMBER_CHARS_MAX - 3) + "1"
    assert db.rows(f"SELECT id FROM t WHERE score > {tiny}") == [(1,)]
    assert db.over(f"SELECT id FROM t WHERE score > {tiny}1").limit == "NUMBER_CHARS_MAX"
    # 5,000 digits used to raise ValueError (Python reads at most 4,300 into an int).
    assert db.over("SELECT id FROM t WHERE id = " + "7" * 5000).limit == "NUMBER_CHARS_MAX"
    assert db.over("SELECT id FROM t WHERE id = -" + "7" * 5000).limit == "NUMBER_CHARS_MAX"


def test_names_are_bounded_in_utf8_bytes() -> None:
    db = Db(open_store_in_memory_dir())
    longest = "n" * NAME_BYTES_MAX
    accented = "\u00e9" * (NAME_BYTES_MAX // 2 + 1)  # 2 bytes each in UTF-8
    db.write(f"CREATE TABLE {longest} ({longest} BIGINT PRIMARY KEY)")
    db.write(f"CREATE INDEX {'i' * NAME_BYTES_MAX} ON {longest} ({longest})")
    db.write(f"INSERT INTO {longest} VALUES (1)")
    assert db.rows(f"SELECT {longest.upper()} FROM {longest}") == [(1,)]
    for sql in (
        f"CREATE TABLE {longest}x (a BIGINT PRIMARY KEY)",
        f"CREATE TABLE t (a BIGINT PRIMARY KEY, {longest}x TEXT)",
        f'CREATE TABLE "{accented}" (a BIGINT PRIMARY KEY)',
        f"CREATE INDEX {'i' * (NAME_BYTES_MAX + 1)} ON {longest} ({longest})",
    ):
        assert db.over(sql, write=True).limit == "NAME_BYTES_MAX"
    assert db.over(f"SELECT x FROM {'y' * 70_000}").limit == "NAME_BYTES_MAX"
    # A name over 65,535 bytes used to break the event's u16 length: struct.error.
    over = db.over(f"CREATE TABLE {'y' * 70_000} (a BIGINT PRIMARY KEY)", write=True)
    assert over.limit == "NAME_BYTES_MAX"


def test_a_table_has_at_most_1600_columns() -> None:
    db = Db()
    columns = ", ".join(f"c{number} BIGINT" for number in range(TABLE_COLUMNS_MAX - 1))
    db.write(f"CREATE TABLE wide (k BIGINT PRIMARY KEY, {columns})")
    over = db.over(f"CREATE TABLE wider (k BIGINT PRIMARY KEY, {columns}, x TEXT)", write=True)
    assert (over.limit, over.value) == ("TABLE_COLUMNS_MAX", TABLE_COLUMNS_MAX + 1)


def test_in_lists_are_bounded(db: Db) -> None:
    within = ", ".join(str(number) for number in range(IN_LIST_MAX))
    assert db.rows(f"SELECT id FROM t WHERE id IN ({within})") == [(1,), (2,)]
    over = db.over(f"SELECT id FROM t WHERE id IN ({within}, -1)")
    assert (over.limit, over.value) == ("IN_LIST_MAX", IN_LIST_MAX + 1)


def test_a_key_lookup_over_several_in_lists_reads_at_most_in_list_max_keys() -> None:
    db = Db()
    db.write("CREATE TABLE grid (x BIGINT, y BIGINT, z BIGINT, PRIMARY KEY (x, y, z))")
    db.write("INSERT INTO grid VALUES (1, 2, 3), (4, 5, 6), (7, 8, 9)")
    many = ", ".join(str(number) for number in range(1_000))
    sql = f"SELECT * FROM grid WHERE x IN ({many}) AND y IN ({many}) AND z IN ({many})"
    # A product of 10**9 keys would not fit in memory: the planner lists 1,000 prefixes
    # and filters the rest of the key.
    assert db.engine.explain(sql).startswith("range scan on grid (x IN (0, 1, 2")
    assert db.rows(sql) == [(1, 2, 3), (4, 5, 6), (7, 8, 9)]
    assert db.rows(sql.replace("z IN (", "z IN (-5, ")) == [(1, 2, 3), (4, 5, 6), (7, 8, 9)]


# --- LIMIT and OFFSET -------------------------------------------------------------------


def test_limit_and_offset_up_to_a_bigint_allocate_nothing(db: Db) -> None:
    assert db.rows(f"SELECT id FROM t LIMIT {LIMIT_OFFSET_MAX}") == [(1,), (2,)]
    assert db.rows("SELECT id FROM t LIMIT ? OFFSET ?", [LIMIT_OFFSET_MAX] * 2) == []
    assert db.rows("SELECT id FROM t ORDER BY name LIMIT 1 OFFSET ?", [LIMIT_OFFSET_MAX]) == []
    assert db.rows(f"SELECT COUNT(*) FROM t OFFSET {LIMIT_OFFSET_MAX}") == []
    assert db.over(f"SELECT id FROM t LIMIT {LIMIT_OFFSET_MAX + 1}").limit == "LIMIT_OFFSET_MAX"
    # A parameter of 5,000 digits used to fail to print in the error: ValueError.
    assert db.over("SELECT id FROM t OFFSET ?", [10**5000]).limit == "LIMIT_OFFSET_MAX"
    with pytest.raises(SqlError) as raised:
        db.rows("SELECT id FROM t LIMIT ?", [-(10**5000)])
    assert raised.value.kind == "type_mismatch"


def test_values_too_large_to_print_still_get_their_error(db: Db) -> None:
    for sql in ("SELECT id FROM t WHERE id = ?", "UPDATE t SET name = ?"):
        with pytest.raises(SqlError) as raised:
            db.engine.plan_write(sql, [10**5000]) if sql.startswith("UPDATE") else db.rows(
                sql, [10**5000]
            )
        assert raised.value.kind == "type_mismatch"
        assert "bits" in str(raised.value)


# --- written rows ---------------------------------------------------------------------------


def test_a_written_row_is_at_most_row_bytes_max_wide(db: Db) -> None:
    # Row width: 1 + 9 (id) + 5 + len(name) + 1 (NULL score) + 1 (NULL photo).
    fits = "n" * (ROW_BYTES_MAX - 17)
    db.write("INSERT INTO t (id, name) VALUES (3, ?)", [fits])
    over = db.over("INSERT INTO t (id, name) VALUES (4, ?)", [fits + "n"], write=True)
    assert (over.limit, over.value) == ("ROW_BYTES_MAX", ROW_BYTES_MAX + 1)
    # UPDATE widening a row is refused too, and changes nothing.
    over = db.over("UPDATE t SET photo = ? WHERE id = 3", [b"p"], write=True)
    assert over.limit == "ROW_BYTES_MAX"
    assert db.rows("SELECT photo FROM t WHERE id = 3") == [(None,)]
    # A multi-row INSERT (the column-at-a-time path) is checked the same way.
    over = db.over(
        "INSERT INTO t (id, name) VALUES (?, ?), (?, ?)", [5, "x", 6, fits + "n"], write=True
    )
    assert over.limit == "ROW_BYTES_MAX"


def test_keys_and_index_entries_fit_the_store() -> None:
    db = Db(open_store_in_memory_dir())
    db.write("CREATE TABLE notes (tag TEXT PRIMARY KEY, body TEXT)")
    longest = "k" * (KEY_BYTES_MAX - 3)  # a text key takes 3 + its length
    db.write("INSERT INTO notes VALUES (?, 'a')", [longest])
    over = db.over("INSERT INTO notes VALUES (?, 'b')", [longest + "k"], write=True)
    assert (over.limit, over.value) == ("KEY_BYTES_MAX", KEY_BYTES_MAX + 1)
    # Zero bytes are escaped in keys, so they count twice.
    over = db.over("INSERT INTO notes VALUES (?, 'b')", ["\x00" * 500], write=True)
    assert over.limit == "KEY_BYTES_MAX"
    # Looking up a key no row can have answers nothing (the store would refuse the key).
    assert db.rows("SELECT body FROM notes WHERE tag = ?", ["k" * 5000]) == []
    assert db.rows("SELECT body FROM notes WHERE tag IN (?, ?)", ["k" * 5000, longest]) == [("a",)]
    assert db.rows("SELECT body FROM notes WHERE tag >= ?", ["k" * 5000]) == []
    # An index entry is the value and then the key: this index cannot hold the row.
    over = db.over("CREATE INDEX by_tag_body ON notes (body)", write=True)
    assert over.limit == "KEY_BYTES_MAX"
    db.write("DELETE FROM notes")
    db.write("CREATE INDEX by_body ON notes (body)")
    body = "b" * (KEY_BYTES_MAX - 3 - 3 - 4)  # entry: (3 + len(body)) + (3 + len("tag1"))
    db.write("INSERT INTO notes VALUES ('tag1', ?)", [body])
    over = db.over("INSERT INTO notes VALUES ('tag2', ?)", [body + "b"], write=True)
    assert over.limit == "KEY_BYTES_MAX"
    over = db.over("UPDATE notes SET body = ?", [body + "b"], write=True)
    assert over.limit == "KEY_BYTES_MAX"
    assert db.rows("SELECT tag FROM notes WHERE body = ?", [body]) == [("tag1",)]


def open_store_in_memory_dir() -> VersionedStore:
    """The projection store of the SDK (`verity.store`), whose keys are bounded."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="verity-bounds-"))
    return open_store(folder / "store", page_cache_pages=64, page_key=PageKey(bytes(32)))


# --- answers --------------------------------------------------------------------------------


def test_an_answer_is_at_most_query_rows_max_rows() -> None:
    db = Db()
    db.write("CREATE TABLE many (k BIGINT PRIMARY KEY, v BIGINT)")
    quarter = QUERY_ROWS_MAX // 4  # two parameters a row: 50,000 a statement
    for start in range(0, QUERY_ROWS_MAX, quarter):
        params = [value for k in range(start, start + quarter) for value in (k, k % 7)]
        db.write("INSERT INTO many VALUES " + ",".join(["(?,?)"] * quarter), params)
    db.write("INSERT INTO many VALUES (-1, 0)")
    assert db.rows("SELECT COUNT(*) FROM many") == [(QUERY_ROWS_MAX + 1,)]
    assert len(db.rows(f"SELECT k FROM many LIMIT {QUERY_ROWS_MAX}")) == QUERY_ROWS_MAX
    assert len(db.rows("SELECT k FROM many OFFSET 1")) == QUERY_ROWS_MAX
    assert len(db.rows("SELECT k FROM many ORDER BY v OFFSET 1")) == QUERY_ROWS_MAX
    for sql in ("SELECT k FROM many", "SELECT * FROM many ORDER BY v DESC", "SELECT * FROM many"):
        over = db.over(sql)
        assert over.limit == "QUERY_ROWS_MAX"
    # Paging by key range answers everything.
    seen = 0
    last = -2
    while page := db.rows("SELECT k FROM many WHERE k > ? LIMIT 40000", [last]):
        seen += len(page)
        last = int(str(page[-1][0]))
    assert seen == QUERY_ROWS_MAX + 1


def test_an_answer_is_at_most_query_bytes_max_bytes() -> None:
    db = Db()
    db.write("CREATE TABLE blobs (k BIGINT PRIMARY KEY, b BYTES)")
    blob = bytes(ROW_BYTES_MAX - 15)  # row width: 1 + 9 + 5 + len = ROW_BYTES_MAX - 0
    count = QUERY_BYTES_MAX // ROW_BYTES_MAX
    for k in range(count + 1):
        db.write("INSERT INTO blobs VALUES (?, ?)", [k, blob])
    assert len(db.rows(f"SELECT * FROM blobs LIMIT {count}")) == count
    over = db.over("SELECT * FROM blobs")
    assert (over.limit, over.value) == ("QUERY_BYTES_MAX", QUERY_BYTES_MAX + ROW_BYTES_MAX)
    assert db.over("SELECT b FROM blobs ORDER BY k DESC").limit == "QUERY_BYTES_MAX"
    assert len(db.rows("SELECT k FROM blobs")) == count + 1
    # A column selected twice counts twice: half as many rows fit.
    assert len(db.rows(f"SELECT b, b FROM blobs LIMIT {count // 2}")) == count // 2
    over = db.over(f"SELECT b, b FROM blobs LIMIT {count // 2 + 1}")
    assert over.limit == "QUERY_BYTES_MAX"
    assert db.over(f"SELECT b, k, b FROM blobs ORDER BY k LIMIT {count // 2 + 1}").limit == (
        "QUERY_BYTES_MAX"
    )


def test_a_column_named_many_times_in_order_by_sorts_once() -> None:
    db = Db()
    db.write("CREATE TABLE s (k BIGINT PRIMARY KEY, v BIGINT)")
    db.write(
        "INSERT INTO s VALUES " + ",".join(["(?,?)"] * 2000),
        [x for k in range(2000) for x in (k, -k % 7)],
    )
    once = db.rows("SELECT k FROM s ORDER BY v, k DESC")
    sql = "SELECT k FROM s ORDER BY v, " + "v, " * 20_000 + "k DESC"
    db.engine.prepare(sql)  # parsing 40,000 tokens takes its time; sorting must not
    started = time.monotonic()
    # 20,000 sort keys used to be 20,000 sorts of every row (4 s here); now two sorts.
    assert db.rows(sql) == once
    assert time.monotonic() - started < 1.0


def test_a_wide_projection_is_measured_before_it_is_built() -> None:
    db = Db()
    db.write("CREATE TABLE s (k BIGINT PRIMARY KEY)")
    db.write("INSERT INTO s VALUES " + ",".join(["(?)"] * 2000), list(range(2000)))
    # 20,000 copies of k: 180 KB a row, so about 370 rows fit; the ordered path used to
    # build every projected row before measuring any.
    columns = ", ".join(["k"] * 20_000)
    for sql in (f"SELECT {columns} FROM s ORDER BY k DESC", f"SELECT {columns} FROM s"):
        over = db.over(sql)
        assert over.limit == "QUERY_BYTES_MAX"
    assert len(db.rows(f"SELECT {columns} FROM s ORDER BY k LIMIT 100")) == 100


def test_the_statement_cache_keeps_a_bounded_amount_of_text() -> None:
    # Cached statements are kept parsed (some tens of times their text): at most 4 Mi
    # characters of text are, however many distinct large statements come.
    db = Db()
    db.write("CREATE TABLE s (k BIGINT PRIMARY KEY)")
    padding = "x" * (512 << 10)
    for number in range(12):  # 6 MiB of distinct texts
        assert db.rows(f"SELECT k FROM s WHERE k = {number} -- {padding}") == []
    cached = db.engine._cache  # white-box: what the engine holds on to
    assert sum(map(len, cached)) <= 4 << 20
    assert len(cached) >= 7  # the newest ones


# --- the log record of a write --------------------------------------------------------


def test_a_write_whose_event_would_not_fit_a_log_record_is_refused_in_planning() -> None:
    db = Db()
    db.write("CREATE TABLE b (k BIGINT PRIMARY KEY, v BYTES)")
    blob = bytes(ROW_BYTES_MAX - 15)  # a row of ROW_BYTES_MAX: 16 of them are over 64 MiB
    sql = "INSERT INTO b VALUES " + ",".join(["(?, ?)"] * 16)
    over = db.over(sql, [value for k in range(16) for value in (k, blob)], write=True)
    assert over.limit == "STATEMENT_EVENT_BYTES_MAX"
    # 256 + the text, then per row 8 + its key (9) + its width.
    assert over.value == 256 + len(sql) + 16 * (8 + 9 + ROW_BYTES_MAX)
    assert over.maximum == STATEMENT_EVENT_BYTES_MAX
    # Literal rows too (row by row), and an UPDATE that widens many rows.
    db.write("INSERT INTO b VALUES " + ",".join(f"({k}, NULL)" for k in range(16)))
    over = db.over("UPDATE b SET v = ?", [blob], write=True)
    assert over.limit == "STATEMENT_EVENT_BYTES_MAX"
    assert db.rows("SELECT COUNT(*) FROM b WHERE v IS NULL") == [(16,)]
    db.write("UPDATE b SET v = ? WHERE k < 8", [blob])  # half of it fits
    assert db.rows("SELECT COUNT(*) FROM b WHERE v IS NULL") == [(8,)]


def test_the_event_bound_agrees_with_the_spec_at_its_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    # With the bound moved to each statement's event width (as the spec counts it), the
    # statement runs in the spec and the engine; one byte lower, both refuse it. The
    # engine's event is never longer than the width, and it reports the same width.
    statements: list[tuple[str, tuple[object, ...]]] = [
        ('CREATE TABLE "t\u00e4" (k TEXT PRIMARY KEY, v BYTES, n BIGINT)', ()),
        ('CREATE INDEX "by_v\u00e9" ON "t\u00e4" (v)', ()),
        ('CREATE INDEX by_n ON "t\u00e4" (n)', ()),
        (
            'INSERT INTO "t\u00e4" VALUES '
            "('a', X'00', 1), ('b\u00e9', NULL, 2), ('c', X'', NULL)",
            (),
        ),
        ('INSERT INTO "t\u00e4" VALUES (?, ?, ?)', ("d\x00", b"xyz\x00", 4)),
        ("UPDATE \"t\u00e4\" SET v = X'01' WHERE n >= 2", ()),
        ("UPDATE \"t\u00e4\" SET n = 2 WHERE k = 'b\u00e9'", ()),
        ('UPDATE "t\u00e4" SET v = NULL, n = ?', (7,)),
        ("UPDATE \"t\u00e4\" SET v = X'01' WHERE k = 'none'", ()),
        ('CREATE INDEX by_v2 ON "t\u00e4" (v)', ()),
        ("DELETE FROM \"t\u00e4\" WHERE k <> 'a'", ()),
        ('DELETE FROM "t\u00e4" WHERE n = 0', ()),
        ('DROP TABLE "t\u00e4"', ()),
    ]
    history = spec.empty_history()
    db = Db()

    def bound(maximum: int) -> None:
        monkeypatch.setattr(engine_module, "STATEMENT_EVENT_BYTES_MAX", maximum)
        monkeypatch.setitem(query.LIMITS, "STATEMENT_EVENT_BYTES_MAX", maximum)
        monkeypatch.setattr(spec, "STATEMENT_EVENT_BYTES_MAX", maximum)
        monkeypatch.setitem(spec.LIMITS, "STATEMENT_EVENT_BYTES_MAX", maximum)

    for position, (sql, params) in enumerate(statements, start=1):
        bound(0)
        _, outcome = spec.execute(history, sql, params, position)
        assert isinstance(outcome, spec.Failed), (sql, outcome)
        assert outcome.limit == "STATEMENT_EVENT_BYTES_MAX", (sql, outcome)
        width = int(outcome.construct.rsplit(" ", 1)[1])
        bound(width - 1)
        _, outcome = spec.execute(history, sql, params, position)
        assert isinstance(outcome, spec.Failed) and outcome.limit == "STATEMENT_EVENT_BYTES_MAX"
        over = db.over(sql, params, write=True)
        assert (over.limit, over.value) == ("STATEMENT_EVENT_BYTES_MAX", width), sql
        bound(width)
        history, outcome = spec.execute(history, sql, params, position)
        assert isinstance(outcome, spec.Written), (sql, outcome)
        plan = db.write(sql, params)
        assert plan.rows_affected == outcome.rows_affected, sql
        assert len(plan.event) <= width, (sql, len(plan.event), width)
    assert db.position == len(statements)


# --- the spec agrees; the SDK appends nothing -------------------------------------------


def test_the_spec_and_the_engine_agree_on_every_bound(tmp_path: Path) -> None:
    spec_driver = SpecTablesDriver()
    engine_driver = EngineTablesDriver(tmp_path)
    statements: list[tuple[str, tuple[object, ...]]] = [
        ("CREATE TABLE t (k TEXT PRIMARY KEY, v BYTES)", ()),
        ("INSERT INTO t VALUES (?, NULL)", ("k" * (KEY_BYTES_MAX - 3),)),
        ("INSERT INTO t VALUES (?, NULL)", ("k" * (KEY_BYTES_MAX - 2),)),
        ("CREATE INDEX by_v ON t (v)", ()),  # NULL's entry (1 byte) and the 1,000-byte key
        ("DELETE FROM t", ()),
        ("CREATE INDEX by_v ON t (v)", ()),
        ("INSERT INTO t VALUES ('a', ?)", (b"v" * (KEY_BYTES_MAX - 7),)),
        ("INSERT INTO t VALUES ('b', ?)", (b"v" * (KEY_BYTES_MAX - 6),)),
        ("INSERT INTO t VALUES ('c', ?), ('c', ?)", (b"", b"v" * 5000)),
        ("UPDATE t SET v = ? WHERE k = 'a'", (b"\x00" * 500,)),
        ("SELECT k FROM t WHERE k = ?", ("k" * 5000,)),
        ("SELECT k FROM t LIMIT ? OFFSET ?", (1, LIMIT_OFFSET_MAX)),
        ("SELECT k FROM t LIMIT ?", (LIMIT_OFFSET_MAX + 1,)),
        ("SELECT k FROM t LIMIT ?", (10**5000,)),
        ("SELECT k FROM t WHERE k = ?", (10**5000,)),
        ("SELECT k FROM t WHERE k = $99999999999", ()),
        ("SELECT k FROM t WHERE k IN (" + "'x', " * IN_LIST_MAX + "'y')", ()),
        ("SELECT k FROM t WHERE " + "NOT (" * 16 + "k = 'a'" + ")" * 16, ()),
        ("SELECT k FROM t WHERE " + "NOT (" * 17 + "k = 'a'" + ")" * 17, ()),
        ("SELECT k FROM t -- \ud800", ()),
        ("SELECT k FROM t -- " + "\u00e9" * (SQL_TEXT_BYTES_MAX // 2), ()),
        ("DROP TABLE t", ()),
        ("CREATE TABLE b (k BIGINT PRIMARY KEY, v BYTES)", ()),
        ("INSERT INTO b VALUES (1, ?)", (bytes(ROW_BYTES_MAX - 15),)),
        ("INSERT INTO b VALUES (2, ?)", (bytes(ROW_BYTES_MAX - 14),)),
    ]
    blob = bytes(ROW_BYTES_MAX - 15)  # a row of ROW_BYTES_MAX
    statements += [("INSERT INTO b VALUES (?, ?)", (k, blob)) for k in range(3, 19)]
    statements += [("SELECT k FROM b", ()), ("SELECT * FROM b ORDER BY k DESC", ())]
    statements += [("SELECT v, v FROM b LIMIT 9", ()), ("SELECT k FROM b LIMIT 3", ())]
    statements += [
        (
            "INSERT INTO b VALUES " + ",".join(["(?, ?)"] * 16),
            tuple(value for k in range(100, 116) for value in (k, blob)),
        ),
        ("UPDATE b SET v = ? WHERE k < 16", (b"",)),
    ]
    failed: list[object] = []
    try:
        for position, (sql, params) in enumerate(statements, start=1):
            expected = spec_driver.execute(sql, params, position)
            actual = engine_driver.execute(sql, params, position)
            assert actual == expected, (sql[:80], params[:1], expected, actual)
            if "failed" in expected:
                failed.append(expected.get("limit", expected["failed"]))
    finally:
        engine_driver.close()
    assert failed == [
        "KEY_BYTES_MAX",
        "KEY_BYTES_MAX",
        "KEY_BYTES_MAX",
        "constraint",
        "KEY_BYTES_MAX",
        "LIMIT_OFFSET_MAX",
        "LIMIT_OFFSET_MAX",
        "type_mismatch",
        "PARAMETERS_MAX",
        "IN_LIST_MAX",
        "EXPRESSION_DEPTH_MAX",
        "syntax",
        "SQL_TEXT_BYTES_MAX",
        "ROW_BYTES_MAX",
        "QUERY_BYTES_MAX",
        "QUERY_BYTES_MAX",
        "STATEMENT_EVENT_BYTES_MAX",
    ]


def test_through_the_sdk_a_statement_over_a_bound_appends_nothing(tmp_path: Path) -> None:
    with verity.open(tmp_path / "db", create=True) as db:
        tenant = db.tenant(TenantId(1), create=True)
        tenant.execute("CREATE TABLE x (id BIGINT PRIMARY KEY, note TEXT)")
        size = tenant.log_size()
        for sql, params in (
            ("SELECT * FROM x WHERE id = $99999999999", ()),
            ("DELETE FROM x WHERE id = $99999999999", ()),
            ("INSERT INTO x VALUES (1, ?)", ("n" * ROW_BYTES_MAX,)),
            ("INSERT INTO x VALUES (1, 'a') -- " + "x" * SQL_TEXT_BYTES_MAX, ()),
            (f"CREATE TABLE {'y' * 70_000} (a BIGINT PRIMARY KEY)", ()),
        ):
            with pytest.raises(SqlLimitExceeded) as raised:
                if sql.startswith("SELECT"):
                    tenant.query(sql, list(params))
                else:
                    tenant.execute(sql, list(params))
            assert raised.value.kind == "limit"
            assert re.fullmatch(r"[A-Z_]+_MAX", raised.value.limit)
        assert tenant.log_size() == size
        assert tenant.query("SELECT COUNT(*) FROM x").rows == [(0,)]


def test_through_the_sdk_a_write_too_large_for_a_log_record_appends_nothing(
    tmp_path: Path,
) -> None:
    # It used to fail at the append, with the log's InvalidArgument about its payload.
    with verity.open(tmp_path / "db", create=True) as db:
        tenant = db.tenant(TenantId(1), create=True)
        tenant.execute("CREATE TABLE b (k BIGINT PRIMARY KEY, v BYTES)")
        size = tenant.log_size()
        blob = bytes(ROW_BYTES_MAX - 15)  # one value, in 16 rows of ROW_BYTES_MAX
        sql = "INSERT INTO b VALUES " + ",".join(["(?, ?)"] * 16)
        with pytest.raises(SqlLimitExceeded) as raised:
            tenant.execute(sql, [value for k in range(16) for value in (k, blob)])
        error = raised.value
        assert (error.kind, error.limit) == ("limit", "STATEMENT_EVENT_BYTES_MAX")
        assert (error.value, error.maximum) == (
            256 + len(sql) + 16 * (8 + 9 + ROW_BYTES_MAX),
            STATEMENT_EVENT_BYTES_MAX,
        )
        assert "STATEMENT_EVENT_BYTES_MAX" in str(error)
        assert tenant.log_size() == size
        del blob, raised, error
        # The tenant goes on: a write and a read.
        receipt = tenant.execute("INSERT INTO b VALUES (1, X'01'), (2, NULL)")
        assert (int(receipt.offset), receipt.rows_affected) == (size, 2)
        assert tenant.query("SELECT k, v FROM b").rows == [(1, b"\x01"), (2, None)]
        assert tenant.log_size() == size + 1
