"""The PEP 249 driver, as a DB-API user sees it."""

from __future__ import annotations

from pathlib import Path

import pytest

import verity.dbapi as dbapi
from verity.errors import SqlLimitExceeded
from verity.query import IN_LIST_MAX, ROW_BYTES_MAX, SQL_TEXT_BYTES_MAX


def test_module_globals() -> None:
    assert dbapi.apilevel == "2.0"
    assert dbapi.paramstyle == "qmark"
    assert dbapi.threadsafety == 1
    assert issubclass(dbapi.IntegrityError, dbapi.DatabaseError)
    assert issubclass(dbapi.DatabaseError, dbapi.Error)
    assert dbapi.Timestamp(1970, 1, 1, 0, 0, 1) == 1_000_000_000


def test_execute_fetch_and_description(tmp_path: Path) -> None:
    with dbapi.connect(tmp_path / "db", tenant=3) as connection:
        cursor = connection.cursor()
        cursor.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT, photo BYTES)")
        assert cursor.rowcount == 0
        cursor.executemany(
            "INSERT INTO t VALUES (?, ?, ?)", [(1, "ada", b"\x00"), (2, "bob", None)]
        )
        assert cursor.rowcount == 2
        connection.commit()
        cursor.execute("SELECT id, name, photo FROM t ORDER BY id")
        assert cursor.description is not None
        names = [column[0] for column in cursor.description]
        assert names == ["id", "name", "photo"]
        assert cursor.description[0][1] == dbapi.NUMBER
        assert cursor.description[1][1] == dbapi.STRING
        assert cursor.description[2][1] == dbapi.BINARY
        assert cursor.fetchone() == (1, "ada", b"\x00")
        assert cursor.fetchmany(5) == [(2, "bob", None)]
        assert cursor.fetchall() == []
        cursor.execute("SELECT name FROM t WHERE id = ?", (2,))
        assert list(cursor) == [("bob",)]


def test_errors_map_to_the_standard_classes(tmp_path: Path) -> None:
    with dbapi.connect(tmp_path / "db") as connection:
        cursor = connection.cursor()
        cursor.execute("CREATE TABLE t (id BIGINT PRIMARY KEY)")
        cursor.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(dbapi.IntegrityError):
            cursor.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(dbapi.ProgrammingError):
            cursor.execute("SELECT * FROM nowhere")
        with pytest.raises(dbapi.ProgrammingError):
            cursor.execute("SELEC * FROM t")
        with pytest.raises(dbapi.NotSupportedError):
            cursor.execute("SELECT * FROM t JOIN t AS u ON t.id = u.id")
        with pytest.raises(dbapi.DataError):
            cursor.execute("INSERT INTO t VALUES ('text')")
        with pytest.raises(dbapi.NotSupportedError):
            connection.rollback()
        with pytest.raises(dbapi.InterfaceError):
            dbapi.Cursor(connection).fetchone()
    with pytest.raises(dbapi.InterfaceError):
        connection.cursor()


def test_a_size_over_a_sql_limit_is_a_data_error(tmp_path: Path) -> None:
    # SqlLimitExceeded (kind "limit") is about the data's size: PEP 249's DataError.
    with dbapi.connect(tmp_path / "db") as connection:
        cursor = connection.cursor()
        cursor.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, note TEXT)")
        over_in_list = "SELECT id FROM t WHERE id IN (" + ", ".join(["1"] * (IN_LIST_MAX + 1)) + ")"
        over_row = ("INSERT INTO t VALUES (?, ?)", (1, "n" * ROW_BYTES_MAX))
        over_text = "INSERT INTO t VALUES (1, 'a') -- " + "x" * SQL_TEXT_BYTES_MAX
        for operation, parameters in ((over_in_list, ()), over_row, (over_text, ())):
            with pytest.raises(dbapi.DataError) as raised:
                cursor.execute(operation, parameters)
            cause = raised.value.__cause__
            assert isinstance(cause, SqlLimitExceeded), cause
            assert cause.limit in str(raised.value)
        with pytest.raises(dbapi.DataError):
            cursor.executemany("INSERT INTO t VALUES (?, ?)", [(2, "b"), over_row[1]])
        cursor.execute("SELECT id, note FROM t")
        assert cursor.fetchall() == [(2, "b")]  # the statement before it ran; nothing else


def test_data_survives_reconnecting(tmp_path: Path) -> None:
    with dbapi.connect(tmp_path / "db") as connection:
        connection.cursor().execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v DOUBLE)")
        connection.cursor().execute("INSERT INTO t VALUES (1, 2)")
    with dbapi.connect(tmp_path / "db") as connection:
        cursor = connection.cursor().execute("SELECT v FROM t")
        assert cursor.fetchall() == [(2.0,)]
