"""The executable specification of tables and SQL, rule by rule (spec/tables.py)."""

from __future__ import annotations

import icontract
import pytest

from verity_spec import tables as spec
from verity_spec.errors import InvalidArgumentError

PEOPLE = (
    "CREATE TABLE people (id BIGINT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE, "
    "active BOOLEAN, photo BYTES, born TIMESTAMP)"
)


def next_position(history: spec.History) -> int:
    return 0 if not history.versions else history.versions[-1][0] + 1


def write(history: spec.History, sql: str, *params: object) -> spec.History:
    """Run a write that must succeed; it appends exactly one version."""
    after, outcome = spec.execute(history, sql, params, next_position(history))
    assert isinstance(outcome, spec.Written), outcome
    assert len(after.versions) == len(history.versions) + 1
    return after


def rows_affected(history: spec.History, sql: str, *params: object) -> int:
    _, outcome = spec.execute(history, sql, params, next_position(history))
    assert isinstance(outcome, spec.Written), outcome
    return outcome.rows_affected


def answer(history: spec.History, sql: str, *params: object) -> spec.Rows:
    after, outcome = spec.execute(history, sql, params, next_position(history))
    assert isinstance(outcome, spec.Rows), outcome
    assert after is history
    return outcome


def rows(history: spec.History, sql: str, *params: object) -> list[tuple[object, ...]]:
    return list(answer(history, sql, *params).rows)


def failure(history: spec.History, sql: str, *params: object) -> str:
    """Run a statement that must fail; it leaves the history exactly as it was."""
    after, outcome = spec.execute(history, sql, params, next_position(history))
    assert isinstance(outcome, spec.Failed), outcome
    assert outcome.kind in spec.ERROR_KINDS
    assert after is history
    return outcome.kind


def setup(*statements: str) -> spec.History:
    history = spec.empty_history()
    for sql in statements:
        history = write(history, sql)
    return history


def people() -> spec.History:
    return setup(
        PEOPLE,
        "INSERT INTO people VALUES "
        "(3, 'carol', 2.5, TRUE, NULL, 30), "
        "(1, 'alice', NULL, FALSE, X'00ff', 10), "
        "(2, 'bob', 1.5, NULL, NULL, NULL), "
        "(4, 'dave', 2.5, TRUE, NULL, 40)",
    )


# ---------------------------------------------------------------- DDL


def test_create_table_defines_columns_in_order_with_a_not_null_key() -> None:
    history = setup("CREATE TABLE t (a BIGINT, b TEXT NOT NULL, c DOUBLE, PRIMARY KEY (a))")
    table = spec.latest_state(history).tables["t"]
    assert [column.name for column in table.columns] == ["a", "b", "c"]
    assert [column.type for column in table.columns] == [spec.BIGINT, spec.TEXT, spec.DOUBLE]
    assert [column.not_null for column in table.columns] == [True, True, False]
    assert table.primary_key == ("a",)
    assert spec.latest_state(history).rows["t"] == {}


@pytest.mark.parametrize(
    ("declared", "canonical"),
    [
        ("BIGINT", spec.BIGINT),
        ("INTEGER", spec.BIGINT),
        ("INT", spec.BIGINT),
        ("TEXT", spec.TEXT),
        ("VARCHAR", spec.TEXT),
        ("BOOLEAN", spec.BOOLEAN),
        ("BOOL", spec.BOOLEAN),
        ("DOUBLE", spec.DOUBLE),
        ("REAL", spec.DOUBLE),
        ("FLOAT", spec.DOUBLE),
        ("DOUBLE PRECISION", spec.DOUBLE),
        ("TIMESTAMP", spec.TIMESTAMP),
        ("BYTES", spec.BYTES),
        ("BLOB", spec.BYTES),
        ("bytea", spec.BYTES),
    ],
)
def test_type_names_map_to_canonical_types(declared: str, canonical: str) -> None:
    history = setup(f"CREATE TABLE t (k BIGINT PRIMARY KEY, v {declared})")
    assert spec.latest_state(history).tables["t"].columns[1].type == canonical


@pytest.mark.parametrize(
    "declared", ["SMALLINT", "VARCHAR(10)", "TIMESTAMPTZ", "DECIMAL", "DATE", "INT[]", "JSON"]
)
def test_other_types_are_unsupported(declared: str) -> None:
    history = spec.empty_history()
    assert failure(history, f"CREATE TABLE t (k BIGINT PRIMARY KEY, v {declared})") == (
        "unsupported"
    )


