"""The `eventsourcing` library (PyPI) as a peer of the comparison benchmark.

Its SQLite persistence (`eventsourcing.sqlite`: WAL mode, one transaction per
`Application.save`), plain or with its AES-GCM cipher on
(`eventsourcing.cryptography:AESCipher`, the variant built on the
`cryptography` package, as VerityDB is). Each record is one event of an
aggregate: a log is one `Ledger` aggregate, so position p is version p + 2
(version 1 is its creation); the keyed history is one `Account` aggregate per
key. The library keeps no hash chain or digest over its events, so it has
no integrity check to time.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import version as package_version
from pathlib import Path
from typing import final
from uuid import NAMESPACE_URL, UUID, uuid5

from _peers_common import (
    BATCHED_APPEND,
    CANNOT_PROVE,
    DURABLE_APPEND,
    INCLUSION_PROOF,
    KEY_AS_OF,
    KEY_CURRENT,
    POINT_READ,
    RANGE_READ,
    RECOVERY,
    SIGNED_CHECKPOINT,
    VERIFY,
    KeyedData,
    KeyedStore,
    LogStore,
    Peer,
)
from eventsourcing.application import Application
from eventsourcing.cryptography import AESCipher
from eventsourcing.domain import Aggregate, event

SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


class Ledger(Aggregate):
    """An append-only sequence of records: one event per record."""

    class Recorded(Aggregate.Event):
        payload: str

    @staticmethod
    def create_id(name: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/verity-compare/ledger/{name}")

    def __init__(self, name: str) -> None:
        self.name = name
        self.last_payload = ""

    @event(Recorded)
    def record(self, payload: str) -> None:
        self.last_payload = payload


class Account(Aggregate):
    """One key of the keyed history; each update is one event."""

    class Updated(Aggregate.Event):
        value: str

    @staticmethod
    def create_id(key: int) -> UUID:
        return uuid5(NAMESPACE_URL, f"/verity-compare/account/{key}")

    def __init__(self, key: int, value: str) -> None:
        self.key = key
        self.value = value

    @event(Updated)
    def update(self, value: str) -> None:
        self.value = value


def _version_of(position: int) -> int:
    """The aggregate version holding log position `position` (version 1 is the creation)."""
    return position + 2


def _payload(recorded: object) -> bytes:
    assert isinstance(recorded, Ledger.Recorded), type(recorded)
    return recorded.payload.encode("ascii")


@final
class EventsourcingLog(LogStore):
    """One `Ledger` aggregate in an application's SQLite database."""

    def __init__(self, application: Application[UUID], ledger_id: UUID) -> None:
        self._application = application
        self._ledger_id = ledger_id
        self._ledger: Ledger | None = None

    def _writable(self) -> Ledger:
        if self._ledger is None:
            # Appending to an existing ledger needs the aggregate: replay it once.
            ledger: object = self._application.repository.get(self._ledger_id)
            assert isinstance(ledger, Ledger)
            self._ledger = ledger
        return self._ledger

    def start_new(self, name: str) -> None:
        self._ledger = Ledger(name)
        self._ledger_id = self._ledger.id
        self._application.save(self._ledger)

    def append_one(self, record: bytes) -> None:
        ledger = self._writable()
        ledger.record(record.decode("ascii"))
        self._application.save(ledger)

    def append_batch(self, records: Sequence[bytes]) -> None:
        ledger = self._writable()
        for record in records:
            ledger.record(record.decode("ascii"))
        self._application.save(ledger)

    def read_one(self, position: int) -> bytes:
        version = _version_of(position)
        found = list(self._application.events.get(self._ledger_id, gt=version - 1, lte=version))
        assert len(found) == 1, f"position {position}: {len(found)} events"
        return _payload(found[0])

    def read_range(self, position: int, count: int) -> list[bytes]:
        first = _version_of(position)
        found = self._application.events.get(self._ledger_id, gt=first - 1, lte=first + count - 1)
        records = [_payload(recorded) for recorded in found]
        assert len(records) == count, f"asked {count} events, got {len(records)}"
        return records

    def close(self) -> None:
        self._application.close()


@final
class EventsourcingKeyed(KeyedStore):
    """One `Account` aggregate per key; no snapshots, no aggregate cache (the defaults)."""

    def __init__(self, application: Application[UUID], data: KeyedData) -> None:
        self._application = application
        self._data = data

    def _value(self, key: int, version: int | None) -> bytes:
        account: object = self._application.repository.get(Account.create_id(key), version=version)
        assert isinstance(account, Account)
        return account.value.encode("ascii")

    def current(self, key: int) -> bytes:
        return self._value(key, None)

    def as_of(self, key: int, update_index: int) -> bytes:
        return self._value(key, 1 + self._data.updates_through(key, update_index))

    def close(self) -> None:
        self._application.close()


