"""Crash, corruption, rebuild and fault campaign (issues 5, 10): `crash_campaign.py --trials N`.

Four kinds of trial, each printing one line; the last line of the run is

    trials=N acknowledged=N lost=N corruptions_injected=N detected=N rebuilt=N

- **Crash trials** (`--trials N`). A child process (this script with `--child`)
  opens the database under one of the sync policies (every_record,
  every_batch, group_commit(max_delay_ms=2, max_batch=64), rotating) and runs
  three writer threads, two on tenant 1 and one on tenant 2: batches of events
  of random sizes to a PHI (encrypted) and a PUBLIC stream, some with
  idempotency ids, retries of acknowledged idempotent appends, SQL INSERTs of
  one to four rows (some large enough for overflow pages) and signed
  checkpoints. After each call returns it prints what was acknowledged (one
  JSON line, flushed). The parent kills it with SIGKILL at a random moment
  (usually while it writes, sometimes while it starts or replays), reopens
  the folder and checks that `verify()` is ok; that every acknowledged batch
  is at its acknowledged offset with identical bytes, every acknowledged row
  is queryable with identical values and every SQL receipt's record is at its
  position with its chain hash; that every acknowledged signed checkpoint is
  consistent with the log now (an RFC 9162 consistency proof to a new signed
  checkpoint); that idempotency ids still answer their offsets; that every
  event and row present is one the workload wrote, once, with batches whole
  and each writer's calls in order; and that no recovery cut below an
  acknowledged position. In three trials of ten the parent also appends a
  torn frame to a tenant's newest segment after the kill, and in three of
  ten after its audit, for the next child to recover (what a power cut in the
  middle of a write leaves, which SIGKILL rarely does): recovery must discard
  exactly it and report it. An acknowledged call found missing or
  different is *lost*. Right after the kill, every tenant's durability mark
  (`durable.vmark`, docs/formats.md §4.6) must check, cover every
  acknowledged receipt and checkpoint, not run ahead of the records on disk
  and carry its last record's chain hash. In three trials of ten a reader
  (`read_only=True`) opens beside the live child before the kill: it must
  verify and hold every call acknowledged before it opened. Trials run on
  top of each other in one folder (in groups of 2, 1, 3 and 4 trials) and
  then start a fresh folder; between trials the parent closes the folder
  cleanly or abandons it as a crash would.
- **Corruption trials** (`--corruption-trials`, default 4N). On a copy of a
  cleanly closed folder, one random byte inside one random stored record's
  frame (length ‖ CRC ‖ 53-byte header ‖ payload, docs/formats.md §4.1) is
  flipped. It is *detected* when `verify()` reports exactly that tenant and
  record and opening the tenant raises `CorruptionError` naming the record
  (or, when the tenant's kernel snapshot spared the open from reading that
  record, reading it raises so); the other tenant must still open.
- **Rebuild trials** (`--rebuild-trials`, default max(N, number of damage
  kinds)). On a copy of a cleanly closed folder, a derived file is deleted,
  truncated or has a byte flipped: offset indexes, Merkle files (nodes, block
  sums, tails.bin), the kernel snapshot, the
  checkpoint list, the projection store. The folder is then asked everything
  (every stream's events, idempotency answers, every row now and past row
  counts, every record, every inclusion and consistency proof at the full
  size and some past ones, recoveries, `verify()`), twice, by two opens.
  *Rebuilt*: the answers equal those of the undamaged copy. *Reported*: a
  `CorruptionError` (or `verify()`) names the damaged file instead (the
  checkpoint list is a trusted anchor, docs/formats.md §4.4; `verify()`
  reports a damaged Merkle block before rebuilding it, §4.3).
  Anything else, above all a different answer, fails the run.
- **Fault trials** (`--fault-trials`, default max(N, number of fault
  variants); `--fault KIND` picks kinds). On a copy of a cleanly closed
  folder, a fault VerityDB must refuse (docs/architecture.md, failure
  table): `second-writer` (a child process, this script with `--hold`,
  holds the database: a writer gets `InUse` naming its pid, a reader beside
  it answers as the undamaged folder), `segment-cut` (the newest segment of
  a tenant's log cut below what was durable, or emptied), `segment-delete`
  (the newest segment, a sealed one or all of them deleted), `sealed-cut` (a
  sealed segment cut short): `HistoryLost` naming the log and the first lost
  record, to writers and readers, `verify()` reporting it; `key-delete`
  (`master.key`, `keyring.json`): `KeyError_` naming the file to writers, a
  reader opens keyless and `verify()` passes the log and names the file; (`signing.key`):
  the tenant opens for reads, `checkpoint()` and writes raise `KeyError_`
  naming it, `verify()` passes the log and reports the key problem;
  `keyless-rewrite` (a PUBLIC event changed before the last signed
  checkpoint, every keyless byte after it recomputed, derived files
  deleted): a reader's `verify()` reports a record at or after it (the
  signature that no longer holds); `rollback` (the log cut back to just
  after an earlier signed checkpoint, durability mark rewritten, derived
  files deleted): a reader's `verify()` reports the rollback against the
  tenant's witness and a later signed checkpoint an auditor kept;
  `disk-full` (on a copy, RLIMIT_FSIZE at the largest file's size): an
  append past it is refused with `StorageFull(written=False)` and is
  nowhere, reads and `verify()` go on, and the same handle writes again
  once the limit is lifted; `layout-damage` (`verity.json` deleted, a byte
  flipped, or another shard count with a valid checksum): `CorruptionError`
  naming it; `no-create` (a missing or empty folder, an unknown tenant,
  without `create=True`): `NotFound` (`ReadOnly` for a reader's
  `create=True`). Every open is tried writable, with
  `create=True` and read-only, each must raise exactly its error, and no
  file may change (lock files aside). *Detected*: all of that held. Then
  the damaged files are put back from the undamaged folder: the copy must
  be that folder byte for byte, answer every question as it did and hold
  every acknowledged call. An open that works where it must refuse is
  audited as it left the folder: what is missing counts as lost.

SIGKILL keeps the operating system's page cache, so crash trials test the
process's crash consistency (acknowledge only what is written, recover a torn
tail without cutting acknowledged records, catch derived data up), not the
fsyncs against power loss. `verity.open` takes no segment size (production
segments are 16 MiB, which a campaign of seconds never fills), so the campaign
wraps the log opener the SDK calls to roll segments at `--segment-bytes`
(default 256 KiB); sealed segments are where offset indexes, coverage marks
and Merkle flushes happen. `--segment-bytes 0` keeps the SDK default.

The closing line counts record flips and faults together in
`corruptions_injected` and `detected`. The exit status is 1 when anything
was lost, a flip or a fault went undetected, a rebuild answered differently
or any other check failed. Every trial line
carries the seed of its workload; `--seed S` replays the same choices (the
kill moments are wall-clock, so a crash replays its workload, not its exact
instant).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import logging
import os
import random
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, Final, TypeAlias, final

import verity
import verity._tenant as verity_tenant
from verity import (
    BadRecord,
    CheckpointPolicy,
    DataClass,
    IdempotencyId,
    Offset,
    SignedCheckpoint,
    StreamId,
    SyncPolicy,
    TenantHandle,
    TenantId,
)
from verity.directory import shard_of
from verity.errors import (
    CorruptionError,
    HistoryLost,
    InUse,
    KeyError_,
    NotFound,
    ReadOnly,
    SqlError,
    StorageFull,
    VerityError,
)
from verity.proofs import verify_consistency, verify_signed_checkpoint
from verity.storage import Log, open_log
from verity.storage._frame import HEADER_BYTES
from verity_conformance.drivers import forge_keyless

SCRIPT: Final = Path(__file__).resolve()
POLICIES: Final = ("every_record", "every_batch", "group_commit")
# Writer threads of the child and the tenant each writes to: two share tenant 1's lock and log.
WRITER_TENANTS: Final = (TenantId(1), TenantId(1), TenantId(2))
STREAMS: Final = (("phi", DataClass.PHI), ("public", DataClass.PUBLIC))
TABLE_SCHEMA: Final = (
    "CREATE TABLE rows (id BIGINT PRIMARY KEY, seed BIGINT NOT NULL, writer BIGINT NOT NULL, "
    "seq BIGINT NOT NULL, part BIGINT NOT NULL, parts BIGINT NOT NULL, body BYTES NOT NULL)"
)
SELECT_ROWS: Final = "SELECT id, seed, writer, seq, part, parts, body FROM rows"
CHECKPOINT_EVERY_RECORDS: Final = 100  # automatic checkpoint records inside every trial
SEGMENT_BYTES_DEFAULT: Final = 256 * 1024
KILL_MS_MAX_DEFAULT: Final = 1000
EARLY_KILL_FRACTION: Final = 0.15  # trials killed at a random moment after spawn, ready or not
EARLY_KILL_MS_MAX: Final = 700
TORN_TAIL_FRACTION: Final = 0.3  # trials whose newest segment gets a torn frame after the kill
READY_TIMEOUT_S: Final = 60.0
CHILD_SECONDS_MAX: Final = 60.0  # a child the parent forgot stops on its own
FOLDER_GROUP_TRIALS: Final = (2, 1, 3, 4)  # crash trials per folder, cycled
# docs/formats.md §1.3: a receipt's hash is SHA-256(CHAIN_DOMAIN ‖ record bytes).
CHAIN_DOMAIN: Final = b"verity.chain.v1\x00"
# An event: seed u64 ‖ writer u16 ‖ call u32 ‖ part u16 ‖ parts u16 ‖ body, all derivable.
EVENT_HEADER_BYTES: Final = 18
READ_BYTES_MAX: Final = 4 * 1024 * 1024
READER_FRACTION: Final = 0.3  # trials in which a reader opens beside the live child
# docs/formats.md §4.6: "VDUR" ‖ version 1 ‖ size u64 ‖ head_hash (32) ‖ crc32, big-endian.
MARK_FILE: Final = "durable.vmark"
MARK_MAGIC: Final = b"VDUR"
MARK_VERSION: Final = 1
MARK_BYTES: Final = 49
PROBLEMS_SHOWN_MAX: Final = 12  # per trial; a broken folder can fail every event in it

Json: TypeAlias = dict[str, Any]


@final
class CampaignFailure(Exception):
    """The child saw VerityDB break a promise (an idempotent retry got a new offset)."""


# =================================================================== the workload


def sync_policy_of(name: str) -> SyncPolicy:
    if name == "every_record":
        return SyncPolicy.every_record()
    if name == "every_batch":
        return SyncPolicy.every_batch()
    assert name == "group_commit", name
    return SyncPolicy.group_commit(max_delay_ms=2, max_batch=64)


def _piece_rng(kind: str, seed: int, writer: int, call: int, part: int) -> random.Random:
    return random.Random(f"{kind}/{seed}/{writer}/{call}/{part}")


def event_bytes(seed: int, writer: int, call: int, part: int, parts: int) -> bytes:
    """Event `part` of `parts` of a writer's call: a header naming it, then derived bytes.

    Mostly small, some of a few KiB, a few up to 64 KiB, so frames vary and
    segments roll inside batches.
    """
    rng = _piece_rng("event", seed, writer, call, part)
    roll = rng.random()
    if roll < 0.70:
        body_bytes = rng.randrange(0, 200)
    elif roll < 0.95:
        body_bytes = rng.randrange(200, 4_000)
    else:
        body_bytes = rng.randrange(4_000, 64 * 1024)
    header = (
        seed.to_bytes(8, "big")
        + writer.to_bytes(2, "big")
        + call.to_bytes(4, "big")
        + part.to_bytes(2, "big")
        + parts.to_bytes(2, "big")
    )
    return header + rng.randbytes(body_bytes)


def row_body(seed: int, writer: int, call: int, part: int) -> bytes:
    """The `body` of row `part` of a writer's INSERT; some overflow a page (> ~2,000 bytes)."""
    rng = _piece_rng("row", seed, writer, call, part)
    body_bytes = rng.randrange(0, 300) if rng.random() < 0.85 else rng.randrange(2_000, 6_000)
    return rng.randbytes(body_bytes)


def idempotency_id_of(seed: int, writer: int, call: int) -> IdempotencyId:
    digest = hashlib.sha256(f"idempotency/{seed}/{writer}/{call}".encode()).digest()
    return IdempotencyId(digest[:16])


@final
@dataclass(frozen=True, slots=True)
class EventKey:
    """Who wrote an event: the workload seed, writer thread, call and place in the batch."""

    seed: int
    writer: int
    call: int
    part: int
    parts: int


def event_key(event: bytes) -> EventKey | None:
    """The key an event's header names, unchecked; None if it has no such header."""
    if len(event) < EVENT_HEADER_BYTES:
        return None
    key = EventKey(
        int.from_bytes(event[0:8], "big"),
        int.from_bytes(event[8:10], "big"),
        int.from_bytes(event[10:14], "big"),
        int.from_bytes(event[14:16], "big"),
        int.from_bytes(event[16:18], "big"),
    )
    return key if key.part < key.parts and key.writer < len(WRITER_TENANTS) else None


def parse_event(event: bytes) -> EventKey | None:
    """The key of an event the workload wrote, or None if these bytes are not such an event."""
    key = event_key(event)
    if key is None or event_bytes(key.seed, key.writer, key.call, key.part, key.parts) != event:
        return None
    return key


# ------------------------------------------------------------------ acknowledgements


@final
@dataclass(frozen=True, slots=True)
class AckedAppend:
    """`append` returned `first` for events `0..parts-1` of a writer's call."""

    tenant: int
    stream: str
    first: int
    seed: int
    writer: int
    call: int
    parts: int
    idempotent: bool

    @property
    def key(self) -> str:
        return f"append tenant {self.tenant} {self.stream}@{self.first} call {self.call_name}"

    @property
    def call_name(self) -> str:
        return f"{self.seed}/{self.writer}/{self.call}"

    def events(self) -> list[bytes]:
        return [
            event_bytes(self.seed, self.writer, self.call, part, self.parts)
            for part in range(self.parts)
        ]