def test_identifiers_are_case_insensitive_and_stored_in_lower_case() -> None:
    history = setup('CREATE TABLE "People" (ID BIGINT PRIMARY KEY, "Name" TEXT)')
    history = write(history, "INSERT INTO PEOPLE (id, NAME) VALUES (1, 'x')")
    result = answer(history, 'SELECT Id, "NAME" FROM people')
    assert result.columns == ("id", "name")
    assert result.rows == ((1, "x"),)
    assert list(spec.latest_state(history).tables) == ["people"]


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("CREATE TABLE t (a BIGINT, b TEXT)", "unsupported"),
        ("CREATE TABLE t (a BIGINT PRIMARY KEY, b TEXT PRIMARY KEY)", "syntax"),
        ("CREATE TABLE t (a BIGINT PRIMARY KEY, PRIMARY KEY (a))", "syntax"),
        ("CREATE TABLE t (a BIGINT PRIMARY KEY, A TEXT)", "syntax"),
        ("CREATE TABLE t (a BIGINT, PRIMARY KEY (a, a))", "syntax"),
        ("CREATE TABLE t (a BIGINT, PRIMARY KEY (b))", "unknown_column"),
        ("CREATE TABLE t (a BIGINT PRIMARY KEY, b TEXT DEFAULT 'x')", "unsupported"),
        ("CREATE TABLE t (a BIGINT PRIMARY KEY, b TEXT UNIQUE)", "unsupported"),
        ("CREATE TABLE t (a BIGINT PRIMARY KEY, b TEXT NULL)", "unsupported"),
        ("CREATE TABLE t (a BIGINT, CONSTRAINT pk PRIMARY KEY (a))", "unsupported"),
        ("CREATE TABLE IF NOT EXISTS t (a BIGINT PRIMARY KEY)", "unsupported"),
        ("CREATE TEMP TABLE t (a BIGINT PRIMARY KEY)", "unsupported"),
        ("CREATE TABLE t AS SELECT * FROM u", "unsupported"),
        ("CREATE VIEW v AS SELECT * FROM u", "unsupported"),
    ],
)
def test_create_table_refusals(sql: str, kind: str) -> None:
    assert failure(spec.empty_history(), sql) == kind


def test_composite_primary_key_orders_rows_and_refuses_duplicates() -> None:
    history = setup("CREATE TABLE t (a BIGINT, b TEXT, v BIGINT, PRIMARY KEY (b, a))")
    table = spec.latest_state(history).tables["t"]
    assert table.primary_key == ("b", "a")
    assert all(column.not_null for column in table.columns[:2])
    history = write(history, "INSERT INTO t VALUES (2, 'x', 1), (1, 'y', 2), (1, 'x', 3)")
    assert rows(history, "SELECT v FROM t") == [(3,), (1,), (2,)]
    assert failure(history, "INSERT INTO t VALUES (1, 'y', 9)") == "constraint"
    assert failure(history, "INSERT INTO t VALUES (NULL, 'z', 9)") == "constraint"


def test_create_table_of_an_existing_table_is_table_exists() -> None:
    history = setup("CREATE TABLE t (a BIGINT PRIMARY KEY)")
    assert failure(history, "create table T (b TEXT PRIMARY KEY)") == "table_exists"


def test_drop_table_then_create_again_gives_a_new_empty_table() -> None:
    history = people()
    history = write(history, "DROP TABLE people")
    assert failure(history, "SELECT * FROM people") == "unknown_table"
    assert failure(history, "DROP TABLE people") == "unknown_table"
    history = write(history, "CREATE TABLE people (id TEXT PRIMARY KEY)")
    result = answer(history, "SELECT * FROM people")
    assert result.columns == ("id",)
    assert result.rows == ()


@pytest.mark.parametrize(
    "sql", ["DROP TABLE IF EXISTS t", "DROP TABLE t CASCADE", "DROP TABLE t, u", "DROP INDEX i"]
)
def test_drop_variants_are_unsupported(sql: str) -> None:
    history = setup(
        "CREATE TABLE t (a BIGINT PRIMARY KEY)", "CREATE TABLE u (a BIGINT PRIMARY KEY)"
    )
    assert failure(history, sql) == "unsupported"


def test_create_index_records_the_index_and_never_changes_answers() -> None:
    history = people()
    before = rows(history, "SELECT id FROM people WHERE score >= 2 ORDER BY score DESC")
    history = write(history, "CREATE INDEX by_score ON people (score)")
    assert spec.latest_state(history).tables["people"].indexes == (
        spec.IndexDef(name="by_score", column="score"),
    )
    assert rows(history, "SELECT id FROM people WHERE score >= 2 ORDER BY score DESC") == before
    assert rows_affected(history, "CREATE INDEX by_name ON people (name)") == 0


def test_create_index_refusals() -> None:
    history = setup(
        PEOPLE, "CREATE TABLE other (k BIGINT PRIMARY KEY)", "CREATE INDEX i ON people (name)"
    )
    assert failure(history, "CREATE INDEX j ON nowhere (name)") == "unknown_table"
    assert failure(history, "CREATE INDEX j ON people (nothing)") == "unknown_column"
    assert failure(history, "CREATE INDEX i ON people (score)") == "table_exists"
    assert failure(history, "CREATE INDEX I ON other (k)") == "table_exists"
    for sql in (
        "CREATE INDEX ON people (score)",
        "CREATE UNIQUE INDEX j ON people (score)",
        "CREATE INDEX j ON people (score, name)",
        "CREATE INDEX j ON people (lower(name))",
        "CREATE INDEX j ON people (score DESC)",
        "CREATE INDEX j ON people USING hash (score)",
        "CREATE INDEX j ON people (score) WHERE score > 1",
    ):
        assert failure(history, sql) == "unsupported", sql


def test_index_names_are_apart_from_table_names_and_freed_by_drop_table() -> None:
    history = setup(PEOPLE, "CREATE INDEX people ON people (name)")
    history = write(history, "DROP TABLE people")
    history = write(history, PEOPLE)
    assert spec.latest_state(history).tables["people"].indexes == ()
    write(history, "CREATE INDEX people ON people (name)")


# ---------------------------------------------------------------- INSERT and types


