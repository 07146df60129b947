"""Time travel, rebuilding from the log alone, and the store the engine reads through.

The state as of position p includes every write whose position is <= p. Each write is
one event; replaying the events' changes (`changes_of_event`) into a fresh store gives
the same answers at every position. A failed statement produces no event and the
engine never writes to the store.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from verity.errors import InvalidArgument, SqlError
from verity.query import (
    Change,
    Engine,
    MemoryVersionedStore,
    VersionedStore,
    WritePlan,
    changes_of_event,
    decode_event,
)


class Db:
    """An engine over a memory store; keeps the log of (position, event)."""

    def __init__(self) -> None:
        self.store = MemoryVersionedStore()
        self.engine = Engine(self.store)
        self.log: list[tuple[int, bytes]] = []

    def write(self, sql: str, params: Sequence[object] = ()) -> int:
        plan = self.engine.plan_write(sql, params)
        position = len(self.log) + 1
        self.log.append((position, plan.event))
        self.store.write_batch(position, b"hash-%d" % position, plan.changes)
        return position

    def rows(self, sql: str, params: Sequence[object] = (), as_of: int | None = None) -> object:
        return self.engine.query(sql, params, as_of).rows


def test_time_travel_through_insert_update_delete_drop_and_recreate() -> None:
    db = Db()
    created = db.write("CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT)")
    inserted = db.write("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    updated = db.write("UPDATE t SET v = 'B' WHERE k = 2")
    deleted = db.write("DELETE FROM t WHERE k = 1")
    dropped = db.write("DROP TABLE t")
    recreated = db.write("CREATE TABLE t (k TEXT PRIMARY KEY)")
    refilled = db.write("INSERT INTO t VALUES ('z')")
    query = "SELECT * FROM t"
    assert db.rows(query, as_of=created) == []
    assert db.rows(query, as_of=inserted) == [(1, "a"), (2, "b")]
    assert db.rows(query, as_of=updated) == [(1, "a"), (2, "B")]
    assert db.rows(query, as_of=deleted) == [(2, "B")]
    assert db.rows(query, as_of=recreated) == []
    assert db.rows(query, as_of=refilled) == db.rows(query) == [("z",)]
    assert db.engine.query(query, as_of=updated).columns == ("k", "v")
    assert db.engine.query(query, as_of=refilled).columns == ("k",)
    for before_table in (0, dropped):
        with pytest.raises(SqlError) as raised:
            db.engine.query(query, as_of=before_table)
        assert raised.value.kind == "unknown_table"
        assert f"as of position {before_table}" in str(raised.value)
    # The same prepared text plans for whichever table existed then.
    assert db.rows("SELECT * FROM t WHERE k = ?", [2], as_of=updated) == [(2, "B")]
    assert db.rows("SELECT * FROM t WHERE k = ?", ["z"]) == [("z",)]


def test_time_travel_through_indexes() -> None:
    db = Db()
    db.write("CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT)")
    first = db.write("INSERT INTO t VALUES (1, 'x'), (2, 'y')")
    indexed = db.write("CREATE INDEX t_v ON t (v)")
    moved = db.write("UPDATE t SET v = 'y' WHERE k = 1")
    gone = db.write("DELETE FROM t WHERE v = 'y'")
    query = "SELECT k FROM t WHERE v = ?"
    assert db.engine.explain(query, as_of=first) == "table scan on t"
    assert db.engine.explain(query, as_of=indexed) == "index scan t_v on t (v = ?)"
    assert db.rows(query, ["x"], as_of=first) == [(1,)]
    assert db.rows(query, ["x"], as_of=indexed) == [(1,)]
    assert db.rows(query, ["y"], as_of=indexed) == [(2,)]
    assert db.rows(query, ["y"], as_of=moved) == [(1,), (2,)]
    assert db.rows(query, ["x"], as_of=moved) == []
    assert db.rows(query, ["y"], as_of=gone) == []


def test_as_of_beyond_the_log_sees_the_latest_state_and_bad_positions_are_refused() -> None:
    db = Db()
    db.write("CREATE TABLE t (k BIGINT PRIMARY KEY)")
    db.write("INSERT INTO t VALUES (1)")
    assert db.rows("SELECT * FROM t", as_of=1000) == [(1,)]
    for bad in (-1, True, 1.5):
        with pytest.raises(InvalidArgument):
            db.engine.query("SELECT * FROM t", as_of=bad)  # type: ignore[arg-type]


def build_history() -> tuple[Db, list[str]]:
    db = Db()
    db.write("CREATE TABLE people (id BIGINT PRIMARY KEY, name TEXT NOT NULL, age BIGINT)")
    db.write("INSERT INTO people VALUES (1, 'ann', 30), (2, 'ben', NULL), (3, 'cy', 41)")
    db.write("CREATE INDEX people_age ON people (age)")
    db.write("CREATE TABLE tags (id BIGINT, tag TEXT, PRIMARY KEY (id, tag))")
    db.write("INSERT INTO tags VALUES (1, 'x'), (1, 'y'), (3, 'x')")
    db.write("UPDATE people SET age = 31 WHERE id = 1")
    db.write("UPDATE people SET age = 7 WHERE age IS NULL")
    db.write("DELETE FROM tags WHERE tag = 'x'")
    db.write("UPDATE people SET name = 'nobody' WHERE id = 99")
    db.write("DROP TABLE people")
    db.write("CREATE TABLE people (id BIGINT PRIMARY KEY, nick TEXT)")
    db.write("CREATE INDEX people_age ON people (nick)")
    db.write("INSERT INTO people VALUES (1, 'a'), (5, NULL)")
    queries = [
        "SELECT * FROM people",
        "SELECT COUNT(*) FROM people",
        "SELECT id FROM people WHERE age > 10",
        "SELECT id FROM people WHERE nick IS NULL",
        "SELECT id FROM people WHERE nick = 'a'",
        "SELECT * FROM tags",
        "SELECT tag FROM tags WHERE id = 1",
    ]
    return db, queries


def answers(engine: Engine, queries: list[str], position: int) -> list[object]:
    result: list[object] = []
    for sql in queries:
        try:
            result.append(engine.query(sql, as_of=position).rows)
        except SqlError as error:
            result.append(error.kind)
    return result


def test_rebuilding_from_events_alone_gives_identical_answers() -> None:
    db, queries = build_history()
    rebuilt = MemoryVersionedStore()
    for position, event in db.log:
        rebuilt.write_batch(position, b"hash-%d" % position, changes_of_event(event))
    assert rebuilt.applied() == db.store.applied()
    fresh = Engine(rebuilt)
    for position in range(len(db.log) + 1):
        assert answers(fresh, queries, position) == answers(db.engine, queries, position)
    assert answers(fresh, queries, len(db.log))[0] == [(1, "a"), (5, None)]


def test_events_describe_the_statement_and_hold_its_changes() -> None:
    db = Db()
    db.write("CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT)")
    sql = "INSERT INTO t VALUES (?, ?), (2, 'b')"
    plan = db.engine.plan_write(sql, [1, "a"])
    decoded = decode_event(plan.event)
    assert (decoded.kind, decoded.table, decoded.rows_affected, decoded.sql) == (
        "insert",
        "t",
        2,
        sql,
    )
    assert decoded.changes == plan.changes == changes_of_event(plan.event)
    assert len(plan.changes) == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda event: event[:-1],
        lambda event: event + b"\x00",
        lambda event: b"XQL" + event[3:],
        lambda event: event[:3] + b"\x02" + event[4:],
        lambda event: event[:4] + b"\x09" + event[5:],
        lambda event: b"",
    ],
    ids=["truncated", "trailing", "magic", "format", "kind", "empty"],
)
def test_damaged_events_are_refused(damage: object) -> None:
    db = Db()
    plan = db.engine.plan_write("CREATE TABLE t (k BIGINT PRIMARY KEY)")
    assert callable(damage)
    with pytest.raises(InvalidArgument):
        decode_event(damage(plan.event))


class RecordingStore:
    """A VersionedStore that forwards reads and counts every call that could write."""

    def __init__(self, inner: MemoryVersionedStore) -> None:
        self.inner = inner
        self.write_calls = 0

    def write_batch(self, position: int, log_hash: bytes, changes: Sequence[Change]) -> None:
        self.write_calls += 1
        self.inner.write_batch(position, log_hash, changes)

    def get(self, tree: str, key: bytes, as_of: int | None = None) -> bytes | None:
        return self.inner.get(tree, key, as_of)

    def scan(
        self,
        tree: str,
        low: bytes | None = None,
        high: bytes | None = None,
        *,
        as_of: int | None = None,
        low_inclusive: bool = True,
        high_inclusive: bool = True,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.scan(
            tree,
            low,
            high,
            as_of=as_of,
            low_inclusive=low_inclusive,
            high_inclusive=high_inclusive,
            reverse=reverse,
        )

    def applied(self) -> tuple[int, bytes] | None:
        return self.inner.applied()


def test_the_engine_never_writes_and_errors_leave_the_store_unchanged() -> None:
    db, queries = build_history()
    recording = RecordingStore(db.store)
    store: VersionedStore = recording
    engine = Engine(store)
    before = answers(engine, queries, len(db.log))
    failing = [
        ("INSERT INTO people VALUES (6, 'f'), (1, 'dup')", []),
        ("INSERT INTO people VALUES (7, 'g'), (7, 'dup')", []),
        ("INSERT INTO people VALUES (?, 'x')", ["not an int"]),
        ("UPDATE people SET id = 2", []),
        ("UPDATE people SET nick = 5", []),
        ("DELETE FROM nope", []),
        ("CREATE TABLE people (id BIGINT PRIMARY KEY)", []),
        ("CREATE INDEX people_age ON people (id)", []),
        ("DROP TABLE nope", []),
        ("INSERT INTO people VALUES (8, 'h'", []),
    ]
    for sql, params in failing:
        with pytest.raises(SqlError):
            engine.plan_write(sql, params)
    plan: WritePlan = engine.plan_write("INSERT INTO people VALUES (9, 'i')")
    assert plan.rows_affected == 1
    assert recording.write_calls == 0
    assert answers(engine, queries, len(db.log)) == before


# --- the reference store --------------------------------------------------------------------


def test_memory_store_versions_reads_and_scans() -> None:
    store = MemoryVersionedStore()
    assert store.applied() is None
    store.write_batch(1, b"one", [("a", b"k1", b"v1"), ("a", b"k3", b"v3")])
    store.write_batch(3, b"three", [("a", b"k2", b"v2"), ("a", b"k1", None), ("b", b"x", b"y")])
    store.write_batch(4, b"four", [("a", b"k3", b"v3'"), ("a", b"k3", b"v3''")])
    assert store.applied() == (4, b"four")
    assert store.get("a", b"k1") is None
    assert store.get("a", b"k1", as_of=1) == b"v1"
    assert store.get("a", b"k1", as_of=2) == b"v1"
    assert store.get("a", b"k1", as_of=0) is None
    assert store.get("a", b"k3") == b"v3''"  # the last change of a batch wins
    assert store.get("nope", b"k1") is None
    assert list(store.scan("a")) == [(b"k2", b"v2"), (b"k3", b"v3''")]
    assert list(store.scan("a", as_of=2)) == [(b"k1", b"v1"), (b"k3", b"v3")]
    assert list(store.scan("a", b"k1", b"k2", as_of=3)) == [(b"k2", b"v2")]
    assert list(store.scan("a", b"k2", b"k3", high_inclusive=False)) == [(b"k2", b"v2")]
    assert list(store.scan("a", b"k2", low_inclusive=False)) == [(b"k3", b"v3''")]
    assert list(store.scan("a", reverse=True)) == [(b"k3", b"v3''"), (b"k2", b"v2")]
    assert list(store.scan("a", b"k3", b"k1")) == []
    assert list(store.scan("nope")) == []


@pytest.mark.parametrize(
    ("position", "log_hash", "changes"),
    [
        (2, b"h", []),
        (1, b"h", []),
        (-1, b"h", []),
        (5, "h", []),
        (5, b"h", [("t", "key", b"v")]),
        (5, b"h", [("t", b"key", "v")]),
        (5, b"h", [(1, b"key", b"v")]),
    ],
)
def test_memory_store_refuses_bad_batches_and_changes_nothing(
    position: int, log_hash: bytes, changes: list[Change]
) -> None:
    store = MemoryVersionedStore()
    store.write_batch(2, b"two", [("t", b"k", b"v")])
    with pytest.raises(InvalidArgument):
        store.write_batch(position, log_hash, [*changes, ("t", b"k", None)])
    assert store.applied() == (2, b"two")
    assert store.get("t", b"k") == b"v"