@final
@dataclass(frozen=True, slots=True)
class AckedStatement:
    """`execute` returned a receipt for an INSERT of rows `first_id .. first_id+parts-1`."""

    tenant: int
    offset: int
    chain_hash: bytes
    first_id: int
    seed: int
    writer: int
    call: int
    parts: int

    @property
    def key(self) -> str:
        return (
            f"insert tenant {self.tenant} @{self.offset} call {self.seed}/{self.writer}/{self.call}"
        )


@final
@dataclass(frozen=True, slots=True)
class AckedCheckpoint:
    """`checkpoint` returned this signed checkpoint."""

    tenant: int
    checkpoint: SignedCheckpoint

    @property
    def key(self) -> str:
        return f"checkpoint tenant {self.tenant} size {self.checkpoint.tree_size}"


Ack: TypeAlias = AckedAppend | AckedStatement | AckedCheckpoint


def ack_to_json(ack: Ack) -> Json:
    if isinstance(ack, AckedAppend):
        return {"op": "append", **{name: getattr(ack, name) for name in AckedAppend.__slots__}}
    if isinstance(ack, AckedStatement):
        fields = {name: getattr(ack, name) for name in AckedStatement.__slots__}
        return {"op": "insert", **fields, "chain_hash": ack.chain_hash.hex()}
    checkpoint = ack.checkpoint
    return {
        "op": "checkpoint",
        "tenant": ack.tenant,
        "tree_size": checkpoint.tree_size,
        "root": checkpoint.root.hex(),
        "chain_hash": checkpoint.chain_hash.hex(),
        "timestamp": checkpoint.timestamp,
        "key_id": checkpoint.key_id.hex(),
        "signature": checkpoint.signature.hex(),
    }


def ack_from_json(fields: Json) -> Ack | None:
    """The acknowledgement on one line of the child, or None for a control line."""
    op = fields.pop("op")
    if op == "append":
        return AckedAppend(**fields)
    if op == "insert":
        return AckedStatement(**{**fields, "chain_hash": bytes.fromhex(fields["chain_hash"])})
    if op == "checkpoint":
        checkpoint = SignedCheckpoint(
            fields["tree_size"],
            bytes.fromhex(fields["root"]),
            bytes.fromhex(fields["chain_hash"]),
            fields["timestamp"],
            bytes.fromhex(fields["key_id"]),
            bytes.fromhex(fields["signature"]),
        )
        return AckedCheckpoint(fields["tenant"], checkpoint)
    return None


# =================================================================== the child


@final
class RowIds:
    """Primary keys for one tenant's rows, handed out in runs to the writers that share it."""

    def __init__(self, next_id: int) -> None:
        self._next_id = next_id
        self._lock = threading.Lock()

    def take(self, count: int) -> int:
        with self._lock:
            first = self._next_id
            self._next_id += count
            return first


def prepare_tenant(handle: TenantHandle) -> tuple[dict[str, StreamId], RowIds]:
    """The tenant's streams and table, created unless an earlier trial made them."""
    streams = {info.name: info.stream_id for info in handle.streams()}
    for name, data_class in STREAMS:
        if name not in streams:
            streams[name] = handle.create_stream(name, data_class)
    try:
        last = handle.query("SELECT id FROM rows ORDER BY id DESC LIMIT 1").rows
    except SqlError as failure:
        if failure.kind != "unknown_table":
            raise
        handle.execute(TABLE_SCHEMA)
        last = []
    # Ids continue after every row present, acknowledged or not, so keys never collide.
    last_id = last[0][0] if last else -1
    assert isinstance(last_id, int)
    return streams, RowIds(last_id + 1)


Emit = Callable[[Json], None]


@final
class Writer:
    """One writer thread of the child: a seeded sequence of SDK calls, each acknowledged."""

    def __init__(
        self,
        seed: int,
        writer: int,
        handle: TenantHandle,
        streams: dict[str, StreamId],
        row_ids: RowIds,
        emit: Emit,
    ) -> None:
        self._seed = seed
        self._writer = writer
        self._handle = handle
        self._streams = streams
        self._row_ids = row_ids
        self._emit = emit
        self._rng = random.Random(f"writer/{seed}/{writer}")
        self._call = 0
        self._idempotent: list[AckedAppend] = []

    def step(self) -> None:
        """Make one call and acknowledge it once it returned."""
        self._call += 1
        roll = self._rng.random()
        if roll < 0.46:
            self._append("phi")
        elif roll < 0.72:
            self._append("public")
        elif roll < 0.92:
            self._insert()
        elif roll < 0.97:
            self._retry()
        else:
            self._checkpoint()

    def _parts(self) -> int:
        roll = self._rng.random()
        if roll < 0.6:
            return 1
        return self._rng.randint(2, 8) if roll < 0.9 else self._rng.randint(9, 32)

    def _append(self, stream: str) -> None:
        parts = self._parts()
        idempotent = self._rng.random() < 0.3
        events = [
            event_bytes(self._seed, self._writer, self._call, part, parts) for part in range(parts)
        ]
        idempotency_id = (
            idempotency_id_of(self._seed, self._writer, self._call) if idempotent else None
        )
        first = self._handle.append(self._streams[stream], events, idempotency_id=idempotency_id)
        tenant = int(self._handle.tenant)
        ack = AckedAppend(
            tenant, stream, int(first), self._seed, self._writer, self._call, parts, idempotent
        )
        self._emit(ack_to_json(ack))
        if idempotent:
            self._idempotent.append(ack)

    def _retry(self) -> None:
        """Send an acknowledged idempotent append again: it must answer its first offset."""
        if not self._idempotent:
            self._append("phi")
            return
        ack = self._rng.choice(self._idempotent)
        again = self._handle.append(
            self._streams[ack.stream],
            ack.events(),
            idempotency_id=idempotency_id_of(ack.seed, ack.writer, ack.call),
        )
        if int(again) != ack.first:
            raise CampaignFailure(f"retry of {ack.key} answered offset {int(again)}")

    def _insert(self) -> None:
        parts = self._rng.randint(1, 4)
        first_id = self._row_ids.take(parts)
        placeholders = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * parts)
        values: list[object] = []
        for part in range(parts):
            body = row_body(self._seed, self._writer, self._call, part)
            values += [first_id + part, self._seed, self._writer, self._call, part, parts, body]
        receipt = self._handle.execute(f"INSERT INTO rows VALUES {placeholders}", values)
        assert receipt.rows_affected == parts
        ack = AckedStatement(
            int(self._handle.tenant),
            int(receipt.offset),
            receipt.hash,
            first_id,
            self._seed,
            self._writer,
            self._call,
            parts,
        )
        self._emit(ack_to_json(ack))

    def _checkpoint(self) -> None:
        checkpoint = self._handle.checkpoint()
        self._emit(ack_to_json(AckedCheckpoint(int(self._handle.tenant), checkpoint)))


def open_database(
    folder: Path, sync_policy: SyncPolicy, *, create: bool = True, read_only: bool = False
) -> verity.Verity:
    checkpoint_policy = CheckpointPolicy(every_n_records=CHECKPOINT_EVERY_RECORDS)
    return verity.open(
        folder,
        sync_policy=sync_policy,
        checkpoint_policy=checkpoint_policy,
        create=create,
        read_only=read_only,
    )


