"""PostgreSQL (the real server, Debian package) as a peer of the comparison benchmark.

`PostgresPeer.start` initialises a throwaway cluster in the work folder
(`initdb`), starts it on 127.0.0.1 at a free port with `fsync=on`,
`synchronous_commit=on`, `full_page_writes=on`, and talks to it through
`psycopg` 3; `stop` shuts it down (`pg_ctl stop -m fast`). initdb and postgres
refuse to run as root, so as root they run as the `postgres` user (`runuser`).
A log is a table `(position, payload, chain)` with the same Python-computed
SHA-256 chain as the sqlite peer; a crash is `pg_ctl stop -m immediate`
(PostgreSQL's own way to stop without a shutdown checkpoint, so the next
start replays the WAL) while a child process is inserting.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, final

import psycopg
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
    PeerUnavailable,
    chain_next,
    check_chain,
)

Connection = psycopg.Connection[tuple[Any, ...]]

SERVER_USER = "postgres"
READY_TIMEOUT_S = 60.0
READY_POLL_S = 0.005
COMMAND_TIMEOUT_S = 120.0
VERIFY_FETCH_ROWS = 10_000
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def find_server_binaries() -> Path:
    """The folder holding `initdb`, `pg_ctl` and `postgres`; `PeerUnavailable` if none does."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)

    def major(folder: Path) -> int:
        name = folder.parent.name
        return int(name) if name.isdigit() else 0

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=major, reverse=True)
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    raise PeerUnavailable(
        "no PostgreSQL server: initdb is neither on PATH nor in /usr/lib/postgresql/*/bin "
        "(install the Debian package `postgresql`)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _table(prefix: str, label: str) -> str:
    name = prefix + re.sub(r"[^a-z0-9]", "_", label.lower())
    assert IDENTIFIER.fullmatch(name), name
    return name


def _value(row: tuple[Any, ...] | None, what: object) -> bytes:
    assert row is not None, f"no row for {what!r}"
    value = row[0]
    assert isinstance(value, bytes)
    return value


@final
class PostgresLog(LogStore):
    """Table `log_<label>(position, payload, chain)`; one autocommit connection."""

    def __init__(self, connection: Connection, table: str) -> None:
        self._connection = connection
        self._table = table
        last = connection.execute(
            f"SELECT position, chain FROM {table} ORDER BY position DESC LIMIT 1"
        ).fetchone()
        self._next_position: int = 0 if last is None else last[0] + 1
        self._head_hash: bytes = CHAIN_GENESIS if last is None else last[1]
        self._insert = f"INSERT INTO {table} VALUES (%s, %s, %s)"
        self._select_one = f"SELECT payload FROM {table} WHERE position = %s"
        self._select_range = (
            f"SELECT payload FROM {table} WHERE position >= %s AND position < %s ORDER BY position"
        )

    def append_one(self, record: bytes) -> None:
        position = self._next_position
        head_hash = chain_next(self._head_hash, position, record)
        # Autocommit: the INSERT is one transaction, its WAL flushed before it returns.
        self._connection.execute(self._insert, (position, record, head_hash))
        self._next_position = position + 1
        self._head_hash = head_hash

    def append_batch(self, records: Sequence[bytes]) -> None:
        rows: list[tuple[int, bytes, bytes]] = []
        head_hash = self._head_hash
        for position, record in enumerate(records, start=self._next_position):
            head_hash = chain_next(head_hash, position, record)
            rows.append((position, record, head_hash))
        with self._connection.transaction(), self._connection.cursor() as cursor:
            cursor.executemany(self._insert, rows)
        self._next_position += len(rows)
        self._head_hash = head_hash

    def read_one(self, position: int) -> bytes:
        return _value(self._connection.execute(self._select_one, (position,)).fetchone(), position)

    def read_range(self, position: int, count: int) -> list[bytes]:
        rows = self._connection.execute(self._select_range, (position, position + count)).fetchall()
        assert len(rows) == count, f"asked {count} rows, got {len(rows)}"
        return [row[0] for row in rows]

    def close(self) -> None:
        self._connection.close()


@final
class PostgresKeyed(KeyedStore):
    """Table `keyed_<label>(position, key, value, chain)` with an index on (key, position)."""

    def __init__(self, connection: Connection, table: str, key_count: int) -> None:
        self._connection = connection
        self._key_count = key_count
        select = f"SELECT value FROM {table} WHERE key = %s"
        self._select_current = f"{select} ORDER BY position DESC LIMIT 1"
        self._select_as_of = f"{select} AND position <= %s ORDER BY position DESC LIMIT 1"

    def current(self, key: int) -> bytes:
        return _value(self._connection.execute(self._select_current, (key,)).fetchone(), key)

    def as_of(self, key: int, update_index: int) -> bytes:
        position = self._key_count + update_index
        row = self._connection.execute(self._select_as_of, (key, position)).fetchone()
        return _value(row, (key, update_index))

    def close(self) -> None:
        self._connection.close()


@final
class PostgresPeer(Peer):
    """A throwaway PostgreSQL cluster, started and stopped by the benchmark."""

    def __init__(self) -> None:
        self._binaries = Path()
        self._cluster = Path()
        self._port = 0
        self._run_as: list[str] = []
        self._running = False
        self.name = "postgres"
        self.title = "PostgreSQL (server from the Debian package)"
        self.cannot = {SIGNED_CHECKPOINT: CANNOT_SIGN, INCLUSION_PROOF: CANNOT_PROVE}
        self.how = {
            DURABLE_APPEND: "`INSERT` of one row (chain computed in Python), autocommit: one "
            "transaction, WAL flushed (fdatasync) at commit",
            BATCHED_APPEND: "`executemany` (pipelined) of 1,000 rows in one transaction",
            POINT_READ: "`SELECT payload ... WHERE position = %s` (primary key, prepared)",
            RANGE_READ: "`SELECT payload ... WHERE position >= %s AND position < %s "
            "ORDER BY position`",
            KEY_CURRENT: "append-only history table, index on (key, position): `... WHERE key = %s "
            "ORDER BY position DESC LIMIT 1`",
            KEY_AS_OF: "emulated: `... WHERE key = %s AND position <= %s ORDER BY position DESC "
            "LIMIT 1` on the append-only history table",
            VERIFY: "read every row in position order through a server-side cursor (10,000 rows "
            "per fetch) and recompute the SHA-256 chain in Python",
            RECOVERY: "`pg_ctl stop -m immediate` while a child process inserts one row per "
            "transaction; timed: `pg_ctl start` + WAL replay + connect + one `SELECT`",
            SIGNED_CHECKPOINT: WHY_NO_SIGNATURE,
            INCLUSION_PROOF: WHY_NO_PROOF,
        }

    # ------------------------------------------------------------ the server

    @property
    def _data(self) -> Path:
        return self._cluster / "data"

    @property
    def _dsn(self) -> str:
        return f"host=127.0.0.1 port={self._port} user={SERVER_USER} dbname=postgres"

    def _command(self, arguments: list[str], what: str) -> None:
        """Run a server program (as the server user when we are root); raise with its output."""
        output_path = self._cluster / "commands.log"
        with output_path.open("ab") as output:
            completed = subprocess.run(
                self._run_as + arguments,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
        if completed.returncode != 0:
            lines = output_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            tail = " | ".join(lines[-3:]) if lines else "no output"
            raise PeerUnavailable(f"{what} failed (exit {completed.returncode}): {tail}")

    def _start_server(self) -> Connection:
        """Start the server without waiting in pg_ctl; return the first connection it accepts."""
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-p {self._port}",
                f"-k {shlex.quote(str(self._cluster / 'socket'))}",
                "-c fsync=on -c synchronous_commit=on -c full_page_writes=on",
            ]
        )
        pg_ctl = str(self._binaries / "pg_ctl")
        log = str(self._cluster / "server.log")
        self._command(
            [pg_ctl, "-D", str(self._data), "-l", log, "-o", options, "-W", "start"], "pg_ctl start"
        )
        self._running = True
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                return psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
            except psycopg.OperationalError as failure:
                if time.monotonic() > deadline:
                    raise PeerUnavailable(
                        f"server did not accept connections within {READY_TIMEOUT_S:.0f} s: "
                        f"{failure}; see {log}"
                    ) from None
                time.sleep(READY_POLL_S)

    def start(self, work: Path) -> None:
        self._binaries = find_server_binaries()
        self._cluster = work / "postgres"
        self._cluster.mkdir(parents=True)
        (self._cluster / "socket").mkdir()
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PeerUnavailable(
                    f"running as root and there is no {SERVER_USER!r} user to run the server as "
                    "(initdb and postgres refuse to run as root)"
                ) from None
            runuser = shutil.which("runuser")
            if runuser is None:
                raise PeerUnavailable("running as root and `runuser` is not available")
            self._run_as = [runuser, "-u", SERVER_USER, "--"]
            # The server user must be able to reach its folder through ours.
            work.chmod(work.stat().st_mode | 0o011)
            for folder in (self._cluster, self._cluster / "socket"):
                os.chown(folder, user.pw_uid, user.pw_gid)
        initdb = str(self._binaries / "initdb")
        self._command(
            [initdb, "-D", str(self._data), "-U", SERVER_USER, "--auth=trust", "-E", "UTF8",
             "--no-instructions", "--no-sync"],
            "initdb",
        )  # fmt: skip
        self._port = _free_port()
        connection = self._start_server()
        version = connection.execute("SHOW server_version").fetchone()
        connection.close()
        server = version[0] if version else "?"
        self.title = f"PostgreSQL {server} (Debian package), psycopg {psycopg.__version__}"

    def attach(self, work: Path, state: Mapping[str, str]) -> None:
        self._cluster = work / "postgres"
        self._port = int(state["port"])

    def child_state(self) -> dict[str, str]:
        return {"port": str(self._port)}

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        pg_ctl = str(self._binaries / "pg_ctl")
        try:
            self._command(
                [pg_ctl, "-D", str(self._data), "-m", "fast", "-w", "stop"], "pg_ctl stop"
            )
        except (PeerUnavailable, subprocess.TimeoutExpired) as failure:
            print(
                f"postgres: could not stop the server in {self._data}: {failure}", file=sys.stderr
            )

    def crash(self) -> None:
        pg_ctl = str(self._binaries / "pg_ctl")
        self._command(
            [pg_ctl, "-D", str(self._data), "-m", "immediate", "-w", "stop"],
            "pg_ctl stop -m immediate",
        )
        self._running = False

    # ------------------------------------------------------------ stores

    def _connect(self) -> Connection:
        return psycopg.connect(self._dsn, autocommit=True)

    def create_log(self, label: str) -> LogStore:
        connection = self._connect()
        table = _table("log_", label)
        connection.execute(
            f"CREATE TABLE {table} (position BIGINT PRIMARY KEY, payload BYTEA NOT NULL, "
            "chain BYTEA NOT NULL)"
        )
        return PostgresLog(connection, table)

    def open_log(self, label: str) -> LogStore:
        return PostgresLog(self._connect(), _table("log_", label))

    def recover_log(self, label: str) -> LogStore:
        return PostgresLog(self._start_server(), _table("log_", label))

    def build_keyed(self, label: str, data: KeyedData) -> KeyedStore:
        connection = self._connect()
        table = _table("keyed_", label)
        connection.execute(
            f"CREATE TABLE {table} (position BIGINT PRIMARY KEY, key BIGINT NOT NULL, "
            "value BYTEA NOT NULL, chain BYTEA NOT NULL)"
        )
        head_hash = CHAIN_GENESIS
        rows: list[tuple[int, int, bytes, bytes]] = []
        keys = list(range(data.key_count)) + [data.key_of(j) for j in range(len(data.updates))]
        for position, (key, value) in enumerate(
            zip(keys, data.initial + data.updates, strict=True)
        ):
            head_hash = chain_next(head_hash, position, value)
            rows.append((position, key, value, head_hash))
        with connection.transaction(), connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s)", rows)
            cursor.execute(f"CREATE INDEX {table}_key ON {table} (key, position)")
        connection.execute(f"ANALYZE {table}")
        return PostgresKeyed(connection, table, data.key_count)

    def build_verification_log(self, label: str, chunks: Iterable[Sequence[bytes]]) -> None:
        table = _table("verify_", label)
        with self._connect() as connection:
            connection.execute(
                f"CREATE TABLE {table} (position BIGINT PRIMARY KEY, payload BYTEA NOT NULL, "
                "chain BYTEA NOT NULL)"
            )
            head_hash = CHAIN_GENESIS
            position = 0
            copy_rows = f"COPY {table} (position, payload, chain) FROM STDIN"
            with (
                connection.transaction(),
                connection.cursor() as cursor,
                cursor.copy(copy_rows) as copy,
            ):
                for chunk in chunks:
                    for record in chunk:
                        head_hash = chain_next(head_hash, position, record)
                        copy.write_row((position, record, head_hash))
                        position += 1
            connection.execute(f"VACUUM ANALYZE {table}")

    def verify(self, label: str) -> int:
        table = _table("verify_", label)
        with (
            self._connect() as connection,
            connection.transaction(),
            connection.cursor(name="verify") as cursor,
        ):
            cursor.itersize = VERIFY_FETCH_ROWS
            cursor.execute(f"SELECT position, payload, chain FROM {table} ORDER BY position")
            return check_chain(cursor, f"table {table}")
