"""What every peer of the comparison benchmark (`compare.py`) provides, and the data they share.

A peer is one store the benchmark runs the same workloads against: VerityDB
itself, sqlite3, the eventsourcing library, PostgreSQL. Each implements `Peer`:
it opens append-only record stores ("logs") and keyed stores by label, builds
and verifies a large log, survives a writer killed mid-write, and says in
words how it does each workload and which ones it cannot do at all. The
timing lives in `compare.py`, so every peer is measured by the same code on
the same records.
"""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import final

RECORD_BYTES = 256
CHAIN_GENESIS = bytes(32)

# The workloads, by the key used in `Peer.how`, `Peer.cannot` and the JSON results.
DURABLE_APPEND = "durable_append"
BATCHED_APPEND = "batched_append"
POINT_READ = "point_read"
RANGE_READ = "range_read"
KEY_CURRENT = "key_current"
KEY_AS_OF = "key_as_of"
VERIFY = "verify"
RECOVERY = "recovery"
SIGNED_CHECKPOINT = "signed_checkpoint"
INCLUSION_PROOF = "inclusion_proof"
WORKLOADS = (
    DURABLE_APPEND,
    BATCHED_APPEND,
    POINT_READ,
    RANGE_READ,
    KEY_CURRENT,
    KEY_AS_OF,
    VERIFY,
    RECOVERY,
    SIGNED_CHECKPOINT,
    INCLUSION_PROOF,
)

# What a SQL table with a chain column cannot do, whichever engine holds it: short, for table
# cells, and the longer why, for the description of each peer.
CANNOT_SIGN = "cannot: no signatures"
CANNOT_PROVE = "cannot: no Merkle tree"
WHY_NO_SIGNATURE = (
    "nothing signed binds the chain head to a key, so a party that rewrites the table can "
    "recompute the chain"
)
WHY_NO_PROOF = "showing that one row is in the table needs every row before it"


