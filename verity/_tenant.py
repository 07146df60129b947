"""One tenant of the embedded database: `TenantHandle`.

This is the imperative shell around the pure kernel (`verity.kernel`). Each
tenant owns a folder (placed by `verity.directory`) holding its hash-chained
log, its key ring and its signing key, and has its own kernel instance and
lock: tenants are the unit of isolation and of parallelism.

Every command runs the same way: read the clock once, let the kernel decide,
append the decided event to the tenant's log (durable under the sync policy),
then commit the decision to the kernel and answer. A rejected command, or an
append that fails, leaves the kernel untouched, so state never runs ahead of
the log. On open, the kernel is rebuilt by replaying the log.

Encryption at rest (docs/formats.md §5.2): the events of every stream whose
`DataClass` is not PUBLIC are stored as AES-256-GCM ciphertext under a data
key (DEK) that is fresh for every session that writes, wrapped by the
tenant's KEK, itself wrapped by the master key. The nonce is the record's log
offset: offsets only grow within a session and a DEK never outlives its
session, so no (key, nonce) pair repeats, even when a crash makes an offset
be written twice. PUBLIC events, and stream names, are stored verbatim.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar, final

from verity._keyring import KEYRING_FILE, Keyring
from verity._snapshot import SNAPSHOT_FILE, Snapshot, decode_snapshot, encode_snapshot
from verity._stream_index import StreamIndex
from verity._witness import Witness, checkpoint_problem, pinned_keys
from verity.crypto import (
    MasterKeyProvider,
    SigningKey,
    sign_checkpoint,
)
from verity.errors import (
    AlreadyExists,
    ClosedError,
    Conflict,
    CorruptionError,
    HistoryLost,
    InvalidArgument,
    KeyError_,
    NotFound,
    OutcomeUnknown,
    ReadOnly,
    StorageError,
    VerityError,
)
from verity.kernel import (
    AppendBatch,
    Applied,
    CreateStream,
    Decision,
    Kernel,
    RejectReason,
    StreamInfo,
    decode_events,
)
from verity.proofs import ConsistencyProof, InclusionProof, SignedCheckpoint, key_id_of
from verity.query import Engine, changes_of_event
from verity.query import QueryResult as EngineResult
from verity.storage import Log, open_log
from verity.storage._durable import read_mark
from verity.storage._files import FolderLock, make_private_dir, storage_error
from verity.storage._index import write_atomic
from verity.storage._merkle import DamagedNodes
from verity.store import MemoryStore, Store, open_store
from verity.types import (
    CheckpointPolicy,
    DataClass,
    IdempotencyId,
    Offset,
    RecordKind,
    RecoveryRecord,
    StreamId,
    SyncPolicy,
    TenantId,
)

__all__ = ["QueryResult", "Receipt", "TenantHandle", "TenantVerification"]

logger = logging.getLogger("verity")

TenantStore = Store | MemoryStore
"""The page file of a writer, or the in-memory tables of a reader."""

_Answer = TypeVar("_Answer")

Clock = Callable[[], int]

SIGNING_KEY_FILE: Final = "signing.key"
# Written when a writer meets damage to the log; an operator removes it (docs/trust.md).
DAMAGED_FILE: Final = "DAMAGED"
# An open that had to replay this many records writes a fresh snapshot.
SNAPSHOT_REPLAY_RECORDS_MIN: Final = 50_000

ENVELOPE_PLAIN: Final = 0x01  # an encoded kernel event, as is (its version byte)
ENVELOPE_ENCRYPTED: Final = 0x02
ENVELOPE_TABLES: Final = 0x03  # a SQL write statement's event (verity.query), as is
STORE_FOLDER: Final = "store"
STORE_PAGE_FILE: Final = "pages.vstore"
ENVELOPE_HEADER_BYTES: Final = 5  # marker u8 ‖ dek_id u32
# An EventsAppended kernel event starts with these: its version and type (docs/formats.md §5.1).
_EVENTS_APPENDED_PREFIX: Final = bytes([ENVELOPE_PLAIN, 2])
_OFFSET_ZERO: Final = Offset(0)


@final
@dataclass(frozen=True, slots=True)
class Receipt:
    """What a SQL write statement did: the log position and chain hash of its record."""

    offset: Offset
    """The log position of the statement's record; `query_at(..., offset)` includes it."""
    hash: bytes
    """The chain hash of that record (docs/formats.md §1.3)."""
    rows_affected: int


@final
@dataclass(frozen=True, slots=True)
class TenantVerification:
    """What `Verity.verify()` found of one tenant whose log is intact record by record."""

    tenant: TenantId
    records_checked: int
    signed_through: int
    """Records covered by the last signed checkpoint in the log (its offset)."""
    not_yet_signed: int
    """Records after it: chained, but no signature vouches for them yet."""
    public_key: bytes | None
    """The key the log pins now; None for a log from before keys were pinned."""
    broken_promises: tuple[str, ...]
    """A signed checkpoint (witnessed or trusted) the log no longer keeps: rollback, fork."""
    key_problem: str | None
    """Why this tenant cannot sign here (its signing key is missing or not the pinned one)."""


@final
@dataclass(frozen=True, slots=True)
class QueryResult:
    """The answer of a SELECT, and the log position it was answered as of."""

    columns: tuple[str, ...]
    rows: list[tuple[object, ...]]
    position: int
    """Every write at a log position <= this one is seen; -1 for an empty log."""


def _check_instance(name: str, value: object, expected: type, what: str) -> None:
    if not isinstance(value, expected) or isinstance(value, bool):
        raise InvalidArgument(name, value, f"must be {what}")


def _event_list(events: object) -> tuple[bytes, ...]:
    """`events` as a tuple of bytes, or InvalidArgument naming the first bad one."""
    if isinstance(events, bytes | bytearray | memoryview | str) or not isinstance(events, Sequence):
        raise InvalidArgument("events", events, "must be a list of bytes")
    for position, event in enumerate(events):
        if not isinstance(event, bytes):
            raise InvalidArgument(f"events[{position}]", event, "must be bytes")
    return tuple(events)


def _params(params: object) -> tuple[object, ...]:
    if isinstance(params, str | bytes) or not isinstance(params, Sequence):
        raise InvalidArgument("params", params, "must be a list or tuple of values")
    return tuple(params)


def _result(result: EngineResult, position: int) -> QueryResult:
    return QueryResult(result.columns, list(result.rows), position)


