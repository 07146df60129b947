"""The hash-chained log, as an immutable value.

This module is the reference for what a VerityDB log does. A `Log` is a plain
value: every operation takes a log and returns a new one (or an answer), so a
reader can follow each rule without thinking about files, caches or threads.
`verity.storage` must be observably equal to it (conformance/, docs/conformance.md).

What the log is:

- An ordered tuple of records (records.py). Record i has offset i, carries the
  chain hash of record i-1, and a timestamp strictly greater than record i-1's:
  the timestamp of a new record is max(now, previous timestamp + 1).
- CHECKPOINT records sit inside the chain. One is appended after every
  `every_n_records` DATA records (unless `explicit_only`), on request, and on
  clean shutdown (when `on_shutdown`, and the log is not empty and does not
  already end with a checkpoint).
- A set of damaged offsets: records whose stored bytes no longer match what
  was written. Reading a damaged record, verifying across it, or proving it
  raises `CorruptionError` naming it. Damage is reported, never repaired, and
  never truncated away.
- A generation and the recoveries that produced it. A crash loses the records
  that were not yet durable; a record half-written at the moment of the crash
  (a torn tail) is discarded on the next open, and that discard is recorded as
  a `RecoveryRecord` with the exact range and a new generation.
- How many records are durable: every append, checkpoint and shutdown returns
  only once its records are, so `durable` is the size after each of them. A
  crash in the middle of an append (`write_unacknowledged`) leaves records past
  `durable` that may be kept or cut. Records below `durable` never vanish: a
  log found without them lost history, and opening it is refused (nothing is
  truncated, nothing appended) with `HistoryLostError` naming the range.

- Failed writes. An append the disk refuses (a full disk, an IO error) is
  undone when the log can cut its bytes away again: the log is as it was
  (`fail_write`), the call is known not to have happened, and the next
  record takes the same offset. Bytes of it may have reached the disk first;
  `failed_writes` lists those positions, and a position there may be used
  again only under a different key by anything that seals with a nonce
  derived from the position. When the log cannot know (an fsync failed, or
  the cut failed), the call's records are `write_unacknowledged`: opening
  may keep or cut them, and until then the log takes no more writes. A
  batch that made some of its records durable before the disk refused the
  rest (under `every_record`, or by sealing a segment) keeps those: it is
  the `append_batch` of them.

- Signatures (signing.py). A log may pin, in its first record (a KEY
  record), the Ed25519 key that signs it; from then on every CHECKPOINT
  record is signed by the pinned key, and a later KEY record, signed by the
  key it replaces, rotates it. A signer that is not the pinned key signs
  nothing (`KeyMismatchError`). `verify` checks every signature and every
  rotation; `signed_through` says how many records the last signed
  checkpoint covers (the ones after it are not yet signed).

- One writer. Opening for writing first takes an exclusive OS lock on the
  log's folder and holds it until close; an open that cannot take it reads,
  writes, renames and deletes nothing (`open_without_lock`).

What opening may discard, exactly: the records after the last durable one,
and of those only whole records from the end plus at most one partial record
(the torn tail). Everything else missing is lost history.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import icontract

from verity_spec import merkle, signing
from verity_spec.errors import (
    CorruptionError,
    HistoryLostError,
    InUseError,
    InvalidArgumentError,
    KeyMismatchError,
    LockFailedError,
    NotFoundError,
)
from verity_spec.records import (
    KIND_CHECKPOINT,
    KIND_DATA,
    KIND_KEY,
    PAYLOAD_BYTES_MAX,
    U64_MAX,
    ZERO_HASH,
    CheckpointPayload,
    KeyPayload,
    Record,
    chain_hash,
    decode_checkpoint_payload,
    decode_key_payload,
    encode_checkpoint_payload,
    encode_key_payload,
    is_well_formed,
    record_bytes,
)

__all__ = [
    "CheckpointPolicy",
    "Log",
    "RecoveryRecord",
    "append",
    "append_batch",
    "append_checkpoint",
    "consistency_proof",
    "corrupt",
    "empty_log",
    "fail_write",
    "head_hash",
    "inclusion_proof",
    "is_chained",
    "lose_records",
    "merkle_root",
    "nearest_checkpoint",
    "pin_key",
    "pinned_key",
    "rewrite_keyless",
    "rotate_key",
    "signed_through",
    "read",
    "read_verified",
    "records",
    "recover_torn_tail",
    "shutdown",
    "size",
    "verify",
    "write_unacknowledged",
]


@dataclass(frozen=True)
class CheckpointPolicy:
    """When the log appends CHECKPOINT records on its own."""

    every_n_records: int = 1000
    """A checkpoint follows every this many DATA records (counted since the last checkpoint)."""

    on_shutdown: bool = True
    """Append a checkpoint on clean shutdown unless the log already ends with one."""

    explicit_only: bool = False
    """Never append a checkpoint after data records; only on request (and on shutdown)."""


@dataclass(frozen=True)
class RecoveryRecord:
    """The account of one recovery that discarded a torn tail."""

    generation: int
    """The generation the log entered by this recovery."""

    previous_generation: int
    """The generation before it (always `generation - 1`)."""

    known_committed: int
    """How many records survived: the offset of the discarded record."""

    discarded_range: tuple[int, int]
    """Half-open range of offsets discarded: exactly the torn record."""

    timestamp: int
    """The clock reading (ns) when the recovery happened."""


@dataclass(frozen=True)
class Log:
    """An immutable log value."""

    records: tuple[Record, ...]
    """Every record, in offset order, exactly as written."""

    damaged: frozenset[int]
    """Offsets whose stored bytes were altered after they were written."""

    generation: int
    """Starts at 0; each recovery that discarded a torn tail adds 1."""

    recoveries: tuple[RecoveryRecord, ...]
    """Every such recovery, oldest first."""

    durable: int = 0
    """How many records were made durable (acknowledged); the records after them belong
    to an append that has not returned, which a crash may cut."""

    failed_writes: tuple[int, ...] = ()
    """The offset at which each undone write started, for each write that failed after
    some of its bytes may have reached the disk (`fail_write`), oldest first."""


def size(log: Log) -> int:
    """How many records the log holds."""
    return len(log.records)


def head_hash(log: Log) -> bytes:
    """Chain hash of the last record; `ZERO_HASH` for an empty log."""
    if not log.records:
        return ZERO_HASH
    return chain_hash(log.records[-1])


def last_timestamp(log: Log) -> int:
    """Timestamp of the last record; -1 for an empty log, so the first may be 0."""
    if not log.records:
        return -1
    return log.records[-1].timestamp


def leaves(log: Log, tree_size: int) -> list[bytes]:
    """The Merkle leaves of the first `tree_size` records: their canonical bytes."""
    return [record_bytes(record) for record in log.records[:tree_size]]


def is_chained(log: Log) -> bool:
    """Offsets are dense, each record links to the one before, timestamps increase."""
    previous_hash = ZERO_HASH
    previous_timestamp = -1
    for offset, record in enumerate(log.records):
        if record.offset != offset or record.prev_hash != previous_hash:
            return False
        if record.timestamp <= previous_timestamp:
            return False
        previous_hash = chain_hash(record)
        previous_timestamp = record.timestamp
    return True


def is_log(log: Log) -> bool:
    """`log` is a value the operations below can produce.

    Its records are well formed and chained, its damage lies within it, and
    every generation after the first came from a recorded recovery.
    """
    return (
        all(is_well_formed(record) for record in log.records)
        and is_chained(log)
        and all(0 <= offset < size(log) for offset in log.damaged)
        and log.generation == len(log.recoveries)
        and 0 <= log.durable <= size(log)
        and all(offset >= 0 for offset in log.failed_writes)
    )


def data_records_since_checkpoint(log: Log) -> int:
    """How many DATA records follow the last CHECKPOINT record."""
    count = 0
    for record in reversed(log.records):
        if record.kind == KIND_CHECKPOINT:
            break
        count += record.kind == KIND_DATA
    return count


def data_payloads(records: tuple[Record, ...]) -> list[bytes]:
    """The payloads of the DATA records among `records`, in order."""
    return [record.payload for record in records if record.kind == KIND_DATA]


@icontract.ensure(lambda result: size(result) == 0 and result.generation == 0)
def empty_log() -> Log:
    """A log with no records, in generation 0."""
    return Log(records=(), damaged=frozenset(), generation=0, recoveries=(), durable=0)


def acknowledged(log: Log) -> Log:
    """`log` once an fsync covered every record in it: the call that wrote them returns."""
    return replace(log, durable=size(log))


def check_now(now: object) -> int:
    if not isinstance(now, int) or isinstance(now, bool) or not 0 <= now <= U64_MAX:
        raise InvalidArgumentError("now", now, "must be ns since the epoch in 0..2**64-1")
    return now


def check_room(log: Log, now: int, records: int) -> None:
    """Refuse a call that could run the timestamps out, before it writes anything.

    A call that may write `records` records is refused unless
    `max(now, last + 1) + records <= 2**64-1`: an append of n payloads may
    write 2n (each DATA record may make a checkpoint due), an explicit
    checkpoint 1. (So 2**64-1 itself is never a timestamp: the bound keeps
    one spare, as the fast path's check does.)

    :raises InvalidArgumentError: there is no room: the clock's `now` names it.
    """
    if max(now, last_timestamp(log) + 1) + records > U64_MAX:
        raise InvalidArgumentError("now", now, "the timestamps would pass 2**64-1")


def check_count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgumentError(name, value, "must be an int")
    if value < 0:
        raise InvalidArgumentError(name, value, "must be >= 0")
    return value


def next_record(log: Log, kind: int, payload: bytes, now: int) -> Record:
    """The record that would follow the log's last record (timestamp `max(now, last + 1)`)."""
    return Record(
        offset=size(log),
        prev_hash=head_hash(log),
        timestamp=max(now, last_timestamp(log) + 1),
        kind=kind,
        payload=payload,
    )


def with_record(log: Log, record: Record) -> Log:
    return replace(log, records=(*log.records, record))


@icontract.require(lambda log: is_log(log))
@icontract.ensure(lambda log, result: size(result) == size(log) + 1)
@icontract.ensure(lambda log, result: result.records[-1].prev_hash == head_hash(log))
@icontract.ensure(lambda result: result.records[-1].kind == KIND_CHECKPOINT)
@icontract.ensure(lambda result: result.durable == size(result))
def append_checkpoint(log: Log, now: int, signer: bytes | None = None) -> Log:
    """Append a CHECKPOINT record stating the size, chain hash and Merkle root before it.

    With `signer` (an Ed25519 private key, the 32-byte seed), the record also
    carries its public key and its signature of `signing.checkpoint_message`,
    the bytes a `SignedCheckpoint` of the same statement is signed over.

    :raises InvalidArgumentError: an argument can never be valid.
    :raises KeyMismatchError: `signer` is not the key the log pins.
    """
    check_now(now)
    check_room(log, now, 1)
    return acknowledged(with_record(log, checkpoint_record(log, now, signer)))


def checkpoint_record(log: Log, now: int, signer: bytes | None) -> Record:
    """The CHECKPOINT record that would follow the log's last record."""
    check_signer(log, signer)
    count = size(log)
    timestamp = max(now, last_timestamp(log) + 1)
    statement = CheckpointPayload(
        record_count=count,
        chain_hash=head_hash(log),
        merkle_root=merkle.mth(leaves(log, count)),
    )
    if signer is not None:
        public_key = signing.public_key_of(signer)
        message = signing.checkpoint_message(
            count, statement.merkle_root, statement.chain_hash, timestamp, public_key
        )
        statement = replace(
            statement, public_key=public_key, signature=signing.sign(signer, message)
        )
    return next_record(log, KIND_CHECKPOINT, encode_checkpoint_payload(statement), timestamp)


def check_signer(log: Log, signer: bytes | None) -> None:
    """A log that pins a key is signed by it and no other; one that pins none is not signed."""
    if signer is not None and (not isinstance(signer, bytes) or len(signer) != 32):
        raise InvalidArgumentError("signer", signer, "must be a 32-byte Ed25519 private key")
    pinned = pinned_key(log, size(log))
    given = None if signer is None else signing.public_key_of(signer)
    if pinned is not None and given != pinned:
        raise KeyMismatchError(pinned, given or b"")
    if pinned is None and given is not None:
        raise InvalidArgumentError("signer", "<key>", "the log pins no key (pin_key first)")


def pinned_key(log: Log, end: int) -> bytes | None:
    """The public key the last KEY record before offset `end` pins, or None."""
    for record in reversed(log.records[:end]):
        if record.kind == KIND_KEY:
            payload = decode_key_payload(record.payload)
            return None if payload is None else payload.public_key
    return None


@icontract.require(lambda log: is_log(log) and size(log) == 0)
@icontract.ensure(lambda result: size(result) == 1 and result.records[0].kind == KIND_KEY)
def pin_key(log: Log, now: int, signer: bytes) -> Log:
    """Begin an empty log with a KEY record pinning `signer`'s public key.

    :raises InvalidArgumentError: an argument can never be valid.
    """
    check_now(now)
    if not isinstance(signer, bytes) or len(signer) != 32:
        raise InvalidArgumentError("signer", signer, "must be a 32-byte Ed25519 private key")
    payload = encode_key_payload(KeyPayload(signing.public_key_of(signer), None))
    return acknowledged(with_record(log, next_record(log, KIND_KEY, payload, now)))


@icontract.require(lambda log: is_log(log))
@icontract.ensure(lambda log, result: size(result) == size(log) + 1)
def rotate_key(log: Log, now: int, signer: bytes, new_signer: bytes) -> Log:
    """Hand the log over to `new_signer`: a KEY record signed by the pinned `signer`.

    :raises InvalidArgumentError: an argument can never be valid.
    :raises KeyMismatchError: `signer` is not the key the log pins.
    """
    check_now(now)
    if pinned_key(log, size(log)) is None:
        raise InvalidArgumentError("signer", "<key>", "the log pins no key (pin_key first)")
    check_signer(log, signer)
    if not isinstance(new_signer, bytes) or len(new_signer) != 32:
        raise InvalidArgumentError("new_signer", new_signer, "must be a 32-byte private key")
    new_key = signing.public_key_of(new_signer)
    message = signing.rotation_message(size(log), head_hash(log), new_key)
    payload = encode_key_payload(KeyPayload(new_key, signing.sign(signer, message)))
    return acknowledged(with_record(log, next_record(log, KIND_KEY, payload, now)))


def check_payloads(payloads: object) -> tuple[bytes, ...]:
    if not isinstance(payloads, tuple | list):
        raise InvalidArgumentError("payloads", payloads, "must be a sequence of bytes")
    if len(payloads) == 0:
        raise InvalidArgumentError("payloads", payloads, "must not be empty")
    for position, payload in enumerate(payloads):
        if not isinstance(payload, bytes):
            raise InvalidArgumentError(f"payloads[{position}]", payload, "must be bytes")
        if len(payload) > PAYLOAD_BYTES_MAX:
            raise InvalidArgumentError(
                f"payloads[{position}]", len(payload), f"must be at most {PAYLOAD_BYTES_MAX} bytes"
            )
    return tuple(payloads)


@icontract.require(lambda log: is_log(log))
@icontract.ensure(lambda log, result: result.records[: size(log)] == log.records)
@icontract.ensure(
    lambda log, payloads, result: (
        [r.payload for r in result.records[size(log) :] if r.kind == KIND_DATA] == list(payloads)
    )
)
@icontract.ensure(lambda result: is_chained(result))
@icontract.ensure(lambda result: result.durable == size(result))
def append_batch(
    log: Log,
    payloads: tuple[bytes, ...],
    now: int,
    policy: CheckpointPolicy,
    signer: bytes | None = None,
) -> Log:
    """Append one DATA record per payload, in order, with automatic checkpoints between.

    Every payload is checked before anything is appended: a bad one rejects
    the whole batch and the log is unchanged. The call returns once every
    record it wrote is durable. Its checkpoints are signed by `signer`
    (`append_checkpoint`).

    :raises InvalidArgumentError: an argument can never be valid.
    :raises KeyMismatchError: `signer` is not the key the log pins.
    """
    return acknowledged(write_unacknowledged(log, payloads, now, policy, signer))


@icontract.require(lambda log: is_log(log))
@icontract.ensure(lambda log, result: result.records[: size(log)] == log.records)
@icontract.ensure(lambda log, result: result.durable == log.durable)
@icontract.ensure(lambda result: is_chained(result))
def write_unacknowledged(
    log: Log,
    payloads: tuple[bytes, ...],
    now: int,
    policy: CheckpointPolicy,
    signer: bytes | None = None,
) -> Log:
    """The records `append_batch` writes, before the fsync that makes them durable.

    This is the log a crash in the middle of that append leaves behind: the
    records are on their way to the disk, nothing was acknowledged, and
    `durable` has not moved, so opening may keep them or cut them
    (`recover_torn_tail`).

    :raises InvalidArgumentError: an argument can never be valid.
    """
    checked = check_payloads(payloads)
    check_now(now)
    check_room(log, now, 2 * len(checked))
    check_signer(log, signer)
    durable = log.durable
    for payload in checked:
        log = with_record(log, next_record(log, KIND_DATA, payload, now))
        due = data_records_since_checkpoint(log) >= policy.every_n_records
        if due and not policy.explicit_only:
            log = append_checkpoint(log, now, signer)
    return replace(log, durable=durable)


def append(
    log: Log, payload: bytes, now: int, policy: CheckpointPolicy, signer: bytes | None = None
) -> Log:
    """Append one DATA record (and the checkpoint it makes due).

    :raises InvalidArgumentError: an argument can never be valid.
    :raises KeyMismatchError: `signer` is not the key the log pins.
    """
    return append_batch(log, (payload,), now, policy, signer)


@icontract.require(lambda log: is_log(log))
@icontract.ensure(lambda log, result: result.records == log.records)
@icontract.ensure(lambda log, result: result.durable == log.durable)
@icontract.ensure(
    lambda log, reached_disk, result: (
        result.failed_writes == log.failed_writes + ((size(log),) if reached_disk else ())
    )
)
def fail_write(log: Log, reached_disk: bool) -> Log:
    """An append, checkpoint or KEY record the disk refused, undone: the log is as it was.

    The call is known not to have happened, so it was not acknowledged and
    nothing of it is in the log (now or after any crash): the next record
    takes the same offset, the same `prev_hash` and the timestamp rule of
    any record. When some of its bytes reached the disk before the log cut
    them away (`reached_disk`), the disk may have seen other bytes at offset
    `size(log)` and after: the offset goes into `failed_writes`, and
    whatever seals a record with a nonce derived from its offset must seal
    the records from there under a key that sealed nothing before this
    failure (AES-GCM under one key and nonce for two plaintexts reveals
    their XOR and the authentication key).

    A write whose outcome the log cannot know (an fsync failed, or the cut
    failed) is not this: its records are `write_unacknowledged`.

    :raises InvalidArgumentError: `reached_disk` is not a bool.
    """
    if not isinstance(reached_disk, bool):
        raise InvalidArgumentError("reached_disk", reached_disk, "must be a bool")
    if not reached_disk:
        return log
    return replace(log, failed_writes=(*log.failed_writes, size(log)))


@icontract.require(lambda log: is_log(log))
@icontract.ensure(lambda log, result: result.records[: size(log)] == log.records)
@icontract.ensure(lambda log, result: size(result) - size(log) in (0, 1))
def shutdown(log: Log, now: int, policy: CheckpointPolicy, signer: bytes | None = None) -> Log:
    """A clean shutdown: a final checkpoint when the policy asks for one and it adds anything.

    Reopening a cleanly shut down log gives this same value back.

    :raises InvalidArgumentError: an argument can never be valid.
    """
    check_now(now)
    ends_with_checkpoint = bool(log.records) and log.records[-1].kind == KIND_CHECKPOINT
    if policy.on_shutdown and log.records and not ends_with_checkpoint:
        return append_checkpoint(log, now, signer)
    return acknowledged(log)


@icontract.require(lambda log: is_log(log))
@icontract.require(lambda log, kept: 0 <= kept <= size(log))
@icontract.require(lambda log, kept, torn: not torn or kept < size(log))
@icontract.require(
    lambda log, kept: kept < log.durable or all(offset < kept for offset in log.damaged)
)
@icontract.ensure(lambda log, kept, result: result.records == log.records[:kept])
@icontract.ensure(
    lambda log, torn, result: result.generation == log.generation + (1 if torn else 0)
)
@icontract.ensure(lambda result: result.durable == size(result))
def recover_torn_tail(log: Log, kept: int, torn: bool, now: int) -> Log:
    """What opening the log finds after a crash: the first `kept` records intact.

    Records at `kept` and after may be gone only if they were never durable
    (their append never returned). When `torn`, record `kept` was
    half-written: opening discards those bytes, and says so with a
    `RecoveryRecord` for exactly that offset and a new generation. A clean
    cut (`torn` false) leaves nothing to account for. What opening keeps is
    durable from then on.

    If durable records are missing (`kept < log.durable`), that is not a
    crash: history was lost (a segment deleted or cut short), and opening
    refuses. The log, and every file, stays as it was.

    :raises InvalidArgumentError: an argument can never be valid.
    :raises HistoryLostError: records `kept .. durable-1` were durable and are gone.
    """
    check_now(now)
    if kept < log.durable:
        raise HistoryLostError(
            kept, log.durable, f"the log was found with {kept} of {log.durable} durable records"
        )
    survivors = replace(log, records=log.records[:kept], durable=kept)
    if not torn:
        return survivors
    recovery = RecoveryRecord(
        generation=log.generation + 1,
        previous_generation=log.generation,
        known_committed=kept,
        discarded_range=(kept, kept + 1),
        timestamp=now,
    )
    return replace(
        survivors, generation=recovery.generation, recoveries=(*log.recoveries, recovery)
    )


# What a non-blocking lock attempt fails with when another process holds the lock.
LOCK_HELD_ERRNO_NAMES = frozenset({"EWOULDBLOCK", "EAGAIN", "EACCES"})


@icontract.require(lambda log: is_log(log))
def open_without_lock(log: Log, lock_errno_name: str) -> Log:
    """Opening the log for writing when the OS refuses its folder's lock with `lock_errno_name`.

    The lock comes before anything else the open does, so a refused open
    changes nothing: the log stays as it was, for its owner. The refusal
    says why: another process holds the lock (EWOULDBLOCK, EAGAIN, EACCES)
    is `InUseError`; any other errno (ENOLCK on a network filesystem, EIO)
    is `LockFailedError`, never "in use": nobody is known to hold it.

    :raises InvalidArgumentError: `lock_errno_name` is not a str.
    :raises InUseError: another process holds the lock.
    :raises LockFailedError: the lock failed for another reason.
    """
    if not isinstance(lock_errno_name, str):
        raise InvalidArgumentError("lock_errno_name", lock_errno_name, "must be a str")
    if lock_errno_name in LOCK_HELD_ERRNO_NAMES:
        raise InUseError("the log folder")
    raise LockFailedError("the log folder", lock_errno_name)


@icontract.require(lambda log: is_log(log))
@icontract.require(lambda log, first, end: 0 <= first < end <= size(log))
def lose_records(log: Log, first: int, end: int) -> Log:
    """Records `first .. end-1` are gone from the disk while later ones remain.

    A segment was deleted or cut short in the middle of the log. When any of
    the lost records was durable this is lost history and opening refuses;
    otherwise the records after the gap were never durable either, and the
    log is what a crash keeps: the records before the gap.

    :raises HistoryLostError: records `first .. end-1` include durable ones.
    """
    if first < log.durable:
        raise HistoryLostError(
            first, end, f"records {first}..{end - 1} are missing while later ones remain"
        )
    return replace(log, records=log.records[:first], durable=first)


@icontract.require(lambda log: is_log(log))
@icontract.require(lambda log: 0 < size(log) == log.durable)
def forge_head(log: Log) -> Log:
    """The last record's stored bytes were replaced by other well-framed bytes.

    The next record would chain onto the last record's chain hash, and the
    durability evidence (the durable mark; a sealed segment's offset index)
    names that hash. Opening finds the stored record disagreeing with it: the
    acknowledged history was rewritten, and opening refuses rather than chain
    new records onto bytes nobody wrote. Nothing is changed on disk.

    :raises CorruptionError: always, naming the last record.
    """
    raise CorruptionError(
        size(log) - 1, "its chain hash is not the one the durability evidence names"
    )


@icontract.require(lambda log: is_log(log))
@icontract.require(lambda log, offset: 0 <= offset < size(log))
@icontract.ensure(lambda log, result: result.records == log.records)
@icontract.ensure(lambda offset, result: offset in result.damaged)
def corrupt(log: Log, offset: int) -> Log:
    """The stored bytes of record `offset` were altered (a bit flip, an edit)."""
    return replace(log, damaged=log.damaged | {offset})


def check_offset(log: Log, offset: object) -> int:
    checked = check_count("offset", offset)
    if checked >= size(log):
        raise NotFoundError("offset", checked, f"the log has {size(log)} records")
    return checked


def check_tree_size(log: Log, name: str, tree_size: object) -> int:
    checked = check_count(name, tree_size)
    if checked > size(log):
        raise NotFoundError(name, checked, f"the log has {size(log)} records")
    return checked


def check_undamaged(log: Log, offset: int) -> None:
    if offset in log.damaged:
        raise CorruptionError(offset, "its stored bytes differ from the bytes written")


@icontract.require(lambda log: is_log(log))
@icontract.ensure(lambda offset, result: result.offset == offset)
def read(log: Log, offset: int) -> Record:
    """The record at `offset`.

    :raises InvalidArgumentError: an argument can never be valid.
    :raises NotFoundError: an offset or size beyond the end of the log.
    :raises CorruptionError: a damaged record.
    """
    checked = check_offset(log, offset)
    check_undamaged(log, checked)
    return log.records[checked]


@icontract.require(lambda log: is_log(log))
@icontract.ensure(lambda start, result: all(r.offset == start + i for i, r in enumerate(result)))
def records(log: Log, start: int, end: int) -> tuple[Record, ...]:
    """The records `start .. end-1`, in order: `read` of each, as one answer.

    :raises InvalidArgumentError: an argument can never be valid.
    :raises NotFoundError: an offset or size beyond the end of the log.
    :raises CorruptionError: a damaged record (the first one in the range).
    """
    first = check_count("start", start)
    stop = check_tree_size(log, "end", end)
    for offset in range(first, stop):
        check_undamaged(log, offset)
    return log.records[first:stop]


def nearest_checkpoint(log: Log, offset: int) -> int | None:
    """The offset of the last CHECKPOINT record at or before `offset`, or None."""
    for candidate in range(offset, -1, -1):
        if log.records[candidate].kind == KIND_CHECKPOINT:
            return candidate
    return None


def check_checkpoint(log: Log, offset: int) -> None:
    """A CHECKPOINT record states exactly the records before it, signed by the pinned key.

    In a log that pins no key, checkpoints are unsigned. In one that does,
    every checkpoint after the pin carries a valid signature by the key
    pinned at that point: an unsigned one, or one signed by another key,
    fails (a rewrite without the private key cannot produce either).
    """
    record = log.records[offset]
    statement = decode_checkpoint_payload(record.payload)
    if statement is None:
        raise CorruptionError(offset, "a CHECKPOINT record without a checkpoint payload")
    expected = CheckpointPayload(
        record_count=offset,
        chain_hash=record.prev_hash,
        merkle_root=merkle.mth(leaves(log, offset)),
        public_key=statement.public_key,
        signature=statement.signature,
    )
    if statement != expected:
        raise CorruptionError(offset, "the checkpoint does not describe the records before it")
    pinned = pinned_key(log, offset)
    if pinned is None:
        if statement.signature is not None:
            raise CorruptionError(offset, "a signed checkpoint in a log that pins no key")
        return
    if statement.public_key is None or statement.signature is None:
        raise CorruptionError(offset, "an unsigned checkpoint in a log that pins a key")
    if statement.public_key != pinned:
        raise CorruptionError(offset, "the checkpoint is signed by a key the log does not pin")
    message = signing.checkpoint_message(
        offset, statement.merkle_root, statement.chain_hash, record.timestamp, pinned
    )
    if not signing.is_valid_signature(pinned, message, statement.signature):
        raise CorruptionError(offset, "the checkpoint's signature does not verify")


def check_key_record(log: Log, offset: int) -> None:
    """A KEY record pins a key at offset 0, or rotates it, signed by the key it replaces."""
    record = log.records[offset]
    statement = decode_key_payload(record.payload)
    if statement is None:
        raise CorruptionError(offset, "a KEY record without a key payload")
    if offset == 0:
        if statement.signature is not None:
            raise CorruptionError(offset, "the genesis KEY record carries a rotation signature")
        return
    pinned = pinned_key(log, offset)
    if pinned is None or statement.signature is None:
        raise CorruptionError(offset, "a KEY record after genesis must rotate a pinned key")
    message = signing.rotation_message(offset, record.prev_hash, statement.public_key)
    if not signing.is_valid_signature(pinned, message, statement.signature):
        raise CorruptionError(offset, "the key rotation is not signed by the key it replaces")


@icontract.require(lambda log: is_log(log))
@icontract.ensure(lambda offset, result: result.offset == offset)
def read_verified(log: Log, offset: int) -> Record:
    """The record at `offset`, with its chain checked back to the nearest checkpoint.

    The checkpoint at or before `offset` (or the start of the log) is the
    anchor; every record from the anchor to `offset` must be intact and link to
    the one before it. The first record that is not raises `CorruptionError`.

    :raises InvalidArgumentError: an argument can never be valid.
    :raises NotFoundError: an offset or size beyond the end of the log.
    :raises CorruptionError: a damaged record.
    """
    checked = check_offset(log, offset)
    anchor = nearest_checkpoint(log, checked)
    start = 0 if anchor is None else anchor
    for current in range(start, checked + 1):
        check_undamaged(log, current)
        expected_prev = ZERO_HASH if current == 0 else chain_hash(log.records[current - 1])
        is_anchor = current == start and anchor is not None
        if not is_anchor and log.records[current].prev_hash != expected_prev:
            raise CorruptionError(current, "prev_hash does not match the record before")
    return log.records[checked]


@icontract.require(lambda log: is_log(log))
@icontract.ensure(lambda log, result: result == size(log))
def verify(log: Log) -> int:
    """Check the whole log from its first record; return how many records were checked.

    Every record must be intact, at its offset, linked to the record before it,
    later than it, and every checkpoint must describe the records before it.
    The first record that fails raises `CorruptionError`.

    :raises CorruptionError: a damaged record.
    """
    previous_hash = ZERO_HASH
    previous_timestamp = -1
    for offset, record in enumerate(log.records):
        check_undamaged(log, offset)
        if record.offset != offset or record.prev_hash != previous_hash:
            raise CorruptionError(offset, "not linked to the record before it")
        if record.timestamp <= previous_timestamp:
            raise CorruptionError(offset, "timestamp does not increase")
        if record.kind == KIND_CHECKPOINT:
            check_checkpoint(log, offset)
        if record.kind == KIND_KEY:
            check_key_record(log, offset)
        previous_hash = chain_hash(record)
        previous_timestamp = record.timestamp
    return size(log)


@icontract.require(lambda log: is_log(log))
@icontract.ensure(lambda log, result: 0 <= result <= size(log))
def signed_through(log: Log) -> int:
    """How many records the last signed checkpoint covers; the records after it are not
    yet signed (0 when no checkpoint is signed). Whether the signatures hold is `verify`'s
    question."""
    for record in reversed(log.records):
        statement = (
            decode_checkpoint_payload(record.payload) if record.kind == KIND_CHECKPOINT else None
        )
        if statement is not None and statement.signature is not None:
            return record.offset
    return 0


@icontract.require(lambda log: is_log(log))
@icontract.require(lambda log, offset: 0 <= offset < size(log))
@icontract.ensure(lambda result: is_chained(result))
def rewrite_keyless(log: Log, offset: int, payload: bytes) -> Log:
    """The log as an attacker who holds no key can rewrite it: record `offset` gets `payload`.

    Everything keyless is recomputed after it: each later record's
    `prev_hash`, and each later checkpoint's record count, chain hash and
    Merkle root (formats §1-2 need no key). Signatures and KEY records are
    kept as they were: forging them needs a private key. `verify` of the
    result fails at the first signed checkpoint after `offset`; a rewrite no
    signed checkpoint covers yet is only "not yet signed".
    """
    rewritten: list[Record] = list(log.records[:offset])
    for position in range(offset, size(log)):
        old = log.records[position]
        new_payload = payload if position == offset else old.payload
        prefix = replace(log, records=tuple(rewritten))
        if old.kind == KIND_CHECKPOINT:
            statement = decode_checkpoint_payload(old.payload)
            if statement is not None:
                new_payload = encode_checkpoint_payload(
                    replace(
                        statement,
                        chain_hash=head_hash(prefix),
                        merkle_root=merkle.mth(leaves(prefix, position)),
                    )
                )
        rewritten.append(replace(old, prev_hash=head_hash(prefix), payload=new_payload))
    return replace(log, records=tuple(rewritten))


@icontract.require(lambda log: is_log(log))
@icontract.ensure(lambda result: len(result) == 32)
def merkle_root(log: Log, tree_size: int) -> bytes:
    """The RFC 9162 Merkle tree hash over the first `tree_size` records.

    The tree is over the records as written: damage to stored bytes does not
    change what was committed to, so roots and consistency proofs stay
    available (they come from stored node hashes, not from the damaged bytes).

    :raises InvalidArgumentError: an argument can never be valid.
    :raises NotFoundError: an offset or size beyond the end of the log.
    """
    checked = check_tree_size(log, "tree_size", tree_size)
    return merkle.mth(leaves(log, checked))


@icontract.require(lambda log: is_log(log))
@icontract.ensure(
    lambda log, leaf_index, tree_size, result: (
        merkle_root_from_path(record_bytes(log.records[leaf_index]), leaf_index, tree_size, result)
        == merkle.mth(leaves(log, tree_size))
    )
)
def inclusion_proof(log: Log, leaf_index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 PATH(leaf_index, D[tree_size]): the audit path of one record.

    The proof carries the leaf's bytes too, so a damaged leaf raises
    `CorruptionError` instead of proving bytes that are no longer stored.

    :raises InvalidArgumentError: an argument can never be valid.
    :raises NotFoundError: an offset or size beyond the end of the log.
    :raises CorruptionError: a damaged record.
    """
    index = check_count("leaf_index", leaf_index)
    checked_size = check_tree_size(log, "tree_size", tree_size)
    if index >= checked_size:
        raise InvalidArgumentError("leaf_index", index, f"must be < tree_size {checked_size}")
    check_undamaged(log, index)
    return merkle.path(index, leaves(log, checked_size))


def merkle_root_from_path(leaf: bytes, leaf_index: int, tree_size: int, path: list[bytes]) -> bytes:
    """The root an audit path implies (RFC 9162 §2.1.3.2), to state `inclusion_proof`'s result."""
    fn, sn = leaf_index, tree_size - 1
    root = merkle.leaf_hash(leaf)
    for sibling in path:
        if fn & 1 or fn == sn:
            root = merkle.node_hash(sibling, root)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            root = merkle.node_hash(root, sibling)
        fn >>= 1
        sn >>= 1
    return root


@icontract.require(lambda log: is_log(log))
def consistency_proof(log: Log, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 PROOF(old_size, D[new_size]): the first old_size records are a prefix.

    :raises InvalidArgumentError: an argument can never be valid.
    :raises NotFoundError: an offset or size beyond the end of the log.
    """
    old = check_count("old_size", old_size)
    new = check_tree_size(log, "new_size", new_size)
    if old == 0:
        raise InvalidArgumentError("old_size", old, "must be > 0")
    if old > new:
        raise InvalidArgumentError("old_size", old, f"must be <= new_size {new}")
    return merkle.proof(old, leaves(log, new))