def run_child(folder: Path, policy: str, seed: int, seconds_max: float) -> int:
    """Write until killed; print one JSON line per acknowledged call, flushed at once."""
    output_lock = threading.Lock()

    def emit(fields: Json) -> None:
        line = json.dumps(fields, separators=(",", ":")) + "\n"
        with output_lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    db = open_database(folder, sync_policy_of(policy))
    prepared = {
        int(tenant): prepare_tenant(db.tenant(tenant, create=True))
        for tenant in set(WRITER_TENANTS)
    }
    writers = []
    for writer, tenant in enumerate(WRITER_TENANTS):
        streams, row_ids = prepared[int(tenant)]
        writers.append(Writer(seed, writer, db.tenant(tenant, create=True), streams, row_ids, emit))
    emit({"op": "ready"})
    deadline = time.monotonic() + seconds_max

    def run(writer: Writer) -> None:
        try:
            while time.monotonic() < deadline:
                writer.step()
        except BaseException as failure:
            emit({"op": "error", "message": f"{type(failure).__name__}: {failure}"})
            os._exit(3)  # the process is the unit of failure: stop every writer now

    threads = [threading.Thread(target=run, args=(writer,)) for writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.close()
    emit({"op": "done"})
    return 0


# =================================================================== crash trials


@final
@dataclass
class FolderHistory:
    """Everything acknowledged in one folder, over all its crash trials so far."""

    folder: Path
    seeds: list[int] = field(default_factory=list)  # workload seed of each trial, in order
    acks: list[Ack] = field(default_factory=list)
    floor_by_tenant: dict[int, int] = field(default_factory=dict)
    recoveries_seen: dict[int, int] = field(default_factory=dict)
    torn_for_next_trial: list[TornTail] = field(default_factory=list)
    lost_keys: set[str] = field(default_factory=set)  # counted once, in the trial that lost them

    def durable_floor(self, tenant: int) -> int:
        """Log size every recovery must keep: the end of the last acknowledged record known."""
        return self.floor_by_tenant.get(tenant, 0)

    def add_acks(self, acks: list[Ack]) -> None:
        """Record a trial's acknowledgements, once it has been audited."""
        self.acks += acks
        for ack in acks:
            if isinstance(ack, AckedStatement):
                end = ack.offset + 1
            elif isinstance(ack, AckedCheckpoint):
                end = ack.checkpoint.tree_size
            else:
                continue
            self.floor_by_tenant[ack.tenant] = max(self.durable_floor(ack.tenant), end)


@final
class ChildOutput:
    """Reads the child's lines in a thread: acknowledgements, readiness, errors."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.acks: list[Ack] = []
        self.errors: list[str] = []
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            if not line.endswith("\n"):
                break  # cut by the kill: never acknowledged
            fields = json.loads(line)
            op = fields["op"]
            if op == "ready":
                self.ready.set()
            elif op == "error":
                self.errors.append(fields["message"])
            elif op != "done":
                ack = ack_from_json(fields)
                assert ack is not None, line
                self.acks.append(ack)

    def join(self) -> None:
        self._thread.join()


@final
@dataclass(frozen=True, slots=True)
class Lost:
    """An acknowledged call the reopened database does not hold as acknowledged."""

    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}"


@final
@dataclass(frozen=True, slots=True)
class AuditResult:
    lost: list[Lost]
    problems: list[str]
    recoveries: list[str]


@final
@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes the parent appended to a tenant's active segment, as a write cut short leaves them."""

    tenant: int
    segment: str
    start: int
    end: int


def tear_tail(folder: Path, rng: random.Random) -> TornTail | None:
    """Append a torn frame to the newest segment of a random tenant (None: no segment yet).

    SIGKILL rarely cuts a write in the middle, and a power cut would: the
    prefix of a frame (from a few bytes of its length field up to a whole
    frame whose CRC fails) is what recovery must discard and report.
    """
    segments = {
        tenant: max(log_segments)
        for tenant, path in tenant_folders(folder).items()
        if (log_segments := sorted((path / "log").glob("*.vlog")))
    }
    if not segments:
        return None
    tenant = rng.choice(sorted(segments))
    declared_bytes = rng.randrange(53, 70_000)
    frame = declared_bytes.to_bytes(4, "big") + rng.randbytes(4 + declared_bytes)
    torn = frame[: rng.randint(1, len(frame))]
    segment = segments[tenant]
    start = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(torn)
    return TornTail(tenant, segment.name, start, start + len(torn))


def read_all(handle: TenantHandle, stream: StreamId) -> list[bytes]:
    events: list[bytes] = []
    while True:
        more = handle.read_events(stream, Offset(len(events)), READ_BYTES_MAX)
        if not more:
            return events
        events += more


def chain_hash_at(handle: TenantHandle, offset: int, size: int) -> bytes:
    """Chain hash of the record at `offset`, from its bytes as an inclusion proof carries them."""
    leaf = handle.inclusion_proof(offset, size).leaf
    return hashlib.sha256(CHAIN_DOMAIN + leaf).digest()


def audit_events(
    tenant: int, stream: str, events: list[bytes], trial_of_seed: dict[int, int]
) -> list[str]:
    """Problems with the events present: unknown bytes, duplicates, torn batches, reordering."""
    problems: list[str] = []
    seen: set[tuple[int, int, int, int]] = set()
    last_call: dict[tuple[int, int], tuple[int, int]] = {}
    last_trial = -1
    open_batch: EventKey | None = None
    where = f"tenant {tenant} stream {stream}"
    for position, event in enumerate(events):
        key = parse_event(event)
        if key is None:
            problems.append(f"{where} offset {position}: bytes the workload never wrote")
            open_batch = None
            continue
        identity = (key.seed, key.writer, key.call, key.part)
        if identity in seen:
            problems.append(f"{where} offset {position}: event {identity} is there twice")
        seen.add(identity)
        trial = trial_of_seed.get(key.seed)
        if trial is None:
            problems.append(f"{where} offset {position}: seed {key.seed} of no trial here")
        elif trial < last_trial:
            problems.append(f"{where} offset {position}: trial {trial} after trial {last_trial}")
        else:
            last_trial = trial
        if open_batch is not None:
            continues = (key.seed, key.writer, key.call, key.parts) == (
                open_batch.seed,
                open_batch.writer,
                open_batch.call,
                open_batch.parts,
            )
            if not continues or key.part != open_batch.part + 1:
                problems.append(f"{where} offset {position}: batch {open_batch} is torn")
        elif key.part != 0:
            problems.append(f"{where} offset {position}: part {key.part} without its batch")
        open_batch = key if key.part + 1 < key.parts else None
        previous = last_call.get((key.seed, key.writer))
        if previous is not None and previous >= (key.call, key.part):
            problems.append(
                f"{where} offset {position}: writer {key.writer} call {key.call} part "
                f"{key.part} after call {previous[0]} part {previous[1]}"
            )
        last_call[(key.seed, key.writer)] = (key.call, key.part)
    if open_batch is not None:
        problems.append(f"{where}: the last batch {open_batch} is torn")
    return problems


def audit_rows(tenant: int, rows: list[tuple[object, ...]]) -> list[str]:
    """Problems with the rows present: unknown values, torn statements."""
    problems: list[str] = []
    parts_found: dict[tuple[int, int, int], set[int]] = {}
    parts_wanted: dict[tuple[int, int, int], int] = {}
    for row in rows:
        row_id, seed, writer, call, part, parts, body = row
        assert isinstance(seed, int) and isinstance(writer, int) and isinstance(call, int)
        assert isinstance(part, int) and isinstance(parts, int)
        if body != row_body(seed, writer, call, part):
            problems.append(f"tenant {tenant} row {row_id}: a body the workload never wrote")
        parts_found.setdefault((seed, writer, call), set()).add(part)
        parts_wanted[(seed, writer, call)] = parts
    for statement, found in parts_found.items():
        if found != set(range(parts_wanted[statement])):
            problems.append(
                f"tenant {tenant} INSERT {statement}: rows {sorted(found)} of a torn one"
            )
    return problems


def audit_checkpoints(
    handle: TenantHandle, acks: list[AckedCheckpoint], *, sign: bool = True
) -> list[Lost]:
    """Lost checkpoints: each acknowledged one must be a prefix of the log as signed now.

    Signs a new checkpoint (appending its record) and checks an RFC 9162
    consistency proof from every acknowledged one to it, as an auditor would.
    Without `sign` (a reader signs nothing), the newest acknowledged
    checkpoint stands for "now".
    """
    if not acks:
        return []
    public_key = handle.public_key()
    if sign:
        now = handle.checkpoint()
    else:
        now = max((ack.checkpoint for ack in acks), key=lambda checkpoint: checkpoint.tree_size)
    verify_signed_checkpoint(now, public_key)
    lost = []
    for ack in acks:
        signed = ack.checkpoint
        try:
            verify_signed_checkpoint(signed, public_key)
            proof = handle.consistency_proof(signed.tree_size, now.tree_size)
            verify_consistency(proof, signed.root, now.root)
        except VerityError as failure:
            lost.append(Lost(ack.key, f"not a prefix of the log now ({failure})"))
            continue
        end = signed.tree_size - 1
        if chain_hash_at(handle, end, now.tree_size) != signed.chain_hash:
            lost.append(Lost(ack.key, f"record {end} is not the one signed"))
    return lost


def discards(cut: tuple[str, int, int] | None, torn: TornTail, torn_tails: list[TornTail]) -> bool:
    """Whether a recovery's discarded bytes `cut` account for `torn`, and no more than tears.

    The cut starts at or before the torn tail (the kill may have torn a write
    first) and ends at its end, or at the end of a later torn tail appended
    on top of it in the same segment (a child killed before it recovered the
    first one leaves both, and one recovery discards them together).
    """
    if cut is None or cut[0] != torn.segment or cut[1] > torn.start:
        return False
    ends = {other.end for other in torn_tails if other.segment == torn.segment}
    return cut[2] == torn.end or (cut[2] > torn.end and cut[2] in ends)


def audit_recoveries(
    handle: TenantHandle, history: FolderHistory, floor: int, torn_tails: list[TornTail]
) -> tuple[list[str], list[str]]:
    """`(problems, descriptions)` of the recoveries since the last audit.

    None may keep fewer records than were acknowledged before the trial, and
    every torn tail the parent appended must be reported, discarding exactly
    it (or more, starting earlier, if the kill itself tore a write).
    """
    tenant = int(handle.tenant)
    problems: list[str] = []
    described: list[str] = []
    recoveries = handle.recoveries()
    unreported = list(torn_tails)
    for recovery in recoveries[history.recoveries_seen.get(tenant, 0) :]:
        described.append(
            f"tenant {tenant} generation {int(recovery.generation)} kept "
            f"{int(recovery.known_committed)} records, discarded bytes {recovery.discarded_bytes}"
        )
        if int(recovery.known_committed) < floor:
            problems.append(
                f"tenant {tenant}: recovery kept {int(recovery.known_committed)} records, "
                f"below the {floor} acknowledged before the trial"
            )
        cut = recovery.discarded_bytes
        unreported = [torn for torn in unreported if not discards(cut, torn, torn_tails)]
    history.recoveries_seen[tenant] = len(recoveries)
    problems += [
        f"tenant {tenant}: no recovery reports the torn tail {torn}" for torn in unreported
    ]
    return problems, described


def audit_tenant(
    handle: TenantHandle,
    history: FolderHistory,
    acks: list[Ack],
    floor: int,
    torn_tails: list[TornTail],
    *,
    reader: bool = False,
) -> tuple[list[Lost], list[str], list[str]]:
    """`(lost, problems, recoveries)` of one tenant against its acknowledgements.

    A `reader` (a read-only handle beside a live writer) signs nothing and
    leaves the recoveries to the writer's audit.
    """
    tenant = int(handle.tenant)
    lost: list[Lost] = []
    problems: list[str] = []
    trial_of_seed = {seed: trial for trial, seed in enumerate(history.seeds)}
    streams = {info.name: info.stream_id for info in handle.streams()}
    events_by_stream: dict[str, list[bytes]] = {}
    for name, stream in streams.items():
        events_by_stream[name] = read_all(handle, stream)
        problems += audit_events(tenant, name, events_by_stream[name], trial_of_seed)
    try:
        rows = handle.query(SELECT_ROWS).rows
    except SqlError as failure:
        if failure.kind != "unknown_table":
            raise
        rows = []
    problems += audit_rows(tenant, rows)
    rows_by_id = {row[0]: row for row in rows}
    size = handle.log_size()
    for ack in acks:
        if isinstance(ack, AckedAppend):
            events = events_by_stream.get(ack.stream, [])
            if events[ack.first : ack.first + ack.parts] != ack.events():
                lost.append(Lost(ack.key, f"{ack.parts} events missing or different"))
            elif ack.idempotent:
                committed = handle.committed(idempotency_id_of(ack.seed, ack.writer, ack.call))
                if committed != ack.first:
                    problems.append(f"{ack.key}: its idempotency id answers {committed}")
        elif isinstance(ack, AckedStatement):
            expected = [
                (
                    ack.first_id + part,
                    ack.seed,
                    ack.writer,
                    ack.call,
                    part,
                    ack.parts,
                    row_body(ack.seed, ack.writer, ack.call, part),
                )
                for part in range(ack.parts)
            ]
            found = [rows_by_id.get(ack.first_id + part) for part in range(ack.parts)]
            if found != expected:
                lost.append(Lost(ack.key, f"rows {ack.first_id}.. missing or different"))
            elif ack.offset >= size or chain_hash_at(handle, ack.offset, size) != ack.chain_hash:
                lost.append(
                    Lost(ack.key, "the record at the receipt's offset is not the receipt's")
                )
    checkpoints = [ack for ack in acks if isinstance(ack, AckedCheckpoint)]
    lost += audit_checkpoints(handle, checkpoints, sign=not reader)
    if reader:
        return lost, problems, []
    recovery_problems, recoveries = audit_recoveries(handle, history, floor, torn_tails)
    return lost, problems + recovery_problems, recoveries


def audit(
    folder: Path,
    history: FolderHistory,
    acks: list[Ack],
    torn_tails: list[TornTail],
    *,
    clean_close: bool,
) -> AuditResult:
    """Reopen `folder` after a crash and check every acknowledgement so far against it."""
    lost: list[Lost] = []
    problems: list[str] = []
    recoveries: list[str] = []
    db = open_database(folder, SyncPolicy.every_batch())
    try:
        report = db.verify()
        if not report.ok:
            problems.append(f"verify() failed: {report.first_bad}")
        every = history.acks + acks
        for tenant in sorted(set(WRITER_TENANTS)):
            tenant_acks = [ack for ack in every if ack.tenant == int(tenant)]
            try:
                handle = db.tenant(tenant, create=False)
            except NotFound:
                lost += [Lost(ack.key, f"tenant {int(tenant)} is gone") for ack in tenant_acks]
                continue
            floor = history.durable_floor(int(tenant))
            torn_here = [torn for torn in torn_tails if torn.tenant == int(tenant)]
            found = audit_tenant(handle, history, tenant_acks, floor, torn_here)
            lost += found[0]
            problems += found[1]
            recoveries += found[2]
    except VerityError as failure:
        problems.append(f"reopening after the crash raised {type(failure).__name__}: {failure}")
    finally:
        if clean_close:
            db.close()
        else:
            db._abandon()
    return AuditResult(lost, problems, recoveries)


def audit_beside_writer(folder: Path, history: FolderHistory, acks: list[Ack]) -> list[str]:
    """A reader opened beside the live child: it sees every call acknowledged before it opened.

    The child acknowledges a call only once it is durable and the durability
    mark says so, and a reader sees every record the mark names when it opens
    (docs/sdk.md, "One writer, any number of readers"): it must verify, and
    hold every acknowledged event, row, receipt and checkpoint. What it misses
    is a problem of the reader, not a loss.
    """
    problems: list[str] = []
    try:
        with open_database(folder, SyncPolicy.every_batch(), create=False, read_only=True) as db:
            report = db.verify()
            if not report.ok:
                problems.append(f"verify() failed: {report.first_bad}")
            every = history.acks + acks
            for tenant in sorted(map(int, db.tenants())):
                tenant_acks = [ack for ack in every if ack.tenant == tenant]
                handle = db.tenant(TenantId(tenant))
                missed, more, _ = audit_tenant(handle, history, tenant_acks, 0, [], reader=True)
                problems += [f"it misses {item}" for item in missed] + more
    except (VerityError, OSError) as failure:
        problems.append(f"it raised {type(failure).__name__}: {failure}")
    return [f"a reader beside the writer: {problem}" for problem in problems]


def read_durable_mark(log: Path) -> tuple[int, bytes] | str:
    """`(size, head_hash)` of a log's durability mark (docs/formats.md §4.6), or what is wrong."""
    try:
        data = (log / MARK_FILE).read_bytes()
    except FileNotFoundError:
        return "is missing"
    if len(data) != MARK_BYTES:
        return f"has {len(data)} bytes, not {MARK_BYTES}"
    crc = int.from_bytes(data[45:49], "big")
    if data[:4] != MARK_MAGIC or data[4] != MARK_VERSION or zlib.crc32(data[:45]) != crc:
        return "does not check (magic, version or CRC)"
    return int.from_bytes(data[5:13], "big"), data[13:45]


def whole_records(log: Path) -> list[bytes]:
    """Every record of a log's segments, in order, up to the first frame that is not whole.

    A killed writer can leave a torn frame at the end; nothing after it is a record.
    """
    records: list[bytes] = []
    for segment in sorted(log.glob("*.vlog")):
        if int(segment.stem) != len(records):
            return records
        data = segment.read_bytes()
        position = 0
        while position + 8 <= len(data):
            length = int.from_bytes(data[position : position + 4], "big")
            end = position + 8 + length
            record = data[position + 8 : end]
            crc = int.from_bytes(data[position + 4 : position + 8], "big")
            if length < 53 or end > len(data) or zlib.crc32(record) != crc:
                return records
            records.append(record)
            position = end
        if position != len(data):
            return records
    return records


def durable_mark_problems(folder: Path, acks: list[Ack]) -> list[str]:
    """Problems with every tenant's durability mark, as the killed child left it.

    The mark must check, cover every acknowledged record whose position the
    parent knows (SQL receipts, checkpoints): one it does not cover could be
    cut later as if it were a torn tail; never run ahead of the records on
    disk (SIGKILL keeps the page cache: all that was written is there); and
    carry the chain hash of its last record.
    """
    problems = []
    for tenant, path in sorted(tenant_folders(folder).items()):
        log = path / "log"
        if not log.is_dir():
            continue
        floor = max(
            [
                ack.offset + 1
                for ack in acks
                if isinstance(ack, AckedStatement) and ack.tenant == tenant
            ]
            + [
                ack.checkpoint.tree_size
                for ack in acks
                if isinstance(ack, AckedCheckpoint) and ack.tenant == tenant
            ],
            default=0,
        )
        records = whole_records(log)
        mark = read_durable_mark(log)
        where = f"tenant {tenant} {MARK_FILE}"
        if isinstance(mark, str):
            if records or floor:
                problems.append(f"{where} {mark}, with {len(records)} records on disk")
            continue
        size, head_hash = mark
        if size < floor:
            problems.append(f"{where} says {size} records are durable; {floor} were acknowledged")
        if size > len(records):
            problems.append(f"{where} says {size} records are durable; {len(records)} are on disk")
        elif size and hashlib.sha256(CHAIN_DOMAIN + records[size - 1]).digest() != head_hash:
            problems.append(f"{where}: its head hash is not record {size - 1}'s chain hash")
    return problems


def print_problems(label: str, lines: list[str]) -> None:
    for line in lines[:PROBLEMS_SHOWN_MAX]:
        print(f"  {label} {line}", flush=True)
    if len(lines) > PROBLEMS_SHOWN_MAX:
        print(f"  ... and {len(lines) - PROBLEMS_SHOWN_MAX} more", flush=True)


@final
@dataclass(frozen=True, slots=True)
class CrashOutcome:
    acknowledged: int
    lost: int
    failed: bool


def run_crash_trial(
    trial: int,
    trials: int,
    history: FolderHistory,
    policy: str,
    rng: random.Random,
    options: argparse.Namespace,
    *,
    last_in_folder: bool,
) -> CrashOutcome:
    """Spawn a writing child, SIGKILL it at a random moment, audit the folder."""
    seed = rng.getrandbits(48)
    command = [
        sys.executable,
        str(SCRIPT),
        "--child",
        str(history.folder),
        "--policy",
        policy,
        "--seed",
        str(seed),
        "--segment-bytes",
        str(options.segment_bytes),
    ]
    stderr_path = history.folder.with_name(f"{history.folder.name}-trial-{trial}.stderr")
    early = rng.random() < EARLY_KILL_FRACTION
    delay_ms = rng.randrange(0, EARLY_KILL_MS_MAX if early else options.kill_ms_max)
    reader_ms = rng.randrange(0, delay_ms + 1) if rng.random() < READER_FRACTION else None
    problems: list[str] = []
    with stderr_path.open("wb") as stderr_file:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr_file, text=True)
        try:
            assert child.stdout is not None
            output = ChildOutput(child.stdout)
            ready = early or output.ready.wait(READY_TIMEOUT_S)
            if not ready:
                problems.append(f"the child was not ready within {READY_TIMEOUT_S} s")
            if reader_ms is not None and not early and ready:
                time.sleep(reader_ms / 1000)
                now = history_copy(history, history.folder)
                now.seeds.append(seed)  # the live child's events are this trial's
                problems += audit_beside_writer(history.folder, now, list(output.acks))
                time.sleep((delay_ms - reader_ms) / 1000)
            else:
                time.sleep(delay_ms / 1000)
        finally:
            child.kill()
            child.wait()
        output.join()
    moment = f"{'after spawn' if early else 'after ready'} +{delay_ms} ms"
    if reader_ms is not None and not early:
        moment += f", reader beside it at +{reader_ms} ms"
    if child.returncode != -signal.SIGKILL:
        problems.append(f"the child exited with {child.returncode} before the kill")
    problems += [f"the child reported: {message}" for message in output.errors]
    problems += durable_mark_problems(history.folder, history.acks + output.acks)
    # Torn tails the audit must find recovered: one left for this child's open to
    # recover (it may have been killed while it did), one appended after the kill.
    torn_tails = history.torn_for_next_trial
    history.torn_for_next_trial = []
    after_kill = tear_tail(history.folder, rng) if rng.random() < TORN_TAIL_FRACTION else None
    for torn in torn_tails:
        moment += f", torn tail before: {torn.end - torn.start} bytes, tenant {torn.tenant}"
    if after_kill is not None:
        torn_tails.append(after_kill)
        size = after_kill.end - after_kill.start
        moment += f", torn tail after: {size} bytes, tenant {after_kill.tenant}"
    history.seeds.append(seed)
    clean_close = last_in_folder or rng.random() < 0.5
    result = audit(history.folder, history, output.acks, torn_tails, clean_close=clean_close)
    if not last_in_folder and rng.random() < TORN_TAIL_FRACTION:
        for_next = tear_tail(history.folder, rng)
        if for_next is not None:
            history.torn_for_next_trial.append(for_next)
    history.add_acks(output.acks)
    new_lost = [item for item in result.lost if item.key not in history.lost_keys]
    history.lost_keys.update(item.key for item in new_lost)
    problems += result.problems
    failed = bool(new_lost or problems)
    if problems and stderr_path.stat().st_size:
        tail = stderr_path.read_text(errors="replace").strip().splitlines()[-5:]
        problems += [f"child stderr: {line}" for line in tail]
    print(
        f"crash trial {trial + 1}/{trials} folder={history.folder.name} policy={policy} "
        f"seed={seed} kill={moment} acknowledged={len(output.acks)} lost={len(new_lost)} "
        f"recoveries={len(result.recoveries)} then={'closed' if clean_close else 'abandoned'} "
        f"{'FAILED' if failed else 'ok'}",
        flush=True,
    )
    print_problems("LOST", [str(item) for item in new_lost])
    print_problems("PROBLEM", problems)
    return CrashOutcome(len(output.acks), len(new_lost), failed)


