"""The SQL dialect of VerityDB, rule by rule, through `verity.query.Engine`.

Each test states one rule of the dialect (docs: the issue 4 interface) and checks it
on a `MemoryVersionedStore`, writing the way the SDK does: plan, append (here: count
positions), apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from verity.errors import SqlError, SqlSyntaxError, UnsupportedSql
from verity.query import (
    EXPRESSION_DEPTH_MAX,
    Engine,
    MemoryVersionedStore,
    QueryResult,
    WritePlan,
)


class Db:
    """An engine over a memory store, with writes applied at positions 1, 2, ..."""

    def __init__(self) -> None:
        self.store = MemoryVersionedStore()
        self.engine = Engine(self.store)
        self.position = 0

    def write(self, sql: str, params: Sequence[object] = ()) -> WritePlan:
        plan = self.engine.plan_write(sql, params)
        self.position += 1
        self.store.write_batch(self.position, b"hash-%d" % self.position, plan.changes)
        return plan

    def query(self, sql: str, params: Sequence[object] = ()) -> QueryResult:
        return self.engine.query(sql, params)

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        return list(self.engine.query(sql, params).rows)


def error_kind(db: Db, sql: str, params: Sequence[object] = (), *, write: bool = False) -> str:
    """The kind of SqlError that `sql` raises (and that the store did not move)."""
    applied = db.store.applied()
    with pytest.raises(SqlError) as raised:
        if write:
            db.engine.plan_write(sql, params)
        else:
            db.engine.query(sql, params)
    assert db.store.applied() == applied
    return raised.value.kind


@pytest.fixture
def db() -> Db:
    return Db()


@pytest.fixture
def users(db: Db) -> Db:
    db.write(
        "CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL, age INTEGER,"
        " score DOUBLE, active BOOLEAN, born TIMESTAMP, photo BYTES)"
    )
    db.write(
        "INSERT INTO users VALUES"
        " (3, 'carol', 41, 2.5, TRUE, 30, X'00ff'),"
        " (1, 'alice', 30, NULL, FALSE, 10, NULL),"
        " (2, 'bob', NULL, -1.0, NULL, NULL, X'')"
    )
    return db


# --- names and types -------------------------------------------------------------------


def test_identifiers_are_case_insensitive_and_reported_lower_case(db: Db) -> None:
    db.write('CREATE TABLE Users (ID BIGINT PRIMARY KEY, "Name" TEXT)')
    db.write("INSERT INTO USERS (Id, NAME) VALUES (1, 'x')")
    result = db.query("SELECT iD, nAmE FROM uSeRs WHERE ID = 1")
    assert result.columns == ("id", "name")
    assert result.rows == [(1, "x")]
    assert db.query("SELECT * FROM users").columns == ("id", "name")


def test_every_type_name_of_the_dialect_is_accepted(db: Db) -> None:
    db.write(
        "CREATE TABLE t (a BIGINT PRIMARY KEY, b INTEGER, c INT, d TEXT, e VARCHAR,"
        " f BOOLEAN, g BOOL, h DOUBLE, i REAL, j FLOAT, k TIMESTAMP, l BYTES, m BLOB)"
    )
    db.write("INSERT INTO t VALUES (1, 2, 3, 'd', 'e', TRUE, FALSE, 1.5, 2, 3.5, 99, X'01', X'02')")
    assert db.rows("SELECT * FROM t") == [
        (1, 2, 3, "d", "e", True, False, 1.5, 2.0, 3.5, 99, b"\x01", b"\x02")
    ]


@pytest.mark.parametrize("type_name", ["DECIMAL", "SMALLINT", "VARCHAR(10)", "JSON", "DATE"])
def test_other_types_are_unsupported(db: Db, type_name: str) -> None:
    sql = f"CREATE TABLE t (a BIGINT PRIMARY KEY, b {type_name})"
    assert error_kind(db, sql, write=True) == "unsupported"


@pytest.mark.parametrize(
    ("column", "value", "stored"),
    [
        ("id", -(2**63), -(2**63)),
        ("id", 2**63 - 1, 2**63 - 1),
        ("age", 7, 7),
        ("born", 1_700_000_000_000_000_000, 1_700_000_000_000_000_000),
        ("score", 3, 3.0),
        ("score", 2.25, 2.25),
        ("score", -0.0, 0.0),
        ("score", math.inf, math.inf),
        ("name", "ünï", "ünï"),
        ("active", True, True),
        ("photo", b"\x00\x01", b"\x00\x01"),
    ],
)
def test_values_a_column_accepts(users: Db, column: str, value: object, stored: object) -> None:
    key = 10 if column != "id" else value
    if column == "id":
        users.write("INSERT INTO users (id, name) VALUES (?, 'n')", [value])
    elif column == "name":
        users.write("INSERT INTO users (id, name) VALUES (10, ?)", [value])
    else:
        users.write(f"INSERT INTO users (id, name, {column}) VALUES (10, 'n', ?)", [value])
    (row,) = users.rows(f"SELECT {column} FROM users WHERE id = ?", [key])
    assert row == (stored,)
    assert type(row[0]) is type(stored)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("age", True),
        ("age", 1.0),
        ("age", "1"),
        ("age", 2**63),
        ("born", -(2**63) - 1),
        ("score", "1.5"),
        ("score", False),
        ("score", math.nan),
        ("score", 10**400),
        ("name", 5),
        ("name", b"x"),
        ("active", 1),
        ("active", "true"),
        ("photo", "00ff"),
        ("name", "\ud800"),
    ],
)
def test_values_a_column_refuses(users: Db, column: str, value: object) -> None:
    sql = f"INSERT INTO users (id, name, {column}) VALUES (10, 'n', ?)"
    if column == "name":
        sql = "INSERT INTO users (id, name) VALUES (10, ?)"
    assert error_kind(users, sql, [value], write=True) == "type_mismatch"


@pytest.mark.parametrize("value", [bytearray(b"x"), [1], 1j, object()])
def test_parameter_values_of_other_python_types_are_parameter_errors(
    users: Db, value: object
) -> None:
    sql = "INSERT INTO users (id, name, photo) VALUES (10, 'n', ?)"
    assert error_kind(users, sql, [value], write=True) == "parameter"


def test_literals_are_checked_like_parameters(users: Db) -> None:
    assert (
        error_kind(users, "INSERT INTO users (id, name) VALUES ('x', 'n')", write=True)
        == "type_mismatch"
    )
    assert (
        error_kind(users, "INSERT INTO users (id, name, active) VALUES (9, 'n', 1)", write=True)
        == "type_mismatch"
    )
    users.write("INSERT INTO users (id, name, score) VALUES (9, 'n', -4)")
    assert users.rows("SELECT score FROM users WHERE id = 9") == [(-4.0,)]


# --- DDL ---------------------------------------------------------------------------------


def test_create_table_needs_a_primary_key(db: Db) -> None:
    assert error_kind(db, "CREATE TABLE t (a BIGINT, b TEXT)", write=True) == "unsupported"


def test_primary_key_inline_or_table_level_and_composite(db: Db) -> None:
    db.write("CREATE TABLE a (x BIGINT PRIMARY KEY, y TEXT)")
    db.write("CREATE TABLE b (x BIGINT, y TEXT, PRIMARY KEY (y, x))")
    db.write("INSERT INTO b VALUES (2, 'p'), (1, 'q'), (1, 'p')")
    # Rows come in primary key order: (y, x).
    assert db.rows("SELECT * FROM b") == [(1, "p"), (2, "p"), (1, "q")]
    assert error_kind(db, "INSERT INTO b VALUES (1, 'p')", write=True) == "constraint"


def test_primary_key_columns_are_not_null(db: Db) -> None:
    db.write("CREATE TABLE t (a BIGINT, b TEXT, PRIMARY KEY (a))")
    assert error_kind(db, "INSERT INTO t VALUES (NULL, 'x')", write=True) == "constraint"
    assert error_kind(db, "INSERT INTO t (b) VALUES ('x')", write=True) == "constraint"


def test_create_existing_table_is_table_exists(users: Db) -> None:
    sql = "CREATE TABLE USERS (id BIGINT PRIMARY KEY)"
    assert error_kind(users, sql, write=True) == "table_exists"


def test_drop_unknown_table_is_unknown_table(db: Db) -> None:
    assert error_kind(db, "DROP TABLE nope", write=True) == "unknown_table"


def test_dropped_name_can_be_created_again_empty(users: Db) -> None:
    users.write("DROP TABLE users")
    assert error_kind(users, "SELECT * FROM users") == "unknown_table"
    users.write("CREATE TABLE users (id TEXT PRIMARY KEY)")
    assert users.query("SELECT * FROM users") == QueryResult(("id",), [])
    users.write("INSERT INTO users VALUES ('x')")
    assert users.rows("SELECT * FROM users") == [("x",)]


def test_create_index_rules(users: Db) -> None:
    plan = users.write("CREATE INDEX users_age ON users (age)")
    assert plan.kind == "create_index" and plan.rows_affected == 0
    assert users.rows("SELECT id FROM users WHERE age = 41") == [(3,)]
    sql = "CREATE INDEX users_age ON users (name)"
    assert error_kind(users, sql, write=True) == "table_exists"
    sql = "CREATE INDEX i2 ON nope (name)"
    assert error_kind(users, sql, write=True) == "unknown_table"
    sql = "CREATE INDEX i2 ON users (nope)"
    assert error_kind(users, sql, write=True) == "unknown_column"
    sql = "CREATE INDEX i2 ON users (name, age)"
    assert error_kind(users, sql, write=True) == "unsupported"


def test_drop_table_frees_its_index_names(users: Db) -> None:
    users.write("CREATE INDEX by_name ON users (name)")
    users.write("DROP TABLE users")
    users.write("CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT)")
    users.write("CREATE INDEX by_name ON users (name)")
    users.write("INSERT INTO users VALUES (5, 'eve')")
    assert users.rows("SELECT id FROM users WHERE name = 'eve'") == [(5,)]


# --- INSERT -------------------------------------------------------------------------------


def test_insert_several_rows_with_and_without_column_list(users: Db) -> None:
    plan = users.write("INSERT INTO users (name, id) VALUES ('dan', 5), ('erin', 4)")
    assert (plan.kind, plan.rows_affected) == ("insert", 2)
    assert users.rows("SELECT id, name, age FROM users WHERE id >= 4") == [
        (4, "erin", None),
        (5, "dan", None),
    ]


def test_insert_missing_not_null_column_is_constraint(users: Db) -> None:
    sql = "INSERT INTO users (id, age) VALUES (9, 1)"
    assert error_kind(users, sql, write=True) == "constraint"


def test_insert_explicit_null_into_not_null_is_constraint(users: Db) -> None:
    sql = "INSERT INTO users (id, name) VALUES (9, NULL)"
    assert error_kind(users, sql, write=True) == "constraint"


def test_duplicate_primary_key_changes_nothing(users: Db) -> None:
    before = users.rows("SELECT * FROM users")
    sql = "INSERT INTO users (id, name) VALUES (7, 'g'), (1, 'dup')"
    assert error_kind(users, sql, write=True) == "constraint"
    sql = "INSERT INTO users (id, name) VALUES (8, 'g'), (9, 'h'), (8, 'again')"
    assert error_kind(users, sql, write=True) == "constraint"
    assert users.rows("SELECT * FROM users") == before


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("INSERT INTO users (id, name) VALUES (1)", "syntax"),
        ("INSERT INTO users VALUES (1, 'x')", "syntax"),
        ("INSERT INTO users (id, nope) VALUES (1, 2)", "unknown_column"),
        ("INSERT INTO nope VALUES (1)", "unknown_table"),
        ("INSERT INTO users (id, name) VALUES (1 + 1, 'x')", "unsupported"),
        ("INSERT INTO users (id, name) SELECT id, name FROM users", "unsupported"),
        ("INSERT INTO users (id, name) VALUES (9, 'x') RETURNING id", "unsupported"),
        ("INSERT INTO users (id, name) VALUES (9, 'x') ON CONFLICT DO NOTHING", "unsupported"),
    ],
)
def test_insert_errors(users: Db, sql: str, kind: str) -> None:
    assert error_kind(users, sql, write=True) == kind


# --- UPDATE and DELETE ----------------------------------------------------------------------


def test_update_sets_columns_where(users: Db) -> None:
    plan = users.write("UPDATE users SET age = ?, active = TRUE WHERE age IS NULL OR age < 35", [5])
    assert (plan.kind, plan.rows_affected) == ("update", 2)
    assert users.rows("SELECT id, age, active FROM users") == [
        (1, 5, True),
        (2, 5, True),
        (3, 41, True),
    ]


def test_update_without_where_writes_every_row_and_zero_rows_is_an_event(users: Db) -> None:
    assert users.write("UPDATE users SET score = 1").rows_affected == 3
    assert users.rows("SELECT score FROM users") == [(1.0,), (1.0,), (1.0,)]
    plan = users.write("UPDATE users SET score = 2 WHERE id = 99")
    assert plan.rows_affected == 0 and plan.changes == [] and plan.event


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("UPDATE users SET id = 5 WHERE id = 1", "unsupported"),
        ("UPDATE users SET age = age + 1", "unsupported"),
        ("UPDATE users SET name = NULL", "constraint"),
        ("UPDATE users SET name = NULL WHERE id = 99", "constraint"),
        ("UPDATE users SET age = 'x'", "type_mismatch"),
        ("UPDATE users SET nope = 1", "unknown_column"),
        ("UPDATE users SET age = 1 WHERE nope = 1", "unknown_column"),
        ("UPDATE nope SET age = 1", "unknown_table"),
    ],
)
def test_update_errors(users: Db, sql: str, kind: str) -> None:
    assert error_kind(users, sql, write=True) == kind


def test_delete_where_and_delete_all(users: Db) -> None:
    plan = users.write("DELETE FROM users WHERE active = FALSE OR active IS NULL")
    assert (plan.kind, plan.rows_affected) == ("delete", 2)
    assert users.rows("SELECT id FROM users") == [(3,)]
    assert users.write("DELETE FROM users").rows_affected == 1
    assert users.rows("SELECT COUNT(*) FROM users") == [(0,)]


def test_ddl_reports_zero_rows(db: Db) -> None:
    plans = [
        db.write("CREATE TABLE t (a BIGINT PRIMARY KEY)"),
        db.write("CREATE INDEX t_a ON t (a)"),
        db.write("DROP TABLE t"),
    ]
    assert [(plan.kind, plan.rows_affected) for plan in plans] == [
        ("create_table", 0),
        ("create_index", 0),
        ("drop_table", 0),
    ]


# --- SELECT -------------------------------------------------------------------------------


def test_select_star_is_table_order_and_rows_are_primary_key_order(users: Db) -> None:
    result = users.query("SELECT * FROM users")
    assert result.columns == ("id", "name", "age", "score", "active", "born", "photo")
    assert [row[0] for row in result.rows] == [1, 2, 3]


def test_select_columns_in_the_order_named(users: Db) -> None:
    result = users.query("SELECT name, id, name FROM users WHERE id = 2")
    assert result == QueryResult(("name", "id", "name"), [("bob", 2, "bob")])


def test_count_star_is_one_row_named_count(users: Db) -> None:
    assert users.query("SELECT COUNT(*) FROM users") == QueryResult(("count",), [(3,)])
    assert users.query("SELECT count(*) FROM users WHERE id > 99") == QueryResult(
        ("count",), [(0,)]
    )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id AS x FROM users",
        "SELECT id + 1 FROM users",
        "SELECT DISTINCT name FROM users",
        "SELECT age, COUNT(*) FROM users GROUP BY age",
        "SELECT COUNT(*) FROM users HAVING COUNT(*) > 1",
        "SELECT * FROM users JOIN users AS u2 ON users.id = u2.id",
        "SELECT * FROM users, users",
        "SELECT * FROM (SELECT * FROM users) AS s",
        "SELECT * FROM users WHERE id IN (SELECT id FROM users)",
        "SELECT * FROM users UNION SELECT * FROM users",
        "SELECT UPPER(name) FROM users",
        "SELECT COUNT(id) FROM users",
        "SELECT * FROM users WHERE name LIKE 'a%'",
        "SELECT * FROM users WHERE id BETWEEN 1 AND 2",
        "SELECT * FROM users WHERE id = age",
        "SELECT * FROM users WHERE 1 = 1",
        "SELECT * FROM users WHERE active",
        "SELECT * FROM users ORDER BY 1",
        "SELECT 1",
        "SELECT * FROM users AS u",
        "WITH x AS (SELECT 1) SELECT * FROM users",
        "SELECT users.id FROM users",
        "SELECT * FROM users WHERE users.id = 1",
        "SELECT * FROM users ORDER BY age NULLS LAST",
        "SELECT * FROM users ORDER BY age DESC NULLS FIRST",
        "SELECT * FROM users WHERE id = 0x10",
        "SELECT * FROM users WHERE id = - -1",
        "SELECT * FROM users WHERE id = -?",
        "EXPLAIN SELECT * FROM users",
        "SELECT * FROM users LIMIT ALL",
        "SELECT * FROM users FETCH FIRST 2 ROWS ONLY",
    ],
)
def test_unsupported_constructs_raise_unsupported(users: Db, sql: str) -> None:
    with pytest.raises(UnsupportedSql) as raised:
        users.engine.query(sql)
    assert raised.value.kind == "unsupported"
    assert raised.value.construct  # names what was refused


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC * FROM users",
        "",
        ";",
        "SELECT * FROM users WHERE name = 'open",
        "SELECT * FROM users WHERE",
        "SELECT * FROM users; SELECT * FROM users",
        "SELECT * FROM users WHERE id IN ()",
        "SELECT * FROM users WHERE photo = X'0'",
    ],
)
def test_syntax_errors_raise_syntax(users: Db, sql: str) -> None:
    with pytest.raises(SqlSyntaxError) as raised:
        users.engine.query(sql)
    assert raised.value.kind == "syntax"


def test_empty_statements_around_one_are_ignored(users: Db) -> None:
    assert users.rows("SELECT COUNT(*) FROM users;;") == [(3,)]
    assert users.rows("; SELECT COUNT(*) FROM users") == [(3,)]


def test_nesting_up_to_the_limit_is_fine(users: Db) -> None:
    limit = EXPRESSION_DEPTH_MAX
    deep = "(" * limit + "id = 1" + ")" * limit
    assert users.rows(f"SELECT id FROM users WHERE {deep}") == [(1,)]
    assert users.rows("SELECT id FROM users WHERE " + "NOT " * limit + "id = 1") == [(1,)]
    too_deep = "(" * (limit + 1) + "id = 1" + ")" * (limit + 1)
    assert error_kind(users, f"SELECT * FROM users WHERE {too_deep}") == "limit"
    nots = "NOT " * (limit + 1) + "id = 1"
    assert error_kind(users, f"SELECT * FROM users WHERE {nots}") == "limit"


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELECT * FROM nope", "unknown_table"),
        ("SELECT nope FROM users", "unknown_column"),
        ("SELECT * FROM users WHERE nope = 1", "unknown_column"),
        ("SELECT * FROM users ORDER BY nope", "unknown_column"),
    ],
)
def test_unknown_names(users: Db, sql: str, kind: str) -> None:
    assert error_kind(users, sql) == kind


# --- WHERE ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "ids"),
    [
        ("age = 30", [1]),
        ("age <> 30", [3]),
        ("age != 30", [3]),
        ("age < 41", [1]),
        ("age <= 41", [1, 3]),
        ("age > 30", [3]),
        ("age >= 30", [1, 3]),
        ("30 < age", [3]),
        ("41 <= age", [3]),
        ("age IN (41, 30, 99)", [1, 3]),
        ("NOT (age IN (30, 30))", [3]),
        ("age IS NULL", [2]),
        ("age IS NOT NULL", [1, 3]),
        ("age = 30 OR name = 'bob'", [1, 2]),
        ("age > 1 AND name <> 'carol'", [1]),
        ("NOT (age = 30)", [3]),
        ("NOT age = 30 AND NOT name = 'bob'", [3]),
        ("(id = 1 OR id = 2) AND (score IS NULL OR score < 0)", [1, 2]),
        ("name >= 'b'", [2, 3]),
        ("photo = X'00ff'", [3]),
        ("photo < X'01'", [2, 3]),
        ("active = FALSE", [1]),
        ("score = -1", [2]),
        ("score > -1.5", [2, 3]),
        ("born >= 10 AND born < 30", [1]),
    ],
)
def test_where_conditions(users: Db, condition: str, ids: list[int]) -> None:
    assert users.rows(f"SELECT id FROM users WHERE {condition}") == [(id_,) for id_ in ids]


@pytest.mark.parametrize(
    "condition",
    [
        "age = NULL",
        "age <> NULL",
        "NOT (age = NULL)",
        "age IN (NULL)",
        "NOT (age IN (30, NULL))",
        "age > NULL OR age < NULL",
        "NOT (age > 100)",
    ],
)
def test_comparisons_with_null_are_never_true(users: Db, condition: str) -> None:
    rows = users.rows(f"SELECT id, age FROM users WHERE {condition}")
    assert all(age is not None for _, age in rows)
    assert 2 not in [id_ for id_, _ in rows]


def test_in_with_null_still_finds_matches(users: Db) -> None:
    assert users.rows("SELECT id FROM users WHERE age IN (NULL, 41)") == [(3,)]


@pytest.mark.parametrize(
    ("condition", "params"),
    [
        ("age = 'x'", ()),
        ("age = 1.5", ()),
        ("name = 1", ()),
        ("active = 1", ()),
        ("photo = 'x'", ()),
        ("age IN (1, 'x')", ()),
        ("age = ?", ["x"]),
        ("age = ?", [True]),
        ("score = ?", ["1"]),
    ],
)
def test_comparison_type_mismatch(users: Db, condition: str, params: list[object]) -> None:
    assert error_kind(users, f"SELECT * FROM users WHERE {condition}", params) == "type_mismatch"


def test_int_against_double_is_fine(users: Db) -> None:
    assert users.rows("SELECT id FROM users WHERE score = ?", [-1]) == [(2,)]
    assert users.rows("SELECT id FROM users WHERE score < 3") == [(2,), (3,)]


# --- ORDER BY, LIMIT, OFFSET ------------------------------------------------------------------


def test_order_by_nulls_first_ascending_last_descending(users: Db) -> None:
    assert users.rows("SELECT id FROM users ORDER BY age") == [(2,), (1,), (3,)]
    assert users.rows("SELECT id FROM users ORDER BY age ASC") == [(2,), (1,), (3,)]
    assert users.rows("SELECT id FROM users ORDER BY age DESC") == [(3,), (1,), (2,)]


def test_order_by_several_keys_and_ties_keep_primary_key_order(db: Db) -> None:
    db.write("CREATE TABLE t (id BIGINT PRIMARY KEY, g TEXT, v BIGINT)")
    db.write(
        "INSERT INTO t VALUES (5, 'a', 1), (1, 'b', 2), (4, 'a', 2), (2, 'a', 1), (3, NULL, 1)"
    )
    assert db.rows("SELECT id FROM t ORDER BY g") == [(3,), (2,), (4,), (5,), (1,)]
    assert db.rows("SELECT id FROM t ORDER BY g DESC, v DESC") == [
        (1,),
        (4,),
        (2,),
        (5,),
        (3,),
    ]
    assert db.rows("SELECT id FROM t ORDER BY v, g DESC") == [(2,), (5,), (3,), (1,), (4,)]


def test_limit_and_offset_literal_or_parameter(users: Db) -> None:
    assert users.rows("SELECT id FROM users LIMIT 2") == [(1,), (2,)]
    assert users.rows("SELECT id FROM users LIMIT 2 OFFSET 2") == [(3,)]
    assert users.rows("SELECT id FROM users OFFSET 1") == [(2,), (3,)]
    assert users.rows("SELECT id FROM users ORDER BY id DESC LIMIT ? OFFSET ?", [1, 1]) == [(2,)]
    assert users.rows("SELECT id FROM users OFFSET ? LIMIT ?", [1, 1]) == [(2,)]
    assert users.rows("SELECT id FROM users LIMIT 0") == []
    assert users.rows("SELECT COUNT(*) FROM users LIMIT 1 OFFSET 1") == []


@pytest.mark.parametrize(
    ("clause", "params"),
    [
        ("LIMIT -1", ()),
        ("LIMIT 1.5", ()),
        ("LIMIT 'x'", ()),
        ("LIMIT NULL", ()),
        ("LIMIT TRUE", ()),
        ("OFFSET -2", ()),
        ("LIMIT ?", [-1]),
        ("LIMIT ?", [True]),
        ("OFFSET ?", ["1"]),
    ],
)
def test_limit_offset_must_be_non_negative_ints(
    users: Db, clause: str, params: list[object]
) -> None:
    assert error_kind(users, f"SELECT * FROM users {clause}", params) == "type_mismatch"


# --- parameters -----------------------------------------------------------------------------


def test_positional_and_numbered_parameters(users: Db) -> None:
    assert users.rows("SELECT id FROM users WHERE age > ? AND name <> ?", [0, "alice"]) == [(3,)]
    assert users.rows("SELECT id FROM users WHERE name <> $2 AND age > $1", [0, "alice"]) == [(3,)]
    assert users.rows("SELECT id FROM users WHERE id = $1 OR age = $1", [1]) == [(1,)]


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT * FROM users WHERE id = ? AND age = $2", [1, 2]),
        ("SELECT * FROM users WHERE id = $1 AND age = ?", [1, 2]),
        ("SELECT * FROM users WHERE id = ?", []),
        ("SELECT * FROM users WHERE id = ?", [1, 2]),
        ("SELECT * FROM users WHERE id = $2", [1]),
        ("SELECT * FROM users", [1]),
        ("SELECT * FROM users WHERE id = $0", []),
        ("SELECT * FROM users WHERE id = $1 OR id = $3", [1, 2, 3]),
        ("SELECT * FROM users WHERE id = :name", [1]),
        ("SELECT * FROM users WHERE id = ?", "1"),
        ("SELECT * FROM users WHERE id = ?", {1: 1}),
    ],
)
def test_parameter_errors(users: Db, sql: str, params: Sequence[object]) -> None:
    assert error_kind(users, sql, params) == "parameter"


def test_parameters_in_writes(users: Db) -> None:
    users.write("INSERT INTO users (id, name, photo) VALUES ($1, $2, $3)", (7, "gus", b"\x07"))
    users.write("UPDATE users SET name = ? WHERE id = ?", ["gil", 7])
    assert users.rows("SELECT name, photo FROM users WHERE id = 7") == [("gil", b"\x07")]
    users.write("DELETE FROM users WHERE id = $1", [7])
    assert users.rows("SELECT COUNT(*) FROM users") == [(3,)]


# --- statement routing -----------------------------------------------------------------------


def test_query_refuses_writes_and_plan_write_refuses_queries(users: Db) -> None:
    assert error_kind(users, "DELETE FROM users") == "unsupported"
    assert error_kind(users, "SELECT * FROM users", write=True) == "unsupported"
    assert users.rows("SELECT COUNT(*) FROM users") == [(3,)]


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE IF NOT EXISTS t (a BIGINT PRIMARY KEY)",
        "CREATE TEMPORARY TABLE t (a BIGINT PRIMARY KEY)",
        "CREATE TABLE t (a BIGINT PRIMARY KEY, b BIGINT UNIQUE)",
        "CREATE TABLE t (a BIGINT PRIMARY KEY, b BIGINT DEFAULT 3)",
        "CREATE TABLE t (a BIGINT PRIMARY KEY, b BIGINT NULL)",
        "CREATE TABLE t (a BIGINT CONSTRAINT pk PRIMARY KEY)",
        "CREATE TABLE t AS SELECT * FROM users",
        "CREATE UNIQUE INDEX i ON users (age)",
        "CREATE INDEX ON users (age)",
        "DROP TABLE IF EXISTS users",
        "DROP TABLE users, users",
        "DROP INDEX i",
        "ALTER TABLE users ADD COLUMN x BIGINT",
        "TRUNCATE users",
    ],
)
def test_unsupported_ddl(users: Db, sql: str) -> None:
    assert error_kind(users, sql, write=True) == "unsupported"


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE t (a BIGINT PRIMARY KEY, b BIGINT PRIMARY KEY)",
        "CREATE TABLE t (a BIGINT, b TEXT, PRIMARY KEY (a), PRIMARY KEY (b))",
        "CREATE TABLE t (a BIGINT PRIMARY KEY, a TEXT)",
        "CREATE TABLE t (a BIGINT, PRIMARY KEY (a, a))",
        "INSERT INTO users (id, id) VALUES (1, 2)",
        "UPDATE users SET age = 1, age = 2",
    ],
)
def test_names_twice_and_several_primary_keys_are_syntax(users: Db, sql: str) -> None:
    assert error_kind(users, sql, write=True) == "syntax"


def test_primary_key_naming_an_unknown_column(db: Db) -> None:
    sql = "CREATE TABLE t (a BIGINT, PRIMARY KEY (b))"
    assert error_kind(db, sql, write=True) == "unknown_column"
    db.write("CREATE TABLE t (a BIGINT PRIMARY KEY)")
    assert error_kind(db, sql, write=True) == "table_exists"  # the name is checked first


# --- which fault is reported when a statement has several (the spec's order) -------------


@pytest.mark.parametrize(
    ("sql", "params", "kind"),
    [
        # parameters before names
        ("SELECT * FROM nope WHERE id = ?", [], "parameter"),
        ("INSERT INTO nope VALUES (?)", [], "parameter"),
        # names before an INSERT row's length, and that before types
        ("INSERT INTO nope (a) VALUES (1, 2)", [], "unknown_table"),
        ("INSERT INTO users (id, nope) VALUES (1)", [], "unknown_column"),
        ("INSERT INTO users (id, name) VALUES ('x')", [], "syntax"),
        # names before types
        ("SELECT * FROM users WHERE age = 'x' AND nope = 1", [], "unknown_column"),
        ("SELECT age FROM users WHERE age = 'x' ORDER BY nope", [], "unknown_column"),
        ("UPDATE users SET age = 'x' WHERE nope = 1", [], "unknown_column"),
        ("UPDATE users SET id = 'x' WHERE nope = 1", [], "unknown_column"),
        ("UPDATE users SET id = 'x'", [], "unsupported"),
        ("DELETE FROM users WHERE age = 'x' OR nope IS NULL", [], "unknown_column"),
        # every type before any constraint
        ("INSERT INTO users (id, name) VALUES (1, 'dup'), (9, 5)", [], "type_mismatch"),
        ("INSERT INTO users (id, name) VALUES (9, NULL), (10, 5)", [], "type_mismatch"),
        ("INSERT INTO users (id, age) VALUES (9, 'x')", [], "type_mismatch"),
        ("UPDATE users SET name = NULL WHERE age = 'x'", [], "type_mismatch"),
        ("UPDATE users SET name = NULL, age = ?", ["x"], "type_mismatch"),
    ],
)
def test_order_of_checks(users: Db, sql: str, params: list[object], kind: str) -> None:
    write = not sql.startswith("SELECT")
    assert error_kind(users, sql, params, write=write) == kind


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM t WHERE k = 'x' LIMIT 0",
        "SELECT * FROM t WHERE k IN (NULL) AND v = 'x'",
        "SELECT * FROM t WHERE k > NULL AND k < 'x'",
        "SELECT COUNT(*) FROM t WHERE v = 'x'",
        "SELECT * FROM t LIMIT 'x'",
    ],
)
def test_values_are_checked_even_when_no_row_is_read(db: Db, sql: str) -> None:
    db.write("CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT)")
    db.write("CREATE INDEX t_v ON t (v)")
    assert error_kind(db, sql) == "type_mismatch"