def test_insert_without_column_list_fills_columns_in_table_order() -> None:
    history = people()
    result = answer(history, "SELECT * FROM people WHERE id = 1")
    assert result.columns == ("id", "name", "score", "active", "photo", "born")
    assert result.rows == ((1, "alice", None, False, b"\x00\xff", 10),)


def test_rows_come_in_primary_key_order_without_order_by() -> None:
    assert rows(people(), "SELECT id FROM people") == [(1,), (2,), (3,), (4,)]


def test_missing_nullable_columns_are_null_and_missing_not_null_is_constraint() -> None:
    history = setup(PEOPLE)
    history = write(history, "INSERT INTO people (name, id) VALUES ('x', 7)")
    assert rows(history, "SELECT * FROM people") == [(7, "x", None, None, None, None)]
    assert failure(history, "INSERT INTO people (id) VALUES (8)") == "constraint"
    assert failure(history, "INSERT INTO people (id, name) VALUES (8, NULL)") == "constraint"
    assert failure(history, "INSERT INTO people (id, name) VALUES (8, ?)", None) == "constraint"
    assert failure(history, "INSERT INTO people (name) VALUES ('y')") == "constraint"


def test_insert_counts_rows_and_takes_several_rows() -> None:
    history = setup(PEOPLE)
    assert rows_affected(history, "INSERT INTO people (id, name) VALUES (1, 'a'), (2, 'b')") == 2


def test_a_duplicate_key_refuses_the_whole_statement() -> None:
    history = people()
    assert failure(history, "INSERT INTO people (id, name) VALUES (9, 'x'), (1, 'y')") == (
        "constraint"
    )
    assert failure(history, "INSERT INTO people (id, name) VALUES (9, 'x'), (9, 'y')") == (
        "constraint"
    )
    assert rows(history, "SELECT COUNT(*) FROM people") == [(4,)]


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("INSERT INTO people (id, name) VALUES (1)", "syntax"),
        ("INSERT INTO people VALUES (1, 'a')", "syntax"),
        ("INSERT INTO people (id, name) VALUES (1, 'a'), (2)", "syntax"),
        ("INSERT INTO people (id, id) VALUES (1, 2)", "syntax"),
        ("INSERT INTO people (id, nope) VALUES (1, 'a')", "unknown_column"),
        ("INSERT INTO nowhere (id) VALUES (1)", "unknown_table"),
        ("INSERT INTO people (id, name) VALUES (1, DEFAULT)", "unsupported"),
        ("INSERT INTO people (id, name) VALUES (1 + 1, 'a')", "unsupported"),
        ("INSERT INTO people (id, name) SELECT id, name FROM people", "unsupported"),
        ("INSERT INTO people (id, name) VALUES (1, 'a') RETURNING id", "unsupported"),
        ("INSERT INTO people (id, name) VALUES (1, 'a') ON CONFLICT DO NOTHING", "unsupported"),
        ("INSERT INTO people DEFAULT VALUES", "unsupported"),
        ("INSERT INTO people (id, name) VALUES (1, 'a'::text)", "unsupported"),
        ("INSERT INTO people (id, name) VALUES (-?, 'a')", "unsupported"),
        ("INSERT INTO people (id, name) VALUES (- -1, 'a')", "unsupported"),
        ("INSERT INTO people (id, name) VALUES (-'1', 'a')", "unsupported"),
    ],
)
def test_insert_refusals(sql: str, kind: str) -> None:
    assert failure(setup(PEOPLE), sql, *((5,) if "?" in sql else ())) == kind


INT64_MAX = 2**63 - 1


@pytest.mark.parametrize(
    ("column", "value", "stored"),
    [
        ("id", INT64_MAX, INT64_MAX),
        ("id", -(2**63), -(2**63)),
        ("born", 1_767_225_600_000_000_000, 1_767_225_600_000_000_000),
        ("score", 2, 2.0),
        ("score", 2.5, 2.5),
        ("score", -0.0, 0.0),
        ("score", 0, 0.0),
        ("score", float("inf"), float("inf")),
        ("name", "héllo", "héllo"),
        ("active", True, True),
        ("photo", b"\x00\x01", b"\x00\x01"),
        ("photo", None, None),
    ],
)
def test_values_each_type_accepts(column: str, value: object, stored: object) -> None:
    history = setup(PEOPLE)
    key = value if column == "id" else 1
    values = {"id": key, "name": "n", column: value}
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    history = write(history, f"INSERT INTO people ({names}) VALUES ({marks})", *values.values())
    [(found,)] = rows(history, f"SELECT {column} FROM people")
    assert found == stored
    assert type(found) is type(stored)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("born", True),
        ("born", 2**63),
        ("born", -(2**63) - 1),
        ("born", 1.0),
        ("born", "1"),
        ("score", "1.5"),
        ("score", True),
        ("score", float("nan")),
        ("score", 10**400),
        ("name", 1),
        ("name", b"x"),
        ("name", "\ud800"),
        ("active", 1),
        ("active", "true"),
        ("photo", "00ff"),
        ("photo", 1),
    ],
)
def test_values_each_type_refuses(column: str, value: object) -> None:
    history = setup(PEOPLE)
    sql = f"INSERT INTO people (id, name, {column}) VALUES (1, 'n', ?)"
    if column == "name":
        sql = "INSERT INTO people (id, name) VALUES (1, ?)"
    assert failure(history, sql, value) == "type_mismatch"


