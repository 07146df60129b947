"""A PEP 249 (DB-API 2.0) driver for the embedded VerityDB.

    import verity.dbapi
    connection = verity.dbapi.connect("data/", tenant=1)
    cursor = connection.cursor()
    cursor.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT)")
    cursor.executemany("INSERT INTO t VALUES (?, ?)", [(1, "ada"), (2, "bob")])
    cursor.execute("SELECT name FROM t WHERE id = ?", (2,))
    cursor.fetchone()   # ('bob',)

Transactions: every statement is its own durable, hash-chained log record
the moment `execute` returns (autocommit). `commit()` therefore does nothing,
and `rollback()` raises `NotSupportedError`: nothing written to the log is
ever undone. `executemany` runs one statement per parameter set.

`cursor.description` gives each column's name and a type code inferred from
the values returned (NUMBER, STRING, BINARY; STRING when every value is NULL).
TIMESTAMP columns hold ints (ns since the Unix epoch, UTC); `Timestamp(...)`
builds one.

Errors map from `verity.errors`: syntax, unknown names, duplicate tables and
parameter mistakes are `ProgrammingError`; unsupported SQL is
`NotSupportedError`; type mismatches, and sizes over a SQL limit
(`SqlLimitExceeded`, docs/sdk.md "SQL limits"), are `DataError`; violated
constraints are `IntegrityError`; corruption is `InternalError`; a closed
connection or cursor is `InterfaceError`; anything else is `DatabaseError`.
The original error is the exception's `__cause__`.
"""

from __future__ import annotations

import calendar
import datetime
import fractions
import math
import os
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Final, final

import verity
from verity.errors import (
    ClosedError,
    CorruptionError,
    InvalidArgument,
    SqlError,
    VerityError,
)
from verity.types import TenantId

__all__ = [
    "BINARY",
    "DATETIME",
    "NUMBER",
    "ROWID",
    "STRING",
    "Binary",
    "Connection",
    "Cursor",
    "DataError",
    "DatabaseError",
    "Date",
    "DateFromTicks",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "Warning",
    "apilevel",
    "connect",
    "paramstyle",
    "threadsafety",
]

apilevel: Final = "2.0"
threadsafety: Final = 1  # threads may share the module, not connections
paramstyle: Final = "qmark"


class Warning(Exception):  # the name PEP 249 requires
    """Important warnings (none are raised today)."""


class Error(Exception):
    """Base of every DB-API error."""


class InterfaceError(Error):
    """The driver was misused (a closed connection or cursor, fetch before execute)."""


class DatabaseError(Error):
    """An error of the database."""


class DataError(DatabaseError):
    """A value does not fit its column's type."""


class OperationalError(DatabaseError):
    """The database could not do its work (IO, keys)."""


class IntegrityError(DatabaseError):
    """A constraint was violated (duplicate primary key, NOT NULL)."""


class InternalError(DatabaseError):
    """Stored data is corrupt."""


class ProgrammingError(DatabaseError):
    """Bad SQL, unknown names, wrong parameters."""


class NotSupportedError(DatabaseError):
    """SQL or an API VerityDB does not support."""


_KIND_TO_ERROR: Final[dict[str, type[DatabaseError]]] = {
    "syntax": ProgrammingError,
    "unknown_table": ProgrammingError,
    "unknown_column": ProgrammingError,
    "table_exists": ProgrammingError,
    "parameter": ProgrammingError,
    "unsupported": NotSupportedError,
    "type_mismatch": DataError,
    "limit": DataError,  # SqlLimitExceeded: a size over a documented bound
    "constraint": IntegrityError,
}


def _translated(failure: VerityError) -> Error:
    if isinstance(failure, SqlError):
        return _KIND_TO_ERROR.get(failure.kind, DatabaseError)(str(failure))
    if isinstance(failure, CorruptionError):
        return InternalError(str(failure))
    if isinstance(failure, ClosedError):
        return InterfaceError(str(failure))
    if isinstance(failure, InvalidArgument):
        return ProgrammingError(str(failure))
    return DatabaseError(str(failure))


class _TypeCode:
    """A PEP 249 type object: equal to every type code of its group."""

    def __init__(self, *names: str) -> None:
        self.names = frozenset(names)

    def __eq__(self, other: object) -> bool:
        return other in self.names if isinstance(other, str) else other is self

    def __hash__(self) -> int:
        return hash(self.names)


STRING: Final = _TypeCode("TEXT")
BINARY: Final = _TypeCode("BYTES")
NUMBER: Final = _TypeCode("BIGINT", "DOUBLE", "BOOLEAN")
DATETIME: Final = _TypeCode("TIMESTAMP")
ROWID: Final = _TypeCode()


def Date(year: int, month: int, day: int) -> datetime.date:  # PEP 249 name
    return datetime.date(year, month, day)


def Time(hour: int, minute: int, second: int) -> datetime.time:  # PEP 249 name
    return datetime.time(hour, minute, second)


