"""Tables through the SDK: SQL writes become log records; queries answer as of any position."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import verity
from verity import DataClass, TenantId
from verity.crypto import chain_hash
from verity.errors import InvalidArgument, NotFound, SqlError

T1 = TenantId(1)
SCHEMA = "CREATE TABLE patients (id BIGINT PRIMARY KEY, name TEXT NOT NULL, ward TEXT)"


def test_writes_are_log_records_and_queries_travel_in_time(tmp_path: Path) -> None:
    with verity.open(tmp_path / "db", create=True) as db:
        t = db.tenant(T1, create=True)
        created = t.execute(SCHEMA)
        inserted = t.execute("INSERT INTO patients VALUES (1, 'ada', 'cardio'), (2, 'bob', 'onco')")
        stream = t.create_stream("audit", DataClass.PHI)  # stream records interleave
        t.append(stream, [b"x"])
        moved = t.execute("UPDATE patients SET ward = ? WHERE id = ?", ["icu", 1])
        deleted = t.execute("DELETE FROM patients WHERE id = $1", [2])
        assert (created.rows_affected, inserted.rows_affected) == (0, 2)
        assert (moved.rows_affected, deleted.rows_affected) == (1, 1)
        assert created.offset < inserted.offset < moved.offset < deleted.offset
        now = t.query("SELECT * FROM patients")
        assert now.rows == [(1, "ada", "icu")] and now.columns == ("id", "name", "ward")
        assert now.position == t.log_size() - 1
        then = t.query_at("SELECT * FROM patients", [], inserted.offset)
        assert then.rows == [(1, "ada", "cardio"), (2, "bob", "onco")]
        assert then.position == inserted.offset
        assert t.query_at("SELECT COUNT(*) FROM patients", [], created.offset).rows == [(0,)]
        # The receipt's hash is the chain hash of the statement's record: provable.
        proof = t.inclusion_proof(int(moved.offset), t.log_size())
        assert chain_hash(proof.leaf) == moved.hash  # the leaf is the statement's record
        assert b"icu" not in proof.leaf  # sealed at rest, like a PHI event


def test_a_bad_statement_names_the_construct_and_appends_nothing(tmp_path: Path) -> None:
    with verity.open(tmp_path / "db", create=True) as db:
        t = db.tenant(T1, create=True)
        t.execute(SCHEMA)
        t.execute("INSERT INTO patients VALUES (1, 'ada', NULL)")
        size = t.log_size()
        with pytest.raises(SqlError) as duplicate:
            t.execute("INSERT INTO patients VALUES (1, 'again', NULL)")
        assert duplicate.value.kind == "constraint"
        with pytest.raises(SqlError) as join:
            t.query("SELECT * FROM patients JOIN wards ON patients.ward = wards.name")
        assert join.value.kind == "unsupported"
        with pytest.raises(SqlError) as unknown:
            t.query("SELECT nope FROM patients")
        assert unknown.value.kind == "unknown_column"
        with pytest.raises(InvalidArgument, match="query"):
            t.execute("SELECT * FROM patients")
        with pytest.raises(NotFound, match="position"):
            t.query_at("SELECT * FROM patients", [], 10_000)
        assert t.log_size() == size
        assert t.query("SELECT name FROM patients").rows == [("ada",)]


def test_the_store_is_rebuilt_from_the_log_alone(tmp_path: Path) -> None:
    with verity.open(tmp_path / "db", create=True) as db:
        t = db.tenant(T1, create=True)
        t.execute(SCHEMA)
        t.execute("CREATE INDEX by_ward ON patients (ward)")
        for i in range(50):
            t.execute("INSERT INTO patients VALUES (?, ?, ?)", [i, f"p{i}", f"w{i % 4}"])
        t.execute("DELETE FROM patients WHERE ward = 'w1'")
        before = t.query("SELECT * FROM patients WHERE ward = 'w2' ORDER BY name DESC")
        middle = t.query_at("SELECT COUNT(*) FROM patients", [], 30)
    [store] = [p for p in (tmp_path / "db").rglob("store") if p.is_dir()]
    shutil.rmtree(store)
    with verity.open(tmp_path / "db", create=True) as db:
        t = db.tenant(T1, create=True)
        again = t.query("SELECT * FROM patients WHERE ward = 'w2' ORDER BY name DESC")
        assert (again.columns, again.rows) == (before.columns, before.rows)
        assert len(before.rows) == 12
        assert t.query_at("SELECT COUNT(*) FROM patients", [], 30) == middle
        assert "index" in t.explain("SELECT * FROM patients WHERE ward = 'w2'")


def test_a_crash_before_the_store_is_synced_loses_nothing(tmp_path: Path) -> None:
    db = verity.open(tmp_path / "db", create=True)
    t = db.tenant(T1, create=True)
    t.execute(SCHEMA)
    receipts = [t.execute("INSERT INTO patients VALUES (?, 'n', NULL)", [i]) for i in range(20)]
    db._abandon()  # the log is durable; the store was never synced
    with verity.open(tmp_path / "db", create=True) as reopened:
        t = reopened.tenant(T1, create=True)
        assert t.query("SELECT COUNT(*) FROM patients").rows == [(20,)]
        assert t.query_at("SELECT COUNT(*) FROM patients", [], int(receipts[4].offset)).rows == [
            (5,)
        ]


def test_table_rows_never_reach_the_disk_in_plaintext(tmp_path: Path) -> None:
    """Rows are sealed in the log (the statement's record) and in the store's pages."""
    secret = "PATIENT-7731-DIAGNOSIS-CONFIDENTIAL"
    with verity.open(tmp_path / "db", create=True) as db:
        t = db.tenant(T1, create=True)
        t.execute(SCHEMA)
        t.execute("CREATE INDEX by_ward ON patients (ward)")
        t.execute("INSERT INTO patients VALUES (?, ?, ?)", [1, secret, secret + "-WARD"])
        rows = ", ".join(f"({i}, '{secret}-{i}', 'ward')" for i in range(2, 400))
        t.execute(f"INSERT INTO patients VALUES {rows}")
        t.execute("UPDATE patients SET name = ? WHERE id = 2", [secret + "-UPDATED"])
    stored = b"".join(p.read_bytes() for p in (tmp_path / "db").rglob("*") if p.is_file())
    assert secret.encode() not in stored
    assert b"patients" not in stored  # table names and SQL text too
    with verity.open(tmp_path / "db", create=True) as db:
        t = db.tenant(T1, create=True)
        assert t.query("SELECT name FROM patients WHERE id = 1").rows == [(secret,)]
        assert t.query("SELECT COUNT(*) FROM patients WHERE ward = 'ward'").rows == [(398,)]
        # Rebuilt from the log alone (store deleted): the same, still sealed.
    for store in (tmp_path / "db").rglob("store"):
        shutil.rmtree(store)
    with verity.open(tmp_path / "db", create=True) as db:
        t = db.tenant(T1, create=True)
        assert t.query("SELECT name FROM patients WHERE id = 2").rows == [(secret + "-UPDATED",)]
    stored = b"".join(p.read_bytes() for p in (tmp_path / "db").rglob("*") if p.is_file())
    assert secret.encode() not in stored
