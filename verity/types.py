"""Foundation value types.

Every type here is immutable and validated at construction: an invalid value
cannot be built, so code that holds one need not check it again ("parse, don't
validate"). Integer identifiers are `int` subclasses so they cost nothing to
compare and hash, but a negative or oversized one raises `InvalidArgument`.
"""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass
from typing import Final, final

from verity.errors import InvalidArgument

__all__ = [
    "HASH_BYTES",
    "U64_MAX",
    "AppliedIndex",
    "Checkpoint",
    "CheckpointPolicy",
    "DataClass",
    "Generation",
    "Hash",
    "IdempotencyId",
    "Offset",
    "RecordHeader",
    "RecordKind",
    "RecoveryReason",
    "RecoveryRecord",
    "StreamId",
    "SyncMode",
    "SyncPolicy",
    "TenantId",
    "Timestamp",
]

U64_MAX: Final = (1 << 64) - 1
HASH_BYTES: Final = 32
IDEMPOTENCY_ID_BYTES: Final = 16


def _check_u64(type_name: str, value: object) -> int:
    # bool is an int subclass; `Offset(True)` is a bug at the caller, not offset 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(type_name, value, "must be an int")
    if value < 0 or value > U64_MAX:
        raise InvalidArgument(type_name, value, "must be in 0..2**64-1")
    return value


class _U64(int):
    """An unsigned 64-bit integer identifier; subclasses name what it counts."""

    __slots__ = ()

    def __new__(cls, value: int) -> _U64:
        return super().__new__(cls, _check_u64(cls.__name__, value))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"


@final
class Offset(_U64):
    """A 0-based position in a log (or in a stream, where the context says so)."""

    __slots__ = ()

    def __new__(cls, value: int) -> Offset:
        return int.__new__(cls, _check_u64("Offset", value))


@final
class TenantId(_U64):
    """Identifies a tenant: the unit of isolation, encryption and placement."""

    __slots__ = ()

    def __new__(cls, value: int) -> TenantId:
        return int.__new__(cls, _check_u64("TenantId", value))


@final
class StreamId(_U64):
    """Identifies an event stream inside one tenant."""

    __slots__ = ()

    def __new__(cls, value: int) -> StreamId:
        return int.__new__(cls, _check_u64("StreamId", value))


@final
class Generation(_U64):
    """Recovery generation: starts at 0 and grows by one with every recovery."""

    __slots__ = ()

    def __new__(cls, value: int) -> Generation:
        return int.__new__(cls, _check_u64("Generation", value))

    def next(self) -> Generation:
        return Generation(int(self) + 1)


@final
class Timestamp(_U64):
    """Wall-clock nanoseconds since the Unix epoch, kept monotonic by the log."""

    __slots__ = ()

    def __new__(cls, value: int) -> Timestamp:
        return int.__new__(cls, _check_u64("Timestamp", value))

    @staticmethod
    def now_monotonic(last: Timestamp | None, now_ns: int | None = None) -> Timestamp:
        """Return `max(now, last + 1)`: real time, but never equal to or before `last`.

        `now_ns` is the clock reading; pass it in from a shell or a simulated
        clock. When omitted, the system clock is read (shell convenience only:
        cores always pass time in).
        """
        now = time.time_ns() if now_ns is None else now_ns
        if last is None:
            return Timestamp(now)
        return Timestamp(max(now, int(last) + 1))


@final
class Hash(bytes):
    """A 32-byte SHA-256 digest (chain hash, Merkle node, key id)."""

    __slots__ = ()

    def __new__(cls, value: bytes) -> Hash:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InvalidArgument("Hash", value, "must be bytes")
        raw = bytes(value)
        if len(raw) != HASH_BYTES:
            raise InvalidArgument("Hash", raw, f"must be {HASH_BYTES} bytes, got {len(raw)}")
        return super().__new__(cls, raw)

    @staticmethod
    def zero() -> Hash:
        """The `prev_hash` of the genesis record: 32 zero bytes."""
        return Hash(bytes(HASH_BYTES))

    def __repr__(self) -> str:
        return f"Hash({self.hex()})"


class RecordKind(enum.IntEnum):
    """What a log record is; the value is its byte on disk."""

    DATA = 0
    CHECKPOINT = 1
    TOMBSTONE = 2
    KEY = 3
    """Pins (at offset 0) or rotates the Ed25519 key that signs the log's checkpoints."""


class DataClass(enum.IntEnum):
    """How sensitive a stream's events are; the value is its byte on disk.

    Every class but PUBLIC is stored encrypted with the tenant's keys, so a
    byte search of the data folder never finds its plaintext. PUBLIC events
    are stored verbatim so that third parties can check proofs over them.
    """

    PUBLIC = 0
    INTERNAL = 1
    CONFIDENTIAL = 2
    PII = 3
    PHI = 4

    @property
    def encrypted_at_rest(self) -> bool:
        return self is not DataClass.PUBLIC


@final
@dataclass(frozen=True, slots=True)
class RecordHeader:
    """Metadata of every log record; covered by the record's CRC and chain hash."""

    offset: Offset
    prev_hash: Hash
    timestamp: Timestamp
    payload_len: int
    kind: RecordKind

    def __post_init__(self) -> None:
        if not isinstance(self.payload_len, int) or not 0 <= self.payload_len < (1 << 32):
            raise InvalidArgument("payload_len", self.payload_len, "must be in 0..2**32-1")
        if not isinstance(self.kind, RecordKind):
            raise InvalidArgument("kind", self.kind, "must be a RecordKind")