@pytest.mark.parametrize(
    ("literal", "stored"),
    [
        ("42", 42),
        ("-42", -42),
        ("-9223372036854775808", -(2**63)),
        ("(7)", 7),
        ("-(7)", -7),
    ],
)
def test_integer_literals(literal: str, stored: int) -> None:
    history = write(setup(PEOPLE), f"INSERT INTO people (id, name) VALUES ({literal}, 'n')")
    assert rows(history, "SELECT id FROM people") == [(stored,)]


@pytest.mark.parametrize(
    ("literal", "stored"),
    [("1.5", 1.5), ("-2.", -2.0), ("1e3", 1000.0), (".5", 0.5), ("3", 3.0)],
)
def test_double_literals(literal: str, stored: float) -> None:
    history = write(
        setup(PEOPLE), f"INSERT INTO people (id, name, score) VALUES (1, 'n', {literal})"
    )
    assert rows(history, "SELECT score FROM people") == [(stored,)]


def test_a_decimal_literal_does_not_fit_an_integer_column() -> None:
    history = setup(PEOPLE)
    assert failure(history, "INSERT INTO people (id, name) VALUES (1.0, 'n')") == "type_mismatch"
    assert failure(history, "INSERT INTO people (id, name) VALUES (TRUE, 'n')") == "type_mismatch"
    too_big = "INSERT INTO people (id, name) VALUES (9223372036854775808, 'n')"
    assert failure(history, too_big) == "type_mismatch"


def test_bytes_literals() -> None:
    history = setup(PEOPLE)
    history = write(history, "INSERT INTO people (id, name, photo) VALUES (1, 'n', x'CAfe')")
    assert rows(history, "SELECT photo FROM people") == [(b"\xca\xfe",)]
    assert failure(history, "INSERT INTO people (id, name, photo) VALUES (2, 'n', X'abc')") == (
        "syntax"
    )
    assert failure(history, "INSERT INTO people (id, name, photo) VALUES (2, 'n', 0xab)") == (
        "unsupported"
    )
    assert failure(history, "INSERT INTO people (id, name, photo) VALUES (2, 'n', 'ab')") == (
        "type_mismatch"
    )


# ---------------------------------------------------------------- UPDATE and DELETE


def test_update_sets_values_and_counts_matched_rows() -> None:
    history = people()
    assert rows_affected(history, "UPDATE people SET score = 9 WHERE active = TRUE") == 2
    history = write(history, "UPDATE people SET score = 9, name = ? WHERE active = TRUE", "z")
    assert rows(history, "SELECT id, name, score FROM people WHERE active = TRUE") == [
        (3, "z", 9.0),
        (4, "z", 9.0),
    ]
    assert rows_affected(history, "UPDATE people SET score = 9 WHERE active = TRUE") == 2
    assert rows_affected(history, "UPDATE people SET born = 1") == 4


def test_a_write_matching_no_row_is_still_one_version() -> None:
    history = people()
    after = write(history, "UPDATE people SET score = 1 WHERE id = 99")
    assert spec.latest_state(after) == spec.latest_state(history)
    after = write(after, "DELETE FROM people WHERE id = 99")
    assert len(after.versions) == len(history.versions) + 2


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("UPDATE people SET id = 5 WHERE id = 1", "unsupported"),
        ("UPDATE people SET score = score + 1", "unsupported"),
        ("UPDATE people SET score = 1, score = 2", "syntax"),
        ("UPDATE people SET nope = 1", "unknown_column"),
        ("UPDATE people SET score = 1 WHERE nope = 1", "unknown_column"),
        ("UPDATE nowhere SET score = 1", "unknown_table"),
        ("UPDATE people SET score = 'x'", "type_mismatch"),
        ("UPDATE people SET score = 1 WHERE id = 'x'", "type_mismatch"),
        ("UPDATE people SET name = NULL", "constraint"),
        ("UPDATE people SET name = NULL WHERE id = 99", "constraint"),
        ("UPDATE people AS p SET score = 1", "unsupported"),
        ("UPDATE people SET score = 1 RETURNING id", "unsupported"),
    ],
)
def test_update_refusals(sql: str, kind: str) -> None:
    assert failure(people(), sql) == kind


def test_delete_removes_matching_rows() -> None:
    history = people()
    assert rows_affected(history, "DELETE FROM people WHERE score IS NULL") == 1
    history = write(history, "DELETE FROM people WHERE score = 2.5 OR id = 1")
    assert rows(history, "SELECT id FROM people") == [(2,)]
    assert rows_affected(history, "DELETE FROM people") == 1
    assert failure(history, "DELETE FROM people WHERE nope = 1") == "unknown_column"
    assert failure(history, "DELETE FROM people USING people") == "unsupported"


# ---------------------------------------------------------------- SELECT


def test_select_star_columns_and_count() -> None:
    history = people()
    assert answer(history, "SELECT * FROM people").columns == (
        "id",
        "name",
        "score",
        "active",
        "photo",
        "born",
    )
    assert answer(history, "SELECT name, id, name FROM people WHERE id = 2").rows == (
        ("bob", 2, "bob"),
    )
    counted = answer(history, "select count(*) from people where score > 2")
    assert counted.columns == ("count",)
    assert counted.rows == ((2,),)
    assert rows(setup(PEOPLE), "SELECT COUNT(*) FROM people") == [(0,)]


