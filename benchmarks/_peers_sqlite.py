"""sqlite3 (stdlib) as a peer of the comparison benchmark: an append-only table with a chain.

WAL mode with `synchronous=FULL` (the WAL is fsynced at every commit: a
committed row survives power loss) or `synchronous=NORMAL` (the WAL is
fsynced only at checkpoints: a commit survives a process crash but the last
ones may be lost on power loss, so its "durable" append is not durable
against power loss). Each row carries `chain = SHA-256(previous chain ||
position || payload)`, computed in Python by the writer, which keeps the head
in memory (and reads it from the last row on open). Verification recomputes
the chain over every row in order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, final

from _peers_common import (
    BATCHED_APPEND,
    CANNOT_PROVE,
    CANNOT_SIGN,
    CHAIN_GENESIS,
    DURABLE_APPEND,
    INCLUSION_PROOF,
    KEY_AS_OF,
    KEY_CURRENT,
    POINT_READ,
    RANGE_READ,
    RECOVERY,
    SIGNED_CHECKPOINT,
    VERIFY,
    WHY_NO_PROOF,
    WHY_NO_SIGNATURE,
    KeyedData,
    KeyedStore,
    LogStore,
    Peer,
    chain_next,
    check_chain,
)

Synchronous = Literal["FULL", "NORMAL"]

CREATE_RECORDS = (
    "CREATE TABLE records (position INTEGER PRIMARY KEY, payload BLOB NOT NULL, "
    "chain BLOB NOT NULL)"
)
CREATE_HISTORY = (
    "CREATE TABLE history (position INTEGER PRIMARY KEY, key INTEGER NOT NULL, "
    "value BLOB NOT NULL, chain BLOB NOT NULL)"
)
SELECT_CURRENT = "SELECT value FROM history WHERE key = ? ORDER BY position DESC LIMIT 1"
SELECT_AS_OF = (
    "SELECT value FROM history WHERE key = ? AND position <= ? ORDER BY position DESC LIMIT 1"
)


def connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    """A connection in WAL mode at `synchronous`; transactions are explicit (BEGIN/COMMIT)."""
    connection = sqlite3.connect(path, isolation_level=None)
    mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    assert mode == "wal", mode
    connection.execute(f"PRAGMA synchronous={synchronous}")
    return connection


def chained_rows(
    first_position: int, head_hash: bytes, records: Sequence[bytes]
) -> tuple[list[tuple[int, bytes, bytes]], bytes]:
    """Rows `(position, payload, chain)` for `records` from `first_position`; and the new head."""
    rows: list[tuple[int, bytes, bytes]] = []
    for position, record in enumerate(records, start=first_position):
        head_hash = chain_next(head_hash, position, record)
        rows.append((position, record, head_hash))
    return rows, head_hash


def _value(row: tuple[object, ...] | None, what: object) -> bytes:
    assert row is not None, f"no row for {what!r}"
    value = row[0]
    assert isinstance(value, bytes)
    return value


@final
class SqliteLog(LogStore):
    """Table `records(position, payload, chain)` in one sqlite file."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        last = connection.execute(
            "SELECT position, chain FROM records ORDER BY position DESC LIMIT 1"
        ).fetchone()
        self._next_position: int = 0 if last is None else last[0] + 1
        self._head_hash: bytes = CHAIN_GENESIS if last is None else last[1]

    def append_one(self, record: bytes) -> None:
        position = self._next_position
        head_hash = chain_next(self._head_hash, position, record)
        # No explicit BEGIN: the INSERT is its own transaction, committed (and synced) here.
        self._connection.execute(
            "INSERT INTO records VALUES (?, ?, ?)", (position, record, head_hash)
        )
        self._next_position = position + 1
        self._head_hash = head_hash

    def append_batch(self, records: Sequence[bytes]) -> None:
        rows, head_hash = chained_rows(self._next_position, self._head_hash, records)
        connection = self._connection
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO records VALUES (?, ?, ?)", rows)
        connection.execute("COMMIT")
        self._next_position += len(rows)
        self._head_hash = head_hash

    def read_one(self, position: int) -> bytes:
        row = self._connection.execute(
            "SELECT payload FROM records WHERE position = ?", (position,)
        ).fetchone()
        return _value(row, position)

    def read_range(self, position: int, count: int) -> list[bytes]:
        rows = self._connection.execute(
            "SELECT payload FROM records WHERE position >= ? AND position < ? ORDER BY position",
            (position, position + count),
        ).fetchall()
        assert len(rows) == count, f"asked {count} rows, got {len(rows)}"
        return [row[0] for row in rows]

    def close(self) -> None:
        self._connection.close()