# =================================================================== corruption trials


@final
@dataclass(frozen=True, slots=True)
class StoredFrame:
    """Where a record's frame is: its segment file and byte range, and its log offset."""

    segment: Path
    start: int
    end: int
    record_offset: int


def segment_frames(segment: Path) -> list[StoredFrame]:
    """Every frame of one whole segment, parsed as docs/formats.md §4.1 lays them out."""
    frames = []
    data = segment.read_bytes()
    position = 0
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        end = position + 8 + length
        assert length >= 53 and end <= len(data), f"{segment} byte {position}: not a frame"
        record_offset = int.from_bytes(data[position + 8 : position + 16], "big")
        frames.append(StoredFrame(segment, position, end, record_offset))
        position = end
    return frames


def stored_frames(log_folder: Path) -> list[StoredFrame]:
    """Every frame of every segment of a log whose segments are whole."""
    return [frame for path in sorted(log_folder.glob("*.vlog")) for frame in segment_frames(path)]


def tenant_folders(folder: Path, *, with_records: bool = False) -> dict[int, Path]:
    """Tenant folders by tenant id; with `with_records`, only those whose log holds a record."""
    found = {}
    for path in folder.glob("shard-*/tenant-*"):
        if with_records and not any(segment.stat().st_size for segment in path.glob("log/*.vlog")):
            continue  # killed before its first record: nothing to flip or damage
        found[int(path.name.removeprefix("tenant-"))] = path
    return found


def flip_byte(path: Path, position: int, mask: int) -> None:
    assert 0 < mask < 256
    with path.open("r+b") as file:
        file.seek(position)
        original = file.read(1)
        assert len(original) == 1
        file.seek(position)
        file.write(bytes([original[0] ^ mask]))


def restore(source: Path, work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work)


def frame_part(frame: StoredFrame, position: int) -> str:
    inside = position - frame.start
    if inside < 4:
        return "length"
    if inside < 8:
        return "crc"
    return "header" if inside < 8 + 53 else "payload"


def close_database(db: verity.Verity, failures: list[str]) -> None:
    """Close `db`; a close that raises is a failure of its own (a reported flip must not
    make closing fail), added to `failures`."""
    try:
        db.close()
    except VerityError as failure:
        failures.append(f"closing the database raised {type(failure).__name__}: {failure}")


def detection_by_verify(
    work: Path, tenant: int, record_offset: int, failures: list[str]
) -> str | None:
    """None when `verify()` names exactly `tenant` and `record_offset`, else what it said."""
    db = open_database(work, SyncPolicy.every_batch())
    try:
        report = db.verify()
    finally:
        close_database(db, failures)
    bad = report.first_bad
    if bad is not None and int(bad.tenant) == tenant and bad.record_offset == record_offset:
        return None
    return f"verify() reported {'ok' if report.ok else bad}"


def detection_by_open(
    work: Path, tenant: int, record_offset: int, failures: list[str]
) -> list[str]:
    """Problems opening the tenants and reading the flipped record.

    The flipped tenant must refuse to open, naming the record, or, when its
    kernel snapshot (docs/formats.md §5.4) spared the open from reading that
    record, refuse to read it: its inclusion proof carries the record, so
    asking for it must raise naming the record. Other tenants must open.
    """
    problems = []
    db = open_database(work, SyncPolicy.every_batch())
    try:
        try:
            handle = db.tenant(TenantId(tenant), create=False)
        except CorruptionError as failure:
            if failure.record_offset != record_offset:
                problems.append(f"opening raised for another record: {failure}")
        else:
            try:
                handle.inclusion_proof(record_offset, handle.log_size())
                problems.append("the flipped tenant opened and returned the flipped record")
            except CorruptionError as failure:
                if failure.record_offset != record_offset:
                    problems.append(f"reading the record raised for another one: {failure}")
        for other in sorted(set(map(int, db.tenants())) - {tenant}):
            try:
                db.tenant(TenantId(other), create=False)
            except VerityError as failure:
                problems.append(f"tenant {other}, not flipped, failed to open: {failure}")
    finally:
        close_database(db, failures)
    return problems


@final
@dataclass(frozen=True, slots=True)
class CorruptionOutcome:
    detected: bool  # reported exactly, by verify() and by opening or reading
    failed: bool  # not detected, or something else went wrong (a close raised)


def run_corruption_trial(
    trial: int, trials: int, source: Path, work: Path, rng: random.Random
) -> CorruptionOutcome:
    """Flip one byte of one stored record; it must be detected exactly, and nothing else fail.

    `verify()` and a plain open each get their own copy of the flipped folder:
    a tenant that failed to open keeps its store's page file locked for the
    rest of the process (see the campaign's report), which would make the
    second check fail for a reason other than the flip.
    """
    restore(source, work)
    tenants = tenant_folders(work, with_records=True)
    tenant = rng.choice(sorted(tenants))
    frame = rng.choice(stored_frames(tenants[tenant] / "log"))
    position = rng.randrange(frame.start, frame.end)
    mask = rng.randrange(1, 256)
    flip_byte(frame.segment, position, mask)
    twin = work.with_name(work.name + "-twin")
    restore(work, twin)
    problems: list[str] = []
    failures: list[str] = []
    by_verify = detection_by_verify(work, tenant, frame.record_offset, failures)
    if by_verify is not None:
        problems.append(by_verify)
    problems += detection_by_open(twin, tenant, frame.record_offset, failures)
    detected = not problems
    print(
        f"corruption trial {trial + 1}/{trials} folder={source.name} tenant={tenant} "
        f"record={frame.record_offset} file={frame.segment.name} byte={position} "
        f"({frame_part(frame, position)}) mask=0x{mask:02x} "
        f"{'detected' if detected else 'NOT DETECTED'}{', FAILED' if failures else ''}",
        flush=True,
    )
    print_problems("PROBLEM", problems + failures)
    return CorruptionOutcome(detected, bool(problems or failures))


# =================================================================== rebuild trials