def make_records(count: int, seed: int) -> list[bytes]:
    """`count` records of `RECORD_BYTES` printable ASCII bytes; the same for every peer."""
    assert count >= 0
    rng = random.Random(seed)
    records = [rng.randbytes(RECORD_BYTES // 2).hex().encode("ascii") for _ in range(count)]
    assert all(len(record) == RECORD_BYTES for record in records[:1])
    return records


def record_chunks(count: int, seed: int, chunk_records: int) -> Iterator[list[bytes]]:
    """`count` records in chunks of `chunk_records`, so a million never sit in memory at once."""
    assert chunk_records > 0
    rng = random.Random(seed)
    for first in range(0, count, chunk_records):
        take = min(chunk_records, count - first)
        yield [rng.randbytes(RECORD_BYTES // 2).hex().encode("ascii") for _ in range(take)]


def chain_next(previous_hash: bytes, position: int, payload: bytes) -> bytes:
    """Chain hash of the row at `position`: SHA-256(previous hash || position || payload)."""
    return hashlib.sha256(previous_hash + position.to_bytes(8, "big") + payload).digest()


def check_chain(rows: Iterable[tuple[int, bytes, bytes]], where: str) -> int:
    """Recompute the chain over `(position, payload, chain)` rows in order; return rows checked.

    Raises `ChainBroken` naming the first row whose stored hash differs from the
    recomputed one, or whose position is not the next one.
    """
    from verity.errors import ChainBroken  # only the verifying side needs it

    previous_hash = CHAIN_GENESIS
    expected_position = 0
    sha256 = hashlib.sha256
    for position, payload, stored_hash in rows:
        if position != expected_position:
            raise ChainBroken(
                f"row position {position} where {expected_position} was expected",
                file=where,
                record_offset=position,
            )
        previous_hash = sha256(previous_hash + position.to_bytes(8, "big") + payload).digest()
        if previous_hash != stored_hash:
            raise ChainBroken(
                f"stored chain hash {bytes(stored_hash).hex()} differs from the recomputed "
                f"{previous_hash.hex()}",
                file=where,
                record_offset=position,
            )
        expected_position += 1
    return expected_position


@final
@dataclass(frozen=True)
class KeyedData:
    """The keyed history: `initial[k]` is key k's first value; update j sets key j % key_count.

    Updates go round-robin over the keys, so the value of any key as of any
    update index is computable here, and every peer's answer is checked
    against it.
    """

    initial: list[bytes]
    updates: list[bytes]

    @property
    def key_count(self) -> int:
        return len(self.initial)

    def key_of(self, update_index: int) -> int:
        return update_index % self.key_count

    def updates_through(self, key: int, update_index: int) -> int:
        """How many updates of `key` have an index <= `update_index`."""
        assert 0 <= key < self.key_count
        if update_index < key:
            return 0
        return (update_index - key) // self.key_count + 1

    def value_as_of(self, key: int, update_index: int) -> bytes:
        count = self.updates_through(key, update_index)
        if count == 0:
            return self.initial[key]
        return self.updates[key + (count - 1) * self.key_count]

    def value_now(self, key: int) -> bytes:
        return self.value_as_of(key, len(self.updates) - 1)


class PeerUnavailable(Exception):
    """The peer cannot run on this machine (a library or server is missing); says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class LogStore(ABC):
    """An append-only store of records at positions 0, 1, 2, ... in one peer."""

    @abstractmethod
    def append_one(self, record: bytes) -> None:
        """Append one record as its own transaction; durable when it returns (if the peer is)."""

    @abstractmethod
    def append_batch(self, records: Sequence[bytes]) -> None:
        """Append `records` as one transaction."""

    @abstractmethod
    def read_one(self, position: int) -> bytes:
        """The record at `position`."""

    @abstractmethod
    def read_range(self, position: int, count: int) -> list[bytes]:
        """`count` consecutive records from `position` on."""

    @abstractmethod
    def close(self) -> None:
        """Close cleanly."""


class KeyedStore(ABC):
    """The keyed history of `KeyedData`, as one peer holds it."""

    @abstractmethod
    def current(self, key: int) -> bytes:
        """The value of `key` now."""

    @abstractmethod
    def as_of(self, key: int, update_index: int) -> bytes:
        """The value of `key` once updates 0..`update_index` (inclusive) had been applied."""

    @abstractmethod
    def close(self) -> None:
        """Close cleanly."""


class Peer(ABC):
    """One store under comparison. `how`, `cannot` and `caveats` are keyed by workload."""

    name: str
    title: str
    how: Mapping[str, str]
    cannot: Mapping[str, str]
    # Short warnings shown next to a figure (e.g. "not durable on power loss"), by workload.
    caveats: Mapping[str, str] = MappingProxyType({})

    @abstractmethod
    def start(self, work: Path) -> None:
        """Get ready to work in folder `work` (a server starts here).

        Raises `PeerUnavailable` when the peer cannot run on this machine.
        """

    def attach(self, work: Path, state: Mapping[str, str]) -> None:
        """In a child process: use the peer the parent started, described by `child_state()`."""
        del state  # in-process peers need nothing but the folder
        self.start(work)

    def child_state(self) -> dict[str, str]:
        """What a child process needs to `attach` to this peer (a server's address, say)."""
        return {}

    def stop(self) -> None:  # noqa: B027 (a hook: most peers hold nothing between workloads)
        """Release what `start` took (a server stops here)."""

    @abstractmethod
    def create_log(self, label: str) -> LogStore:
        """A new, empty log named `label`."""

    @abstractmethod
    def open_log(self, label: str) -> LogStore:
        """The existing log named `label`."""

    def write_until_killed(
        self, label: str, records: Sequence[bytes], report: Callable[[], None]
    ) -> None:
        """In a child process: append `records` to log `label`, one transaction each.

        Calls `report()` after each durable append; the parent kills the process
        after a few, so the last append is usually cut short.
        """
        log = self.open_log(label)
        for record in records:
            log.append_one(record)
            report()
        log.close()

    def crash(self) -> None:  # noqa: B027 (a hook: only a server peer has more to crash)
        """Called while the writer is mid-write, just before it is killed.

        In-process stores have no server: killing the writer is the whole crash.
        """

    def recover_log(self, label: str) -> LogStore:
        """Open log `label` after a crash (a server restarts and recovers here)."""
        return self.open_log(label)

    @abstractmethod
    def build_keyed(self, label: str, data: KeyedData) -> KeyedStore:
        """Store `data`'s history under `label` (not timed) and return the store."""

    def build_verification_log(self, label: str, chunks: Iterable[Sequence[bytes]]) -> None:
        """Store a large log for `verify` (not timed)."""
        raise AssertionError(f"{self.name} {self.cannot[VERIFY]}")

    def verify(self, label: str) -> int:
        """Check the integrity of every record of log `label`; return how many were checked."""
        raise AssertionError(f"{self.name} {self.cannot[VERIFY]}")