def test_count_takes_limit_and_offset_on_its_one_row() -> None:
    history = people()
    assert rows(history, "SELECT COUNT(*) FROM people LIMIT 0") == []
    assert rows(history, "SELECT COUNT(*) FROM people OFFSET 1") == []
    assert rows(history, "SELECT COUNT(*) FROM people LIMIT 5") == [(4,)]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id AS x FROM people",
        "SELECT DISTINCT id FROM people",
        "SELECT id FROM people GROUP BY id",
        "SELECT COUNT(*) FROM people HAVING COUNT(*) > 1",
        "SELECT people.id FROM people",
        "SELECT id FROM people p",
        "SELECT id FROM public.people",
        "SELECT id FROM people JOIN people AS q ON people.id = q.id",
        "SELECT id FROM people, people",
        "SELECT id FROM people WHERE id IN (SELECT id FROM people)",
        "SELECT id FROM people UNION SELECT id FROM people",
        "WITH x AS (SELECT 1) SELECT id FROM people",
        "SELECT id + 1 FROM people",
        "SELECT lower(name) FROM people",
        "SELECT COUNT(id) FROM people",
        "SELECT COUNT(*), id FROM people",
        "SELECT *, id FROM people",
        "SELECT 1",
        "SELECT COUNT(*) FROM people ORDER BY id",
        "SELECT id FROM people ORDER BY 1",
        "SELECT id FROM people ORDER BY id NULLS FIRST",
        "SELECT id FROM people ORDER BY id DESC NULLS LAST",
        "SELECT id FROM people LIMIT ALL",
        "SELECT id FROM people FETCH FIRST 2 ROWS ONLY",
        "SELECT id FROM people FOR UPDATE",
        "SELECT id FROM people WHERE name LIKE 'a%'",
        "SELECT id FROM people WHERE id BETWEEN 1 AND 2",
        "SELECT id FROM people WHERE id = score",
        "SELECT id FROM people WHERE 1 = 1",
        "SELECT id FROM people WHERE active",
        "SELECT id FROM people WHERE active IS TRUE",
        "SELECT id FROM people WHERE name = E'x'",
        "EXPLAIN SELECT id FROM people",
        "BEGIN",
    ],
)
def test_select_constructs_outside_the_dialect_are_unsupported(sql: str) -> None:
    assert failure(people(), sql) == "unsupported"


@pytest.mark.parametrize(
    ("where", "ids"),
    [
        ("id = 2", [2]),
        ("id <> 2", [1, 3, 4]),
        ("id != 2", [1, 3, 4]),
        ("id < 2", [1]),
        ("id > 2", [3, 4]),
        ("id <= 2", [1, 2]),
        ("id >= 2", [2, 3, 4]),
        ("2 < id", [3, 4]),
        ("2 >= id", [1, 2]),
        ("id IN (1, 3, 99)", [1, 3]),
        ("id NOT IN (1, 3)", [2, 4]),
        ("score IS NULL", [1]),
        ("score IS NOT NULL", [2, 3, 4]),
        ("NOT (score IS NULL)", [2, 3, 4]),
        ("score = 2.5 AND born > 30", [4]),
        ("score = 1.5 OR name = 'alice'", [1, 2]),
        ("(id = 1 OR id = 2) AND NOT active = FALSE", []),
        ("score > 2", [3, 4]),
        ("score = 2", []),
        ("name >= 'c'", [3, 4]),
        ("photo = X'00ff'", [1]),
        ("active = TRUE", [3, 4]),
        ("active < TRUE", [1]),
        ("(((id))) = (3)", [3]),
    ],
)
def test_where_operators(where: str, ids: list[int]) -> None:
    assert rows(people(), f"SELECT id FROM people WHERE {where}") == [(i,) for i in ids]


@pytest.mark.parametrize(
    ("where", "ids"),
    [
        ("score = NULL", []),
        ("score <> NULL", []),
        ("NOT score = NULL", []),
        ("score IN (NULL)", []),
        ("score IN (1.5, NULL)", [2]),
        ("score NOT IN (1.5, NULL)", []),
        ("NOT score = 1.5", [3, 4]),
        ("NOT score = 1.5 OR score IS NULL", [1, 3, 4]),
        ("score > 2 OR score = NULL", [3, 4]),
        ("NOT (score > 2 AND score = NULL)", [2]),
    ],
)
def test_null_never_compares_true_three_valued_logic(where: str, ids: list[int]) -> None:
    assert rows(people(), f"SELECT id FROM people WHERE {where}") == [(i,) for i in ids]


def test_a_double_column_compares_with_ints_as_floats() -> None:
    history = people()
    assert rows(history, "SELECT id FROM people WHERE score < 2") == [(2,)]
    assert rows(history, "SELECT id FROM people WHERE score = ?", 2.5) == [(3,), (4,)]
    big = setup("CREATE TABLE t (k BIGINT PRIMARY KEY, d DOUBLE)")
    big = write(big, "INSERT INTO t VALUES (1, ?)", 2**53 + 1)
    assert rows(big, "SELECT k FROM t WHERE d = ?", 2**53 + 1) == [(1,)]


@pytest.mark.parametrize(
    "where",
    [
        "id = 'x'",
        "id = 1.5",
        "id = TRUE",
        "name = 1",
        "active = 1",
        "photo = 'x'",
        "score = 'x'",
        "id IN (1, 'x')",
        "id = 9223372036854775808",
    ],
)
def test_a_value_that_does_not_fit_its_column_is_type_mismatch_even_on_no_rows(
    where: str,
) -> None:
    assert failure(people(), f"SELECT id FROM people WHERE {where}") == "type_mismatch"
    assert failure(setup(PEOPLE), f"SELECT id FROM people WHERE {where}") == "type_mismatch"
    assert failure(setup(PEOPLE), f"DELETE FROM people WHERE {where}") == "type_mismatch"