def digest(parts: Sequence[bytes]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    return f"{len(parts)} items, sha256 {hasher.hexdigest()[:16]}"


def tenant_answers(handle: TenantHandle) -> dict[str, str]:
    """What one tenant answers: events, idempotency, rows now and past, records, proofs."""
    found: dict[str, str] = {}
    size = handle.log_size()
    found["log size"] = str(size)
    found["streams"] = repr(handle.streams())
    for info in handle.streams():
        events = read_all(handle, info.stream_id)
        found[f"events of {info.name}"] = digest(events)
        keys = [key for key in map(event_key, events) if key is not None and key.part == 0]
        committed = [handle.committed(idempotency_id_of(k.seed, k.writer, k.call)) for k in keys]
        found[f"idempotency answers of {info.name}"] = digest([repr(committed).encode()])
    try:
        found["rows"] = digest([repr(handle.query(SELECT_ROWS + " ORDER BY id").rows).encode()])
    except SqlError as failure:
        found["rows"] = f"SqlError {failure.kind}"
    for position in sorted(random.Random(size).sample(range(size), min(size, 24))):
        try:
            counted = handle.query_at("SELECT COUNT(*) FROM rows", [], position).rows
            found[f"row count at {position}"] = repr(counted)
        except SqlError as failure:
            found[f"row count at {position}"] = f"SqlError {failure.kind}"
    proofs = [handle.inclusion_proof(leaf, size) for leaf in range(size)]
    found["records"] = digest([proof.leaf for proof in proofs])
    found["inclusion proofs"] = digest([b"".join(proof.path) for proof in proofs])
    found["consistency proofs"] = digest(
        [b"".join(handle.consistency_proof(old, size).path) for old in range(1, size + 1)]
    )
    past = random.Random(-size)
    pairs = []
    for _ in range(64 if size else 0):
        tree_size = past.randint(1, size)
        pairs.append((past.randrange(tree_size), tree_size))
    found["past inclusion proofs"] = digest(
        [b"".join(handle.inclusion_proof(*pair).path) for pair in pairs]
    )
    found["recoveries"] = repr(handle.recoveries())
    return found


def answers(folder: Path, *, read_only: bool = False) -> dict[str, str]:
    """Everything the database in `folder` answers, by question; opens and closes it.

    `read_only` asks a reader (which writes nothing): it must answer as the writer does.
    """
    found: dict[str, str] = {}
    with open_database(folder, SyncPolicy.every_batch(), create=False, read_only=read_only) as db:
        report = db.verify()
        found["verify"] = f"ok={report.ok} records={report.records_checked} bad={report.first_bad}"
        for tenant in db.tenants():
            for question, answer in tenant_answers(db.tenant(tenant)).items():
                found[f"tenant {int(tenant)} {question}"] = answer
    return found


Damage = Callable[[Path, random.Random], tuple[str, list[Path]]]


def _pick(paths: list[Path], rng: random.Random, what: str) -> Path:
    assert paths, f"no {what} to damage"
    return rng.choice(paths)


def _flip_one(path: Path, rng: random.Random) -> str:
    position = rng.randrange(path.stat().st_size)
    mask = rng.randrange(1, 256)
    flip_byte(path, position, mask)
    return f"{path.name} byte {position} ^ 0x{mask:02x}"


def _truncate_one(path: Path, rng: random.Random) -> str:
    size = path.stat().st_size
    kept = rng.randrange(size)
    os.truncate(path, kept)
    return f"{path.name} cut from {size} to {kept} bytes"


def _indexes(tenant: Path) -> list[Path]:
    return sorted((tenant / "log").glob("*.vidx"))


def _levels(tenant: Path) -> list[Path]:
    """Every non-empty Merkle file: level node files, their block sums and tails.bin."""
    folder = tenant / "log" / "merkle"
    return sorted(path for path in folder.iterdir() if path.is_file() and path.stat().st_size)


def _delete_index(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = _pick(_indexes(tenant), rng, "offset index")
    path.unlink()
    return f"deleted {path.name}", [path]


def _delete_every_index(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    paths = _indexes(tenant)
    for path in paths:
        path.unlink()
    return f"deleted {len(paths)} offset indexes", paths


def _flip_index(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = _pick(_indexes(tenant), rng, "offset index")
    return _flip_one(path, rng), [path]


def _truncate_index(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = _pick(_indexes(tenant), rng, "offset index")
    return _truncate_one(path, rng), [path]


def _delete_level(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = _pick(_levels(tenant), rng, "Merkle file")
    path.unlink()
    return f"deleted merkle/{path.name}", [path]


def _delete_merkle(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    folder = tenant / "log" / "merkle"
    shutil.rmtree(folder)
    return "deleted merkle/", [folder]


def _flip_level(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = _pick(_levels(tenant), rng, "Merkle file")
    return "merkle/" + _flip_one(path, rng), [path]


def _truncate_level(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = _pick(_levels(tenant), rng, "Merkle file")
    return "merkle/" + _truncate_one(path, rng), [path]


def _delete_checkpoints(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = tenant / "log" / "checkpoints.vcpt"
    path.unlink()
    return f"deleted {path.name}", [path]


def _flip_checkpoints(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = tenant / "log" / "checkpoints.vcpt"
    return _flip_one(path, rng), [path]


def _truncate_checkpoints(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = tenant / "log" / "checkpoints.vcpt"
    return _truncate_one(path, rng), [path]


def _delete_snapshot(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = tenant / "kernel.vsnap"
    path.unlink()
    return "deleted kernel.vsnap", [path]


def _flip_snapshot(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = tenant / "kernel.vsnap"
    return _flip_one(path, rng), [path]


def _truncate_snapshot(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = tenant / "kernel.vsnap"
    return _truncate_one(path, rng), [path]


def _delete_stream_index(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = tenant / "streams.vsix"
    path.unlink()
    return "deleted streams.vsix", [path]


def _flip_stream_index(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = tenant / "streams.vsix"
    return _flip_one(path, rng), [path]


def _truncate_stream_index(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = tenant / "streams.vsix"
    return _truncate_one(path, rng), [path]


def _delete_store(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    shutil.rmtree(tenant / "store")
    return "deleted store/", [tenant / "store"]


def _flip_store(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = tenant / "store" / "pages.vstore"
    return "store/" + _flip_one(path, rng), [path]


def _truncate_store(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    path = tenant / "store" / "pages.vstore"
    return "store/" + _truncate_one(path, rng), [path]


def _delete_every_derived(tenant: Path, rng: random.Random) -> tuple[str, list[Path]]:
    paths = [*_indexes(tenant), tenant / "log" / "merkle", tenant / "log" / "checkpoints.vcpt"]
    paths += [tenant / "store", tenant / "kernel.vsnap", tenant / "streams.vsix"]
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return (
        "deleted every offset index, merkle/, checkpoints.vcpt, store/, kernel.vsnap "
        "and streams.vsix",
        paths,
    )


DAMAGES: Final[dict[str, Damage]] = {
    "index-delete": _delete_index,
    "index-delete-all": _delete_every_index,
    "index-flip": _flip_index,
    "index-truncate": _truncate_index,
    "merkle-delete-level": _delete_level,
    "merkle-delete": _delete_merkle,
    "merkle-flip": _flip_level,
    "merkle-truncate": _truncate_level,
    "checkpoints-delete": _delete_checkpoints,
    "checkpoints-flip": _flip_checkpoints,
    "checkpoints-truncate": _truncate_checkpoints,
    "snapshot-delete": _delete_snapshot,
    "snapshot-flip": _flip_snapshot,
    "snapshot-truncate": _truncate_snapshot,
    "streams-delete": _delete_stream_index,
    "streams-flip": _flip_stream_index,
    "streams-truncate": _truncate_stream_index,
    "store-delete": _delete_store,
    "store-flip": _flip_store,
    "store-truncate": _truncate_store,
    "derived-delete-all": _delete_every_derived,
}


def names_damaged(message: str | None, damaged: list[Path]) -> bool:
    """Whether an error's file (or report) names one of the damaged files or folders."""
    if not message:
        return False
    return any(str(path) in message for path in damaged)


def run_rebuild_trial(
    trial: int,
    trials: int,
    kind: str,
    source: Path,
    work: Path,
    expected: dict[str, str],
    rng: random.Random,
) -> str:
    """Damage a derived file; return "rebuilt", "reported" or "wrong"."""
    restore(source, work)
    tenants = tenant_folders(work, with_records=True)
    tenant = rng.choice(sorted(tenants))
    what, damaged = DAMAGES[kind](tenants[tenant], rng)
    detail = ""
    try:
        first = answers(work)
        second = answers(work) if first == expected else first
    except CorruptionError as failure:
        outcome = "reported" if names_damaged(failure.file, damaged) else "wrong"
        detail = f"{type(failure).__name__}: {failure}"
    except VerityError as failure:
        outcome = "wrong"
        detail = f"{type(failure).__name__}: {failure}"
    else:
        differing = sorted(key for key in expected if second.get(key) != expected[key])
        if not differing:
            outcome = "rebuilt"
        elif differing == ["verify"] and names_damaged(second["verify"], damaged):
            outcome = "reported"
            detail = f"verify(): {second['verify']}"
        else:
            outcome = "wrong"
            opens = "first open" if first != expected else "second open"
            detail = f"{opens} answered differently: {', '.join(differing)}"
            if "verify" in differing:
                detail += f"; verify(): {second['verify']}"
    shown = outcome if outcome != "wrong" else "WRONG"
    print(
        f"rebuild trial {trial + 1}/{trials} folder={source.name} tenant={tenant} damage={kind} "
        f"({what}) {shown}",
        flush=True,
    )
    if detail:
        print(f"  {'PROBLEM' if outcome == 'wrong' else 'reported as'} {detail}", flush=True)
    return outcome


# =================================================================== fault trials

# docs/formats.md §4 and §5.5 and docs/sdk.md: the files a fault trial damages or ignores.
LOCK_FILE: Final = "verity.lock"  # every writer stamps its pid into the lock files it takes
LAYOUT_FILE: Final = "verity.json"
LAYOUT_FORMAT: Final = 1
MASTER_KEY_FILE: Final = "master.key"
KEYRING_FILE: Final = "keyring.json"
SIGNING_KEY_FILE: Final = "signing.key"
SHARD_COUNT_CANDIDATES: Final = range(1, 65)  # counts a layout fault may write instead
HOLDER_STOP_S: Final = 10.0

Outcome: TypeAlias = str | None  # what is wrong; None when nothing is


def folder_state(folder: Path) -> dict[str, str]:
    """Every file (by SHA-256 of its bytes) and folder under `folder`, by relative path.

    Lock files are left out: a writable open stamps its pid into them, and
    the lock file of a folder that had none is made by the first open that
    asks for it, refused or not (docs/formats.md §4).
    """
    state: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if path.name == LOCK_FILE:
            continue
        name = str(path.relative_to(folder))
        state[name] = "folder" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def state_changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What differs between two `folder_state`s, one line per path."""
    changes = [f"{name} created" for name in sorted(after.keys() - before.keys())]
    changes += [f"{name} deleted" for name in sorted(before.keys() - after.keys())]
    changes += [
        f"{name} rewritten"
        for name in sorted(before.keys() & after.keys())
        if before[name] != after[name]
    ]
    return changes


@final
@dataclass(frozen=True, slots=True)
class Refusal:
    """The typed error a fault must be refused with, and what the error must say."""

    error: type[VerityError]
    says_wrong: Callable[[Any], Outcome]  # given an `error`: what it gets wrong, if anything

    def judge(self, failure: Exception) -> Outcome:
        if not isinstance(failure, self.error):
            return f"raised {type(failure).__name__}: {failure}; expected {self.error.__name__}"
        return self.says_wrong(failure)


def refusal_summary(failure: Exception) -> str:
    """A refusal as a trial line shows it: the error's type and what it names."""
    if isinstance(failure, HistoryLost):
        return f"HistoryLost(records {failure.first_lost}..{failure.end_lost - 1})"
    if isinstance(failure, InUse):
        return f"InUse(pid {failure.pid})"
    if isinstance(failure, CorruptionError) and failure.file is not None:
        return f"{type(failure).__name__}({Path(failure.file).name})"
    return type(failure).__name__


@final
@dataclass(frozen=True, slots=True)
class Attempt:
    """One open of the damaged folder, and whether it must be refused or must work.

    `run` returns what was wrong when it worked (None: it worked as it must);
    with a `refusal`, working at all is wrong.
    """

    label: str
    run: Callable[[], Outcome]
    refusal: Refusal | None


@final
@dataclass(frozen=True, slots=True)
class AttemptResult:
    opened: bool  # it must have been refused and was not
    problem: Outcome
    refused_with: str | None


def make_attempt(attempt: Attempt) -> AttemptResult:
    try:
        wrong = attempt.run()
    except Exception as failure:  # any error at all: it is judged, never let through
        if attempt.refusal is None:
            problem = f"{attempt.label} raised {type(failure).__name__}: {failure}"
            return AttemptResult(False, problem, None)
        wrong = attempt.refusal.judge(failure)
        problem = None if wrong is None else f"{attempt.label}: {wrong}"
        return AttemptResult(False, problem, None if wrong else refusal_summary(failure))
    if attempt.refusal is not None:
        problem = f"{attempt.label} opened; it must raise {attempt.refusal.error.__name__}"
        return AttemptResult(True, problem + (f" ({wrong})" if wrong else ""), None)
    return AttemptResult(False, None if wrong is None else f"{attempt.label}: {wrong}", None)


# ------------------------------------------------------------------ the opens a fault meets


def open_and_close(folder: Path, *, create: bool = False, read_only: bool = False) -> Outcome:
    with open_database(folder, SyncPolicy.every_batch(), create=create, read_only=read_only):
        return None


def open_tenant(
    folder: Path, tenant: int, *, create: bool = False, read_only: bool = False
) -> Outcome:
    with open_database(folder, SyncPolicy.every_batch(), create=False, read_only=read_only) as db:
        db.tenant(TenantId(tenant), create=create)
    return None


def verify_names(folder: Path, tenant: int, judge_bad: Callable[[BadRecord], Outcome]) -> Outcome:
    """A reader's `verify()` must report the damaged tenant (CorruptionErrors are reported)."""
    with open_database(folder, SyncPolicy.every_batch(), create=False, read_only=True) as db:
        report = db.verify()
    bad = report.first_bad
    if bad is None:
        return f"verify() reported ok over {report.records_checked} records"
    if int(bad.tenant) != tenant:
        return f"verify() reported tenant {int(bad.tenant)}: {bad}"
    return judge_bad(bad)


def sign_once(folder: Path, tenant: int) -> Outcome:
    """A writer's `checkpoint()` (which the caller expects to raise)."""
    with open_database(folder, SyncPolicy.every_batch(), create=False) as db:
        db.tenant(TenantId(tenant)).checkpoint()
    return None


def write_once(folder: Path, tenant: int) -> Outcome:
    """A writer's write (which the caller expects to raise)."""
    with open_database(folder, SyncPolicy.every_batch(), create=False) as db:
        db.tenant(TenantId(tenant)).create_stream("after-the-fault", DataClass.PUBLIC)
    return None


def keyless_verify_names(folder: Path, tenant: int, path: str, *, read_only: bool) -> Outcome:
    """`verify()` passes the tenant's log (all of it) and reports the missing key `path`."""
    with open_database(folder, SyncPolicy.every_batch(), create=False, read_only=read_only) as db:
        report = db.verify()
    if not report.ok:
        return f"verify() reported {report.first_bad}"
    problems = {int(found.tenant): found.key_problem for found in report.tenants}
    if path not in str(problems.get(tenant)):
        return f"verify() reported key problem {problems.get(tenant)!r}, naming no {path}"
    return None


def verify_names_key(folder: Path, tenant: int, path: str) -> Outcome:
    """`verify()` passes the log and reports the tenant's key problem, naming `path`."""
    with open_database(folder, SyncPolicy.every_batch(), create=False) as db:
        report = db.verify()
    if not report.ok:
        return f"verify() reported {report.first_bad}"
    problems = {int(found.tenant): found.key_problem for found in report.tenants}
    problem = problems.get(tenant)
    if problem is None or path not in problem:
        return f"verify() reported key problem {problem!r} for tenant {tenant}, naming no {path}"
    return None


def verify_raises(folder: Path) -> Outcome:
    """A reader's `verify()` (which the caller expects to raise): what it reported instead."""
    with open_database(folder, SyncPolicy.every_batch(), create=False, read_only=True) as db:
        report = db.verify()
    return f"verify() reported {'ok' if report.ok else report.first_bad}"


def others_open(folder: Path, tenant: int, sizes: dict[int, int]) -> Outcome:
    """A reader opens every tenant but the damaged one, with all its records."""
    with open_database(folder, SyncPolicy.every_batch(), create=False, read_only=True) as db:
        for other in sorted(set(sizes) - {tenant}):
            size = db.tenant(TenantId(other)).log_size()
            if size != sizes[other]:
                return f"tenant {other} holds {size} records, not {sizes[other]}"
    return None


def reader_answers(folder: Path, expected: dict[str, str]) -> Outcome:
    """A reader answers every question as the undamaged folder's writer did."""
    found = answers(folder, read_only=True)
    differing = sorted(
        key for key in expected.keys() | found.keys() if found.get(key) != expected.get(key)
    )
    return f"answered differently: {', '.join(differing[:6])}" if differing else None


def database_refusals(folder: Path, refusal: Refusal) -> list[Attempt]:
    """The database itself must refuse: to a writer, to `create=True`, to a reader."""
    return [
        Attempt("open", partial(open_and_close, folder), refusal),
        Attempt("open(create=True)", partial(open_and_close, folder, create=True), refusal),
        Attempt("open(read_only=True)", partial(open_and_close, folder, read_only=True), refusal),
    ]


@final
@dataclass(frozen=True, slots=True)
class FaultSite:
    """A fresh copy of a cleanly closed folder, about to be damaged."""

    folder: Path
    tenants: dict[int, Path]  # tenant folders whose log holds a record
    sizes: dict[int, int]  # records in each of those logs
    expected: dict[str, str]  # what the undamaged folder answers
    rng: random.Random
    segment_bytes: int


def tenant_refusals(
    site: FaultSite,
    tenant: int,
    refusal: Refusal,
    *,
    reader_refused: bool,
    judge_bad: Callable[[BadRecord], Outcome] | None = None,
) -> list[Attempt]:
    """The database opens; the damaged tenant must refuse; the other tenants must open.

    With `reader_refused`, a reader refuses the tenant too, and its
    `verify()` reports it (judged by `judge_bad`; `verify()` reports
    CorruptionErrors) or, without `judge_bad`, raises the refusal's error.
    Otherwise a reader opens the tenant and answers as the undamaged folder.
    """
    folder = site.folder
    attempts = [
        Attempt(f"tenant {tenant}", partial(open_tenant, folder, tenant), refusal),
        Attempt(
            f"tenant {tenant}(create=True)",
            partial(open_tenant, folder, tenant, create=True),
            refusal,
        ),
    ]
    if reader_refused:
        attempts.append(
            Attempt(
                f"read-only tenant {tenant}",
                partial(open_tenant, folder, tenant, read_only=True),
                refusal,
            )
        )
        if judge_bad is not None:
            verify = Attempt(
                "read-only verify()", partial(verify_names, folder, tenant, judge_bad), None
            )
        else:
            verify = Attempt("read-only verify()", partial(verify_raises, folder), refusal)
        attempts.append(verify)
    else:
        attempts.append(
            Attempt("read-only open", partial(reader_answers, folder, site.expected), None)
        )
    attempts.append(
        Attempt("read-only other tenants", partial(others_open, folder, tenant, site.sizes), None)
    )
    return attempts


@final
@dataclass
class Fault:
    """A damage done to a site: what it was, the paths to restore, the opens it must meet."""

    what: str
    damaged: list[Path]
    tenant: int | None
    attempts: list[Attempt]
    release: Callable[[], None] = lambda: None  # stops what the fault started (a writer)
    restores_exactly: bool = True  # the restored folder equals the undamaged one, byte for byte


FaultMaker = Callable[[FaultSite], Fault | None]


# ------------------------------------------------------------------ lost history


def _segments(tenant: Path) -> list[Path]:
    return sorted((tenant / "log").glob("*.vlog"))


def _first_offset(segment: Path) -> int:
    return int(segment.stem)


def _pick_tenant(site: FaultSite, fits: Callable[[list[Path]], bool]) -> int | None:
    """A random tenant whose segments `fit`, or None if no tenant's do."""
    fitting = [tenant for tenant, path in sorted(site.tenants.items()) if fits(_segments(path))]
    return site.rng.choice(fitting) if fitting else None


def _newest_holds_records(segments: list[Path]) -> bool:
    return segments[-1].stat().st_size > 0


def _has_sealed(segments: list[Path]) -> bool:
    return len(segments) > 1


def _cut(segment: Path, rng: random.Random, *, to_nothing: bool) -> tuple[int, int]:
    """Cut `segment` short: to nothing, at a record's start or inside a record.

    Returns `(bytes kept, records kept)`.
    """
    frames = segment_frames(segment)
    size = segment.stat().st_size
    if to_nothing:
        kept = 0
    elif rng.random() < 0.5:
        kept = frames[rng.randrange(len(frames))].start  # whole records lost, nothing torn
    else:
        kept = rng.randrange(1, size)  # usually inside a record: it looks torn
    os.truncate(segment, kept)
    return kept, sum(frame.end <= kept for frame in frames)


def _history_lost(
    site: FaultSite, tenant: int, first_lost: int, what: str, damaged: list[Path]
) -> Fault:
    """The tenant must refuse with `HistoryLost` from `first_lost`, naming a file of its log."""
    log = site.tenants[tenant] / "log"
    size = site.sizes[tenant]

    def of_the_log(file: str | None) -> bool:
        return file is not None and log in (Path(file), Path(file).parent)

    def says_wrong(failure: HistoryLost) -> Outcome:
        wrong = []
        if not of_the_log(failure.file):
            wrong.append(f"it names {failure.file}, not the log {log}")
        if failure.first_lost != first_lost:
            wrong.append(f"it says records from {failure.first_lost} are lost, not {first_lost}")
        if not failure.first_lost < failure.end_lost <= size:
            wrong.append(
                f"lost range {failure.first_lost}..{failure.end_lost} of a {size}-record log"
            )
        return "; ".join(wrong) or None

    def judge_bad(bad: BadRecord) -> Outcome:
        if not of_the_log(bad.file) or bad.record_offset != first_lost:
            return f"verify() reported {bad}"
        return None

    refusal = Refusal(HistoryLost, says_wrong)
    attempts = tenant_refusals(site, tenant, refusal, reader_refused=True, judge_bad=judge_bad)
    return Fault(what, damaged, tenant, attempts)


def _lost_records(site: FaultSite, tenant: int, first_lost: int) -> str:
    return f"records {first_lost}..{site.sizes[tenant] - 1} of {site.sizes[tenant]} gone"


def _cut_newest(site: FaultSite, *, to_nothing: bool) -> Fault | None:
    tenant = _pick_tenant(site, _newest_holds_records)
    if tenant is None:
        return None
    segment = _segments(site.tenants[tenant])[-1]
    size = segment.stat().st_size
    kept_bytes, kept_records = _cut(segment, site.rng, to_nothing=to_nothing)
    first_lost = _first_offset(segment) + kept_records
    what = (
        f"newest segment {segment.name} cut from {size} to {kept_bytes} bytes: "
        f"{_lost_records(site, tenant, first_lost)}"
    )
    return _history_lost(site, tenant, first_lost, what, [segment])


def _delete_segments(site: FaultSite, segments: list[Path]) -> tuple[list[Path], str]:
    """Delete `segments`, and their offset indexes half the time; return what was deleted."""
    deleted = list(segments)
    indexes = [path.with_suffix(".vidx") for path in segments]
    if site.rng.random() < 0.5:
        deleted += [index for index in indexes if index.exists()]
    for path in deleted:
        path.unlink()
    if len(deleted) == len(segments):
        return deleted, ""
    return deleted, " with its index" if len(segments) == 1 else " with their indexes"


def _delete_newest(site: FaultSite) -> Fault | None:
    tenant = _pick_tenant(site, _newest_holds_records)
    if tenant is None:
        return None
    segment = _segments(site.tenants[tenant])[-1]
    deleted, with_index = _delete_segments(site, [segment])
    first_lost = _first_offset(segment)
    lost = _lost_records(site, tenant, first_lost)
    what = f"newest segment {segment.name} deleted{with_index}: {lost}"
    return _history_lost(site, tenant, first_lost, what, deleted)


def _delete_sealed(site: FaultSite) -> Fault | None:
    tenant = _pick_tenant(site, _has_sealed)
    if tenant is None:
        return None
    segments = _segments(site.tenants[tenant])
    segment = site.rng.choice(segments[:-1])
    end = _first_offset(segments[segments.index(segment) + 1])
    deleted, with_index = _delete_segments(site, [segment])
    first_lost = _first_offset(segment)
    what = (
        f"sealed segment {segment.name} deleted{with_index}: records {first_lost}..{end - 1} gone"
    )
    return _history_lost(site, tenant, first_lost, what, deleted)


def _delete_every_segment(site: FaultSite) -> Fault | None:
    tenant = site.rng.choice(sorted(site.tenants))
    segments = _segments(site.tenants[tenant])
    deleted, with_indexes = _delete_segments(site, segments)
    what = f"all {len(segments)} segments deleted{with_indexes}: {_lost_records(site, tenant, 0)}"
    return _history_lost(site, tenant, 0, what, deleted)


def _cut_sealed(site: FaultSite) -> Fault | None:
    tenant = _pick_tenant(site, _has_sealed)
    if tenant is None:
        return None
    segments = _segments(site.tenants[tenant])
    segment = site.rng.choice(segments[:-1])
    end = _first_offset(segments[segments.index(segment) + 1])
    size = segment.stat().st_size
    kept_bytes, kept_records = _cut(segment, site.rng, to_nothing=False)
    first_lost = _first_offset(segment) + kept_records
    what = (
        f"sealed segment {segment.name} cut from {size} to {kept_bytes} bytes: "
        f"records {first_lost}..{end - 1} gone"
    )
    return _history_lost(site, tenant, first_lost, what, [segment])


# ------------------------------------------------------------------ attackers without keys


def _signed_offsets(records: list[bytes]) -> list[int]:
    """Offsets of the signed checkpoint records (kind 1, a 169-byte v2 payload)."""
    return [
        offset
        for offset, record in enumerate(records)
        if record[HEADER_BYTES - 1] == 1 and len(record) - HEADER_BYTES == 169
    ]


def _log_records(log_dir: Path) -> list[bytes]:
    with open_log(log_dir, read_only=True) as log:
        return [log.read(offset).record_bytes() for offset in range(log.size)]


def _write_forged_log(tenant: Path, records: list[bytes]) -> list[Path]:
    """Replace the tenant's log with `records` (segment boundaries kept, later segments
    gone), a fitting durability mark, and no derived files: what someone with the
    folder and no key can write. Returns every path changed, for the restore."""
    log_dir = tenant / "log"
    firsts = [_first_offset(segment) for segment in _segments(tenant)]
    changed = [log_dir]
    for derived in (tenant / "kernel.vsnap", tenant / "store"):
        if derived.exists():
            changed.append(derived)
            if derived.is_dir():
                shutil.rmtree(derived)
            else:
                derived.unlink()
    for path in list(log_dir.iterdir()):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.suffix in (".vlog", ".vidx", ".vcpt", ".vmark"):
            path.unlink()
    bounds = [first for first in firsts if first < len(records)] + [len(records)]
    for first, end in itertools.pairwise(bounds):
        frames = b"".join(
            len(r).to_bytes(4, "big") + zlib.crc32(r).to_bytes(4, "big") + r
            for r in records[first:end]
        )
        (log_dir / f"{first:020d}.vlog").write_bytes(frames)
    head = hashlib.sha256(CHAIN_DOMAIN + records[-1]).digest()
    body = MARK_MAGIC + bytes([MARK_VERSION]) + len(records).to_bytes(8, "big") + head
    (log_dir / MARK_FILE).write_bytes(body + zlib.crc32(body).to_bytes(4, "big"))
    return changed


def _rewrite_public_event(site: FaultSite) -> Fault | None:
    """One PUBLIC event before the last signed checkpoint changed, everything keyless
    after it recomputed (CRCs, chain, checkpoint statements): the next signed checkpoint's
    signature fails, and a reader's `verify()` reports it."""
    for tenant in site.rng.sample(sorted(site.tenants), len(site.tenants)):
        records = _log_records(site.tenants[tenant] / "log")
        signed = _signed_offsets(records)
        plain = [
            offset
            for offset, record in enumerate(records[: signed[-1] if signed else 0])
            if record[HEADER_BYTES - 1] == 0 and record[HEADER_BYTES : HEADER_BYTES + 1] == b"\x01"
        ]
        if plain:
            break
    else:
        return None
    target = site.rng.choice(plain)
    payload = bytearray(records[target][HEADER_BYTES:])
    payload[-1] ^= 0x01  # the last byte of the last event
    changed = _write_forged_log(
        site.tenants[tenant], forge_keyless(records, target, bytes(payload))
    )

    def judge(bad: BadRecord) -> Outcome:
        if bad.record_offset is not None and bad.record_offset < target:
            return f"verify() blamed record {bad.record_offset}, before the rewrite at {target}"
        return None

    attempts = [
        Attempt("read-only verify()", partial(verify_names, site.folder, tenant, judge), None),
        Attempt(
            "read-only other tenants", partial(others_open, site.folder, tenant, site.sizes), None
        ),
    ]
    what = f"PUBLIC event in record {target} rewritten, {len(records) - target} records re-chained"
    return Fault(what, changed, tenant, attempts)


def _roll_back(site: FaultSite) -> Fault | None:
    """The log cut back, at a record boundary, to just after an earlier signed checkpoint
    (durability mark rewritten, derived files gone): it opens as a shorter intact log, and
    `verify()` reports the rollback against the later signed checkpoints: the tenant's
    witness and one an auditor kept."""
    for tenant in site.rng.sample(sorted(site.tenants), len(site.tenants)):
        records = _log_records(site.tenants[tenant] / "log")
        signed = _signed_offsets(records)
        if len(signed) >= 2:
            break
    else:
        return None
    with open_log(site.tenants[tenant] / "log", read_only=True) as log:
        kept_by_auditor = log.signed_checkpoint(signed[-1])
    cut = site.rng.choice(signed[:-1]) + 1
    changed = _write_forged_log(site.tenants[tenant], records[:cut])
    attempts = [
        Attempt(
            "read-only verify(trusted=...)",
            partial(verify_rollback, site.folder, tenant, kept_by_auditor),
            None,
        ),
        Attempt(
            "read-only other tenants", partial(others_open, site.folder, tenant, site.sizes), None
        ),
    ]
    what = f"log cut back from {len(records)} to {cut} records (signed checkpoint at {cut - 1})"
    return Fault(what, changed, tenant, attempts)


def verify_rollback(folder: Path, tenant: int, kept: SignedCheckpoint) -> Outcome:
    """A reader's `verify()` reports a rollback, and with `kept` trusted, names its size."""
    with open_database(folder, SyncPolicy.every_batch(), create=False, read_only=True) as db:
        report = db.verify(trusted=[(TenantId(tenant), kept)])
    promises = [
        p for found in report.tenants if int(found.tenant) == tenant for p in found.broken_promises
    ]
    if report.ok or not any(p.startswith("rollback") for p in promises):
        return f"verify() reported ok={report.ok}, broken promises {promises}"
    if not any(f"covers {kept.tree_size} records" in p for p in promises):
        return f"no broken promise names the kept checkpoint's {kept.tree_size} records: {promises}"
    return None


# ------------------------------------------------------------------ a full disk

DISK_FULL_LIMIT_BYTES_MAX: Final = 8 << 20  # the refused append is a little larger


def _disk_full(site: FaultSite) -> Fault | None:
    """On a copy of the folder, no file may grow past the largest one (RLIMIT_FSIZE):
    an append is refused with `StorageFull(written=False)`, nothing of it is anywhere,
    reads and `verify()` go on, and the same handle writes again once the limit is lifted."""
    tenant = site.rng.choice(sorted(site.tenants))
    largest = max(path.stat().st_size for path in site.folder.rglob("*") if path.is_file())
    if largest > DISK_FULL_LIMIT_BYTES_MAX:
        return None
    attempts = [
        Attempt(
            f"tenant {tenant} append past the limit, then after it",
            partial(full_disk_round, site.folder, tenant, largest),
            None,
        )
    ]
    return Fault(f"files limited to {largest} bytes (RLIMIT_FSIZE)", [], tenant, attempts)


def full_disk_round(folder: Path, tenant: int, limit_bytes: int) -> Outcome:
    """What `_disk_full` promises, on a scratch copy (the trial's folder stays as it was)."""
    with tempfile.TemporaryDirectory(prefix="verity-disk-full-") as scratch:
        copy = Path(scratch) / "db"
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(LOCK_FILE))
        with open_database(copy, SyncPolicy.every_batch(), create=False) as db:
            t = db.tenant(TenantId(tenant))
            stream = t.create_stream("disk-full", DataClass.PHI)
            size = t.log_size()
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            # Past the limit the kernel sends SIGXFSZ (fatal by default); ignored,
            # write() fails with EFBIG, as a full disk fails with ENOSPC.
            handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
            try:
                t.append(stream, [bytes(limit_bytes + 1)])
                return "an append past the file size limit was acknowledged"
            except StorageFull as failure:
                if failure.written is not False:
                    return f"refused with written={failure.written}: {failure}"
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
                signal.signal(signal.SIGXFSZ, handler)
            if t.log_size() != size or t.read_events(stream) != []:
                return f"the refused append left {t.log_size() - size} records"
            if not db.verify().ok:
                return "verify() failed after the refused append"
            t.append(stream, [b"after the disk full"])
        with open_database(copy, SyncPolicy.every_batch(), create=False, read_only=True) as db:
            events = db.tenant(TenantId(tenant)).read_events(stream)
            if events != [b"after the disk full"]:
                return f"after reopening, the stream holds {len(events)} events"
            if not db.verify().ok:
                return "verify() failed after reopening"
    return None


# ------------------------------------------------------------------ keys


def _names(path: Path) -> Callable[[VerityError], Outcome]:
    def says_wrong(failure: VerityError) -> Outcome:
        return None if str(path) in str(failure) else f"it does not name {path}: {failure}"

    return says_wrong


def _delete_master_key(site: FaultSite) -> Fault:
    """A writer refuses the database; a reader opens keyless and `verify()` names the file."""
    path = site.folder / MASTER_KEY_FILE
    path.unlink()
    refusal = Refusal(KeyError_, _names(path))
    attempts = [
        Attempt("open", partial(open_and_close, site.folder), refusal),
        Attempt("open(create=True)", partial(open_and_close, site.folder, create=True), refusal),
        *(
            Attempt(
                f"keyless reader verify() of tenant {tenant}",
                partial(keyless_verify_names, site.folder, tenant, str(path), read_only=True),
                None,
            )
            for tenant in sorted(site.tenants)
        ),
    ]
    return Fault(f"deleted {MASTER_KEY_FILE}", [path], None, attempts)


def _delete_keyring(site: FaultSite) -> Fault:
    """A writer refuses the tenant; a reader opens it keyless; `verify()` names the file."""
    tenant = site.rng.choice(sorted(site.tenants))
    path = site.tenants[tenant] / KEYRING_FILE
    path.unlink()
    refusal = Refusal(KeyError_, _names(path))
    attempts = [
        Attempt(f"tenant {tenant}", partial(open_tenant, site.folder, tenant), refusal),
        Attempt(
            f"tenant {tenant}(create=True)",
            partial(open_tenant, site.folder, tenant, create=True),
            refusal,
        ),
        Attempt(
            "keyless reader verify()",
            partial(keyless_verify_names, site.folder, tenant, str(path), read_only=True),
            None,
        ),
        Attempt(
            "writer verify()",
            partial(keyless_verify_names, site.folder, tenant, str(path), read_only=False),
            None,
        ),
        Attempt(
            "read-only other tenants",
            partial(others_open, site.folder, tenant, site.sizes),
            None,
        ),
    ]
    return Fault(f"deleted {KEYRING_FILE}", [path], tenant, attempts)


def _delete_signing_key(site: FaultSite) -> Fault:
    """The tenant opens for reads, but signs nothing and takes no write, naming the file;
    `verify()` passes the log and reports the key problem; a reader answers as before."""
    tenant = site.rng.choice(sorted(site.tenants))
    path = site.tenants[tenant] / SIGNING_KEY_FILE
    path.unlink()
    refusal = Refusal(KeyError_, _names(path))
    attempts = [
        Attempt(f"tenant {tenant} checkpoint()", partial(sign_once, site.folder, tenant), refusal),
        Attempt(f"tenant {tenant} write", partial(write_once, site.folder, tenant), refusal),
        Attempt("read-only open", partial(reader_answers, site.folder, site.expected), None),
        Attempt(
            "verify() names the key",
            partial(verify_names_key, site.folder, tenant, str(path)),
            None,
        ),
    ]
    return Fault(f"deleted {SIGNING_KEY_FILE}", [path], tenant, attempts)


# ------------------------------------------------------------------ layout


def _layout_refusal(site: FaultSite) -> Refusal:
    path = site.folder / LAYOUT_FILE

    def says_wrong(failure: CorruptionError) -> Outcome:
        return None if failure.file == str(path) else f"it names {failure.file}, not {path}"

    return Refusal(CorruptionError, says_wrong)


def _delete_layout(site: FaultSite) -> Fault:
    path = site.folder / LAYOUT_FILE
    path.unlink()
    return Fault(
        f"deleted {LAYOUT_FILE}",
        [path],
        None,
        database_refusals(site.folder, _layout_refusal(site)),
    )


def _flip_layout(site: FaultSite) -> Fault:
    path = site.folder / LAYOUT_FILE
    what = _flip_one(path, site.rng)
    return Fault(what, [path], None, database_refusals(site.folder, _layout_refusal(site)))


def layout_bytes(shard_count: int) -> bytes:
    """A valid layout file for `shard_count`, written as docs/formats.md §5.5 says."""
    fields: dict[str, object] = {"format": LAYOUT_FORMAT, "shard_count": shard_count}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    fields["sha256"] = hashlib.sha256(canonical).hexdigest()
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _recount_layout(site: FaultSite) -> Fault | None:
    """Write a layout with another shard count, checksummed, under which a tenant moves.

    A count that places every existing tenant where it is hides nothing and
    is not damage; one is chosen under which some tenant folder is misplaced.
    """
    path = site.folder / LAYOUT_FILE
    current = json.loads(path.read_bytes())["shard_count"]
    placed = {
        int(folder.name.removeprefix("tenant-")): folder.parent.name
        for folder in site.folder.glob("shard-*/tenant-*")
    }
    candidates = [count for count in SHARD_COUNT_CANDIDATES if count != current]
    site.rng.shuffle(candidates)
    for count in candidates:
        moved = [
            tenant
            for tenant, shard in placed.items()
            if f"shard-{shard_of(TenantId(tenant), count):05d}" != shard
        ]
        if moved:
            break
    else:
        return None
    path.write_bytes(layout_bytes(count))
    what = (
        f"{LAYOUT_FILE} shard_count {current} -> {count}, checksum valid (moves tenant {moved[0]})"
    )
    return Fault(what, [path], None, database_refusals(site.folder, _layout_refusal(site)))


# ------------------------------------------------------------------ a second writer


@final
class Holder:
    """A child process (this script with `--hold`) that holds a database open for writing.

    It opens the database and every tenant, prints its ready line, and
    writes nothing more until it is killed.
    """

    def __init__(self, folder: Path, segment_bytes: int) -> None:
        command = [sys.executable, str(SCRIPT), "--hold", str(folder)]
        command += ["--segment-bytes", str(segment_bytes)]
        self._stderr_path = folder.with_name(folder.name + "-holder.stderr")
        self._stderr = self._stderr_path.open("wb")
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        try:
            assert self._process.stdout is not None
            self._output = ChildOutput(self._process.stdout)
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not self._output.ready.wait(0.05):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = self._stderr_path.read_text(errors="replace").strip().splitlines()[-3:]
                    raise CampaignFailure(
                        f"the writer holding the folder did not start: "
                        f"{'; '.join(self._output.errors + tail) or 'no output'}"
                    )
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self) -> None:
        """Kill the writer (as a crash would) and wait for it; idempotent."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(HOLDER_STOP_S)
        if self._process.stdin is not None:
            self._process.stdin.close()
        if hasattr(self, "_output"):
            self._output.join()
        self._stderr.close()


def run_holder(folder: Path, seconds_max: float) -> int:
    """Hold `folder` for writing, every tenant open, until killed or stdin closes."""
    try:
        db = open_database(folder, SyncPolicy.every_batch(), create=False)
        for tenant in db.tenants():
            db.tenant(tenant)
    except BaseException as failure:
        print(json.dumps({"op": "error", "message": f"{type(failure).__name__}: {failure}"}))
        return 3
    print(json.dumps({"op": "ready"}), flush=True)
    select.select([sys.stdin], [], [], seconds_max)  # until the parent goes (or forgets us)
    db.close()
    return 0


def _hold(site: FaultSite) -> Fault:
    """A second process holds the database: a writer must be refused, a reader must work."""
    holder = Holder(site.folder, site.segment_bytes)

    def says_wrong(failure: InUse) -> Outcome:
        if failure.pid != holder.pid:
            return f"it names pid {failure.pid}, not the writer's {holder.pid}"
        return None

    refusal = Refusal(InUse, says_wrong)
    attempts = database_refusals(site.folder, refusal)[:2]
    attempts.append(
        Attempt(
            "read-only open beside the writer",
            partial(reader_answers, site.folder, site.expected),
            None,
        )
    )
    return Fault(
        f"process {holder.pid} holds it open for writing",
        [],
        None,
        attempts,
        release=holder.stop,
        restores_exactly=False,  # the writer's own open rewrote derived files (then it was killed)
    )


# ------------------------------------------------------------------ nothing is created by a read


def _open_no_database(site: FaultSite) -> Fault:
    """Opening a missing path or an empty folder without `create` makes nothing there."""
    absent = site.folder.with_name(site.folder.name + "-absent")
    empty = site.folder.with_name(site.folder.name + "-empty")
    shutil.rmtree(absent, ignore_errors=True)
    shutil.rmtree(empty, ignore_errors=True)
    empty.mkdir()

    def untouched(failure: NotFound) -> Outcome:
        if absent.exists():
            return f"{absent} was created"
        if any(empty.iterdir()):
            return f"{empty} was written: {sorted(path.name for path in empty.iterdir())}"
        return None

    refusal = Refusal(NotFound, untouched)
    attempts = [
        Attempt(f"open({label})", partial(open_and_close, path, **options), refusal)
        for path, label in ((absent, "a missing folder"), (empty, "an empty folder"))
        for options in ({}, {"read_only": True}, {"read_only": True, "create": True})
    ]

    def release() -> None:
        shutil.rmtree(absent, ignore_errors=True)
        shutil.rmtree(empty, ignore_errors=True)

    return Fault("opened a missing and an empty folder without create", [], None, attempts, release)


def _open_no_tenant(site: FaultSite) -> Fault:
    """A tenant that is not there is NotFound (ReadOnly with create=True to a reader)."""
    tenant = max(int(tenant) for tenant in tenant_folders(site.folder)) + 1
    refusal = Refusal(NotFound, lambda failure: None)
    attempts = [
        Attempt(f"tenant {tenant}", partial(open_tenant, site.folder, tenant), refusal),
        Attempt(
            f"read-only tenant {tenant}",
            partial(open_tenant, site.folder, tenant, read_only=True),
            refusal,
        ),
        Attempt(
            f"read-only tenant {tenant}(create=True)",
            partial(open_tenant, site.folder, tenant, read_only=True, create=True),
            Refusal(ReadOnly, lambda failure: None),
        ),
    ]
    return Fault(f"asked for tenant {tenant}, which is not there", [], None, attempts)


FAULTS: Final[dict[str, dict[str, FaultMaker]]] = {
    "second-writer": {"held": _hold},
    "segment-cut": {
        "newest": partial(_cut_newest, to_nothing=False),
        "newest-emptied": partial(_cut_newest, to_nothing=True),
    },
    "segment-delete": {
        "newest": _delete_newest,
        "sealed": _delete_sealed,
        "all": _delete_every_segment,
    },
    "sealed-cut": {"sealed": _cut_sealed},
    "key-delete": {
        MASTER_KEY_FILE: _delete_master_key,
        KEYRING_FILE: _delete_keyring,
        SIGNING_KEY_FILE: _delete_signing_key,
    },
    "keyless-rewrite": {"public-event": _rewrite_public_event},
    "disk-full": {"append": _disk_full},
    "rollback": {"to-earlier-checkpoint": _roll_back},
    "layout-damage": {
        "deleted": _delete_layout,
        "flipped": _flip_layout,
        "shard-count": _recount_layout,
    },
    "no-create": {"database": _open_no_database, "tenant": _open_no_tenant},
}


def fault_variants(kinds: Sequence[str]) -> list[tuple[str, str]]:
    """Every `(kind, variant)` of the fault kinds, in order: fault trials cycle through them."""
    return [(kind, variant) for kind in kinds for variant in FAULTS[kind]]


# ------------------------------------------------------------------ the trial


@final
@dataclass(frozen=True, slots=True)
class FaultOutcome:
    injected: bool
    detected: bool
    lost: int
    failed: bool


def history_copy(history: FolderHistory, folder: Path) -> FolderHistory:
    """The acknowledgements of `history`, to audit a copy of its folder without changing it."""
    return FolderHistory(
        folder,
        seeds=list(history.seeds),
        acks=list(history.acks),
        floor_by_tenant=dict(history.floor_by_tenant),
        recoveries_seen=dict(history.recoveries_seen),
        lost_keys=set(history.lost_keys),
    )


def audit_copy(folder: Path, history: FolderHistory) -> AuditResult:
    """Audit `folder` against every acknowledgement of `history`; an exception is a problem."""
    try:
        return audit(folder, history_copy(history, folder), [], [], clean_close=True)
    except Exception as failure:
        return AuditResult([], [f"the audit raised {type(failure).__name__}: {failure}"], [])


def restore_paths(source: Path, work: Path, paths: list[Path]) -> None:
    """Put the damaged `paths` (under `work`) back as they are under `source`."""
    for path in paths:
        original = source / path.relative_to(work)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        if original.is_dir():
            shutil.copytree(original, path)
        else:
            shutil.copy2(original, path)


def run_fault_trial(
    trial: int,
    trials: int,
    kind: str,
    variant: str,
    sources: list[Path],
    work: Path,
    histories: dict[Path, FolderHistory],
    expected_of: Callable[[Path], dict[str, str]],
    rng: random.Random,
    segment_bytes: int,
) -> FaultOutcome:
    """Inject one fault; it must be refused with the right error, changing nothing.

    Every open it meets (writable, `create=True`, read-only, as the fault
    says) must raise exactly the typed error the fault calls for, saying the
    right things, or, for opens that must work, work and answer as the
    undamaged folder does; and no file may change (lock files aside). Then
    the damaged files are put back from the undamaged folder: it must be
    byte for byte that folder again, answer every question as it did, and
    hold every acknowledged call. An open that works when it must refuse is
    audited on the damaged folder: what it lost counts as lost.
    """
    order = list(sources)
    rng.shuffle(order)
    for source in order:
        expected = expected_of(source)
        restore(source, work)
        tenants = tenant_folders(work, with_records=True)
        sizes = {tenant: len(stored_frames(path / "log")) for tenant, path in tenants.items()}
        pristine = folder_state(work)
        site = FaultSite(work, tenants, sizes, expected, rng, segment_bytes)
        problems: list[str] = []
        try:
            fault = FAULTS[kind][variant](site)
        except CampaignFailure as failure:
            fault = Fault(str(failure), [], None, [])
            problems.append(str(failure))
        if fault is not None:
            break
    else:
        print(
            f"fault trial {trial + 1}/{trials} fault={kind}:{variant} skipped: "
            "no folder has what it damages",
            flush=True,
        )
        return FaultOutcome(injected=False, detected=False, lost=0, failed=False)

    results: list[AttemptResult] = []
    try:
        before = folder_state(work)
        results = [make_attempt(attempt) for attempt in fault.attempts]
        after = folder_state(work)
    finally:
        fault.release()
    problems += [result.problem for result in results if result.problem is not None]
    problems += [f"the refused opens changed {change}" for change in state_changes(before, after)]
    detected = not problems
    history = histories[source]
    lost_keys: set[str] = set()
    if any(result.opened for result in results):
        damaged = audit_copy(work, history)
        lost_keys.update(item.key for item in damaged.lost)
        problems += [f"opened damaged: {problem}" for problem in damaged.problems]

    restore_paths(source, work, fault.damaged)
    restored = folder_state(work)
    if fault.restores_exactly:
        problems += [f"restored, {change}" for change in state_changes(pristine, restored)]
    try:
        found = answers(work)
    except Exception as failure:
        problems.append(f"restored, opening raised {type(failure).__name__}: {failure}")
    else:
        differing = sorted(
            key for key in expected.keys() | found.keys() if found.get(key) != expected.get(key)
        )
        if differing:
            problems.append(f"restored, it answered differently: {', '.join(differing[:6])}")
    after_restore = audit_copy(work, history)
    lost_keys.update(item.key for item in after_restore.lost)
    problems += [f"restored: {problem}" for problem in after_restore.problems]
    lost = sorted(lost_keys - history.lost_keys)

    refused = [result.refused_with for result in results if result.refused_with is not None]
    shown = f" with {', '.join(sorted(set(refused)))}" if refused else ""
    tenant = f" tenant={fault.tenant}" if fault.tenant is not None else ""
    print(
        f"fault trial {trial + 1}/{trials} folder={source.name}{tenant} fault={kind}:{variant} "
        f"({fault.what}) opens={len(results)} refused={len(refused)}{shown} lost={len(lost)} "
        f"{'detected' if detected else 'NOT DETECTED'}{'' if not problems else ', FAILED'}",
        flush=True,
    )
    print_problems("LOST", lost)
    print_problems("PROBLEM", problems)
    return FaultOutcome(True, detected, len(lost), bool(problems or lost))


# =================================================================== main


@contextlib.contextmanager
def segments_of(segment_bytes_max: int) -> Iterator[None]:
    """Tenant logs opened inside roll segments at `segment_bytes_max` bytes (0: SDK default).

    `verity.open` has no segment size (it is fixed at 16 MiB); the campaign
    wraps the log opener the SDK calls so that trials of seconds seal many
    segments. Nothing else about the logs changes.
    """
    if segment_bytes_max == 0:
        yield
        return
    # The SDK module imports `open_log` by name; it is not part of its public surface.
    original = verity_tenant.open_log  # type: ignore[attr-defined]

    def open_log(path: str | os.PathLike[str], **options: Any) -> Log:
        log: Log = original(path, segment_bytes_max=segment_bytes_max, **options)
        return log

    verity_tenant.open_log = open_log  # type: ignore[attr-defined]
    try:
        yield
    finally:
        verity_tenant.open_log = original  # type: ignore[attr-defined]


@contextlib.contextmanager
def quiet_verity_warnings() -> Iterator[None]:
    """Keep VerityDB's rebuild and recovery warnings (expected here) off the campaign's output."""
    logger = logging.getLogger("verity")
    handler = logging.NullHandler()
    previous = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = previous


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=10, help="crash trials (default 10)")
    parser.add_argument("--corruption-trials", type=int, help="record flips (default 4 x trials)")
    parser.add_argument(
        "--rebuild-trials", type=int, help="derived-file damages (default max(trials, kinds))"
    )
    parser.add_argument(
        "--damage",
        action="append",
        choices=sorted(DAMAGES),
        help="damage kinds of the rebuild trials (repeatable; default all)",
    )
    parser.add_argument(
        "--fault-trials",
        type=int,
        help="faults refused and restored (default max(trials, fault variants))",
    )
    parser.add_argument(
        "--fault",
        action="append",
        choices=sorted(FAULTS),
        help="fault kinds of the fault trials (repeatable; default all)",
    )
    parser.add_argument("--seed", type=int, default=None, help="campaign seed (default random)")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default temporary)")
    parser.add_argument(
        "--kill-ms-max",
        type=int,
        default=KILL_MS_MAX_DEFAULT,
        help=f"latest kill after the child is ready (default {KILL_MS_MAX_DEFAULT} ms)",
    )
    parser.add_argument(
        "--segment-bytes",
        type=int,
        default=SEGMENT_BYTES_DEFAULT,
        help=f"segment size of the logs (default {SEGMENT_BYTES_DEFAULT}; 0: the SDK's)",
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hold", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--policy", choices=POLICIES, help=argparse.SUPPRESS)
    parser.add_argument(
        "--seconds-max", type=float, default=CHILD_SECONDS_MAX, help=argparse.SUPPRESS
    )
    arguments = parser.parse_args(argv)
    if arguments.trials < 1:
        parser.error(f"--trials {arguments.trials}: must be at least 1")
    if arguments.kill_ms_max < 1:
        parser.error(f"--kill-ms-max {arguments.kill_ms_max}: must be at least 1")
    if arguments.segment_bytes < 0:
        parser.error(f"--segment-bytes {arguments.segment_bytes}: must be >= 0")
    for name in ("corruption_trials", "rebuild_trials", "fault_trials"):
        count = getattr(arguments, name)
        if count is not None and count < 0:
            parser.error(f"--{name.replace('_', '-')} {count}: must be >= 0")
    work = arguments.dir
    child = arguments.child is not None or arguments.hold is not None
    if not child and work is not None and work.exists() and any(work.iterdir()):
        parser.error(f"--dir {work}: must be empty or missing (trials build on what is there)")
    return arguments


def run_campaign(options: argparse.Namespace, work: Path) -> int:
    seed = options.seed if options.seed is not None else random.SystemRandom().getrandbits(32)
    kinds = options.damage or list(DAMAGES)
    corruption_trials = options.corruption_trials
    if corruption_trials is None:
        corruption_trials = 4 * options.trials
    rebuild_trials = options.rebuild_trials
    if rebuild_trials is None:
        rebuild_trials = max(options.trials, len(kinds))
    variants = fault_variants(options.fault or list(FAULTS))
    fault_trials = options.fault_trials
    if fault_trials is None:
        fault_trials = max(options.trials, len(variants))
    print(
        f"campaign seed={seed} work={work} segment_bytes={options.segment_bytes} "
        f"(rerun: --seed {seed} --trials {options.trials})",
        flush=True,
    )
    started = time.monotonic()
    acknowledged = lost = 0
    failed = False
    histories: list[FolderHistory] = []
    trial = 0
    while trial < options.trials:
        group = FOLDER_GROUP_TRIALS[len(histories) % len(FOLDER_GROUP_TRIALS)]
        history = FolderHistory(work / f"db-{len(histories)}")
        histories.append(history)
        group_end = min(options.trials, trial + group)
        for trial_in_group in range(trial, group_end):
            policy = POLICIES[trial_in_group % len(POLICIES)]
            rng = random.Random(f"{seed}/crash/{trial_in_group}")
            outcome = run_crash_trial(
                trial_in_group,
                options.trials,
                history,
                policy,
                rng,
                options,
                last_in_folder=trial_in_group == group_end - 1,
            )
            acknowledged += outcome.acknowledged
            lost += outcome.lost
            failed |= outcome.failed
        trial = group_end
    crash_s = time.monotonic() - started

    # Folders every trial of which was killed before a record was written hold nothing to damage.
    sources = [
        history.folder for history in histories if tenant_folders(history.folder, with_records=True)
    ]
    if not sources:
        print("no folder holds a record: no corruption, rebuild or fault trials", flush=True)
        corruption_trials = rebuild_trials = fault_trials = 0
    scratch = work / "scratch"
    detected = 0
    for flip in range(corruption_trials):
        rng = random.Random(f"{seed}/corruption/{flip}")
        flipped = run_corruption_trial(flip, corruption_trials, rng.choice(sources), scratch, rng)
        detected += flipped.detected
        failed |= flipped.failed
    corruption_s = time.monotonic() - started - crash_s

    expected: dict[Path, dict[str, str]] = {}

    def expected_of(source: Path) -> dict[str, str]:
        """What the undamaged `source` answers (asked of a copy in `scratch`, once)."""
        if source not in expected:
            restore(source, scratch)
            expected[source] = answers(scratch)
        return expected[source]

    outcomes: dict[str, list[str]] = {"rebuilt": [], "reported": [], "wrong": []}
    for damage in range(rebuild_trials):
        rng = random.Random(f"{seed}/rebuild/{damage}")
        kind = kinds[damage % len(kinds)]
        source = rng.choice(sources)
        answered = run_rebuild_trial(
            damage, rebuild_trials, kind, source, scratch, expected_of(source), rng
        )
        outcomes[answered].append(kind)
    rebuild_s = time.monotonic() - started - crash_s - corruption_s

    history_of = {history.folder: history for history in histories}
    faults_injected = faults_detected = 0
    undetected: list[str] = []
    for fault in range(fault_trials):
        rng = random.Random(f"{seed}/fault/{fault}")
        kind, variant = variants[fault % len(variants)]
        outcome = run_fault_trial(
            fault,
            fault_trials,
            kind,
            variant,
            sources,
            scratch,
            history_of,
            expected_of,
            rng,
            options.segment_bytes,
        )
        faults_injected += outcome.injected
        faults_detected += outcome.detected
        lost += outcome.lost
        failed |= outcome.failed
        if outcome.injected and not outcome.detected:
            undetected.append(f"{kind}:{variant}")
    fault_s = time.monotonic() - started - crash_s - corruption_s - rebuild_s

    failed |= detected < corruption_trials or bool(outcomes["wrong"]) or bool(undetected)
    print(
        f"times: crash {crash_s:.1f} s, corruption {corruption_s:.1f} s, "
        f"rebuild {rebuild_s:.1f} s, fault {fault_s:.1f} s",
        flush=True,
    )
    print(
        f"rebuild outcomes: rebuilt={len(outcomes['rebuilt'])} "
        f"reported={len(outcomes['reported'])} ({', '.join(sorted(set(outcomes['reported'])))}) "
        f"wrong={len(outcomes['wrong'])} ({', '.join(sorted(set(outcomes['wrong'])))})",
        flush=True,
    )
    print(
        f"fault outcomes: injected={faults_injected} detected={faults_detected} "
        f"not detected={len(undetected)} ({', '.join(sorted(set(undetected)))})",
        flush=True,
    )
    print(
        f"trials={options.trials} acknowledged={acknowledged} lost={lost} "
        f"corruptions_injected={corruption_trials + faults_injected} "
        f"detected={detected + faults_detected} rebuilt={len(outcomes['rebuilt'])}",
        flush=True,
    )
    return 1 if failed or lost else 0


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    with segments_of(options.segment_bytes):
        if options.child is not None:
            if options.policy is None or options.seed is None:
                raise SystemExit("--child needs --policy and --seed")
            return run_child(options.child, options.policy, options.seed, options.seconds_max)
        if options.hold is not None:
            return run_holder(options.hold, options.seconds_max)
        with quiet_verity_warnings():
            if options.dir is not None:
                options.dir.mkdir(parents=True, exist_ok=True)
                return run_campaign(options, options.dir)
            with tempfile.TemporaryDirectory(prefix="verity-crash-") as work:
                return run_campaign(options, Path(work))


if __name__ == "__main__":
    raise SystemExit(main())