@final
class SqliteKeyed(KeyedStore):
    """Table `history(position, key, value, chain)`: initial rows, then one row per update."""

    def __init__(self, connection: sqlite3.Connection, key_count: int) -> None:
        self._connection = connection
        self._key_count = key_count

    def current(self, key: int) -> bytes:
        return _value(self._connection.execute(SELECT_CURRENT, (key,)).fetchone(), key)

    def as_of(self, key: int, update_index: int) -> bytes:
        position = self._key_count + update_index
        row = self._connection.execute(SELECT_AS_OF, (key, position)).fetchone()
        return _value(row, (key, update_index))

    def close(self) -> None:
        self._connection.close()


@final
class SqlitePeer(Peer):
    """sqlite3 in WAL mode at one `synchronous` level."""

    def __init__(self, synchronous: Synchronous) -> None:
        self._synchronous: Synchronous = synchronous
        self.name = f"sqlite-{synchronous.lower()}"
        self.title = f"sqlite3 {sqlite3.sqlite_version}, WAL, synchronous={synchronous}"
        self._folder = Path()
        durability = (
            "the WAL is fsynced at each commit"
            if synchronous == "FULL"
            else "NOT durable against power loss: the WAL is fsynced only at checkpoints"
        )
        self.how = {
            DURABLE_APPEND: f"`INSERT` of one row (chain computed in Python) as its own "
            f"transaction; {durability}",
            BATCHED_APPEND: "`executemany` of 1,000 rows in one transaction",
            POINT_READ: "`SELECT payload ... WHERE position = ?` (the rowid)",
            RANGE_READ: "`SELECT payload ... WHERE position >= ? AND position < ? ORDER BY "
            "position`",
            KEY_CURRENT: "append-only `history` table, index on (key, position): `... WHERE "
            "key = ? ORDER BY position DESC LIMIT 1`",
            KEY_AS_OF: "emulated: `... WHERE key = ? AND position <= ? ORDER BY position DESC "
            "LIMIT 1` on the append-only `history` table",
            VERIFY: "read every row in position order and recompute the SHA-256 chain in Python",
            RECOVERY: "a child process inserting one row per transaction is killed (SIGKILL), "
            "leaving a hot WAL; timed: connect + WAL mode + one `SELECT` (which recovers the "
            "WAL index)",
            SIGNED_CHECKPOINT: WHY_NO_SIGNATURE,
            INCLUSION_PROOF: WHY_NO_PROOF,
        }
        self.cannot = {SIGNED_CHECKPOINT: CANNOT_SIGN, INCLUSION_PROOF: CANNOT_PROVE}
        if synchronous == "NORMAL":
            self.caveats = {DURABLE_APPEND: "not durable on power loss"}

    def start(self, work: Path) -> None:
        self._folder = work / self.name
        self._folder.mkdir(parents=True, exist_ok=True)

    def _path(self, label: str) -> Path:
        return self._folder / f"{label}.sqlite"

    def create_log(self, label: str) -> LogStore:
        assert not self._path(label).exists()
        connection = connect(self._path(label), self._synchronous)
        connection.execute(CREATE_RECORDS)
        return SqliteLog(connection)

    def open_log(self, label: str) -> LogStore:
        assert self._path(label).exists()
        return SqliteLog(connect(self._path(label), self._synchronous))

    def build_keyed(self, label: str, data: KeyedData) -> KeyedStore:
        connection = connect(self._path(label), self._synchronous)
        connection.execute(CREATE_HISTORY)
        values = data.initial + data.updates
        keys = list(range(data.key_count)) + [data.key_of(j) for j in range(len(data.updates))]
        rows, _ = chained_rows(0, CHAIN_GENESIS, values)
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO history VALUES (?, ?, ?, ?)",
            [
                (position, key, value, chain)
                for (position, value, chain), key in zip(rows, keys, strict=True)
            ],
        )
        connection.execute("CREATE INDEX history_key ON history (key, position)")
        connection.execute("COMMIT")
        return SqliteKeyed(connection, data.key_count)

    def build_verification_log(self, label: str, chunks: Iterable[Sequence[bytes]]) -> None:
        log = self.create_log(label)
        try:
            for chunk in chunks:
                log.append_batch(chunk)
        finally:
            log.close()

    def verify(self, label: str) -> int:
        connection = connect(self._path(label), self._synchronous)
        try:
            rows = connection.execute(
                "SELECT position, payload, chain FROM records ORDER BY position"
            )
            return check_chain(rows, str(self._path(label)))
        finally:
            connection.close()