def test_unknown_names_in_select() -> None:
    history = people()
    assert failure(history, "SELECT id FROM nowhere") == "unknown_table"
    assert failure(history, "SELECT nope FROM people") == "unknown_column"
    assert failure(history, "SELECT id FROM people WHERE nope = 1") == "unknown_column"
    assert failure(history, "SELECT id FROM people ORDER BY nope") == "unknown_column"
    assert failure(history, "SELECT id FROM people WHERE id IN ()") == "syntax"


def test_order_by_puts_nulls_first_ascending_and_last_descending() -> None:
    history = people()
    assert rows(history, "SELECT id FROM people ORDER BY score") == [(1,), (2,), (3,), (4,)]
    assert rows(history, "SELECT id FROM people ORDER BY score ASC") == [(1,), (2,), (3,), (4,)]
    assert rows(history, "SELECT id FROM people ORDER BY score DESC") == [(3,), (4,), (2,), (1,)]
    assert rows(history, "SELECT id FROM people ORDER BY active DESC") == [(3,), (4,), (1,), (2,)]


def test_order_by_several_keys_with_ties_in_primary_key_order() -> None:
    history = people()
    assert rows(history, "SELECT id FROM people ORDER BY score DESC, born DESC") == [
        (4,),
        (3,),
        (2,),
        (1,),
    ]
    assert rows(history, "SELECT id FROM people ORDER BY active, name DESC") == [
        (2,),
        (1,),
        (4,),
        (3,),
    ]
    assert rows(history, "SELECT name FROM people ORDER BY born DESC LIMIT 2") == [
        ("dave",),
        ("carol",),
    ]


def test_limit_and_offset() -> None:
    history = people()
    assert rows(history, "SELECT id FROM people LIMIT 2") == [(1,), (2,)]
    assert rows(history, "SELECT id FROM people LIMIT 2 OFFSET 3") == [(4,)]
    assert rows(history, "SELECT id FROM people OFFSET 1") == [(2,), (3,), (4,)]
    assert rows(history, "SELECT id FROM people LIMIT 0") == []
    assert rows(history, "SELECT id FROM people OFFSET 9") == []
    assert rows(history, "SELECT id FROM people ORDER BY id DESC LIMIT ? OFFSET ?", 2, 1) == [
        (3,),
        (2,),
    ]


@pytest.mark.parametrize(
    "clause", ["LIMIT -1", "LIMIT 1.5", "LIMIT NULL", "LIMIT 'a'", "OFFSET -1", "OFFSET TRUE"]
)
def test_limit_and_offset_must_be_non_negative_ints(clause: str) -> None:
    assert failure(people(), f"SELECT id FROM people {clause}") == "type_mismatch"


@pytest.mark.parametrize("bound", [-1, 1.0, None, True, "1"])
def test_limit_parameter_must_be_a_non_negative_int(bound: object) -> None:
    assert failure(people(), "SELECT id FROM people LIMIT ?", bound) == "type_mismatch"


def test_text_compares_by_code_point() -> None:
    history = setup("CREATE TABLE t (k TEXT PRIMARY KEY)")
    history = write(history, "INSERT INTO t VALUES ('b'), ('B'), ('é'), ('a'), ('')")
    assert rows(history, "SELECT k FROM t") == [("",), ("B",), ("a",), ("b",), ("é",)]


# ---------------------------------------------------------------- parameters


def test_question_marks_are_numbered_in_order_of_appearance() -> None:
    history = people()
    assert rows(history, "SELECT id FROM people WHERE score > ? OFFSET ? LIMIT ?", 1.0, 1, 1) == [
        (3,)
    ]
    assert rows(history, "SELECT id FROM people WHERE name = '?' OR id = ?", 2) == [(2,)]


def test_dollar_parameters_are_taken_by_number_and_may_repeat() -> None:
    history = people()
    sql = "SELECT id FROM people WHERE id = $2 OR born = $1 OR id = $2"
    assert rows(history, sql, 30, 1) == [(1,), (3,)]


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT id FROM people WHERE id = ? AND born = $2", (1, 2)),
        ("SELECT id FROM people WHERE id = ?", ()),
        ("SELECT id FROM people WHERE id = ?", (1, 2)),
        ("SELECT id FROM people WHERE id = $1 OR id = $3", (1, 2, 3)),
        ("SELECT id FROM people WHERE id = $2", (1,)),
        ("SELECT id FROM people WHERE id = $0", (1,)),
        ("SELECT id FROM people WHERE id = :id", (1,)),
        ("SELECT id FROM people WHERE id = %s", (1,)),
        ("SELECT id FROM people WHERE id = $name", (1,)),
        ("SELECT id FROM people", (1,)),
        ("SELECT id FROM people WHERE id = ?", ([1],)),
        ("SELECT id FROM people WHERE id = ?", (bytearray(b"1"),)),
        ("CREATE TABLE t (a BIGINT PRIMARY KEY)", (1,)),
    ],
)
def test_parameter_errors(sql: str, params: tuple[object, ...]) -> None:
    assert failure(people(), sql, *params) == "parameter"