@final
class TenantHandle:
    """One tenant of a `Verity` database: its streams, events, checkpoints and proofs.

    Get it from `Verity.tenant(id)`. Thread-safe: one lock per tenant.
    """

    def __init__(
        self,
        tenant: TenantId,
        folder: Path,
        provider: MasterKeyProvider | str,
        sync_policy: SyncPolicy,
        checkpoint_policy: CheckpointPolicy,
        clock: Clock,
        retention_ns: int,
        *,
        signing_key_path: Path,
        witness_path: Path,
        read_only: bool = False,
    ) -> None:
        """Open the tenant in `folder`, which must exist (`Verity.tenant` makes a new one).

        A writer holds the folder's lock until close; `read_only` takes no
        lock and writes nothing (tables are rebuilt in memory from the log).
        `signing_key_path` is the tenant's signing key (in its folder, or in a
        key folder given at open); `witness_path` the list of the signed
        checkpoints it handed out (`verity._witness`), kept beside the key.
        A reader given no master key (`provider` is then why there is none)
        opens keyless: PUBLIC events, stream names, verification and proofs
        work; what needs a key (encrypted events, tables, `committed`) raises
        `KeyError_` saying why.
        """
        assert read_only or not isinstance(provider, str), "only a reader opens keyless"
        # Why this reader holds no data key, when it holds none.
        self._keyless: str | None = provider if isinstance(provider, str) else None
        self._tenant = tenant
        self._folder = folder
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._read_only = read_only
        self._signing_key_path = signing_key_path
        self._witness = Witness(witness_path)
        # Why this handle cannot sign, when it cannot (a missing or foreign signing key).
        self._key_problem: str | None = None
        # Damage a read or verify met, or that an operator has not yet cleared
        # (DAMAGED_FILE): the tenant then signs nothing and accepts no writes.
        self._damage: CorruptionError | None = None
        self._kernel = Kernel(tenant, retention_ns)
        # Per stream: the first stream offset of each record and that record's log offset,
        # on disk and mapped (verity._stream_index), so the heap does not grow with the log.
        self._stream_index = StreamIndex(folder, read_only=read_only)
        # Records below this were indexed before this session (`StreamIndex.load`).
        self._index_from = 0
        # Set by a fitting snapshot: the store holds every table event before this.
        self._store_caught_up_to = 0
        # Set when a store rebuild failed: the store was abandoned, so that one behind
        # the log never answers; reads name this until the tenant is reopened.
        self._store_failure: BaseException | None = None
        # Set when a store write failed on IO (a full disk): the store is behind the log
        # and is reopened and caught up before the next table read.
        self._store_behind: StorageError | None = None
        # Everything opened so far is released if a later step fails.
        self._folder_lock: FolderLock | None = None
        store: TenantStore | None = None
        try:
            if not read_only:
                self._folder_lock = FolderLock.acquire(folder)
            log_folder = folder / "log"
            new_tenant = not log_folder.exists()
            self._keyring: Keyring | None = self._open_keyring(provider, new_tenant)
            self._signing_key: SigningKey | None = self._open_signing_key(new_tenant)
            self._log: Log = open_log(
                log_folder,
                sync_policy=sync_policy,
                checkpoint_policy=checkpoint_policy,
                clock=clock,
                create=not read_only,
                read_only=read_only,
                signer=None if read_only else self._signing_key,
            )
            self._check_pinned_key()
            self._damage = self._recorded_damage()
            # The snapshot first: when it is evidence of lost history, the open is refused
            # before the store is judged against a log that is not whole (and set aside).
            snapshot = self._read_snapshot(retention_ns)
            store = self._open_store()
            self._store: TenantStore = store
            self._engine = Engine(store)
            restored_through = self._restore_snapshot(snapshot)
            self._replay(restored_through)
            # A session that appends nothing leaves a fitting snapshot as it is: closing
            # after reads changes no file (the next open replays the same few records).
            self._unchanged_size = self._log.size if restored_through > 0 else -1
        except BaseException:
            # Abandon, never close: a clean close would append a shutdown checkpoint
            # to a log that was just found corrupt. Release every file and key.
            # A rebuild during replay may have replaced the store first opened.
            current: TenantStore | None = getattr(self, "_store", store)
            if current is not None:
                current.abandon()
            log: Log | None = getattr(self, "_log", None)
            if log is not None:
                log.abandon()
            self._stream_index.close()
            self._release_keys_and_lock()
            raise

    def _open_keyring(self, provider: MasterKeyProvider | str, new_tenant: bool) -> Keyring | None:
        """The key ring; only a new tenant's is created, a missing one is never replaced.

        Its KEK wraps every DEK of the tenant's encrypted records: a new key
        ring would leave them undecryptable, so a writer of a tenant with a
        log and no key ring refuses to open, naming the file; a reader opens
        keyless (None).
        """
        path = self._folder / KEYRING_FILE
        if isinstance(provider, str):
            return None
        if not path.exists():
            if self._read_only and not new_tenant:
                self._keyless = (
                    f"key ring {path} is missing: encrypted events and tables cannot be read"
                )
                return None
            if not new_tenant or self._read_only:
                raise KeyError_(
                    f"key ring {path} is missing; tenant {int(self._tenant)} has a log, and a "
                    "new key ring would not open its encrypted records: restore the file"
                )
            return Keyring.create(path, provider, self._tenant)
        return Keyring(path, provider, self._tenant)

    def _open_signing_key(self, new_tenant: bool) -> SigningKey | None:
        """The signing key; only a new tenant's is created, a missing one is never replaced.

        A tenant whose key is missing still opens, for reads and verification;
        its log refuses to sign and to take writes (the key it pins is not
        at hand), and `verify()` says why.
        """
        path = self._signing_key_path
        if path.exists():
            return SigningKey.load(path)
        if self._read_only:
            return None  # a reader signs nothing
        if new_tenant:
            make_private_dir(path.parent, parents=True)
            return SigningKey.load_or_create(path)
        self._key_problem = (
            f"signing key {path} is missing; the tenant's log pins the key that signed its "
            "checkpoints: restore the file (a new key is made only by rotation)"
        )
        return None

    def _check_pinned_key(self) -> None:
        """Note why the handle cannot sign: its key is not the one the log pins."""
        pinned = self._log.pinned_key
        key = self._signing_key
        if pinned is not None and key is not None and key.public_key_bytes() != pinned:
            self._key_problem = (
                f"signing key {self._signing_key_path} has public key "
                f"{key.public_key_bytes().hex()}; the log pins {pinned.hex()}: the tenant "
                "signs nothing and accepts no writes (restore the key, or rotate it "
                "with the pinned one)"
            )

    def _release_keys_and_lock(self) -> None:
        keyring: Keyring | None = getattr(self, "_keyring", None)
        if keyring is not None:
            keyring.close()
        signing_key: SigningKey | None = getattr(self, "_signing_key", None)
        if signing_key is not None:
            signing_key.close()
        if self._folder_lock is not None:
            self._folder_lock.release()

    # ------------------------------------------------------------ open

    def _open_store(self) -> TenantStore:
        """The projection store, if it is sound and describes a prefix of this log.

        A reader (`read_only`) writes no page: it rebuilds the tables in memory
        from the log's table events instead.

        The store is derived data. One that cannot be opened (no valid
        superblock, a damaged page), or that names a position the log does not
        have or a different record there, is set aside (kept, renamed) and
        rebuilt from the log with a warning, never trusted: it is renamed to
        `store.damaged-<ns>` or `store.stale-<ns>` and a new one is opened, which
        `_replay` fills from the log. Damage found later, by a read, a write's
        plan or a commit, is handled the same way by `_rebuild_store`. A
        `CorruptionError` about any other file (the log, the keyring) is raised.
        """
        if self._read_only:
            return MemoryStore()
        try:
            store = self._open_sealed_store()
        except CorruptionError as failure:
            if not self._is_store_damage(failure):
                raise
            self._move_store_aside("damaged", str(failure))
            return self._open_sealed_store()
        applied = store.applied()
        if applied is None:
            return store
        position, record_hash = applied
        if position < self._log.size and self._log.read(position).chain_hash() == record_hash:
            return store
        store.close()
        self._move_store_aside(
            "stale", f"it applied position {position}, which this log does not hold as recorded"
        )
        return self._open_sealed_store()

    def _open_sealed_store(self) -> Store:
        """Open the store folder with its page key; a new page file gets a new key."""
        folder = self._folder / STORE_FOLDER
        fresh = not (folder / STORE_PAGE_FILE).exists()
        return open_store(folder, page_key=self._keys().page_key(fresh=fresh))

    def _move_store_aside(self, why: str, problem: str) -> None:
        """Rename the store folder to `store.<why>-<ns>` (kept for inspection), with a warning."""
        folder = self._folder / STORE_FOLDER
        aside = folder.with_name(f"{STORE_FOLDER}.{why}-{time.time_ns()}")
        folder.rename(aside)
        logger.warning(
            "projection store %s is %s (%s); moved it to %s, it is rebuilt from the log",
            folder,
            why,
            problem,
            aside,
        )

    def _is_store_damage(self, failure: CorruptionError) -> bool:
        """Whether `failure` is about the store's files (derived), not the log (the truth)."""
        if failure.file is None:
            return False
        store_folder = os.path.abspath(self._folder / STORE_FOLDER)
        return os.path.abspath(failure.file).startswith(store_folder + os.sep)

    def _rebuild_store(self, failure: CorruptionError) -> None:
        """Set the damaged store aside and rebuild it from every table event of the log.

        If the rebuild fails (the log is damaged, say), the new store is
        abandoned and every later read raises: a store behind the log must not
        answer as if it were current.
        """
        assert self._is_store_damage(failure)
        assert self._store_failure is None
        self._store.abandon()
        try:
            self._move_store_aside("damaged", str(failure))
            self._store = self._open_sealed_store()
            self._engine = Engine(self._store)
            self._catch_up_store()
        except BaseException as rebuild_failure:
            self._store.abandon()
            self._store_failure = rebuild_failure
            raise

    def _note_store_behind(self, failure: StorageError) -> None:
        """The store failed a write (it closed itself): tables answer again once it caught up."""
        logger.warning(
            "projection store of tenant %d is behind the log (%s); it catches up from the "
            "log before the next table read",
            int(self._tenant),
            failure,
        )
        self._store_behind = failure

    def _reopen_store_behind(self) -> None:
        """Reopen the store that failed a write and apply what the log holds beyond it.

        Opening needs no space; applying does. While the disk stays full this
        raises the `StorageFull` (the tables cannot answer as of the log's end);
        the next read tries again.
        """
        assert self._store_behind is not None
        self._store.abandon()
        try:
            self._store = self._open_sealed_store()
            self._engine = Engine(self._store)
            self._catch_up_store()
        except StorageError as failure:
            self._store.abandon()
            self._store_behind = failure
            raise
        self._store_behind = None

    def _catch_up_store(self) -> None:
        """Apply the table events the store has not applied yet, in log order."""
        applied = self._store.applied()
        start = 0 if applied is None else applied[0] + 1
        wrote = False
        for record in self._log.records(start):
            if record.header.kind is not RecordKind.DATA:
                continue
            log_offset = int(record.header.offset)
            payload = self._plain_payload(record.payload, log_offset)
            if payload[:1] == bytes([ENVELOPE_TABLES]):
                changes = changes_of_event(payload[1:])
                self._store.write_batch(log_offset, record.chain_hash(), changes, sync=False)
                wrote = True
        if wrote:
            self._store.sync()

    def _with_store(self, read: Callable[[], _Answer]) -> _Answer:
        """`read()` through the store; if the store is damaged, rebuild it and ask again once.

        `read` must look up `self._store` or `self._engine` when called: the
        retry runs against the rebuilt ones. A second failure is raised.
        """
        if self._keyring is None:
            self._keys()  # every table event is sealed: a keyless reader has no tables
        if self._store_failure is not None:
            raise ClosedError(
                f"projection store of tenant {int(self._tenant)} (its rebuild from the log "
                f"failed: {self._store_failure}; reopen the tenant)"
            )
        if self._store_behind is not None:
            self._reopen_store_behind()
        try:
            return read()
        except CorruptionError as failure:
            if not self._is_store_damage(failure):
                raise
            self._rebuild_store(failure)
        return read()

    def _replay(self, kernel_from: int) -> None:
        """Replay records `kernel_from ..` into the kernel; the store and the stream index
        catch up from their own positions."""
        log = self._log
        applied = self._store.applied()
        store_from = max(0 if applied is None else applied[0] + 1, self._store_caught_up_to)
        index_from = self._stream_index.load(log.size, self._chain_hash_at)
        self._index_from = index_from
        caught_up = False
        store_damage: CorruptionError | None = None
        replayed = 0
        indexed = 0
        for record in log.records(min(kernel_from, store_from, index_from)):
            log_offset = int(record.header.offset)
            if record.header.kind is not RecordKind.DATA:
                continue
            if self._keyring is None and record.payload[:1] == bytes([ENVELOPE_ENCRYPTED]):
                continue  # a keyless reader knows only the plain records
            payload = self._plain_payload(record.payload, log_offset)
            if payload[:1] == bytes([ENVELOPE_TABLES]):
                if log_offset >= store_from and store_damage is None:
                    changes = changes_of_event(payload[1:])
                    try:
                        self._store.write_batch(
                            log_offset, record.chain_hash(), changes, sync=False
                        )
                    except CorruptionError as failure:
                        if not self._is_store_damage(failure):
                            raise
                        # Finish the kernel's replay first; the store is rebuilt after.
                        store_damage = failure
                    caught_up = True
                continue
            indexed += log_offset >= index_from
            if log_offset < kernel_from:
                if log_offset >= index_from:
                    self._index_payload(payload, log_offset)
                continue
            replayed += 1
            try:
                decision = self._kernel.replay(payload)
            except CorruptionError as failure:
                raise CorruptionError(
                    f"log record does not replay: {failure.reason}",
                    file=str(self._folder / "log"),
                    record_offset=log_offset,
                ) from None
            self._index(decision, log_offset)
        if store_damage is not None:
            self._rebuild_store(store_damage)
        elif caught_up:
            # The commit reads catalog pages, which may be damaged too.
            self._with_store(lambda: self._store.sync())
        if replayed >= SNAPSHOT_REPLAY_RECORDS_MIN and not self._read_only:
            self._write_snapshot_or_warn()
        if indexed >= SNAPSHOT_REPLAY_RECORDS_MIN and not self._read_only:
            self._flush_stream_index_or_warn()

    # ------------------------------------------------------------ snapshots

    def _write_snapshot_or_warn(self) -> None:
        """Write the snapshot; if the disk refuses, say so and go on (it is only a cache).

        A damaged record it would read (record 0, which names the log) is no
        reason to fail a close either: `verify()` reports the damage.
        """
        try:
            self._write_snapshot()
        except (OSError, CorruptionError) as failure:
            logger.warning(
                "could not write kernel snapshot %s (%s); the next open replays more of the log",
                self._folder / SNAPSHOT_FILE,
                failure,
            )

    def _write_snapshot(self) -> None:
        """Store the kernel as of the log's end (docs/formats.md §5.4).

        Derived data, written atomically: a missing, damaged or stale snapshot
        only means the next open replays more of the log.
        """
        size = self._log.size
        genesis = self._log.read(0).chain_hash() if size else bytes(32)
        data = encode_snapshot(
            size,
            bytes(self._log.head_hash),
            genesis,
            self._kernel.snapshot(),
            self._store.applied(),
        )
        write_atomic(self._folder / SNAPSHOT_FILE, data)

    def _reader_behind_writer(self, size: int) -> bool:
        """A reader's log stops where it was durable at its open; a writer may be further now.

        The durability mark on disk says how far the log is durable now: at least
        `size` records means nothing is lost, this reader just began earlier.
        """
        if not self._read_only:
            return False
        mark = read_mark(self._folder / "log")
        return mark is not None and mark.size >= size

    def _is_of_this_log(self, snapshot: Snapshot) -> bool:
        """The snapshot names this log's record 0 (it was written of this log, not copied in)."""
        if snapshot.genesis is None or snapshot.kernel.tenant != self._tenant:
            return False
        if self._log.size == 0:
            return True  # every record is gone, record 0 with them
        return bool(self._log.read(0).chain_hash() == snapshot.genesis)

    def _read_snapshot(self, retention_ns: int) -> Snapshot | None:
        """The snapshot, if it fits this log; `HistoryLost` if it reflects records the log lost.

        A snapshot that is damaged, or describes another log (the record it
        names is a different one), is ignored with a warning, and the whole
        log is replayed. One taken with another retention is ignored
        silently: the remembered ids would differ. Reads the snapshot and the
        log only: the store is opened (and judged) after this check.
        """
        path = self._folder / SNAPSHOT_FILE
        if self._keyring is None:
            return None  # a keyless reader replays the plain records only, from the start
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            snapshot = decode_snapshot(data, path)
            size, head = snapshot.size, snapshot.head
            if size > self._log.size and self._reader_behind_writer(size):
                return None  # written by a live writer after this reader opened its log
            if size > self._log.size and self._is_of_this_log(snapshot):
                # It was written at a clean close, after every record it reflects was
                # durable: a log shorter than that lost acknowledged history.
                raise HistoryLost(
                    f"the kernel snapshot {path.name} reflects {size} records, the log "
                    f"holds {self._log.size}",
                    file=str(self._folder / "log"),
                    first_lost=self._log.size,
                    end_lost=size,
                )
            if size > self._log.size or (
                size > 0 and self._log.read(size - 1).chain_hash() != head
            ):
                raise CorruptionError(
                    f"it reflects {size} records ending in chain hash {head.hex()}, which "
                    "this log does not hold",
                    file=str(path),
                )
        except HistoryLost:
            raise
        except CorruptionError as failure:
            logger.warning(
                "ignoring kernel snapshot %s (%s); replaying the whole log", path, failure
            )
            return None
        kernel = snapshot.kernel
        if kernel.tenant != self._tenant or kernel.retention_ns != retention_ns:
            return None
        return snapshot

    def _restore_snapshot(self, snapshot: Snapshot | None) -> int:
        """Restore the kernel from a fitting snapshot (`_read_snapshot`); the position to
        replay from (0 without one)."""
        if snapshot is None:
            return 0
        size = snapshot.size
        self._kernel = snapshot.kernel
        # A store that still applied what it had when the snapshot was written has
        # every table event before it: its catch-up can start there too.
        self._store_caught_up_to = size if self._store.applied() == snapshot.store_applied else 0
        return size

    def _index(self, decision: Decision, log_offset: int) -> None:
        # A stream's creation holds no events; records below _index_from are indexed already.
        if decision.count and log_offset >= self._index_from:
            self._stream_index.append(decision.stream, decision.first_offset, log_offset)

    def _index_payload(self, payload: bytes, log_offset: int) -> None:
        """Index an events record without the kernel (one its snapshot already reflects)."""
        if payload[:2] != _EVENTS_APPENDED_PREFIX:
            return  # a stream creation, or a table statement
        try:
            stream, first, _ = decode_events(payload)
        except CorruptionError as failure:
            raise CorruptionError(
                f"log record does not decode: {failure.reason}",
                file=str(self._folder / "log"),
                record_offset=log_offset,
            ) from None
        self._stream_index.append(int(stream), int(first), log_offset)

    def _chain_hash_at(self, log_offset: int) -> bytes:
        return bytes(self._log.read(log_offset).chain_hash())

    def _rebuild_stream_index(self, problem: str) -> None:
        """Index every events record of the log again, into an emptied index (a warning)."""
        logger.warning(
            "stream index %s %s; rebuilding it from the log", self._stream_index.path, problem
        )
        self._stream_index.reset()
        self._index_from = 0
        for record in self._log.records():
            if record.header.kind is not RecordKind.DATA:
                continue
            log_offset = int(record.header.offset)
            try:
                payload = self._plain_payload(record.payload, log_offset)
            except KeyError_:
                continue  # sealed under a key this handle lacks: its stream is not readable here
            self._index_payload(payload, log_offset)

    def _flush_stream_index_or_warn(self) -> None:
        """Vouch for the stream index up to the log's end: the next open indexes nothing before.

        Derived data: if the disk refuses, the next open indexes more of the log.
        """
        if self._stream_index.stale:
            return  # an entry is missing: the next open indexes again past the last flush
        size = self._log.size
        head = bytes(self._log.head_hash) if size else bytes(32)
        try:
            self._stream_index.flush(size, head)
        except OSError as failure:
            logger.warning(
                "could not write stream index %s (%s); the next open indexes more of the log",
                self._stream_index.path,
                failure,
            )

    def _indexed_events(
        self, stream: int, from_offset: int, next_offset: int, max_bytes: int
    ) -> list[bytes]:
        """`read_events` through the stream index, checking each record against its entry.

        An entry that names a record other than the stream's next one raises
        `CorruptionError` naming the index file (the caller rebuilds it).
        """
        if self._stream_index.stale:
            self._rebuild_stream_index("misses entries the disk refused")
        result: list[bytes] = []
        used_bytes = 0
        expected_first = -1  # the stream offset the next record must start at
        for first, log_offset in self._stream_index.batches(stream, from_offset):
            if max_bytes <= 0:
                return result
            events = self._events_of(stream, first, log_offset)
            skip = max(from_offset - first, 0) if expected_first < 0 else 0
            if (expected_first >= 0 and first != expected_first) or skip > len(events):
                raise self._index_damage(f"skips events of stream {stream} before offset {first}")
            for event in events[skip:]:
                if result and used_bytes + len(event) > max_bytes:
                    return result
                result.append(event)
                used_bytes += len(event)
            expected_first = first + len(events)
        if max_bytes > 0 and max(expected_first, 0) != next_offset:
            raise self._index_damage(
                f"ends stream {stream} at offset {expected_first}, not {next_offset}"
            )
        return result

    def _events_of(self, stream: int, first: int, log_offset: int) -> tuple[bytes, ...]:
        """The events of record `log_offset`, which the index says holds `stream` from `first`."""
        if log_offset >= self._log.size:
            raise self._index_damage(f"names log record {log_offset}, past the log's end")
        payload = self._read_payload(log_offset)
        try:
            found_stream, found_first, events = decode_events(payload)
        except CorruptionError:
            # The log's own damage is found by its CRC and authentication (and by
            # verify): a record that passed them and is no EventsAppended was misnamed.
            raise self._index_damage(
                f"names log record {log_offset}, which holds no events"
            ) from None
        if found_stream != stream or found_first != first:
            raise self._index_damage(
                f"names log record {log_offset} for offset {first} of stream {stream}; it "
                f"holds offset {found_first} of stream {found_stream}"
            )
        return events

    def _index_damage(self, problem: str) -> CorruptionError:
        return CorruptionError(problem, file=str(self._stream_index.path))

    # ------------------------------------------------------------ encryption

    def _aad(self, dek_id: int, log_offset: int) -> bytes:
        return (
            bytes([ENVELOPE_ENCRYPTED])
            + dek_id.to_bytes(4, "big")
            + int(self._tenant).to_bytes(8, "big")
            + log_offset.to_bytes(8, "big")
        )

    def _stored_payload(self, decision: Decision, log_offset: int) -> bytes:
        payload = decision.payload
        assert payload is not None and payload[0] == ENVELOPE_PLAIN
        if decision.count == 0 or not decision.data_class.encrypted_at_rest:
            return payload
        dek_id, key = self._keys().session_key()
        ciphertext = key.encrypt(log_offset, payload, self._aad(dek_id, log_offset))
        return bytes([ENVELOPE_ENCRYPTED]) + dek_id.to_bytes(4, "big") + ciphertext

    def _read_payload(self, log_offset: int) -> bytes:
        """Record `log_offset`'s plain payload; damage met on the way marks the tenant."""
        try:
            return self._plain_payload(self._log.read(log_offset).payload, log_offset)
        except CorruptionError as failure:
            self._note_damage(failure)
            raise

    def _keys(self) -> Keyring:
        """The key ring, or `KeyError_` saying why a keyless reader has none."""
        if self._keyring is None:
            assert self._keyless is not None
            raise KeyError_(self._keyless)
        return self._keyring

    def _plain_payload(self, stored: bytes, log_offset: int) -> bytes:
        if not stored or stored[0] != ENVELOPE_ENCRYPTED:
            return stored
        if len(stored) < ENVELOPE_HEADER_BYTES:
            raise CorruptionError(
                "encrypted record shorter than its header",
                file=str(self._folder / "log"),
                record_offset=log_offset,
            )
        dek_id = int.from_bytes(stored[1:5], "big")
        key = self._keys().key(dek_id, log_offset)
        try:
            return key.decrypt(log_offset, stored[5:], self._aad(dek_id, log_offset))
        except VerityError as failure:
            raise CorruptionError(
                f"encrypted record fails authentication: {failure}",
                file=str(self._folder / "log"),
                record_offset=log_offset,
            ) from None

    # ------------------------------------------------------------ commands

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"tenant {int(self._tenant)}")

    def _check_writable(self) -> None:
        self._check_open()
        if self._read_only:
            raise ReadOnly(f"tenant {int(self._tenant)}")
        if self._key_problem is not None and self._log.pinned_key is not None:
            raise KeyError_(self._key_problem)
        if self._damage is not None:
            damage = self._damage
            raise CorruptionError(
                f"tenant {int(self._tenant)}'s log is damaged ({damage.reason}): it signs "
                f"nothing and accepts no writes until an operator restores it and removes "
                f"{self._folder / DAMAGED_FILE} (docs/trust.md, 'When a tenant is damaged')",
                file=damage.file,
                record_offset=damage.record_offset,
            )

    def _signer(self) -> SigningKey:
        if self._key_problem is not None:
            raise KeyError_(self._key_problem)
        if self._signing_key is None:
            raise KeyError_(
                f"tenant {int(self._tenant)} has no signing key here "
                f"({self._signing_key_path} is missing)"
            )
        return self._signing_key

    # ------------------------------------------------------------ damage

    def _recorded_damage(self) -> CorruptionError | None:
        """The damage an earlier handle found and recorded, until an operator clears it."""
        path = self._folder / DAMAGED_FILE
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
            reason = str(found["reason"])
            offset = found.get("record_offset")
            return CorruptionError(
                reason,
                file=None if found.get("file") is None else str(found["file"]),
                record_offset=None if offset is None else int(offset),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as failure:
            # An unreadable marker still says an operator has not cleared the tenant.
            return CorruptionError(f"damage marker unreadable: {failure}", file=str(path))

    def _note_damage(self, failure: CorruptionError) -> None:
        """Remember damage to the log (not to derived files); record it for later opens."""
        if isinstance(failure, HistoryLost | DamagedNodes) or self._damage is not None:
            return  # Merkle nodes are rebuilt; history loss already stops every open
        if failure.file is not None and not failure.file.startswith(str(self._folder / "log")):
            return  # the store or a key file: derived or reported on its own
        self._damage = failure
        if self._read_only:
            return  # a reader writes nothing; the next verify by a writer records it
        marker = {
            "reason": failure.reason,
            "file": failure.file,
            "record_offset": failure.record_offset,
            "found_at_ns": self._clock(),
        }
        try:
            write_atomic(self._folder / DAMAGED_FILE, json.dumps(marker).encode())
        except OSError as os_error:
            logger.warning("could not record damage in %s: %s", DAMAGED_FILE, os_error)

    @property
    def read_only(self) -> bool:
        """Whether this handle was opened read-only (it writes nothing)."""
        return self._read_only

    def _now(self) -> int:
        now = self._clock()
        if not isinstance(now, int) or isinstance(now, bool) or now < 0:
            raise InvalidArgument("clock()", now, "must return ns since the epoch")
        return now

    def _execute(self, decision: Decision, idempotency_id: bytes | None = None) -> None:
        """Append the decided event durably, then commit it to the kernel.

        A failed append leaves the kernel as it was (see `_append_record`).
        """
        log_offset = self._append_record(
            lambda at: self._stored_payload(decision, at), "append", idempotency_id
        )
        self._kernel.commit(decision)
        self._index(decision, log_offset)

    def _outcome_of(
        self, failure: StorageError, what: str, idempotency_id: bytes | None, log_offset: int
    ) -> StorageError:
        """The error to raise for a failed log write: `failure` itself when the log knows
        the outcome, else `OutcomeUnknown` naming where the write would be."""
        if failure.written is not None or isinstance(failure, OutcomeUnknown):
            return failure
        return OutcomeUnknown(
            f"{what} of tenant {int(self._tenant)} at log offset {log_offset}",
            failure.os_error,
            path=failure.path,
            idempotency_id=idempotency_id,
            log_offset=log_offset,
        )

    def _append_record(
        self, build: Callable[[int], bytes], what: str, idempotency_id: bytes | None
    ) -> int:
        """Append the payload `build(log_offset)` makes (sealing it there); its offset.

        The log says what it knows of a failed write (docs/formats.md §4.7):
        `written=False`, nothing of it is in the log, and the error is raised
        as it is; `written=None`, it may be, and `OutcomeUnknown` says where
        it would be and which idempotency id to ask `committed()` about
        (after a reopen: the log takes no write until then). When a failed
        write's sealed bytes may have reached the disk, the session DEK is
        retired, so no (key, nonce) pair ever seals two plaintexts.
        """
        log_offset = self._log.size
        generation = self._log.failed_write_generation
        stored = build(log_offset)
        try:
            written = self._log.append(stored)
        except StorageError as failure:
            if self._log.failed_write_generation != generation and self._keyring is not None:
                self._keyring.retire_session_key()
            outcome = self._outcome_of(failure, what, idempotency_id, log_offset)
            if outcome is failure:
                raise
            raise outcome from failure
        assert int(written) == log_offset
        assert self._log.size > log_offset
        return log_offset

    def _raise_rejected(
        self, reason: RejectReason, name: object, stream: object, command: object
    ) -> None:
        if reason is RejectReason.INVALID_NAME:
            raise InvalidArgument(
                "name", name, "must be 1..128 UTF-8 bytes of printable characters"
            )
        if reason is RejectReason.INVALID_DATA_CLASS:
            raise InvalidArgument("data_class", command, "must be a DataClass")
        if reason is RejectReason.DUPLICATE_NAME:
            raise AlreadyExists("stream name", name)
        if reason in (RejectReason.UNKNOWN_STREAM, RejectReason.STREAM_OF_ANOTHER_TENANT):
            raise NotFound("stream", stream, f"tenant {int(self._tenant)} has no such stream")
        if reason is RejectReason.OFFSET_MISMATCH:
            next_offset = self._kernel.next_offset(int(stream))  # type: ignore[call-overload]
            raise Conflict(
                "expected_offset", command, f"stream {stream} is at offset {int(next_offset)}"
            )
        if reason is RejectReason.EMPTY_BATCH:
            raise InvalidArgument("events", [], "must hold at least one event")
        if reason is RejectReason.BATCH_TOO_LARGE:
            raise InvalidArgument("events", command, "batch is over the event count or byte limit")
        raise InvalidArgument(reason.value, command, "rejected by the kernel")

    def create_stream(self, name: str, data_class: DataClass) -> StreamId:
        """Create a stream; its name is unique within the tenant."""
        _check_instance("name", name, str, "a str")
        _check_instance("data_class", data_class, DataClass, "a DataClass")
        with self._lock:
            self._check_writable()
            command = CreateStream(self._tenant, name, int(data_class), self._now())
            decision = self._kernel.decide(command)
            outcome = decision.outcome
            if not isinstance(outcome, Applied):
                self._raise_rejected(outcome.reason, name, None, data_class)
                raise AssertionError("unreachable")
            self._execute(decision)
            return StreamId(outcome.stream)

    def streams(self) -> list[StreamInfo]:
        """Every stream of the tenant, in creation order."""
        with self._lock:
            self._check_open()
            return self._kernel.streams()

    def append(
        self,
        stream: StreamId,
        events: Sequence[bytes],
        *,
        idempotency_id: IdempotencyId | None = None,
        expected_offset: Offset | None = None,
    ) -> Offset:
        """Append `events` in order; return the stream offset of the first.

        With `idempotency_id`, a retry of an append that already committed
        returns the original offset and appends nothing (also after a
        restart). With `expected_offset`, the append happens only if the
        stream's next offset is that value (else `Conflict`).
        """
        _check_instance("stream", stream, int, "a StreamId")
        batch = _event_list(events)
        if idempotency_id is not None:
            _check_instance("idempotency_id", idempotency_id, IdempotencyId, "an IdempotencyId")
        if expected_offset is not None:
            _check_instance("expected_offset", expected_offset, int, "an Offset")
        with self._lock:
            self._check_writable()
            command = AppendBatch(
                self._tenant,
                int(stream),
                batch,
                None if idempotency_id is None else bytes(idempotency_id),
                None if expected_offset is None else int(expected_offset),
                self._now(),
            )
            decision = self._kernel.decide(command)
            outcome = decision.outcome
            if not isinstance(outcome, Applied):
                self._raise_rejected(outcome.reason, None, stream, expected_offset)
                raise AssertionError("unreachable")
            if not outcome.duplicate:
                self._execute(decision, None if idempotency_id is None else bytes(idempotency_id))
            return Offset(outcome.offset)

    def read_events(
        self, stream: StreamId, from_offset: Offset = _OFFSET_ZERO, max_bytes: int = 1 << 20
    ) -> list[bytes]:
        """Events of `stream` from `from_offset` on, in order, up to `max_bytes` in total.

        At least one event is returned when any is there and `max_bytes` > 0,
        even one larger than `max_bytes`, so a reader always makes progress.
        """
        _check_instance("stream", stream, int, "a StreamId")
        _check_instance("from_offset", from_offset, int, "an Offset")
        _check_instance("max_bytes", max_bytes, int, "an int")
        if from_offset < 0:
            raise InvalidArgument("from_offset", from_offset, "must be >= 0")
        if max_bytes < 0:
            raise InvalidArgument("max_bytes", max_bytes, "must be >= 0")
        with self._lock:
            self._check_open()
            if self._kernel.stream(int(stream)) is None:
                raise NotFound("stream", stream, f"tenant {int(self._tenant)} has no such stream")
            if self._keyring is None and self._is_sealed(int(stream)):
                self._keys()  # a keyless reader saw none of its (sealed) events
            next_offset = int(self._kernel.next_offset(int(stream)))
            if from_offset > next_offset:
                raise NotFound(
                    "from_offset", from_offset, f"stream {stream} has {next_offset} events"
                )
            arguments = (int(stream), int(from_offset), next_offset, max_bytes)
            try:
                return self._indexed_events(*arguments)
            except CorruptionError as failure:
                if failure.file != str(self._stream_index.path):
                    raise  # the log's records, not the derived index
                self._rebuild_stream_index(failure.reason)
            return self._indexed_events(*arguments)

    def committed(self, idempotency_id: IdempotencyId) -> Offset | None:
        """The offset the append with `idempotency_id` got, or None if it never committed."""
        _check_instance("idempotency_id", idempotency_id, IdempotencyId, "an IdempotencyId")
        with self._lock:
            self._check_open()
            if self._keyring is None:
                self._keys()  # the sealed appends' ids are unknown to a keyless reader
            return self._kernel.committed(bytes(idempotency_id))

    def _is_sealed(self, stream: int) -> bool:
        """Whether `stream`'s events are stored encrypted (any data class but PUBLIC)."""
        return any(
            int(info.stream_id) == stream and info.data_class.encrypted_at_rest
            for info in self._kernel.streams()
        )

    # ------------------------------------------------------------ tables (SQL)

    def execute(self, sql: str, params: Sequence[object] = ()) -> Receipt:
        """Run one SQL write statement (DDL or DML); it becomes one record of the log.

        The statement is checked against the current tables first; a bad one
        raises a `SqlError` (naming the construct) and appends nothing.
        """
        _check_instance("sql", sql, str, "a str")
        checked = _params(params)
        with self._lock:
            self._check_writable()
            if self._engine.prepare(sql).is_query:
                raise InvalidArgument("sql", sql, "is a query: use query() or query_at()")
            # Planning reads the store; nothing is appended until it succeeds.
            plan = self._with_store(lambda: self._engine.plan_write(sql, checked))

            def sealed(log_offset: int) -> bytes:
                # Table rows are sensitive by default: the statement's event is sealed
                # under the session DEK like a PHI event (docs/formats.md §5.3).
                dek_id, key = self._keys().session_key()
                ciphertext = key.encrypt(
                    log_offset,
                    bytes([ENVELOPE_TABLES]) + plan.event,
                    self._aad(dek_id, log_offset),
                )
                return bytes([ENVELOPE_ENCRYPTED]) + dek_id.to_bytes(4, "big") + ciphertext

            log_offset = self._append_record(sealed, "SQL write", None)
            if self._log.size == log_offset + 1:
                # Appends happen under this lock, so the head is this record: its chain
                # hash is at hand, without reading the (possibly large) record back.
                record_hash = self._log.head_hash
            else:
                # An automatic checkpoint record followed it.
                record_hash = self._log.read(log_offset).chain_hash()
            assert len(record_hash) == 32, record_hash
            # The log is durable; the store catches up from it after a crash, so its
            # own fsync can wait for sync() or close().
            try:
                if self._store_behind is None:
                    self._store.write_batch(log_offset, record_hash, plan.changes, sync=False)
            except CorruptionError as failure:
                if not self._is_store_damage(failure):
                    raise
                # The record is in the log: the rebuild applies it. Never append twice.
                self._rebuild_store(failure)
            except StorageError as failure:
                # The statement is committed (the log holds it); the store, derived,
                # closed itself at its last durable batch and catches up when it can.
                self._note_store_behind(failure)
            return Receipt(Offset(log_offset), bytes(record_hash), plan.rows_affected)

    def query(self, sql: str, params: Sequence[object] = ()) -> QueryResult:
        """Answer a SELECT on the tables as they are now."""
        _check_instance("sql", sql, str, "a str")
        checked = _params(params)
        with self._lock:
            self._check_open()
            result = self._with_store(lambda: self._engine.query(sql, checked))
            return _result(result, self._log.size - 1)

    def query_at(self, sql: str, params: Sequence[object], position: int) -> QueryResult:
        """Answer a SELECT as of log position `position`: every write at <= it is seen."""
        _check_instance("sql", sql, str, "a str")
        _check_instance("position", position, int, "an int log position")
        checked = _params(params)
        with self._lock:
            self._check_open()
            if not 0 <= position < self._log.size:
                raise NotFound("position", position, f"the log has {self._log.size} records")
            result = self._with_store(lambda: self._engine.query(sql, checked, as_of=int(position)))
            return _result(result, int(position))

    def explain(self, sql: str) -> str:
        """How a SELECT would run: point lookup, range scan, index scan or table scan."""
        _check_instance("sql", sql, str, "a str")
        with self._lock:
            self._check_open()
            return self._with_store(lambda: self._engine.explain(sql))

    # ------------------------------------------------------------ proofs

    def checkpoint(self) -> SignedCheckpoint:
        """Append a signed checkpoint record and return the checkpoint it carries.

        The checkpoint covers every record before its own: `tree_size` is its
        record's offset. The signature is stored in the log (formats §1.4), so
        the folder and the public key alone prove it; the checkpoint is also
        added to the tenant's witness file before it is returned, so a later
        `verify()` detects a log cut back behind it. A damaged tenant, or one
        without its pinned signing key, signs nothing.
        """
        with self._lock:
            self._check_writable()
            signer = self._signer()
            offset_wanted = self._log.size
            try:
                # Room in the witness first: a checkpoint is never signed unrecorded.
                self._witness.reserve()
            except OSError as failure:
                raise storage_error(
                    f"checkpoint of tenant {int(self._tenant)}: reserving its witness entry",
                    failure,
                    path=self._witness.path,
                    written=False,
                ) from failure
            try:
                written = self._log.append_checkpoint()
            except StorageError as failure:
                outcome = self._outcome_of(failure, "checkpoint", None, offset_wanted)
                if outcome is failure:
                    raise
                raise outcome from failure
            offset = int(written.offset)
            if self._log.pinned_key is not None:
                signed = self._log.signed_checkpoint(offset)
            else:
                # A log from before keys were pinned keeps unsigned records: sign the
                # same statement here, for the caller only.
                signed = sign_checkpoint(
                    signer,
                    offset,
                    bytes(written.merkle_root),
                    bytes(written.chain_hash),
                    int(written.created_at),
                )
            try:
                self._witness.record(signed)
            except OSError as failure:
                raise storage_error(
                    f"signed checkpoint at log offset {offset} is in the log; recording it "
                    "in the witness",
                    failure,
                    path=self._witness.path,
                    written=True,
                ) from failure
            return signed

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        """The last signed checkpoint stored in the log, or None; appends nothing.

        This is what a proof is checked against without writing (`verity proof`).
        """
        with self._lock:
            self._check_open()
            if self._log.pinned_key is None:
                return None
            signed_through = self._log.signed_through()
            return self._log.signed_checkpoint(signed_through) if signed_through else None

    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key that signs this tenant's checkpoints.

        The key the log pins (readable without any secret), or for a log from
        before keys were pinned, the signing key's.
        """
        with self._lock:
            self._check_open()
            pinned = self._log.pinned_key
            if pinned is not None:
                return bytes(pinned)
        return self._signer().public_key_bytes()

    def inclusion_proof(self, leaf_index: int, tree_size: int) -> InclusionProof:
        """RFC 9162 inclusion proof of log record `leaf_index` in the first `tree_size`."""
        with self._lock:
            self._check_open()
            return self._log.inclusion_proof(leaf_index, tree_size)

    def consistency_proof(self, old_size: int, new_size: int) -> ConsistencyProof:
        """RFC 9162 proof that the first `old_size` records are a prefix of `new_size`."""
        with self._lock:
            self._check_open()
            return self._log.consistency_proof(old_size, new_size)

    def log_size(self) -> int:
        """How many records the tenant's log holds (leaves of its Merkle tree)."""
        with self._lock:
            self._check_open()
            return self._log.size

    def recoveries(self) -> list[RecoveryRecord]:
        """Every recovery of the tenant's log (generation, discarded range), oldest first."""
        with self._lock:
            self._check_open()
            return self._log.recoveries()

    # ------------------------------------------------------------ lifecycle

    def _close_derived_then(self, close_log: Callable[[], None]) -> None:
        """Close the store, then (whatever the store did) `close_log`; raise the first failure.

        The store is derived: one that cannot be written (a full disk) is
        abandoned, and the next open catches it up from the log. The log
        always gets its close, and the lock is released by the caller.
        """
        failure: StorageError | None = None
        try:
            if self._store_behind is None:
                self._close_store()
            else:
                self._store.abandon()
        except StorageError as store_failure:
            self._store.abandon()
            failure = store_failure
        try:
            close_log()
        except StorageError:
            self._log.abandon()
            raise
        if failure is not None:
            raise failure

    def _close_store(self) -> None:
        """Close the store; one found damaged by its last commit is set aside instead.

        Its unsynced batches are all in the log, so the next open rebuilds it.
        """
        try:
            self._store.close()
        except CorruptionError as failure:
            if not self._is_store_damage(failure):
                raise
            self._store.abandon()
            self._move_store_aside("damaged", str(failure))

    @property
    def tenant(self) -> TenantId:
        return self._tenant

    def _sync(self) -> None:
        with self._lock:
            self._check_open()
            if self._read_only:
                return  # a reader wrote nothing
            self._log.sync()
            # A commit reads catalog pages; if one is damaged, the rebuild makes every
            # batch durable anyway (the log holds them).
            self._with_store(lambda: self._store.sync())

    def _verify(
        self,
        progress: Callable[[int, int], None] | None = None,
        trusted: Sequence[SignedCheckpoint] = (),
    ) -> TenantVerification:
        """Verify the log, then hold it against every witnessed and `trusted` checkpoint.

        Damage to the log is raised (and marks the tenant damaged); a broken
        promise (a rollback or a fork behind a signed checkpoint) and key
        problems are returned in the report.
        """
        with self._lock:
            self._check_open()
            try:
                records = self._log.verify(progress)
            except CorruptionError as failure:
                self._note_damage(failure)
                raise
            problems: list[str] = []
            try:
                promised = self._witness.checkpoints() + list(trusted)
            except CorruptionError as failure:
                problems.append(str(failure))
                promised = list(trusted)
            pinned = self._log.pinned_key
            key_history: dict[bytes, bytes] = {}

            def keys() -> dict[bytes, bytes]:
                if not key_history:
                    key_history.update(pinned_keys(self._log))
                    if pinned is None and self._signing_key is not None:
                        key = self._signing_key.public_key_bytes()
                        key_history[key_id_of(key)] = key
                return key_history

            for checkpoint in promised:
                if self._read_only and checkpoint.tree_size > self._log.size:
                    # A reader sees the durable prefix as of its open; a live writer may
                    # have signed more since. Only a log now shorter is a rollback.
                    mark = read_mark(self._folder / "log")
                    if mark is not None and mark.size > checkpoint.tree_size:
                        continue
                problem = checkpoint_problem(self._log, checkpoint, keys)
                if problem is not None:
                    problems.append(problem)
            signed_through = self._log.signed_through()
            return TenantVerification(
                self._tenant,
                records,
                signed_through,
                records - signed_through if pinned is not None else 0,
                None if pinned is None else bytes(pinned),
                tuple(problems),
                self._key_problem or self._keyless,
            )

    def _close(self, *, clean: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if clean and not self._read_only and self._damage is not None:
                    # A damaged log gets no shutdown checkpoint (that would sign over the
                    # damage) and no snapshot; what was appended is made durable first.
                    self._close_derived_then(self._log.sync)
                    self._log.abandon()
                elif clean and not self._read_only:
                    changed = self._log.size != self._unchanged_size
                    if self._store_failure is None and self._store_behind is None and changed:
                        self._write_snapshot_or_warn()
                    if changed:
                        self._flush_stream_index_or_warn()
                    self._close_derived_then(self._log.close)
                else:
                    self._store.abandon()
                    self._log.abandon()
            finally:
                self._stream_index.close()
                self._release_keys_and_lock()