def Timestamp(  # PEP 249 name
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> int:
    """A TIMESTAMP value: ns since the Unix epoch, UTC."""
    moment = datetime.datetime(year, month, day, hour, minute, second)
    return calendar.timegm(moment.timetuple()) * 1_000_000_000


def DateFromTicks(ticks: float) -> datetime.date:  # PEP 249 name
    return datetime.datetime.fromtimestamp(ticks, datetime.UTC).date()


def TimeFromTicks(ticks: float) -> datetime.time:  # PEP 249 name
    return datetime.datetime.fromtimestamp(ticks, datetime.UTC).time()


def TimestampFromTicks(ticks: float) -> int:  # PEP 249 name
    """A TIMESTAMP value: the ns (floored) of `ticks` seconds since the Unix epoch, UTC.

    Exact for the float given: `ticks * 1e9` in floating point would lose the
    low digits of any present-day time (1167609600.25 s is 1167609600249999872).
    """
    return math.floor(fractions.Fraction(ticks) * 1_000_000_000)


def Binary(data: bytes) -> bytes:  # PEP 249 name
    return bytes(data)


def _type_code(values: list[object]) -> str:
    for value in values:
        if isinstance(value, bytes):
            return "BYTES"
        if isinstance(value, bool):
            return "BOOLEAN"
        if isinstance(value, int):
            return "BIGINT"
        if isinstance(value, float):
            return "DOUBLE"
        if isinstance(value, str):
            return "TEXT"
    return "TEXT"


def _is_query(sql: str) -> bool:
    # Routing only: the engine decides what the statement really is.
    return sql.lstrip().lstrip("(").split(None, 1)[0].upper() in ("SELECT", "EXPLAIN")


@final
class Cursor:
    """A DB-API cursor over one connection's tenant."""

    arraysize: int

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._rows: list[tuple[object, ...]] = []
        self._next_row = 0
        self._closed = False
        self.arraysize = 1
        self.description: tuple[tuple[str, object, None, None, None, None, None], ...] | None
        self.description = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    def _check(self) -> verity.TenantHandle:
        if self._closed:
            raise InterfaceError("cursor is closed")
        return self._connection._handle()

    def execute(self, operation: str, parameters: Sequence[object] = ()) -> Cursor:
        handle = self._check()
        self._rows, self._next_row, self.description, self.rowcount = [], 0, None, -1
        try:
            if _is_query(operation):
                result = handle.query(operation, parameters)
                self._rows = list(result.rows)
                self.description = tuple(
                    (name, _type_code([row[i] for row in self._rows]), None, None, None, None, None)
                    for i, name in enumerate(result.columns)
                )
                self.rowcount = len(self._rows)
            else:
                receipt = handle.execute(operation, parameters)
                self.rowcount = receipt.rows_affected
        except VerityError as failure:
            raise _translated(failure) from failure
        return self

    def executemany(self, operation: str, seq_of_parameters: Sequence[Sequence[object]]) -> Cursor:
        total = 0
        for parameters in seq_of_parameters:
            self.execute(operation, parameters)
            total += max(self.rowcount, 0)
        self.rowcount = total
        return self

    def _fetch_check(self) -> None:
        self._check()
        if self.description is None:
            raise InterfaceError("no result set: execute a SELECT first")

    def fetchone(self) -> tuple[object, ...] | None:
        self._fetch_check()
        if self._next_row >= len(self._rows):
            return None
        row = self._rows[self._next_row]
        self._next_row += 1
        return row

    def fetchmany(self, size: int | None = None) -> list[tuple[object, ...]]:
        self._fetch_check()
        count = self.arraysize if size is None else size
        rows = self._rows[self._next_row : self._next_row + count]
        self._next_row += len(rows)
        return rows

    def fetchall(self) -> list[tuple[object, ...]]:
        self._fetch_check()
        rows = self._rows[self._next_row :]
        self._next_row = len(self._rows)
        return rows

    def setinputsizes(self, sizes: object) -> None:
        """Accepted and ignored, as PEP 249 allows."""

    def setoutputsize(self, size: int, column: int | None = None) -> None:
        """Accepted and ignored, as PEP 249 allows."""

    def close(self) -> None:
        self._closed = True
        self._rows = []

    def __iter__(self) -> Iterator[tuple[object, ...]]:
        while (row := self.fetchone()) is not None:
            yield row

    def __enter__(self) -> Cursor:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@final
class Connection:
    """A DB-API connection: one database folder, one tenant. Statements autocommit."""

    def __init__(self, database: verity.Verity, tenant: TenantId, *, create: bool) -> None:
        self._database: verity.Verity | None = database
        try:
            self._tenant = database.tenant(tenant, create=create)
        except BaseException:
            database.close()
            raise

    def _handle(self) -> verity.TenantHandle:
        if self._database is None:
            raise InterfaceError("connection is closed")
        return self._tenant

    def cursor(self) -> Cursor:
        self._handle()
        return Cursor(self)

    def commit(self) -> None:
        """Nothing to do: every statement was durable when `execute` returned."""
        self._handle()

    def rollback(self) -> None:
        self._handle()
        raise NotSupportedError("VerityDB never undoes a log record: statements autocommit")

    def close(self) -> None:
        if self._database is not None:
            self._database.close()
            self._database = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    path: str | os.PathLike[str],
    tenant: int = 1,
    *,
    create: bool = True,
    read_only: bool = False,
    **options: Any,
) -> Connection:
    """Open the database in folder `path` and connect to `tenant`.

    Like `sqlite3.connect`, a missing database and tenant are created, unless
    `create=False` (then they must exist) or `read_only=True` (which never
    creates or writes anything; write statements raise). `options` are passed
    to `verity.open` (sync_policy, clock, ...).
    """
    create = create and not read_only
    try:
        database = verity.open(path, create=create, read_only=read_only, **options)
        return Connection(database, TenantId(tenant), create=create)
    except VerityError as failure:
        raise _translated(failure) from failure