def test_null_parameter_compares_as_null() -> None:
    assert rows(people(), "SELECT id FROM people WHERE score = ?", None) == []


# ---------------------------------------------------------------- text


@pytest.mark.parametrize(
    "sql",
    [
        "",
        ";",
        "   -- nothing",
        "SELEC id FROM people",
        "SELECT id FROM",
        "SELECT id FROM people WHERE name = 'open",
        "SELECT id FROM people; SELECT id FROM people",
        'SELECT "" FROM people',
    ],
)
def test_text_that_is_not_one_statement_is_syntax(sql: str) -> None:
    assert failure(people(), sql) == "syntax"


def test_a_trailing_semicolon_is_fine() -> None:
    assert rows(people(), "SELECT id FROM people WHERE id = 1;") == [(1,)]


def test_nesting_is_limited_so_every_caller_gets_the_same_answer() -> None:
    history = people()
    limit = spec.EXPRESSION_DEPTH_MAX
    deepest = "(" * limit + "id = 1" + ")" * limit
    assert rows(history, f"SELECT id FROM people WHERE {deepest}") == [(1,)]
    too_deep = "(" * (limit + 1) + "id = 1" + ")" * (limit + 1)
    assert failure(history, f"SELECT id FROM people WHERE {too_deep}") == "limit"
    assert failure(history, "SELECT id FROM people WHERE " + "(" * 5000) == "limit"
    nots = "NOT " * limit + "id = 1"
    assert rows(history, f"SELECT id FROM people WHERE {nots}") == [(1,)]
    assert failure(history, f"SELECT id FROM people WHERE NOT {nots}") == "limit"


def test_chains_of_and_or_may_be_long() -> None:
    history = people()
    terms = " OR ".join(f"id = {value}" for value in range(2, 3000))
    assert rows(history, f"SELECT id FROM people WHERE {terms}") == [(2,), (3,), (4,)]
    terms = " AND ".join(f"id <> {value}" for value in range(2, 3000))
    assert rows(history, f"SELECT id FROM people WHERE {terms}") == [(1,)]


# ---------------------------------------------------------------- history and time travel


def test_query_at_sees_exactly_the_writes_at_or_before_the_position() -> None:
    history = spec.empty_history()
    history, _ = spec.execute(history, "CREATE TABLE t (k BIGINT PRIMARY KEY)", (), 10)
    history, _ = spec.execute(history, "INSERT INTO t VALUES (1)", (), 20)
    history, _ = spec.execute(history, "INSERT INTO t VALUES (2)", (), 30)
    history, _ = spec.execute(history, "DROP TABLE t", (), 40)
    history, _ = spec.execute(history, "CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT)", (), 50)
    history, _ = spec.execute(history, "INSERT INTO t VALUES (7, 'x')", (), 60)
    assert [position for position, _ in history.versions] == [10, 20, 30, 40, 50, 60]

    def at(position: int) -> spec.Outcome:
        return spec.query_at(history, "SELECT * FROM t", (), position)

    assert at(9) == spec.Failed("unknown_table", "t")
    assert at(10) == spec.Rows(columns=("k",), rows=())
    assert at(19) == spec.Rows(columns=("k",), rows=())
    assert at(20) == spec.Rows(columns=("k",), rows=((1,),))
    assert at(35) == spec.Rows(columns=("k",), rows=((1,), (2,)))
    assert isinstance(at(40), spec.Failed)
    assert at(55) == spec.Rows(columns=("k", "v"), rows=())
    assert at(60) == spec.Rows(columns=("k", "v"), rows=((7, "x"),))
    assert at(10**9) == at(60)
    assert spec.state_at(history, 45) == spec.empty_state()


def test_query_at_takes_parameters_and_refuses_writes() -> None:
    history = people()
    last = history.versions[-1][0]
    assert spec.query_at(history, "SELECT id FROM people WHERE id = ?", (2,), last) == spec.Rows(
        columns=("id",), rows=((2,),)
    )
    outcome = spec.query_at(history, "DELETE FROM people", (), last)
    assert isinstance(outcome, spec.Failed)
    assert outcome.kind == "unsupported"
    broken = spec.query_at(history, "SELECT id FROM", (), last)
    assert isinstance(broken, spec.Failed)
    assert broken.kind == "syntax"


def test_every_successful_write_appends_one_version_and_a_select_none() -> None:
    history = spec.empty_history()
    statements = [
        PEOPLE,
        "CREATE INDEX by_name ON people (name)",
        "INSERT INTO people (id, name) VALUES (1, 'a')",
        "UPDATE people SET score = 1",
        "DELETE FROM people WHERE id = 5",
        "DROP TABLE people",
    ]
    for count, sql in enumerate(statements, start=1):
        history = write(history, sql)
        assert len(history.versions) == count
        assert spec.is_state(spec.latest_state(history))
    answer(setup(PEOPLE), "SELECT * FROM people")


def test_a_failed_statement_leaves_history_and_state_unchanged() -> None:
    history = people()
    state = spec.latest_state(history)
    for sql in (
        "INSERT INTO people (id, name) VALUES (10, 'x'), (1, 'dup')",
        "UPDATE people SET name = NULL",
        "CREATE TABLE people (x BIGINT PRIMARY KEY)",
        "DROP TABLE nowhere",
        "garbage",
    ):
        failure(history, sql)
    assert spec.latest_state(history) is state
    assert rows(history, "SELECT COUNT(*) FROM people") == [(4,)]


