"""The durable, hash-chained log: segments, offset index, checkpoints, Merkle store.

Layout and byte formats: docs/formats.md §4. One lock guards all state; reads
and appends hold it. Under group commit the fsync runs outside it, led by one
appender while the others wait on the condition (see `_await_group_commit`).

The write path builds frames with local aliases of `struct.pack`,
`hashlib.sha256` and `zlib.crc32` into one bytearray and makes no objects per
record beyond the bytes it must; the Merkle store consumes the record bytes
in one call per chunk.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
import time
import zlib
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar, final

from verity.crypto import SigningKey
from verity.errors import (
    ChainBroken,
    ClosedError,
    CorruptionError,
    HistoryLost,
    InvalidArgument,
    KeyError_,
    NotFound,
    ReadOnly,
    StorageError,
    VerityError,
)
from verity.proofs import (
    ConsistencyProof,
    InclusionProof,
    SignedCheckpoint,
    key_id_of,
    signed_checkpoint_bytes,
)
from verity.storage._checkpoints import CHECKPOINTS_FILE, CheckpointIndex
from verity.storage._durable import MARK_FILE, DurableMark, MarkFile, read_mark
from verity.storage._files import FolderLock, make_private_dir, open_private, storage_error
from verity.storage._frame import (
    CHAIN_DOMAIN,
    CHECKPOINT_PAYLOAD,
    CHECKPOINT_PAYLOAD_BYTES,
    CHECKPOINT_VERSION,
    FRAME_OVERHEAD_BYTES,
    HEADER,
    HEADER_BYTES,
    KIND_CHECKPOINT,
    KIND_DATA,
    KIND_KEY,
    PAYLOAD_BYTES_MAX,
    PREFIX,
    PREFIX_BYTES,
    ZERO_HASH,
    Record,
    check_frame,
    checkpoint_signature,
    decode_checkpoint_payload,
    decode_key_payload,
    decode_record,
    encode_key_payload,
    encode_signed_checkpoint_payload,
    pread_exact,
    rotation_message,
    write_all,
)
from verity.storage._index import (
    IndexContents,
    decode_index,
    decode_index_header,
    encode_index,
    fsync_directory,
    positions_array,
    write_atomic,
)
from verity.storage._io import OS
from verity.storage._merkle import DamagedNodes, MerkleStore
from verity.storage._recovery import (
    RECOVERY_FILE,
    append_recovery,
    encode_recovery,
    load_recoveries,
)
from verity.storage._segment import (
    ScanResult,
    SegmentInfo,
    index_name,
    list_segments,
    scan_frames,
    segment_name,
    valid_frame_follows,
)
from verity.storage._verify import SegmentView, verify_segments
from verity.types import (
    U64_MAX,
    Checkpoint,
    CheckpointPolicy,
    Generation,
    Hash,
    Offset,
    RecordKind,
    RecoveryReason,
    RecoveryRecord,
    SyncMode,
    SyncPolicy,
    Timestamp,
)

__all__ = ["Clock", "Log", "open_log"]

Clock = Callable[[], int]

logger = logging.getLogger("verity.storage")

_Answer = TypeVar("_Answer")

SEGMENT_BYTES_MAX_DEFAULT: Final = 16 * 1024 * 1024
DEFAULT_SYNC_POLICY: Final = SyncPolicy.every_batch()
DEFAULT_CHECKPOINT_POLICY: Final = CheckpointPolicy()
_READ_CHUNK_BYTES: Final = 4 * 1024 * 1024
# Positions of sealed segments kept in memory at most (8 bytes each): 1M records' worth.
INDEX_CACHE_BYTES_MAX: Final = 8 * 1024 * 1024
_RECORDS_PER_SCAN: Final = 4096  # records read per lock hold by `records()`
# Derived files (Merkle nodes, checkpoint list) are written once this many leaf bytes are buffered.
_DERIVED_FLUSH_BYTES: Final = 64 * 1024
_NO_KIND: Final = -1

_sha256 = hashlib.sha256
_crc32 = zlib.crc32
_pack_header = HEADER.pack
_pack_prefix = PREFIX.pack
_unpack_header = HEADER.unpack_from
_unpack_prefix = PREFIX.unpack_from


@dataclass(slots=True)
class _Sealed:
    """A sealed segment in the index cache: its dense positions and an open read fd."""

    fd: int
    positions: array[int]
    valid_bytes: int
    head_hash: bytes
    path: str


@dataclass(slots=True)
class _UndoPoint:
    """The log as it was at a point the active segment held exactly what it describes.

    A failed write returns to it: the call's start, or the last fsync the call
    made itself (a seal, `every_record`), after which its records are durable.
    """

    size: int
    head: bytes
    last_ts: int
    last_kind: int
    data_since: int
    active_first: int
    active_bytes: int
    positions: int
    pinned: bytes | None
    checkpoint_bytes: int
    merkle: tuple[int, list[bytes]]
    # How many of the call's payloads the records up to here hold.
    payloads_done: int


class _FsyncFailed(Exception):
    """An fsync of the active segment failed; the log already stopped taking writes."""

    def __init__(self, failure: OSError) -> None:
        super().__init__(str(failure))
        self.failure = failure


def _unknown(what: str, failure: OSError, path: str) -> StorageError:
    """The error of a write whose outcome is unknown (`written=None`).

    Always a plain `StorageError`, whatever the errno: the log takes no more
    writes after it, so it is not a `StorageFull` that space coming back cures.
    """
    return StorageError(what, failure, path=path, written=None)


@contextmanager
def _naming(path: str | os.PathLike[str]) -> Iterator[None]:
    """Name `path` in an OSError raised inside (os.write and fsync errors name no file)."""
    try:
        yield
    except OSError as failure:
        if failure.filename is None:
            failure.filename = os.fspath(path)
        raise


def _cut_short(data: bytes, position: int) -> bool:
    """The frame at `position` runs past the end of `data`: the file was cut, not flipped."""
    if len(data) - position < PREFIX_BYTES:
        return True
    (length, _) = _unpack_prefix(data, position)
    return bool(position + PREFIX_BYTES + length > len(data))


def _check_count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(name, value, "must be an int")
    if value < 0:
        raise InvalidArgument(name, value, "must be >= 0")
    return int(value)


def open_log(
    path: str | os.PathLike[str],
    *,
    sync_policy: SyncPolicy = DEFAULT_SYNC_POLICY,
    checkpoint_policy: CheckpointPolicy = DEFAULT_CHECKPOINT_POLICY,
    segment_bytes_max: int = SEGMENT_BYTES_MAX_DEFAULT,
    clock: Clock = time.time_ns,
    index_cache_segments: int = 64,
    create: bool = True,
    read_only: bool = False,
    signer: SigningKey | None = None,
) -> Log:
    """Open the log in folder `path` (creating it when `create`), recovering a torn tail.

    `clock` returns ns since the epoch and is read once per append call (and
    once per recovery). `index_cache_segments` bounds how many sealed
    segments' offset indexes are held in memory.

    A writer holds an exclusive lock on the folder until `close` (a second
    writer gets `InUse` and touches nothing). With `read_only`, the log takes
    no lock and writes, renames and deletes nothing: it sees the durable
    records on disk at open (a torn tail is left for the writer's recovery),
    and can read, verify and prove; appends raise `ReadOnly`. Any number of
    readers may run beside one writer. Records that were durable and are gone
    raise `HistoryLost` (a `CorruptionError`) in both modes.

    With `signer`, a new log's first record pins its public key (a KEY
    record) and every checkpoint is signed by it (docs/formats.md §1.4, §3.1);
    a log that pins another key (or is opened for writing without one) opens
    for reading, but refuses every write with `KeyError_`: it signs nothing
    with a key that is not its own. A log written before keys were pinned
    stays unsigned.
    """
    if not isinstance(path, str | os.PathLike):
        raise InvalidArgument("path", path, "must be a str or os.PathLike")
    if not isinstance(sync_policy, SyncPolicy):
        raise InvalidArgument("sync_policy", sync_policy, "must be a SyncPolicy")
    if not isinstance(checkpoint_policy, CheckpointPolicy):
        raise InvalidArgument("checkpoint_policy", checkpoint_policy, "must be a CheckpointPolicy")
    if (
        not isinstance(segment_bytes_max, int)
        or isinstance(segment_bytes_max, bool)
        or segment_bytes_max < 1
    ):
        raise InvalidArgument("segment_bytes_max", segment_bytes_max, "must be an int >= 1")
    if not callable(clock):
        raise InvalidArgument("clock", clock, "must be a callable returning ns since the epoch")
    if (
        not isinstance(index_cache_segments, int)
        or isinstance(index_cache_segments, bool)
        or index_cache_segments < 1
    ):
        raise InvalidArgument("index_cache_segments", index_cache_segments, "must be an int >= 1")
    if not isinstance(create, bool):
        raise InvalidArgument("create", create, "must be a bool")
    if not isinstance(read_only, bool):
        raise InvalidArgument("read_only", read_only, "must be a bool")
    if signer is not None and not isinstance(signer, SigningKey):
        raise InvalidArgument("signer", signer, "must be a verity.crypto.SigningKey")
    directory = Path(os.fspath(path))
    if directory.exists() and not directory.is_dir():
        raise InvalidArgument("path", str(directory), "exists and is not a folder")
    if not directory.exists() and (read_only or not create):
        raise NotFound("log folder", str(directory), "it does not exist")
    try:
        make_private_dir(directory, parents=True)
        lock = None if read_only else FolderLock.acquire(directory)
    except OSError as failure:
        raise storage_error(
            f"open log {directory}", failure, path=failure.filename or directory, written=False
        ) from failure
    try:
        return Log(
            directory,
            sync_policy,
            checkpoint_policy,
            segment_bytes_max,
            clock,
            index_cache_segments,
            lock,
            signer,
        )
    except BaseException:
        if lock is not None:
            lock.release()
        raise


@final
class Log:
    """An append-only, hash-chained, checkpointed log in one folder. Use `open_log`.

    Safe to call from several threads. A context manager: leaving the block
    closes the log cleanly (`close`).
    """

    def __init__(
        self,
        directory: Path,
        sync_policy: SyncPolicy,
        checkpoint_policy: CheckpointPolicy,
        segment_bytes_max: int,
        clock: Clock,
        index_cache_segments: int,
        lock: FolderLock | None,
        signer: SigningKey | None,
    ) -> None:
        self._directory = directory
        self._signer = signer
        # The public key the last KEY record pins (None: an unsigned log).
        self._pinned: bytes | None = None
        # Why this log may not write (it cannot sign with the key it pins), if so.
        self._sign_refusal: VerityError | None = None
        self._folder_lock = lock
        self._read_only = lock is None
        self._mark: MarkFile | None = None
        self._lock = threading.Condition(threading.Lock())
        self._sync_mode = sync_policy.mode
        self._group_delay_s = sync_policy.max_delay_ms / 1000.0
        self._group_max_batch = sync_policy.max_batch
        self._every_n = (
            U64_MAX if checkpoint_policy.explicit_only else checkpoint_policy.every_n_records
        )
        self._on_shutdown = checkpoint_policy.on_shutdown
        self._segment_bytes_max = segment_bytes_max
        self._clock = clock
        self._cache_segments_max = index_cache_segments
        self._cache: OrderedDict[int, _Sealed] = OrderedDict()
        self._cache_position_bytes = 0
        self._closed = False
        self._firsts: list[int] = []
        self._active_first = 0
        self._active_fd = -1
        self._active_path = ""
        self._active_positions = positions_array()
        self._active_bytes = 0
        self._active_index_on_disk = False
        self._size = 0
        self._head = ZERO_HASH
        self._last_ts = -1
        self._last_kind = _NO_KIND
        self._data_since = 0
        self._recoveries: list[RecoveryRecord] = []
        self._generation = Generation(0)
        self._synced_size = 0
        # Bytes went to the active segment since its last fsync (a roll's fsync of a
        # segment with none is skipped: a disk failing it cannot lose this call's records).
        self._written_unsynced = False
        self._leader_active = False
        self._pending_records = 0
        self._pending_since: float | None = None
        # Appenders between entering `_append` and registering as pending: the
        # group-commit leader waits for them (up to max_delay) and for no one else.
        self._appenders_arriving = 0
        self._arrival_lock = threading.Lock()
        self._retired_fds: list[int] = []
        # Set once a write's outcome is unknown: the log then refuses writes.
        self._broken: StorageError | None = None
        self._failed_write_generation = 0
        # Where a failed write returns to, while a write runs (see `_write`).
        self._undo: _UndoPoint | None = None
        self._payloads_asked = 0
        self._payloads_done = 0
        # Why derived files are held in memory (a full disk), until a flush succeeds.
        self._derived_failure: OSError | None = None
        self._merkle = MerkleStore(directory / "merkle", read_only=self._read_only)
        try:
            self._checkpoints = CheckpointIndex(directory, read_only=self._read_only)
        except OSError as failure:
            raise self._open_failed(failure) from failure  # open_log releases the lock
        try:
            self._open()
        except BaseException as failure:
            self._close_files()
            self._closed = True
            if isinstance(failure, OSError):
                raise self._open_failed(failure) from failure
            raise

    def _open_failed(self, failure: OSError) -> StorageError:
        """The typed error of an open that the OS refused (nothing was discarded)."""
        return storage_error(
            f"open log {self._directory}",
            failure,
            path=failure.filename or self._directory,
            written=False,
        )

    # ================================================================== open

    def _open(self) -> None:
        directory = self._directory
        # The mark is read before the segments are listed: a live writer (beside a
        # reader) only adds records after it, so it never claims more than is found.
        mark = read_mark(directory)
        if not self._read_only:
            for leftover in directory.glob("*.tmp"):
                leftover.unlink()
        self._recoveries = load_recoveries(directory)
        if self._recoveries:
            self._generation = self._recoveries[-1].generation
        firsts = list_segments(directory)
        if not firsts:
            self._check_nothing_was_written(mark)
            if self._read_only:
                raise NotFound("log", str(directory), "the folder holds no log segment")
            self._create_first_segment()
            firsts = [0]
        if firsts[0] != 0:
            raise HistoryLost(
                f"the oldest segment starts at offset {firsts[0]}, not 0",
                file=str(directory / segment_name(0)),
                first_lost=0,
                end_lost=firsts[0],
            )
        self._firsts = firsts
        self._check_sealed_segments()
        active_first = firsts[-1]
        self._active_first = active_first
        self._active_path = str(directory / segment_name(active_first))
        self._active_fd = os.open(
            self._active_path, os.O_RDONLY if self._read_only else os.O_RDWR | os.O_APPEND
        )
        segment_bytes = os.fstat(self._active_fd).st_size
        index = self._read_index(active_first)
        if isinstance(index, str):
            # Missing or stale after a crash is normal; damaged is worth a word (docs/sdk.md).
            logger.warning(
                "offset index %s is unusable (%s); rebuilding it from the segment",
                self._directory / index_name(active_first),
                index,
            )
        clean = isinstance(index, IndexContents) and index.valid_bytes == segment_bytes
        # After a crash the scan's checked bytes serve the catch-up of derived data too.
        scanned = b""
        scan: ScanResult | None = None
        if isinstance(index, IndexContents) and clean:
            self._active_positions = index.positions
            self._active_bytes = segment_bytes
        else:
            data = pread_exact(self._active_fd, segment_bytes, 0)
            scan = scan_frames(data, active_first)
            if scan.problem is not None:
                self._check_torn(data, scan, active_first + len(scan.positions))
            self._active_positions = scan.positions
            self._active_bytes = scan.valid_bytes
            scanned = data[: scan.valid_bytes]
        found = active_first + len(self._active_positions)
        self._check_evidence(found, mark)
        if scan is not None and scan.problem is not None and not self._read_only:
            self._recover_torn_tail(scan.valid_bytes, segment_bytes, found)
        if self._read_only and mark is not None and active_first <= mark.size < found:
            # A reader sees the durable prefix: records past the mark may belong to an
            # append that has not returned (or a crash that the writer will account for).
            self._active_bytes = self._active_positions[mark.size - active_first]
            del self._active_positions[mark.size - active_first :]
            scanned = scanned[: self._active_bytes]
            found = mark.size
        self._active_index_on_disk = index is not None
        self._size = found
        self._synced_size = self._size
        if not clean and not self._read_only:
            # Whatever open keeps is durable before anything (a coverage mark, the
            # durability mark) claims it is.
            OS.fsync(self._active_fd)
        trusted_through = self._size if clean else active_first
        self._load_checkpoints(trusted_through, scanned)
        self._load_head(index if isinstance(index, IndexContents) and clean else None)
        if mark is not None and 0 < mark.size <= self._size:
            self._check_mark_head(mark)
        if not self._read_only:
            # Only now that the head is the one the evidence names: a refused open
            # leaves every file as it found it.
            try:
                self._checkpoints.commit_repair(self._size)
            except OSError as failure:
                self._note_derived_failure(failure)
            self._mark = MarkFile(directory)
            self._mark.write(self._size, self._head)
        # The checkpoint list is the trusted anchor (read_verified checks records against
        # it), so the Merkle store is checked against it, never the other way round.
        expected_root = None
        anchor = self._checkpoints.last()
        if anchor is not None:
            expected_root = (int(anchor.offset), bytes(anchor.merkle_root))
        self._merkle.load(
            self._size,
            trusted_through,
            expected_root,
            lambda start, end: (record for _, record in self._records_on_open(start, end, scanned)),
        )
        with self._lock:
            self._settle_signer()

    def _settle_signer(self) -> None:
        """Pin a new log's key, or check the signer against the key the log pins."""
        last_key = self._checkpoints.last_key()
        self._pinned = None if last_key is None else last_key[1]
        signer = self._signer
        given = None if signer is None else signer.public_key_bytes()
        if self._read_only:
            return
        if self._pinned is None:
            if signer is not None and self._size == 0:
                self._write_key_record(encode_key_payload(signer.public_key_bytes(), None))
            elif signer is not None:
                logger.warning(
                    "log %s was written before signing keys were pinned: its checkpoints "
                    "stay unsigned",
                    self._directory,
                )
                self._signer = None
            return
        if given != self._pinned:
            self._sign_refusal = KeyError_(
                f"log {self._directory} pins public key {self._pinned.hex()} (record "
                f"{last_key[0] if last_key else 0}); "
                + (
                    f"the signing key given is {given.hex()}"
                    if given is not None
                    else "it was opened without a signing key"
                )
                + ": it signs nothing and accepts no writes (restore the key, or rotate it "
                "with the pinned one)"
            )

    def _check_nothing_was_written(self, mark: DurableMark | None) -> None:
        """A folder without segments must be new: any trace of records means segment 0 is gone."""
        directory = self._directory
        evidence = max(mark.size if mark is not None else 0, self._checkpoints.highest_mark())
        traces = [
            name
            for name in (MARK_FILE, RECOVERY_FILE, CHECKPOINTS_FILE)
            if (directory / name).is_file() and (directory / name).stat().st_size > 0
        ]
        traces += sorted(path.name for path in directory.glob("*.vidx"))
        if traces:
            raise HistoryLost(
                f"no segment file is left, but {', '.join(traces)} show records were written",
                file=str(directory / segment_name(0)),
                first_lost=0,
                end_lost=max(evidence, 1),
            )

    def _check_sealed_segments(self) -> None:
        """Every sealed segment holds exactly the records up to its successor's first offset.

        Each one's offset index header is compared with the file's size (no
        scan); a segment that disagrees is loaded in full, which rebuilds its
        index or raises: fewer records than the successor implies is
        `HistoryLost` (a segment deleted or cut short), a bad frame inside is
        `CorruptionError`.
        """
        firsts = self._firsts
        for segment_index in range(len(firsts) - 1):
            first = firsts[segment_index]
            expected_count = firsts[segment_index + 1] - first
            path = self._directory / segment_name(first)
            try:
                with open(self._directory / index_name(first), "rb") as index_file:
                    header = decode_index_header(index_file.read(29), first)
            except FileNotFoundError:
                header = None
            if header == (expected_count, path.stat().st_size):
                continue
            self._sealed(segment_index)

    def _check_evidence(self, found: int, mark: DurableMark | None) -> None:
        """`found` records survive: no fewer than the durability evidence vouches for.

        The evidence is the durability mark and the checkpoint list's highest
        coverage mark, both written only after an fsync covered their records.
        """
        covered = self._checkpoints.highest_mark()
        evidence = max(mark.size if mark is not None else 0, covered)
        if found >= evidence:
            return
        witness = (
            f"{MARK_FILE} says {mark.size} records were durable"
            if mark is not None and mark.size == evidence
            else f"{CHECKPOINTS_FILE} covers {covered} records"
        )
        raise HistoryLost(
            f"the log holds {found} records, but {witness}; a torn tail can only be "
            "the partial last record of an append that never returned",
            file=self._active_path,
            first_lost=found,
            end_lost=evidence,
        )

    def _check_mark_head(self, mark: DurableMark) -> None:
        """Record `mark.size - 1` is the record that was acknowledged, not another."""
        offset = mark.size - 1
        if offset == self._size - 1:
            head = self._head
        else:
            head = _sha256(CHAIN_DOMAIN + self._read_record_bytes(offset)).digest()
        if head != mark.head_hash:
            raise CorruptionError(
                f"chain hash {head.hex()} of record {offset} differs from {mark.head_hash.hex()} "
                f"in {MARK_FILE}: the acknowledged history was rewritten",
                file=str(self._directory / MARK_FILE),
                record_offset=offset,
            )

    def _records_on_open(self, start: int, end: int, scanned: bytes) -> Iterator[tuple[int, bytes]]:
        """Records `start .. end-1`; those of a scanned active segment come from `scanned`."""
        split = min(end, max(start, self._active_first)) if scanned else end
        for offset, record, _, _ in self._iter_records(start, split):
            yield offset, record
        positions = self._active_positions
        count = len(positions)
        first = self._active_first
        for index in range(split - first, end - first):
            frame_end = positions[index + 1] if index + 1 < count else len(scanned)
            yield first + index, scanned[positions[index] + PREFIX_BYTES : frame_end]

    def _create_first_segment(self) -> None:
        fd = open_private(self._directory / segment_name(0), os.O_RDWR | os.O_CREAT | os.O_EXCL)
        os.close(fd)
        fsync_directory(self._directory)

    def _read_index(self, first_offset: int) -> IndexContents | str | None:
        try:
            data = (self._directory / index_name(first_offset)).read_bytes()
        except FileNotFoundError:
            return None
        return decode_index(data, first_offset)

    def _check_torn(self, data: bytes, scan: ScanResult, torn_offset: int) -> None:
        """A bad last frame is torn only if it is the last thing in the file.

        A frame whose CRC matches but which is not the expected record, or a
        bad frame with a good later frame after it, is corruption and is kept.
        """
        cut_at = scan.valid_bytes
        if scan.problem_crc_valid or valid_frame_follows(data, cut_at, torn_offset):
            raise CorruptionError(
                f"{scan.problem}, with intact data after it: not a torn write, not truncated",
                file=self._active_path,
                byte_offset=cut_at,
                record_offset=torn_offset,
            )

    def _recover_torn_tail(self, cut_at: int, segment_bytes: int, torn_offset: int) -> None:
        """Cut a torn final frame, after making an account of it durable."""
        path = self._active_path
        now = self._read_clock()
        record = RecoveryRecord(
            generation=self._generation.next(),
            previous_generation=self._generation,
            known_committed=Offset(torn_offset),
            recovery_point=Offset(torn_offset),
            discarded_range=(Offset(torn_offset), Offset(torn_offset + 1)),
            discarded_bytes=(Path(path).name, cut_at, segment_bytes),
            timestamp=Timestamp(now),
            reason=RecoveryReason.NODE_RESTART,
        )
        try:
            append_recovery(self._directory, record)
        except OSError as failure:
            # Nothing was discarded: the account of a loss is durable before the loss.
            raise storage_error(
                f"recovery of log {self._directory} at open (it must first write "
                f"{len(encode_recovery(record))} bytes, a recovery record, to {RECOVERY_FILE}, "
                f"then discard bytes {cut_at}..{segment_bytes} of {Path(path).name}, the torn "
                f"record {torn_offset}; read_only=True opens the log meanwhile)",
                failure,
                path=failure.filename or self._directory / RECOVERY_FILE,
                written=False,
            ) from failure
        try:
            OS.ftruncate(self._active_fd, cut_at)
            OS.fsync(self._active_fd)
        except OSError as failure:
            raise storage_error(
                f"open log {self._directory}: cutting the torn tail of {Path(path).name} at byte "
                f"{cut_at} after its recovery record was written",
                failure,
                path=path,
                written=None,
            ) from failure
        self._recoveries.append(record)
        self._generation = record.generation
        logger.warning(
            "torn write at the end of %s: discarded bytes %d..%d (record %d); generation is now %d",
            path,
            cut_at,
            segment_bytes,
            torn_offset,
            int(record.generation),
        )

    def _load_head(self, clean_index: IndexContents | None) -> None:
        """Read the last record; check its CRC and its link to the record before it."""
        size = self._size
        if size == 0:
            return
        count = len(self._active_positions)
        if count == 0:
            self._load_sealed_head()
            return
        record = self._read_record_bytes(size - 1)
        offset, prev_hash, timestamp, _, kind = _unpack_header(record)
        head = _sha256(CHAIN_DOMAIN + record).digest()
        if clean_index is not None:
            self._check_head(head, clean_index.head_hash, size - 1, self._active_path)
        if count >= 2:
            expected_prev = _sha256(CHAIN_DOMAIN + self._read_record_bytes(size - 2)).digest()
        elif self._active_first > 0:
            expected_prev = self._sealed(len(self._firsts) - 2).head_hash
        else:
            expected_prev = ZERO_HASH
        if prev_hash != expected_prev:
            raise ChainBroken(
                f"head record prev_hash {prev_hash.hex()} != chain hash "
                f"{expected_prev.hex()} of the record before it",
                file=self._active_path,
                byte_offset=self._active_positions[count - 1],
                record_offset=offset,
            )
        self._head = head
        self._last_ts = timestamp
        self._last_kind = kind

    def _load_sealed_head(self) -> None:
        """The head is the last record of the newest sealed segment (the active one is empty).

        That segment's index vouches for the head hash. A damaged frame there
        is reported by reads and verify, not here: open keeps going with the
        header as stored, and takes the record's kind from the checkpoint list.
        """
        size = self._size
        sealed = self._sealed(len(self._firsts) - 2)
        start = sealed.positions[-1]
        frame = pread_exact(sealed.fd, sealed.valid_bytes - start, start)
        try:
            record = check_frame(frame, size - 1, sealed.path, start)
        except CorruptionError as failure:
            logger.warning("the last record is damaged: %s", failure)
            record = frame[PREFIX_BYTES:]
            if len(record) < HEADER_BYTES:
                raise
        else:
            self._check_head(
                _sha256(CHAIN_DOMAIN + record).digest(), sealed.head_hash, size - 1, sealed.path
            )
        self._head = sealed.head_hash
        self._last_ts = _unpack_header(record)[2]
        last_checkpoint = self._checkpoints.last()
        ends_with_checkpoint = last_checkpoint is not None and last_checkpoint.offset == size - 1
        self._last_kind = KIND_CHECKPOINT if ends_with_checkpoint else KIND_DATA

    @staticmethod
    def _check_head(head: bytes, expected: bytes, offset: int, segment_path: str) -> None:
        if head != expected:
            raise CorruptionError(
                f"chain hash {head.hex()} of the last record != {expected.hex()} in the "
                "segment's offset index",
                file=segment_path,
                record_offset=offset,
            )

    def _load_checkpoints(self, trusted_through: int, scanned: bytes) -> None:
        size = self._size
        covered = self._checkpoints.load(size, trusted_through)
        if covered < trusted_through:
            logger.warning(
                "checkpoint list %s covers records below %d of %d; rebuilding it from the log",
                self._checkpoints.path,
                covered,
                trusted_through,
            )
        for offset, record in self._records_on_open(covered, size, scanned):
            kind = record[HEADER_BYTES - 1]
            if kind == KIND_CHECKPOINT:
                checkpoint = self._checkpoint_of(offset, record)
                if checkpoint is not None:
                    self._checkpoints.append(checkpoint)
            elif kind == KIND_KEY:
                key = decode_key_payload(record[HEADER_BYTES:])
                if key is not None:
                    self._checkpoints.append_key(offset, key[0], _unpack_header(record)[2])
        last = self._checkpoints.last()
        after = int(last.offset) if last is not None else -1
        # Only DATA records make a checkpoint due; KEY records after the last one do not.
        self._data_since = size - (after + 1) - self._checkpoints.keys_after(after)

    @staticmethod
    def _checkpoint_of(offset: int, record: bytes) -> Checkpoint | None:
        _, _, timestamp, _, kind = _unpack_header(record)
        decoded = decode_checkpoint_payload(record[HEADER_BYTES:])
        if kind != KIND_CHECKPOINT or decoded is None or decoded[0] != offset:
            return None
        _, chain_hash, merkle_root = decoded
        return Checkpoint(
            Offset(offset), Hash(chain_hash), offset, Hash(merkle_root), Timestamp(timestamp)
        )

    # ======================================================= segments, reads

    def _sealed(self, segment_index: int) -> _Sealed:
        """The cached view of sealed segment `segment_index`, loading its index if needed."""
        assert 0 <= segment_index < len(self._firsts) - 1
        first = self._firsts[segment_index]
        entry = self._cache.get(first)
        if entry is not None:
            self._cache.move_to_end(first)
            return entry
        path = self._directory / segment_name(first)
        fd = os.open(path, os.O_RDONLY)
        try:
            valid_bytes = os.fstat(fd).st_size
            expected_count = self._firsts[segment_index + 1] - first
            index = self._read_index(first)
            if (
                isinstance(index, IndexContents)
                and index.valid_bytes == valid_bytes
                and len(index.positions) == expected_count
            ):
                positions, head_hash = index.positions, index.head_hash
            else:
                if index is None:
                    reason = "is missing"
                elif isinstance(index, str):
                    reason = f"is unusable ({index})"
                else:
                    reason = (
                        f"describes {len(index.positions)} records in {index.valid_bytes} bytes, "
                        f"the segment has {valid_bytes} bytes and should hold {expected_count}"
                    )
                logger.warning(
                    "offset index %s %s; rebuilding it from the segment",
                    self._directory / index_name(first),
                    reason,
                )
                positions, head_hash = self._rebuild_sealed_index(fd, path, first, expected_count)
        except BaseException:
            os.close(fd)
            raise
        entry = _Sealed(fd, positions, valid_bytes, head_hash, str(path))
        self._cache_put(first, entry)
        return entry

    def _cache_put(self, first: int, entry: _Sealed) -> None:
        """Cache `entry`; evict the least recently used past the count or the byte bound.

        The byte bound keeps memory flat in log size: without it, 64 segments of
        small records held 8 bytes per record of a 10M-record log (docs/benchmarks.md).
        """
        self._cache[first] = entry
        self._cache_position_bytes += 8 * len(entry.positions)
        while len(self._cache) > 1 and (
            len(self._cache) > self._cache_segments_max
            or self._cache_position_bytes > INDEX_CACHE_BYTES_MAX
        ):
            _, evicted = self._cache.popitem(last=False)
            self._cache_position_bytes -= 8 * len(evicted.positions)
            os.close(evicted.fd)
        assert self._cache_position_bytes >= 0

    def _rebuild_sealed_index(
        self, fd: int, path: Path, first: int, expected_count: int
    ) -> tuple[array[int], bytes]:
        data = pread_exact(fd, os.fstat(fd).st_size, 0)
        scan = scan_frames(data, first)
        found = first + len(scan.positions)
        end = first + expected_count
        # A sealed segment was complete and fsynced when it was sealed: never truncate it.
        cut_short = (
            scan.problem is not None
            and _cut_short(data, scan.valid_bytes)
            and not valid_frame_follows(data, scan.valid_bytes, found)
        )
        if scan.problem is not None and not cut_short:
            raise CorruptionError(
                f"{scan.problem} in a sealed segment",
                file=str(path),
                byte_offset=scan.valid_bytes,
                record_offset=found,
            )
        if found < end:
            raise HistoryLost(
                f"sealed segment {path.name} holds {len(scan.positions)} records "
                f"({'cut short' if cut_short else 'ends'} at byte {scan.valid_bytes}), "
                f"but the next segment starts at offset {end}",
                file=str(path),
                first_lost=found,
                end_lost=end,
            )
        if len(scan.positions) != expected_count:
            raise CorruptionError(
                f"sealed segment holds {len(scan.positions)} records, the next segment "
                f"starts at offset {end}",
                file=str(path),
                byte_offset=scan.valid_bytes,
                record_offset=end,
            )
        last = scan.positions[-1]
        head_hash = _sha256(CHAIN_DOMAIN + data[last + PREFIX_BYTES :]).digest()
        if not self._read_only:
            index_path = self._directory / index_name(first)
            try:
                write_atomic(index_path, encode_index(first, scan.positions, len(data), head_hash))
            except OSError as failure:
                # Derived: this session keeps it in memory, a later open rebuilds it again.
                index_path.with_name(index_path.name + ".tmp").unlink(missing_ok=True)
                logger.warning("offset index %s not written: %s", index_path, failure)
        return scan.positions, head_hash

    def _segment_view(self, segment_index: int) -> tuple[int, array[int], int, str]:
        """`(fd, positions, end byte, path)` of a segment."""
        if segment_index == len(self._firsts) - 1:
            return self._active_fd, self._active_positions, self._active_bytes, self._active_path
        sealed = self._sealed(segment_index)
        return sealed.fd, sealed.positions, sealed.valid_bytes, sealed.path

    def _read_record_bytes(self, offset: int) -> bytes:
        """The CRC-checked record bytes at `offset` (< size), located through the index."""
        segment_index = bisect_right(self._firsts, offset) - 1
        fd, positions, end_bytes, path = self._segment_view(segment_index)
        index = offset - self._firsts[segment_index]
        start = positions[index]
        end = positions[index + 1] if index + 1 < len(positions) else end_bytes
        frame = pread_exact(fd, end - start, start)
        return check_frame(frame, offset, path, start)

    def _record_bytes(self, start: int, end: int) -> Iterator[bytes]:
        """CRC-checked record bytes `start .. end-1` (what Merkle leaves hash)."""
        for _, record, _, _ in self._iter_records(start, end):
            yield record

    def _iter_records(self, start: int, end: int) -> Iterator[tuple[int, bytes, str, int]]:
        """CRC-checked `(offset, record bytes, file, byte)` for `start .. end-1`, in chunks."""
        offset = start
        while offset < end:
            segment_index = bisect_right(self._firsts, offset) - 1
            first = self._firsts[segment_index]
            fd, positions, end_bytes, path = self._segment_view(segment_index)
            count = len(positions)
            stop = min(end, first + count)
            index = offset - first
            last = stop - first
            while index < last:
                chunk_start = positions[index]
                chunk_stop = max(
                    index + 1, bisect_right(positions, chunk_start + _READ_CHUNK_BYTES, index, last)
                )
                chunk_end = positions[chunk_stop] if chunk_stop < count else end_bytes
                data = pread_exact(fd, chunk_end - chunk_start, chunk_start)
                for current in range(index, chunk_stop):
                    frame_start = positions[current]
                    frame_end = positions[current + 1] if current + 1 < count else end_bytes
                    frame = data[frame_start - chunk_start : frame_end - chunk_start]
                    record = check_frame(frame, first + current, path, frame_start)
                    yield first + current, record, path, frame_start
                index = chunk_stop
            offset = stop

    # ================================================================ append

    def _read_clock_with_room(self, records: int) -> int:
        """The clock's now, if `records` more timestamps from it fit below 2**64-1
        (spec `check_room`); InvalidArgument otherwise, before anything is written."""
        now = self._read_clock()
        if max(now, self._last_ts + 1) + records > U64_MAX:
            raise InvalidArgument("clock()", now, "timestamps would pass 2**64-1")
        return now

    def _read_clock(self) -> int:
        now = self._clock()
        if not isinstance(now, int) or isinstance(now, bool) or not 0 <= now <= U64_MAX:
            raise InvalidArgument("clock()", now, "must return ns since the epoch in 0..2**64-1")
        return int(now)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"log {self._directory}")

    def _check_writable(self, what: str) -> None:
        self._check_open()
        if self._read_only:
            raise ReadOnly(f"log {self._directory}")
        if self._sign_refusal is not None:
            raise self._sign_refusal
        broken = self._broken
        if broken is not None:
            raise StorageError(
                f"{what} (refused: the log takes no writes since an earlier write's outcome "
                f"became unknown ({broken}); reopen the log to learn what it holds)",
                broken.os_error,
                path=broken.path,
                written=False,
            )

    @property
    def read_only(self) -> bool:
        """Whether this log was opened with `read_only=True` (it writes nothing)."""
        return self._read_only

    @property
    def failed_write_generation(self) -> int:
        """How many writes failed after some of their bytes may have reached a segment file.

        Starts at 0 on open. It grows when an append (or checkpoint, KEY
        record, shutdown checkpoint) failed after part of its frames was
        written: the log cut them away again (or, if it could not, stopped
        taking writes), but those bytes may have been seen by the disk. The
        next record at that log position carries other bytes, so whatever is
        sealed with a nonce derived from the position (AES-GCM in the tenant
        envelope) must be sealed under a key never used before the failure:
        when this number changes, start a fresh DEK before sealing again.
        """
        return self._failed_write_generation

    @property
    def write_failure(self) -> StorageError | None:
        """The failure of unknown outcome that stopped this log's writes, or None.

        Once a write's outcome is unknown (an fsync failed, or a failed
        write could not be cut back), the log refuses every later write with
        `StorageError` (`written=False`) and `close` writes nothing; reads and
        `verify` go on over the records as written. Reopen to learn what the
        disk holds.
        """
        return self._broken

    @staticmethod
    def _check_payloads(payloads: object, name: str) -> Sequence[bytes]:
        if isinstance(payloads, bytes | bytearray | memoryview | str) or not isinstance(
            payloads, Sequence
        ):
            raise InvalidArgument(name, payloads, "must be a sequence of bytes payloads")
        if len(payloads) == 0:
            raise InvalidArgument(name, payloads, "must not be empty")
        for position, payload in enumerate(payloads):
            if not isinstance(payload, bytes):
                raise InvalidArgument(f"{name}[{position}]", payload, "must be bytes")
            if len(payload) > PAYLOAD_BYTES_MAX:
                raise InvalidArgument(
                    f"{name}[{position}]",
                    f"<{len(payload)} bytes>",
                    f"payload must be at most {PAYLOAD_BYTES_MAX} bytes",
                )
        return payloads

    def append(self, payload: bytes) -> Offset:
        """Append one DATA record; return its offset once the sync policy made it durable.

        IO failures raise `StorageError` (`StorageFull` for a full disk or a
        file size limit); `written=False`: nothing of the call is in the log,
        which stays open as it was; `written=None`: the outcome is unknown and
        the log takes no more writes (`write_failure`). See docs/formats.md §4.7.
        """
        if not isinstance(payload, bytes):
            raise InvalidArgument("payload", payload, "must be bytes")
        if len(payload) > PAYLOAD_BYTES_MAX:
            raise InvalidArgument(
                "payload", f"<{len(payload)} bytes>", f"must be at most {PAYLOAD_BYTES_MAX} bytes"
            )
        return self._append((payload,), "append")

    def append_batch(self, payloads: Sequence[bytes]) -> Offset:
        """Append DATA records in order; return the first offset.

        Every payload is validated before any byte is written, so a bad one
        rejects the whole batch. Automatic checkpoints land inside the batch
        where the policy puts them. IO failures as `append`, but a batch that
        sealed a segment (or, under `every_record`, fsynced some of its
        records) before failing keeps those records: it raises
        `written=None` with the log still taking writes, and `size` says how
        many records of the batch are in.
        """
        return self._append(self._check_payloads(payloads, "payloads"), "append_batch")

    def _append(self, payloads: Sequence[bytes], what: str) -> Offset:
        group = self._sync_mode is SyncMode.GROUP_COMMIT
        if group:
            self._count_arrival(1)
        departed = False
        try:
            with self._lock:
                self._check_writable(what)
                # Each DATA record may make a checkpoint due: room for two per payload.
                now = self._read_clock_with_room(2 * len(payloads))
                first = self._size
                self._write(lambda: self._append_locked(payloads, now), what, len(payloads))
                if group:
                    self._count_arrival(-1)
                    departed = True
                self._durable(self._size - first, what)
            return Offset(first)
        finally:
            if group and not departed:
                self._count_arrival(-1)

    def _count_arrival(self, change: int) -> None:
        with self._arrival_lock:
            self._appenders_arriving += change
            assert self._appenders_arriving >= 0

    # ---------------------------------------------------------- failed writes

    def _undo_point(self) -> _UndoPoint:
        return _UndoPoint(
            self._size,
            self._head,
            self._last_ts,
            self._last_kind,
            self._data_since,
            self._active_first,
            self._active_bytes,
            len(self._active_positions),
            self._pinned,
            self._checkpoints.entry_bytes(),
            self._merkle.mark(),
            self._payloads_done,
        )

    def _advance_undo(self) -> None:
        """The records written so far are durable: a failure from here on keeps them."""
        self._undo = self._undo_point()

    def _restore(self, undo: _UndoPoint) -> None:
        assert undo.active_first == self._active_first  # a seal moves the undo point
        self._size = undo.size
        self._head = undo.head
        self._last_ts = undo.last_ts
        self._last_kind = undo.last_kind
        self._data_since = undo.data_since
        self._active_bytes = undo.active_bytes
        del self._active_positions[undo.positions :]
        self._pinned = undo.pinned
        self._checkpoints.rollback(undo.checkpoint_bytes)
        self._merkle.rollback(undo.merkle)

    def _write(self, action: Callable[[], None], what: str, payloads: int) -> None:
        """Run the writing half of an append (`action`): build and write its frames.

        If it fails, the log returns to the last point where the file held
        exactly what it describes: the call's start, or the last fsync the
        call itself made (a seal, `every_record`). See `_undo_failed_write`.
        """
        self._payloads_asked = payloads
        self._payloads_done = 0
        self._undo = self._undo_point()
        start = self._size
        try:
            action()
        except BaseException as failure:
            self._undo_failed_write(failure, what, start)
        finally:
            self._undo = None

    def _undo_failed_write(self, failure: BaseException, what: str, start: int) -> None:
        """Cut the active segment back to the undo point and restore the state there.

        Raises the typed error for `failure`: `written=False` when nothing of
        the call stays, `written=None` when its outcome is unknown (an fsync
        failed, or the cut failed: the log then takes no more writes) or when
        a batch keeps the records a seal or `every_record` made durable.
        Returns normally only when every record the caller asked for is
        durable and just an automatic checkpoint after them was undone.
        """
        undo = self._undo
        assert undo is not None
        path = self._active_path
        if isinstance(failure, _FsyncFailed):
            # fsyncgate: after a failed fsync nobody knows which of the unsynced bytes
            # the disk has. The state stays as written; writes stop (`_fsync_failed`).
            raise _unknown(what, failure.failure, path) from failure.failure
        assert self._synced_size <= undo.size  # never cut what an fsync vouched for
        try:
            cut = self._cut_back(undo.active_bytes)
        except OSError as cut_failure:
            self._failed_write_generation += 1
            self._restore(undo)
            cause = failure if isinstance(failure, OSError) else cut_failure
            self._broken = _unknown(what, cause, path)
            self._lock.notify_all()
            logger.error(
                "log %s: a failed write could not be cut back (%s); it takes no more writes",
                self._directory,
                cut_failure,
            )
            raise self._broken from failure
        if cut:
            self._failed_write_generation += 1
        self._restore(undo)
        if not isinstance(failure, OSError):
            raise failure
        where = failure.filename or path
        if undo.size == start:
            raise storage_error(what, failure, path=where, written=False) from failure
        if undo.payloads_done == self._payloads_asked:
            logger.warning(
                "log %s: the automatic checkpoint after record %d was not written (%s); "
                "it follows the next record",
                self._directory,
                undo.size - 1,
                failure,
            )
            return
        raise storage_error(
            f"{what}, in part (its records {start}..{undo.size - 1} are in the log and "
            "durable, the rest are not)",
            failure,
            path=where,
            written=None,
        ) from failure

    def _cut_back(self, active_bytes: int) -> bool:
        """Make the active segment `active_bytes` long again, durably; True if bytes were cut.

        Cutting and fsyncing need no free space. The fsync makes the cut
        durable, so a crash cannot bring a failed write's frames back.
        """
        fd = self._active_fd
        found = os.fstat(fd).st_size
        if found == active_bytes:
            return False
        if found < active_bytes:
            raise OSError(
                errno.EIO,
                f"the segment holds {found} bytes, fewer than the {active_bytes} written to it",
            )
        OS.ftruncate(fd, active_bytes)
        OS.fsync(fd)
        return True

    def _fsync_failed(self, failure: OSError) -> _FsyncFailed:
        """Stop writes after a failed fsync of the active segment; the exception to raise."""
        if self._broken is None:
            self._failed_write_generation += 1
            self._broken = _unknown(f"fsync of log {self._directory}", failure, self._active_path)
            logger.error(
                "log %s: fsync failed (%s); the records written since the last fsync may or "
                "may not be on disk, and the log takes no more writes",
                self._directory,
                failure,
            )
        self._lock.notify_all()
        return _FsyncFailed(failure)

    def _durable(self, records: int, what: str) -> None:
        """Make the call's records durable; an fsync failure leaves their outcome unknown."""
        try:
            self._make_durable(records)
        except _FsyncFailed as failed:
            raise _unknown(what, failed.failure, self._active_path) from failed.failure

    def _note_derived_failure(self, failure: OSError) -> None:
        """Derived files could not be written: they stay in memory, written by the next flush."""
        if self._derived_failure is None:
            logger.warning(
                "log %s: derived files stay in memory (%s); written at the next flush",
                self._directory,
                failure,
            )
        self._derived_failure = failure

    # --------------------------------------------------------------- records

    def append_checkpoint(self) -> Checkpoint:
        """Append an explicit CHECKPOINT record covering every record before it.

        IO failures raise as `append` does.
        """
        with self._lock:
            self._check_writable("append_checkpoint")
            now = self._read_clock_with_room(1)
            result: list[Checkpoint] = []

            def write() -> None:
                buffer = bytearray()
                self._forget_active_index()
                self._roll_if_full(CHECKPOINT_PAYLOAD_BYTES, buffer)
                result.append(self._build_checkpoint(now, buffer))
                self._emit(buffer)
                self._flush_derived_if_large()

            self._write(write, "append_checkpoint", 1)
            self._durable(1, "append_checkpoint")
        return result[0]

    def _append_locked(self, payloads: Sequence[bytes], now: int) -> None:
        per_record = self._sync_mode is SyncMode.EVERY_RECORD
        self._forget_active_index()
        buffer = bytearray()
        index = 0
        count = len(payloads)
        while index < count:
            self._roll_if_full(len(payloads[index]), buffer)
            next_index = self._build_data(payloads, index, now, buffer, per_record)
            assert next_index > index
            index = next_index
            self._payloads_done = index
            if per_record:
                self._emit(buffer)
                self._fsync_active()
                self._advance_undo()
            if self._data_since >= self._every_n:
                self._roll_if_full(CHECKPOINT_PAYLOAD_BYTES, buffer)
                self._build_checkpoint(now, buffer)
                if per_record:
                    self._emit(buffer)
                    self._fsync_active()
                    self._advance_undo()
        self._emit(buffer)
        self._flush_derived_if_large()

    def _build_data(
        self,
        payloads: Sequence[bytes],
        index: int,
        now: int,
        buffer: bytearray,
        single: bool,
    ) -> int:
        """Frame DATA records from `payloads[index]` into `buffer`; return the next index.

        Stops after the record that makes a checkpoint due, before a record
        that does not fit the active segment, or after one record if `single`.
        """
        pack_header = _pack_header
        pack_prefix = _pack_prefix
        sha256 = _sha256
        crc32 = _crc32
        domain = CHAIN_DOMAIN
        count = len(payloads)
        offset = self._size
        prev = self._head
        timestamp = max(now, self._last_ts + 1)
        position = self._active_bytes
        since = self._data_since
        every_n = self._every_n
        segment_bytes_max = self._segment_bytes_max
        append_position = self._active_positions.append
        records: list[bytes] = []
        append_record = records.append
        while index < count:
            payload = payloads[index]
            payload_len = len(payload)
            frame_bytes = FRAME_OVERHEAD_BYTES + payload_len
            if position + frame_bytes > segment_bytes_max and position > 0 and records:
                break
            record = pack_header(offset, prev, timestamp, payload_len, KIND_DATA) + payload
            prev = sha256(domain + record).digest()
            buffer += pack_prefix(HEADER_BYTES + payload_len, crc32(record))
            buffer += record
            append_position(position)
            append_record(record)
            position += frame_bytes
            offset += 1
            timestamp += 1
            index += 1
            since += 1
            if since >= every_n or single:
                break
        self._size = offset
        self._head = prev
        self._last_ts = timestamp - 1
        self._last_kind = KIND_DATA
        self._active_bytes = position
        self._data_since = since
        self._merkle.extend(records)
        return index

    def _build_checkpoint(self, now: int, buffer: bytearray) -> Checkpoint:
        record_count = self._size
        chain_hash = self._head
        merkle_root = self._merkle.current_root()
        timestamp = max(now, self._last_ts + 1)
        signer = self._signer
        if signer is not None and self._pinned is not None:
            public_key = signer.public_key_bytes()
            message = signed_checkpoint_bytes(
                record_count, merkle_root, chain_hash, timestamp, key_id_of(public_key)
            )
            payload = encode_signed_checkpoint_payload(
                record_count, chain_hash, merkle_root, public_key, signer.sign(message)
            )
        else:
            payload = CHECKPOINT_PAYLOAD.pack(
                CHECKPOINT_VERSION, record_count, chain_hash, merkle_root
            )
        record = (
            _pack_header(record_count, chain_hash, timestamp, len(payload), KIND_CHECKPOINT)
            + payload
        )
        buffer += _pack_prefix(len(record), _crc32(record))
        buffer += record
        self._active_positions.append(self._active_bytes)
        self._active_bytes += PREFIX_BYTES + len(record)
        self._merkle.extend([record])
        self._head = _sha256(CHAIN_DOMAIN + record).digest()
        self._size = record_count + 1
        self._last_ts = timestamp
        self._last_kind = KIND_CHECKPOINT
        self._data_since = 0
        checkpoint = Checkpoint(
            Offset(record_count),
            Hash(chain_hash),
            record_count,
            Hash(merkle_root),
            Timestamp(timestamp),
        )
        self._checkpoints.append(checkpoint)
        return checkpoint

    def _build_key(self, now: int, payload: bytes, buffer: bytearray) -> None:
        """Frame a KEY record into `buffer` (docs/formats.md §3.1) and list it."""
        offset = self._size
        timestamp = max(now, self._last_ts + 1)
        record = _pack_header(offset, self._head, timestamp, len(payload), KIND_KEY) + payload
        buffer += _pack_prefix(len(record), _crc32(record))
        buffer += record
        self._active_positions.append(self._active_bytes)
        self._active_bytes += PREFIX_BYTES + len(record)
        self._merkle.extend([record])
        self._head = _sha256(CHAIN_DOMAIN + record).digest()
        self._size = offset + 1
        self._last_ts = timestamp
        self._last_kind = KIND_KEY
        key = decode_key_payload(payload)
        assert key is not None
        self._checkpoints.append_key(offset, key[0], timestamp)
        self._pinned = key[0]

    def _write_key_record(self, payload: bytes) -> None:
        """Append one KEY record and make it durable (lock held or not yet shared)."""
        now = self._read_clock()

        def write() -> None:
            buffer = bytearray()
            self._forget_active_index()
            self._roll_if_full(len(payload), buffer)
            self._build_key(now, payload, buffer)
            self._emit(buffer)

        self._write(write, "append of a KEY record", 1)
        self._durable(1, "append of a KEY record")

    def rotate_key(self, new_signer: SigningKey) -> Offset:
        """Hand the log over to `new_signer`: a KEY record signed by the pinned key.

        Returns the record's offset. Later checkpoints are signed by the new
        key; `verify` checks the rotation against the key it replaces. IO
        failures raise as `append` does; the old key stays in force unless
        the record was written.
        """
        if not isinstance(new_signer, SigningKey):
            raise InvalidArgument("new_signer", new_signer, "must be a verity.crypto.SigningKey")
        with self._lock:
            self._check_writable("rotate_key")
            signer = self._signer
            if signer is None or self._pinned is None:
                raise InvalidArgument("new_signer", "<key>", "the log pins no key to rotate")
            offset = self._size
            new_key = new_signer.public_key_bytes()
            signature = signer.sign(rotation_message(offset, self._head, new_key))
            self._write_key_record(encode_key_payload(new_key, signature))
            self._signer = new_signer
            return Offset(offset)

    def _forget_active_index(self) -> None:
        """Remove the active segment's index before its segment changes.

        An index that outlived appends could later match the segment's size by
        coincidence and be taken for a clean shutdown.
        """
        if self._active_index_on_disk:
            (self._directory / index_name(self._active_first)).unlink(missing_ok=True)
            fsync_directory(self._directory)
            self._active_index_on_disk = False

    def _emit(self, buffer: bytearray) -> None:
        if buffer:
            self._written_unsynced = True
            write_all(self._active_fd, buffer)
            buffer.clear()

    def _fsync_active(self) -> None:
        if self._written_unsynced or self._synced_size < self._size:
            try:
                OS.fsync(self._active_fd)
            except OSError as failure:
                raise self._fsync_failed(failure) from failure
            self._written_unsynced = False
        assert self._synced_size <= self._size
        self._synced_size = self._size
        assert self._mark is not None
        # Best effort: a mark left behind only lowers the evidence (see MarkFile).
        self._mark.write(self._size, self._head)

    def _flush_derived_if_large(self) -> None:
        if self._merkle.buffered_bytes() >= _DERIVED_FLUSH_BYTES:
            try:
                self._merkle.flush()
                self._checkpoints.flush()
            except OSError as failure:
                self._note_derived_failure(failure)
            else:
                self._derived_failure = None

    def _flush_derived(self, *, cover: bool) -> None:
        """Make the derived files and the durability mark durable (records already are).

        With `cover`, a coverage mark for every record goes into the
        checkpoint list first (seal, close). Raises OSError, with the file
        named, if any of them cannot be written or fsynced; what was not
        written stays in memory for the next try.
        """
        assert self._mark is not None
        with _naming(self._mark.path):
            self._mark.fsync()
        with _naming(self._merkle.directory):
            self._merkle.flush()
            self._merkle.fsync()
        if cover:
            self._checkpoints.cover(self._size)
        with _naming(self._checkpoints.path):
            self._checkpoints.flush()
            self._checkpoints.fsync()
        self._derived_failure = None

    def _write_index(self) -> None:
        """Write the active segment's offset index (a clean close, or a seal)."""
        first = self._active_first
        path = self._directory / index_name(first)
        # Set first: a failure after the rename still leaves the file for the next append to drop.
        self._active_index_on_disk = True
        with _naming(path):
            try:
                write_atomic(
                    path,
                    encode_index(first, self._active_positions, self._active_bytes, self._head),
                )
            except OSError:
                path.with_name(path.name + ".tmp").unlink(missing_ok=True)
                raise

    def _roll_if_full(self, payload_len: int, buffer: bytearray) -> None:
        needed = FRAME_OVERHEAD_BYTES + payload_len
        if self._active_bytes > 0 and self._active_bytes + needed > self._segment_bytes_max:
            self._emit(buffer)
            self._roll()

    def _roll(self) -> None:
        """Seal the active segment (fsynced, indexed, derived files durable); start the next.

        If a step after the fsync fails, nothing is switched: the active
        segment stays active (its records durable) and the next append tries
        to seal it again; a next segment file this made is removed.
        """
        self._fsync_active()
        self._lock.notify_all()
        self._advance_undo()
        new_first = self._size
        new_path = self._directory / segment_name(new_first)
        sealed_fd = -1
        new_fd = -1
        try:
            self._flush_derived(cover=True)
            self._write_index()
            sealed_fd = os.open(self._active_path, os.O_RDONLY)
            with _naming(new_path):
                new_fd = open_private(new_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL)
                fsync_directory(self._directory)
        except BaseException:
            if sealed_fd >= 0:
                os.close(sealed_fd)
            if new_fd >= 0:
                os.close(new_fd)
            # Only this roll can have made it (open lists every segment file as the log's).
            if new_path.exists() and new_path.stat().st_size == 0:
                new_path.unlink()
            raise
        first = self._active_first
        old_fd = self._active_fd
        self._cache_put(
            first,
            _Sealed(
                sealed_fd, self._active_positions, self._active_bytes, self._head, self._active_path
            ),
        )
        self._active_fd = new_fd
        self._firsts.append(new_first)
        self._active_first = new_first
        self._active_path = str(new_path)
        self._active_positions = positions_array()
        self._active_bytes = 0
        self._active_index_on_disk = False
        self._advance_undo()
        if self._leader_active:
            # The group-commit leader may be fsyncing this fd outside the lock right now.
            self._retired_fds.append(old_fd)
        else:
            os.close(old_fd)

    # ============================================================ durability

    def _make_durable(self, records: int) -> None:
        if self._sync_mode is SyncMode.GROUP_COMMIT:
            self._await_group_commit(self._size, records)
            return
        if self._synced_size < self._size:
            # every_batch: the one fsync of this call; every_record: a lone checkpoint record.
            self._fsync_active()
        assert self._synced_size == self._size

    def _await_group_commit(self, target: int, records: int) -> None:
        """Return once record `target - 1` is durable, sharing fsyncs with other appenders.

        The caller's frames are already written (under the lock). One waiting
        appender leads: it waits until `max_batch` records are pending or the
        oldest pending append is `max_delay_ms` old or no other appender is on
        its way (between entering `append` and writing its frames), then
        fsyncs outside the lock while later appenders keep writing; everyone
        covered wakes up. If that fsync fails, everyone not covered raises
        (`_FsyncFailed`): their records' outcome is unknown.
        """
        lock = self._lock
        if self._synced_size >= target:
            return  # a seal in this call already made them durable
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._pending_records += records
        lock.notify_all()
        while self._synced_size < target:
            broken = self._broken
            if broken is not None:
                raise _FsyncFailed(broken.os_error)
            self._check_open()
            if self._leader_active:
                lock.wait()
                continue
            self._lead_group_commit()

    def _lead_group_commit(self) -> None:
        lock = self._lock
        self._leader_active = True
        try:
            while self._pending_records < self._group_max_batch and not self._closed:
                since = self._pending_since
                if since is None or self._appenders_arriving == 0:
                    # No appender is on its way: waiting longer would only add latency.
                    break
                remaining_s = since + self._group_delay_s - time.monotonic()
                if remaining_s <= 0:
                    break
                lock.wait(remaining_s)
            self._check_open()
            if self._broken is not None:
                return  # the caller's loop raises for it
            fd = self._active_fd
            covered = self._size
            covered_head = self._head
            self._pending_records = 0
            self._pending_since = None
            lock.release()
            failure: OSError | None = None
            try:
                OS.fsync(fd)
            except OSError as caught:
                failure = caught
            finally:
                lock.acquire()
            if failure is not None:
                raise self._fsync_failed(failure) from failure
            if covered == self._size:
                # Nobody wrote while the lock was released: the fsync covered every byte.
                self._written_unsynced = False
            if covered > self._synced_size:
                self._synced_size = covered
                assert self._mark is not None
                self._mark.write(covered, covered_head)
        finally:
            self._leader_active = False
            for retired in self._retired_fds:
                os.close(retired)
            self._retired_fds.clear()
            lock.notify_all()

    def _wait_for_leader(self) -> None:
        while self._leader_active:
            self._lock.wait()

    def sync(self) -> None:
        """Make every record and every derived file written so far durable.

        Raises `StorageError` with `written=None` if the fsync of the records
        fails (their outcome is unknown: the log takes no more writes), and
        with `written=False` if only the derived files or the durability mark
        cannot be written (every record is durable; they stay in memory and
        the next `sync`, seal or close writes them).
        """
        with self._lock:
            self._check_writable("sync")
            self._wait_for_leader()
            try:
                self._fsync_active()
            except _FsyncFailed as failed:
                raise _unknown("sync", failed.failure, self._active_path) from failed.failure
            finally:
                self._lock.notify_all()
            try:
                self._flush_derived(cover=False)
            except OSError as failure:
                raise storage_error(
                    "sync of the derived files (every record is durable)",
                    failure,
                    path=failure.filename,
                    written=False,
                ) from failure

    # ================================================================= close

    def close(self) -> None:
        """Shut down cleanly; idempotent.

        Appends a shutdown checkpoint (when the policy asks for one, the log is
        not empty and its last record is not already a checkpoint), makes
        everything durable and writes the active segment's index last, which
        marks the shutdown as clean.

        The files are closed and the lock released whatever happens. If the
        shutdown checkpoint, a derived file or the index cannot be written (a
        full disk), no index is written (the next open recovers as after a
        crash and loses no record) and `StorageError` is raised after the
        close: `written=False` (every record acknowledged is durable), or
        `written=None` if the final fsync failed (the shutdown checkpoint's
        outcome is unknown). After a failure of unknown outcome close writes
        nothing and raises nothing: that failure was reported already.
        """
        with self._lock:
            if self._closed:
                return
            if self._read_only:
                self._close_files()
                self._closed = True
                return
            self._wait_for_leader()
            problem: StorageError | None = None
            try:
                if self._broken is None:
                    problem = self._shut_down()
            finally:
                self._close_files()
                self._closed = True
                self._lock.notify_all()
        if problem is not None:
            raise problem

    def _shut_down(self) -> StorageError | None:
        """Write what a clean close writes; the first failure, or None if all of it is durable."""
        problem: StorageError | None = None
        if (
            self._sign_refusal is None
            and self._on_shutdown
            and self._size > 0
            and self._last_kind != KIND_CHECKPOINT
        ):
            now = self._read_clock()

            def write() -> None:
                buffer = bytearray()
                self._forget_active_index()
                self._roll_if_full(CHECKPOINT_PAYLOAD_BYTES, buffer)
                self._build_checkpoint(now, buffer)
                self._emit(buffer)

            try:
                self._write(write, "close: the shutdown checkpoint", 1)
            except StorageError as failure:
                if self._broken is not None:
                    return failure
                problem = failure
        try:
            self._fsync_active()
        except _FsyncFailed as failed:
            return _unknown(
                "close: the shutdown checkpoint's fsync", failed.failure, self._active_path
            )
        try:
            self._flush_derived(cover=True)
            self._write_index()
        except OSError as failure:
            self._active_index_on_disk = False
            logger.warning(
                "log %s closed without its clean-shutdown index (%s); the next open scans "
                "the newest segment and rebuilds the derived files",
                self._directory,
                failure,
            )
            return problem or storage_error(
                "close: the derived files and the clean-shutdown index (every record is "
                "durable; the next open rebuilds them)",
                failure,
                path=failure.filename,
                written=False,
            )
        return problem

    def abandon(self) -> None:
        """Drop the log as a crash would: for tests and simulation only.

        Closes every file descriptor without the shutdown checkpoint, without
        writing indexes and without flushing buffered derived data. Bytes
        already handed to the OS stay (a process crash keeps them).
        """
        with self._lock:
            if self._closed:
                return
            self._wait_for_leader()
            self._close_files()
            self._closed = True
            self._lock.notify_all()

    def _close_files(self) -> None:
        if self._active_fd >= 0:
            os.close(self._active_fd)
            self._active_fd = -1
        for entry in self._cache.values():
            os.close(entry.fd)
        self._cache.clear()
        self._cache_position_bytes = 0
        for retired in self._retired_fds:
            os.close(retired)
        self._retired_fds.clear()
        self._merkle.close()
        self._checkpoints.close()
        if self._mark is not None:
            self._mark.close()
        if self._folder_lock is not None:
            self._folder_lock.release()

    def __enter__(self) -> Log:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ================================================================= reads

    def _check_offset(self, offset: object) -> int:
        value = _check_count("offset", offset)
        if value >= self._size:
            raise NotFound("offset", value, f"the log has {self._size} records")
        return value

    def read(self, offset: int) -> Record:
        """The record at `offset`, CRC-checked; CorruptionError names file, byte and record."""
        with self._lock:
            self._check_open()
            checked = self._check_offset(offset)
            record = self._read_record_bytes(checked)
        return decode_record(record)

    def records(self, start: int = 0, end: int | None = None) -> Iterator[Record]:
        """Records `start .. end-1` (default: to the current end), CRC-checked, in order.

        Reads in large chunks, so replaying a whole log costs a fraction of
        one `read` per record. Raises `CorruptionError` at the first damaged
        record, after yielding the ones before it.
        """
        first = _check_count("start", start)
        with self._lock:
            self._check_open()
            stop = self._size if end is None else _check_count("end", end)
            if stop > self._size:
                raise NotFound("end", stop, f"the log has {self._size} records")
        offset = first
        while offset < stop:
            with self._lock:
                self._check_open()
                batch = [
                    decode_record(record)
                    for _, record, _, _ in self._iter_records(
                        offset, min(stop, offset + _RECORDS_PER_SCAN)
                    )
                ]
            assert batch and int(batch[0].header.offset) == offset
            yield from batch
            offset += len(batch)

    def read_verified(self, offset: int) -> Record:
        """The record at `offset`, with the chain checked back to the nearest checkpoint.

        Checks every record from that checkpoint (or from genesis) to `offset`:
        CRC, `prev_hash` links, and that the checkpoint record agrees with
        itself and with the checkpoint list held in memory (the trusted anchor).
        """
        with self._lock:
            self._check_open()
            checked = self._check_offset(offset)
            anchor = self._checkpoints.nearest(checked)
            start = int(anchor.offset) if anchor is not None else 0
            expected_prev = ZERO_HASH if anchor is None else None
            last = b""
            for current, record, path, byte_offset in self._iter_records(start, checked + 1):
                prev_hash = record[8:40]
                if current == start and anchor is not None:
                    self._check_anchor(anchor, record, path, byte_offset)
                elif prev_hash != expected_prev:
                    assert expected_prev is not None
                    raise ChainBroken(
                        f"prev_hash {prev_hash.hex()} != chain hash {expected_prev.hex()} "
                        f"of record {current - 1}",
                        file=path,
                        byte_offset=byte_offset,
                        record_offset=current,
                    )
                expected_prev = _sha256(CHAIN_DOMAIN + record).digest()
                last = record
        return decode_record(last)

    @staticmethod
    def _check_anchor(anchor: Checkpoint, record: bytes, path: str, byte_offset: int) -> None:
        offset = int(anchor.offset)
        _, prev_hash, _, _, kind = _unpack_header(record)
        decoded = decode_checkpoint_payload(record[HEADER_BYTES:])
        if kind != KIND_CHECKPOINT or decoded is None:
            raise CorruptionError(
                "record listed as a checkpoint has no valid checkpoint payload",
                file=path,
                byte_offset=byte_offset,
                record_offset=offset,
            )
        record_count, chain_hash, merkle_root = decoded
        if record_count != offset or chain_hash != prev_hash:
            raise CorruptionError(
                f"checkpoint payload (record_count {record_count}, chain_hash "
                f"{chain_hash.hex()}) does not describe the {offset} records before it",
                file=path,
                byte_offset=byte_offset,
                record_offset=offset,
            )
        if chain_hash != anchor.chain_hash or merkle_root != anchor.merkle_root:
            raise ChainBroken(
                f"checkpoint record chain_hash {chain_hash.hex()} differs from the trusted "
                f"checkpoint list ({anchor.chain_hash.hex()})",
                file=path,
                byte_offset=byte_offset,
                record_offset=offset,
            )

    def verify(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Verify the whole log from genesis (docs/formats.md §1.3); return records checked.

        Checks CRCs, dense offsets, `prev_hash` links, strictly increasing
        timestamps, every checkpoint payload (count, chain hash, Merkle root
        recomputed from the leaves), that the stored Merkle leaf hashes equal
        the recomputed ones, and every stored Merkle block against its CRC and
        every parent node against its children. Raises at the first bad
        record or node. Damaged Merkle files are reported (raised) and then set
        aside and rebuilt from the log, so the next proof and the next verify
        use good nodes. `progress(done, total)` is called after each chunk read.
        """
        with self._lock:
            self._check_open()
            try:
                checked = verify_segments(
                    self._segment_views(),
                    self._size,
                    self._merkle.nodes,
                    self._merkle.node_file,
                    progress,
                )
                self._merkle.check_all_blocks()
            except DamagedNodes as damage:
                self._rebuild_merkle(damage)
                raise
            return checked

    def _segment_views(self) -> Iterator[SegmentView]:
        for segment_index, first in enumerate(self._firsts):
            fd, positions, end_bytes, path = self._segment_view(segment_index)
            yield first, fd, positions, end_bytes, path

    # ================================================================ Merkle

    def _check_tree_size(self, name: str, tree_size: object) -> int:
        if tree_size is None:
            return self._size
        value = _check_count(name, tree_size)
        if value > self._size:
            raise NotFound(name, value, f"the log has {self._size} records")
        return value

    def _rebuild_merkle(self, damage: DamagedNodes) -> None:
        """Set the damaged Merkle files aside and recompute them from the records."""
        kept = self._merkle.rebuild_all(self._size, self._record_bytes)
        logger.warning("%s; rebuilt the Merkle node files from the log (%s)", damage, kept)
        assert self._merkle.size == self._size

    def _from_nodes(self, read: Callable[[], _Answer]) -> _Answer:
        """`read()` over the stored nodes; if it finds damage, rebuild them and ask again."""
        try:
            return read()
        except DamagedNodes as damage:
            self._rebuild_merkle(damage)
        return read()

    def merkle_root(self, tree_size: int | None = None) -> Hash:
        """RFC 9162 MTH of the first `tree_size` records (default: all)."""
        with self._lock:
            self._check_open()
            size = self._check_tree_size("tree_size", tree_size)
            return Hash(self._from_nodes(lambda: self._merkle.root(size)))

    def inclusion_proof(self, leaf_index: int, tree_size: int | None = None) -> InclusionProof:
        """RFC 9162 PATH(leaf_index, D[tree_size]) with the leaf's record bytes."""
        index = _check_count("leaf_index", leaf_index)
        with self._lock:
            self._check_open()
            size = self._check_tree_size("tree_size", tree_size)
            if index >= size:
                raise InvalidArgument("leaf_index", index, f"must be < tree_size {size}")
            path = self._from_nodes(lambda: self._merkle.inclusion_path(index, size))
            leaf = self._read_record_bytes(index)
        return InclusionProof(index, size, leaf, tuple(path))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """RFC 9162 PROOF(old_size, D[new_size]) (default new_size: all records)."""
        old = _check_count("old_size", old_size)
        with self._lock:
            self._check_open()
            new = self._check_tree_size("new_size", new_size)
            if old == 0:
                raise InvalidArgument("old_size", old, "must be > 0")
            if old > new:
                raise InvalidArgument("old_size", old, f"must be <= new_size {new}")
            path = self._from_nodes(lambda: self._merkle.consistency_path(old, new))
        return ConsistencyProof(old, new, tuple(path))

    # ======================================================== introspection

    @property
    def pinned_key(self) -> bytes | None:
        """The public key the log's last KEY record pins, or None for an unsigned log."""
        return self._pinned

    def signed_checkpoint(self, offset: int) -> SignedCheckpoint:
        """The signed checkpoint stored in CHECKPOINT record `offset` (formats §1.4, §3).

        Its `tree_size` is `offset` (the records before it); anyone holding the
        public key checks it with `verity.proofs.verify_signed_checkpoint`.
        """
        record = self.read(offset)
        header = record.header
        decoded = decode_checkpoint_payload(record.payload)
        signed = checkpoint_signature(record.payload)
        if header.kind is not RecordKind.CHECKPOINT or decoded is None or signed is None:
            raise InvalidArgument("offset", offset, "is not a signed checkpoint record")
        record_count, chain_hash, merkle_root = decoded
        public_key, signature = signed
        return SignedCheckpoint(
            record_count,
            merkle_root,
            chain_hash,
            int(header.timestamp),
            key_id_of(public_key),
            signature,
        )

    def signed_through(self) -> int:
        """How many records the last signed checkpoint covers (0 if none is signed).

        Records after it are not yet signed: nothing in the folder vouches for
        them beyond the keyless chain. Whether the signatures hold is `verify`'s.
        """
        with self._lock:
            self._check_open()
            last = self._checkpoints.last()
            if last is None or self._pinned is None:
                return 0
            offset = int(last.offset)
            payload = self._read_record_bytes(offset)[HEADER_BYTES:]
        return offset if checkpoint_signature(payload) is not None else 0

    def checkpoints(self) -> list[Checkpoint]:
        with self._lock:
            return self._checkpoints.all()

    def nearest_checkpoint(self, offset: int) -> Checkpoint | None:
        """The last checkpoint record at or before `offset`, or None."""
        with self._lock:
            self._check_open()
            checked = self._check_offset(offset)
            return self._checkpoints.nearest(checked)

    def recoveries(self) -> list[RecoveryRecord]:
        with self._lock:
            return list(self._recoveries)

    @property
    def generation(self) -> Generation:
        return self._generation

    @property
    def size(self) -> int:
        """Number of records, which is also the next offset."""
        return self._size

    @property
    def head_hash(self) -> Hash:
        """Chain hash of the last record (32 zero bytes when empty)."""
        return Hash(self._head)

    @property
    def last_timestamp(self) -> Timestamp:
        """Timestamp of the last record (0 when the log is empty)."""
        return Timestamp(max(self._last_ts, 0))

    def segments(self) -> list[SegmentInfo]:
        """The segment files, oldest first (for tools, tests and simulation)."""
        with self._lock:
            self._check_open()
            infos = []
            for segment_index, first in enumerate(self._firsts):
                path = self._directory / segment_name(first)
                if segment_index == len(self._firsts) - 1:
                    count = len(self._active_positions)
                    byte_size = self._active_bytes
                else:
                    count = self._firsts[segment_index + 1] - first
                    byte_size = os.stat(path).st_size
                infos.append(SegmentInfo(Offset(first), path, count, byte_size))
            return infos