@final
@dataclass(frozen=True, slots=True)
class AppliedIndex:
    """The log position a projection has applied, with that record's chain hash."""

    offset: Offset
    hash: Hash


@final
@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint record: a verification anchor inside the chain.

    `offset` is the checkpoint record's own position; it covers the
    `record_count` records before it (`record_count == offset`), whose chain
    head is `chain_hash` and whose RFC 9162 Merkle root is `merkle_root`.
    """

    offset: Offset
    chain_hash: Hash
    record_count: int
    merkle_root: Hash
    created_at: Timestamp

    def __post_init__(self) -> None:
        if self.record_count != int(self.offset):
            raise InvalidArgument(
                "record_count", self.record_count, f"must equal offset {int(self.offset)}"
            )


@final
@dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    """When the log appends checkpoint records on its own.

    A checkpoint is appended after a data record when `every_n_records` data
    records have been appended since the previous checkpoint (unless
    `explicit_only`), and on clean shutdown when `on_shutdown`.
    """

    every_n_records: int = 1000
    on_shutdown: bool = True
    explicit_only: bool = False

    def __post_init__(self) -> None:
        if (
            not isinstance(self.every_n_records, int)
            or isinstance(self.every_n_records, bool)
            or self.every_n_records < 1
        ):
            raise InvalidArgument("every_n_records", self.every_n_records, "must be an int >= 1")


@final
class IdempotencyId(bytes):
    """16 bytes a client picks before the first attempt and reuses on every retry."""

    __slots__ = ()

    def __new__(cls, value: bytes) -> IdempotencyId:
        if not isinstance(value, bytes | bytearray):
            raise InvalidArgument("IdempotencyId", value, "must be bytes")
        if len(value) != IDEMPOTENCY_ID_BYTES:
            raise InvalidArgument(
                "IdempotencyId", value, f"must be {IDEMPOTENCY_ID_BYTES} bytes, got {len(value)}"
            )
        return super().__new__(cls, bytes(value))

    @staticmethod
    def generate() -> IdempotencyId:
        """A fresh random id from the OS CSPRNG."""
        return IdempotencyId(os.urandom(IDEMPOTENCY_ID_BYTES))

    @staticmethod
    def from_bytes(value: bytes) -> IdempotencyId:
        """Rebuild an id a client stored, for a retry."""
        return IdempotencyId(value)

    def __repr__(self) -> str:
        return f"IdempotencyId({self.hex()})"


class RecoveryReason(enum.Enum):
    """Why a recovery happened."""

    NODE_RESTART = "node_restart"
    QUORUM_LOSS = "quorum_loss"
    CORRUPTION_DETECTED = "corruption_detected"
    MANUAL_INTERVENTION = "manual_intervention"


@final
@dataclass(frozen=True, slots=True)
class RecoveryRecord:
    """An explicit, durable account of one recovery and of anything it discarded.

    `known_committed` is the number of records that survived (the next offset);
    `discarded_range` is the half-open range of log offsets whose frames were
    cut (the first is the torn record), or None when nothing was discarded;
    `discarded_bytes` names the segment file and the byte range removed from it.
    """

    generation: Generation
    previous_generation: Generation
    known_committed: Offset
    recovery_point: Offset
    discarded_range: tuple[Offset, Offset] | None
    discarded_bytes: tuple[str, int, int] | None
    timestamp: Timestamp
    reason: RecoveryReason

    def __post_init__(self) -> None:
        if int(self.generation) != int(self.previous_generation) + 1:
            raise InvalidArgument("generation", self.generation, "must be previous_generation + 1")
        if self.discarded_range is not None:
            start, end = self.discarded_range
            if start > end:
                raise InvalidArgument("discarded_range", self.discarded_range, "start > end")


class SyncMode(enum.Enum):
    """How appends are made durable; see `SyncPolicy`."""

    EVERY_RECORD = "every_record"
    EVERY_BATCH = "every_batch"
    GROUP_COMMIT = "group_commit"


@final
@dataclass(frozen=True, slots=True)
class SyncPolicy:
    """When an append is made durable (fsync) before it is acknowledged.

    - `every_record()`: each record is written and fsynced on its own.
    - `every_batch()`: one fsync per `append_batch` call.
    - `group_commit(max_delay_ms, max_batch)`: appends from several calls share
      one fsync; the log fsyncs when `max_batch` records are pending or the
      oldest pending append is `max_delay_ms` old, whichever comes first. An
      append still returns only after its records are durable.
    """

    mode: SyncMode
    max_delay_ms: int = 0
    max_batch: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.mode, SyncMode):
            raise InvalidArgument("mode", self.mode, "must be a SyncMode")
        if not isinstance(self.max_delay_ms, int) or self.max_delay_ms < 0:
            raise InvalidArgument("max_delay_ms", self.max_delay_ms, "must be an int >= 0")
        if not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise InvalidArgument("max_batch", self.max_batch, "must be an int >= 1")

    @staticmethod
    def every_record() -> SyncPolicy:
        return SyncPolicy(SyncMode.EVERY_RECORD)

    @staticmethod
    def every_batch() -> SyncPolicy:
        return SyncPolicy(SyncMode.EVERY_BATCH)

    @staticmethod
    def group_commit(max_delay_ms: int = 5, max_batch: int = 1000) -> SyncPolicy:
        return SyncPolicy(SyncMode.GROUP_COMMIT, max_delay_ms=max_delay_ms, max_batch=max_batch)
