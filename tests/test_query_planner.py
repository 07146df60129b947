"""The planner's choice for each shape of WHERE (through EXPLAIN), and the statement cache.

EXPLAIN says which access path a statement uses; the answers of every path are
checked against a plain filter in test_query_model.py. Here: the choice itself, and
that a cached statement never pays sqlglot's parse again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import sqlglot

from verity.errors import SqlError
from verity.query import Engine, MemoryVersionedStore, QueryResult


class Db:
    """An engine over a memory store, with writes applied at positions 1, 2, ..."""

    def __init__(self, cache_size: int = 256) -> None:
        self.store = MemoryVersionedStore()
        self.engine = Engine(self.store, cache_size=cache_size)
        self.position = 0

    def write(self, sql: str, params: Sequence[object] = ()) -> None:
        plan = self.engine.plan_write(sql, params)
        self.position += 1
        self.store.write_batch(self.position, b"h", plan.changes)


@pytest.fixture
def db() -> Db:
    db = Db()
    db.write("CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT, age BIGINT, city TEXT)")
    db.write("CREATE INDEX users_email_idx ON users (email)")
    db.write("CREATE INDEX users_age_idx ON users (age)")
    db.write(
        "CREATE TABLE visits (user_id BIGINT, day BIGINT, n BIGINT, PRIMARY KEY (user_id, day))"
    )
    for number in range(1, 6):
        db.write(
            "INSERT INTO users VALUES (?, ?, ?, ?)",
            [number, f"u{number}@x", 20 + number % 3, "c" if number % 2 else None],
        )
        db.write("INSERT INTO visits VALUES (?, 1, 1), (?, 2, 2)", [number, number])
    return db


@pytest.mark.parametrize(
    ("where", "plan"),
    [
        ("id = $1", "point lookup on users (id = $1)"),
        ("id = ?", "point lookup on users (id = ?)"),
        ("? = id", "point lookup on users (id = ?)"),
        ("id = 3 AND city = 'c'", "point lookup on users (id = 3)"),
        ("city = 'c' AND id = 3 AND email = 'u3@x'", "point lookup on users (id = 3)"),
        ("id > ?", "range scan on users (id > ?)"),
        ("id >= 2", "range scan on users (id >= 2)"),
        ("id < 2", "range scan on users (id < 2)"),
        ("id <= 2", "range scan on users (id <= 2)"),
        ("id > 1 AND id <= 4", "range scan on users (id > 1, id <= 4)"),
        ("3 > id", "range scan on users (id < 3)"),
        ("id IN (1, 3)", "range scan on users (id IN (1, 3))"),
        ("email = ?", "index scan users_email_idx on users (email = ?)"),
        ("email IN ('a', 'b')", "index scan users_email_idx on users (email IN ('a', 'b'))"),
        ("age > 20", "index scan users_age_idx on users (age > 20)"),
        ("age >= 20 AND age < 22", "index scan users_age_idx on users (age >= 20, age < 22)"),
        ("email = 'u1@x' AND id > 0", "index scan users_email_idx on users (email = 'u1@x')"),
        ("id > 0 AND age > 20", "range scan on users (id > 0)"),
        ("city = 'c'", "table scan on users"),
        ("id <> 3", "table scan on users"),
        ("id = 1 OR id = 2", "table scan on users"),
        ("NOT (id = 1)", "table scan on users"),
        ("id IS NULL", "table scan on users"),
    ],
)
def test_planner_choice_for_each_predicate_shape(db: Db, where: str, plan: str) -> None:
    assert db.engine.explain(f"SELECT * FROM users WHERE {where}") == plan


def test_no_where_is_a_table_scan(db: Db) -> None:
    assert db.engine.explain("SELECT COUNT(*) FROM users") == "table scan on users"


@pytest.mark.parametrize(
    ("where", "plan"),
    [
        ("user_id = 1 AND day = 2", "point lookup on visits (user_id = 1, day = 2)"),
        ("day = ? AND user_id = ?", "point lookup on visits (user_id = ?, day = ?)"),
        ("user_id = 1", "range scan on visits (user_id = 1)"),
        ("user_id = 1 AND day > 1", "range scan on visits (user_id = 1, day > 1)"),
        ("user_id IN (1, 2) AND day = 2", "range scan on visits (user_id IN (1, 2), day = 2)"),
        ("user_id > 3", "range scan on visits (user_id > 3)"),
        ("day = 2", "table scan on visits"),
    ],
)
def test_planner_on_a_composite_primary_key(db: Db, where: str, plan: str) -> None:
    assert db.engine.explain(f"SELECT * FROM visits WHERE {where}") == plan


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("user_id = 1 AND day = 2", [(1, 2, 2)]),
        ("user_id = 1", [(1, 1, 1), (1, 2, 2)]),
        ("user_id = 2 AND day > 1", [(2, 2, 2)]),
        ("user_id IN (3, 2, 3) AND day = 2", [(2, 2, 2), (3, 2, 2)]),
        ("user_id > 4", [(5, 1, 1), (5, 2, 2)]),
        ("user_id >= 2 AND user_id < 3", [(2, 1, 1), (2, 2, 2)]),
        ("user_id = 1 AND day < 1", []),
        ("user_id = 5 AND day >= 3", []),
        ("user_id > 3 AND user_id < 2", []),
    ],
)
def test_composite_key_ranges_answer_exactly(
    db: Db, where: str, expected: list[tuple[int, ...]]
) -> None:
    assert db.engine.query(f"SELECT * FROM visits WHERE {where}").rows == expected


def test_index_scan_answers_in_primary_key_order(db: Db) -> None:
    assert db.engine.explain("SELECT id FROM users WHERE age >= 21").startswith("index scan")
    # Ages: 1->21, 2->22, 3->20, 4->21, 5->22; the index holds them by age.
    assert db.engine.query("SELECT id FROM users WHERE age >= 21").rows == [(1,), (2,), (4,), (5,)]
    assert db.engine.query("SELECT id FROM users WHERE age IN (22, 20)").rows == [(2,), (3,), (5,)]


def test_bound_null_finds_nothing_whatever_the_path(db: Db) -> None:
    for where in ["id = ?", "id > ?", "email = ?", "age < ?", "id IN (?)"]:
        assert db.engine.query(f"SELECT * FROM users WHERE {where}", [None]).rows == []


def test_explain_for_update_and_delete_and_with_the_keyword(db: Db) -> None:
    assert db.engine.explain("explain SELECT id FROM users WHERE email = 'x'") == (
        "index scan users_email_idx on users (email = 'x')"
    )
    assert db.engine.explain("UPDATE users SET city = 'd' WHERE id > $1") == (
        "range scan on users (id > $1)"
    )
    assert db.engine.explain("DELETE FROM users WHERE city = 'c'") == "table scan on users"
    with pytest.raises(SqlError) as raised:
        db.engine.explain("INSERT INTO users (id) VALUES (1)")
    assert raised.value.kind == "unsupported"
    with pytest.raises(SqlError) as raised:
        db.engine.explain("SELECT * FROM nope WHERE id = 1")
    assert raised.value.kind == "unknown_table"
    with pytest.raises(SqlError) as raised:
        db.engine.explain("SELECT * FROM users WHERE id = ? AND age = $1")
    assert raised.value.kind == "parameter"


def test_explain_shows_literals_as_sql(db: Db) -> None:
    plan = db.engine.explain("SELECT * FROM users WHERE email IN ('it''s', NULL) AND id > -2")
    assert plan == "index scan users_email_idx on users (email IN ('it''s', NULL))"


def test_plans_follow_new_indexes(db: Db) -> None:
    sql = "SELECT id FROM users WHERE city = 'c'"
    assert db.engine.explain(sql) == "table scan on users"
    db.write("CREATE INDEX users_city_idx ON users (city)")
    assert db.engine.explain(sql) == "index scan users_city_idx on users (city = 'c')"
    assert db.engine.query(sql).rows == [(1,), (3,), (5,)]


# --- the statement cache ----------------------------------------------------------------------


def test_cached_point_lookup_never_calls_sqlglot(db: Db, monkeypatch: pytest.MonkeyPatch) -> None:
    sql = "SELECT * FROM users WHERE id = $1"
    prepared = db.engine.prepare(sql)
    assert (prepared.kind, prepared.parameter_count, prepared.is_query) == ("select", 1, True)
    first = db.engine.query(sql, [2])

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("sqlglot called for a cached statement")

    for entry_point in ("parse_one", "parse", "tokenize", "transpile"):
        monkeypatch.setattr(sqlglot, entry_point, refuse)
    assert db.engine.prepare(sql) is prepared
    for _ in range(3):
        assert db.engine.query(sql, [2]) == first
    assert db.engine.query(sql, [4]).rows[0][0] == 4
    assert db.engine.explain(sql) == "point lookup on users (id = $1)"
    # The patch is where the engine parses: a new text does reach it.
    with pytest.raises(AssertionError, match="cached statement"):
        db.engine.query("SELECT * FROM users WHERE id = ?", [2])


def test_cached_write_statements_skip_sqlglot_too(db: Db, monkeypatch: pytest.MonkeyPatch) -> None:
    sql = "INSERT INTO users (id, email) VALUES (?, ?)"
    db.write(sql, [10, "a"])
    for entry_point in ("parse_one", "parse", "tokenize"):
        monkeypatch.setattr(sqlglot, entry_point, None)
    db.write(sql, [11, "b"])
    monkeypatch.undo()
    assert db.engine.query("SELECT id FROM users WHERE id >= 10").rows == [(10,), (11,)]


def test_cache_is_bounded_lru(monkeypatch: pytest.MonkeyPatch) -> None:
    db = Db(cache_size=2)
    db.write("CREATE TABLE t (a BIGINT PRIMARY KEY)")
    calls: list[str] = []
    real_parse = sqlglot.parse

    def counting(sql: str, **kwargs: Any) -> object:
        calls.append(sql)
        return real_parse(sql, **kwargs)

    monkeypatch.setattr(sqlglot, "parse", counting)
    first, second, third = (f"SELECT * FROM t WHERE a = {number}" for number in range(3))
    for sql in [first, second, first, third, first, second]:
        db.engine.query(sql)
    # `second` was least recently used when `third` came, so only it was parsed again.
    assert calls == [first, second, third, second]


def test_failed_parses_are_not_cached_and_raise_each_time(db: Db) -> None:
    for _ in range(2):
        with pytest.raises(SqlError) as raised:
            db.engine.query("SELECT * FROM users WHERE")
        assert raised.value.kind == "syntax"


def test_prepared_statement_survives_drop_and_recreate(db: Db) -> None:
    sql = "SELECT * FROM t WHERE k = ?"
    db.write("CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT)")
    db.write("INSERT INTO t VALUES (1, 'one')")
    assert db.engine.query(sql, [1]).rows == [(1, "one")]
    db.write("DROP TABLE t")
    with pytest.raises(SqlError) as raised:
        db.engine.query(sql, [1])
    assert raised.value.kind == "unknown_table"
    db.write("CREATE TABLE t (v TEXT, k TEXT PRIMARY KEY)")
    db.write("INSERT INTO t VALUES ('uno', '1')")
    result = db.engine.query(sql, ["1"])
    assert result == QueryResult(("v", "k"), [("uno", "1")])
    with pytest.raises(SqlError) as raised:
        db.engine.query(sql, [1])
    assert raised.value.kind == "type_mismatch"