def _default_synchronous(folder: Path) -> str:
    """sqlite's synchronous setting in WAL mode, which the library leaves at the build's default."""
    path = folder / "probe.sqlite"
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        level = int(connection.execute("PRAGMA synchronous").fetchone()[0])
    finally:
        connection.close()
    for leftover in folder.glob("probe.sqlite*"):
        leftover.unlink()
    return SYNCHRONOUS_NAMES.get(level, str(level))


@final
class EventsourcingPeer(Peer):
    """`eventsourcing` with SQLite persistence; `cipher` turns on its AES-GCM cipher."""

    def __init__(self, *, cipher: bool) -> None:
        self._cipher = cipher
        self.name = "eventsourcing-aes" if cipher else "eventsourcing"
        library = f"eventsourcing {package_version('eventsourcing')}"
        self.title = f"{library}, SQLite persistence" + (", AES-256-GCM cipher" if cipher else "")
        self._folder = Path()
        self._cipher_key = AESCipher.create_key(32) if cipher else ""
        self.cannot = {
            VERIFY: "cannot: no hash chain",
            SIGNED_CHECKPOINT: "cannot: no signatures",
            INCLUSION_PROOF: CANNOT_PROVE,
        }
        self.how: dict[str, str] = {}

    def _describe(self, synchronous: str) -> None:
        encoded = "JSON-encoded event" + (", AES-GCM encrypted" if self._cipher else "")
        self.how = {
            DURABLE_APPEND: f"`Ledger.record()` then `Application.save()`: one {encoded} row, one "
            f"SQLite transaction (WAL, synchronous={synchronous}: the library leaves sqlite's "
            "default)",
            BATCHED_APPEND: "1,000 `record()` calls, then one `save()`: one transaction",
            POINT_READ: "`application.events.get(ledger, gt=v-1, lte=v)`: the event at version v",
            RANGE_READ: "`application.events.get(ledger, gt, lte)` over 1,000 versions",
            KEY_CURRENT: "`repository.get(account)`: replays the key's events (no snapshots)",
            KEY_AS_OF: "`repository.get(account, version=v)`: replays the key's events up to "
            "the version it had at that point",
            RECOVERY: "a child process saving one event per transaction is killed (SIGKILL); "
            "timed: `Application(env)` on the same SQLite file + one `events.get`",
            VERIFY: "its stored events carry no hash chain or digest, and the library has no "
            "integrity check"
            + (
                "; the cipher authenticates each event on its own, not their order or count"
                if self._cipher
                else ""
            ),
            SIGNED_CHECKPOINT: "nothing is signed",
            INCLUSION_PROOF: "no Merkle tree over the events",
        }

    def _application(self, label: str) -> Application[UUID]:
        environment: dict[str, str] = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(self._folder / f"{label}.sqlite"),
        }
        if self._cipher:
            environment["CIPHER_TOPIC"] = "eventsourcing.cryptography:AESCipher"
            environment["CIPHER_KEY"] = self._cipher_key
        return Application[UUID](env=environment)

    def start(self, work: Path) -> None:
        self._folder = work / self.name
        self._folder.mkdir(parents=True, exist_ok=True)
        self._describe(_default_synchronous(self._folder))

    def attach(self, work: Path, state: Mapping[str, str]) -> None:
        self._cipher_key = state["cipher_key"]
        self.start(work)

    def child_state(self) -> dict[str, str]:
        return {"cipher_key": self._cipher_key}

    def create_log(self, label: str) -> LogStore:
        log = EventsourcingLog(self._application(label), Ledger.create_id(label))
        log.start_new(label)
        return log

    def open_log(self, label: str) -> LogStore:
        return EventsourcingLog(self._application(label), Ledger.create_id(label))

    def write_until_killed(
        self, label: str, records: Sequence[bytes], report: Callable[[], None]
    ) -> None:
        log = EventsourcingLog(self._application(label), Ledger.create_id(label))
        # A ledger of its own: continuing the main one would first replay all its events.
        log.start_new(f"{label}-crash-writer-{os.getpid()}")
        for record in records:
            log.append_one(record)
            report()
        log.close()

    def build_keyed(self, label: str, data: KeyedData) -> KeyedStore:
        application = self._application(label)
        accounts = [Account(key, value.decode("ascii")) for key, value in enumerate(data.initial)]
        application.save(*accounts)
        for first in range(0, len(data.updates), data.key_count):
            for update_index in range(first, min(first + data.key_count, len(data.updates))):
                accounts[data.key_of(update_index)].update(
                    data.updates[update_index].decode("ascii")
                )
            application.save(*accounts)
        return EventsourcingKeyed(application, data)