def test_states_of_earlier_positions_are_never_changed_by_later_writes() -> None:
    history = people()
    earlier = spec.latest_state(history)
    snapshot = {name: dict(rows) for name, rows in earlier.rows.items()}
    later = write(history, "UPDATE people SET score = 0")
    later = write(later, "DELETE FROM people WHERE id = 1")
    assert {name: dict(rows) for name, rows in earlier.rows.items()} == snapshot
    assert later.versions[: len(history.versions)] == history.versions


# ---------------------------------------------------------------- contracts


def test_execute_needs_a_position_after_every_write() -> None:
    history = people()
    last = history.versions[-1][0]
    with pytest.raises(icontract.ViolationError):
        spec.execute(history, "SELECT * FROM people", (), last)
    with pytest.raises(icontract.ViolationError):
        spec.execute(spec.empty_history(), "SELECT 1", (), -1)
    with pytest.raises(icontract.ViolationError):
        spec.execute(history, "SELECT * FROM people", (), True)


def test_execute_needs_text() -> None:
    with pytest.raises(icontract.ViolationError):
        spec.execute(people(), b"SELECT 1", (), 99)  # type: ignore[arg-type]


def test_parameters_are_a_tuple_a_list_or_another_sequence_of_values() -> None:
    history = people()
    text = "SELECT id FROM people WHERE id = ? OR id = ?"
    _, answer = spec.execute(history, text, (1, 2), 99)
    assert isinstance(answer, spec.Rows)
    assert spec.execute(history, text, [1, 2], 99)[1] == answer
    assert spec.execute(history, text, range(1, 3), 99)[1] == answer
    assert spec.query_at(history, text, [1, 2], 99) == answer
    # A str, bytes or bytearray of the right length is not read as its characters.
    for wrong in ("12", b"\x01\x02", bytearray(b"\x01\x02"), 12, None, {1: 1, 2: 2}):
        assert spec.execute(history, text, wrong, 99)[1] == spec.Failed(
            "parameter", f"parameters given as {type(wrong).__name__}"
        )
        assert isinstance(spec.query_at(history, text, wrong, 99), spec.Failed)
    # The text is read first.
    unreadable = spec.execute(history, "SELEC 1", "1", 99)[1]
    assert isinstance(unreadable, spec.Failed) and unreadable.kind != "parameter"


def test_query_at_takes_a_log_position_checked_after_the_text_and_the_parameters() -> None:
    history = people()
    text = "SELECT id FROM people WHERE id = ?"
    assert isinstance(spec.query_at(history, text, (1,), 2**64 - 1), spec.Rows)
    for wrong in (-1, 2**64, "3", 3.0, True, None):
        with pytest.raises(InvalidArgumentError):
            spec.query_at(history, text, (1,), wrong)
        # A text, a statement or parameters that are wrong are reported first.
        assert spec.query_at(history, "SELEC 1", (1,), wrong) == spec.query_at(
            history, "SELEC 1", (1,), 0
        )
        outcome = spec.query_at(history, "DELETE FROM people", (), wrong)
        assert isinstance(outcome, spec.Failed) and outcome.kind == "unsupported"
        outcome = spec.query_at(history, text, (), wrong)
        assert isinstance(outcome, spec.Failed) and outcome.kind == "parameter"
        # ... but not a name: the position is the caller's argument.
        with pytest.raises(InvalidArgumentError):
            spec.query_at(history, "SELECT * FROM nowhere", (), wrong)


def test_a_history_with_positions_out_of_order_is_refused() -> None:
    state = spec.empty_state()
    bad = spec.History(versions=((5, state), (5, state)))
    assert not spec.is_history(bad)
    with pytest.raises(icontract.ViolationError):
        spec.query_at(bad, "SELECT * FROM t", (), 5)


def test_is_state_catches_rows_that_break_the_table() -> None:
    good = spec.latest_state(people())
    assert spec.is_state(good)
    table = good.tables["people"]
    row = (1, None, None, None, None, None)  # NULL in NOT NULL `name`
    assert not spec.is_state(spec.TablesState(tables=good.tables, rows={"people": {(1,): row}}))
    wrong_key = (2, "x", None, None, None, None)
    assert not spec.is_state(
        spec.TablesState(tables=good.tables, rows={"people": {(1,): wrong_key}})
    )
    bool_id = (True, "x", None, None, None, None)
    assert not spec.is_state(
        spec.TablesState(tables=good.tables, rows={"people": {(True,): bool_id}})
    )
    assert not spec.is_state(spec.TablesState(tables={"people": table}, rows={}))


@pytest.mark.parametrize(
    ("type_name", "value", "fits"),
    [
        (spec.BIGINT, 1, True),
        (spec.BIGINT, True, False),
        (spec.DOUBLE, 1, False),
        (spec.DOUBLE, 1.0, True),
        (spec.DOUBLE, -0.0, False),
        (spec.DOUBLE, float("nan"), False),
        (spec.TIMESTAMP, 2**63, False),
        (spec.TEXT, "x", True),
        (spec.BOOLEAN, 0, False),
        (spec.BYTES, bytearray(b"x"), False),
    ],
)
def test_fits_column_states_how_rows_store_values(
    type_name: str, value: object, fits: bool
) -> None:
    column = spec.ColumnDef(name="c", type=type_name, not_null=True)
    assert spec.fits_column(column, value) is fits
    assert spec.fits_column(column, None) is False
