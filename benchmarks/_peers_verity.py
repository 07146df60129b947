"""VerityDB as a peer of the comparison benchmark: the numerator of every ratio.

Logs are SDK databases (`verity.open`, default sync policy `every_batch`: one
fsync per append call) holding one PHI stream, so every event is AES-256-GCM
ciphertext at rest, as a compliance deployment would store it. The keyed
history is a SQL table written one `UPDATE` (one durable log record) at a
time and read with `query` / `query_at`. The million-record log that
`verify` checks is a bare `verity.storage` log, one 256-byte record per log
record: building it through the SDK would cost a million fsyncs, and
`Verity.verify()` runs exactly `Log.verify()` on each tenant's log.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import final

from _harness import time_each
from _peers_common import (
    BATCHED_APPEND,
    DURABLE_APPEND,
    INCLUSION_PROOF,
    KEY_AS_OF,
    KEY_CURRENT,
    POINT_READ,
    RANGE_READ,
    RECORD_BYTES,
    RECOVERY,
    SIGNED_CHECKPOINT,
    VERIFY,
    KeyedData,
    KeyedStore,
    LogStore,
    Peer,
)
from hdrh.histogram import HdrHistogram

import verity
from verity import DataClass, Offset, StreamId, TenantHandle, TenantId, Verity
from verity.errors import NotFound
from verity.proofs import verify_inclusion, verify_signed_checkpoint
from verity.storage import open_log
from verity.types import CheckpointPolicy, SyncPolicy

TENANT = TenantId(1)
STREAM_NAME = "records"
VERIFY_BATCH_RECORDS = 1000
# A multi-row INSERT this long is one statement, hence one log record.
INSERT_ROWS_MAX = 500
SELECT_VALUE = "SELECT v FROM accounts WHERE id = ?"


def _only_value(rows: list[tuple[object, ...]], key: int) -> bytes:
    assert len(rows) == 1, f"key {key}: {len(rows)} rows"
    value = rows[0][0]
    assert isinstance(value, bytes)
    return value


@final
class VerityLog(LogStore):
    """A database with one tenant and one PHI stream; positions are stream offsets."""

    def __init__(self, db: Verity, tenant: TenantHandle, stream: StreamId) -> None:
        self._db = db
        self.tenant = tenant
        self._stream = stream

    def append_one(self, record: bytes) -> None:
        self.tenant.append(self._stream, [record])

    def append_batch(self, records: Sequence[bytes]) -> None:
        self.tenant.append(self._stream, list(records))

    def read_one(self, position: int) -> bytes:
        # max_bytes=1 still returns the one event at `position`: a reader always progresses.
        events = self.tenant.read_events(self._stream, Offset(position), max_bytes=1)
        assert len(events) == 1
        return events[0]

    def read_range(self, position: int, count: int) -> list[bytes]:
        events = self.tenant.read_events(
            self._stream, Offset(position), max_bytes=count * RECORD_BYTES
        )
        assert len(events) == count, f"asked {count} events, got {len(events)}"
        return events

    def close(self) -> None:
        self._db.close()


@final
class VerityKeyed(KeyedStore):
    """Table `accounts(id, v)`; `log_offsets[j]` is the log position of update j."""

    def __init__(self, db: Verity, tenant: TenantHandle, log_offsets: list[int]) -> None:
        self._db = db
        self._tenant = tenant
        self._log_offsets = log_offsets

    def current(self, key: int) -> bytes:
        return _only_value(self._tenant.query(SELECT_VALUE, (key,)).rows, key)

    def as_of(self, key: int, update_index: int) -> bytes:
        position = self._log_offsets[update_index]
        return _only_value(self._tenant.query_at(SELECT_VALUE, (key,), position).rows, key)

    def close(self) -> None:
        self._db.close()


@final
class VerityPeer(Peer):
    """VerityDB through its SDK (and its bare log for the million-record verification)."""

    def __init__(self) -> None:
        self._folder = Path()
        self.name = "verity"
        self.title = "VerityDB (this repo): SDK, PHI stream (AES-256-GCM at rest), sync every_batch"
        self.cannot: dict[str, str] = {}
        self.how = {
            DURABLE_APPEND: "`append(stream, [event])`: one log record, one fsync per call",
            BATCHED_APPEND: "`append(stream, 1,000 events)`: one log record, one fsync per call",
            POINT_READ: "`read_events(stream, offset, max_bytes=1)`; an event appended in a batch "
            "shares its log record with the batch, so a point read decrypts and decodes the "
            "whole 1,000-event record",
            RANGE_READ: "`read_events(stream, offset, max_bytes=1,000 x 256)`",
            KEY_CURRENT: "SQL point lookup `SELECT v FROM accounts WHERE id = ?` on the projection "
            "store (pages sealed with AES-256-GCM at rest, cached decrypted in memory)",
            KEY_AS_OF: "`query_at(SELECT v ... WHERE id = ?, position)` at the log position of an "
            "older `UPDATE` (one durable log record per statement)",
            VERIFY: "`Log.verify()` (what `Verity.verify()` runs per tenant) over a bare log of "
            "one 256 B record per log record: frames, CRCs, chain, timestamps, Merkle leaves, "
            "and its automatic checkpoint records (one per 1,000 records)",
            RECOVERY: "a child process appending one event per call is killed (SIGKILL); timed: "
            "`verity.open` + `tenant()` (restores the kernel snapshot the last clean close "
            "wrote, then replays the records the killed child appended) + one `read_events`",
            SIGNED_CHECKPOINT: "`tenant.checkpoint()`: append a checkpoint record, fsync, sign "
            "(Ed25519) size, Merkle root and chain head; one signature checked with "
            "`verity.proofs.verify_signed_checkpoint`",
            INCLUSION_PROOF: "`Log.inclusion_proof(leaf, size)` (RFC 9162) on the verification "
            "log; one proof checked with `verity.proofs.verify_inclusion`",
        }

    def start(self, work: Path) -> None:
        self._folder = work / "verity"
        self._folder.mkdir(parents=True, exist_ok=True)

    def create_log(self, label: str) -> LogStore:
        db = verity.open(self._folder / label, create=True)
        tenant = db.tenant(TENANT, create=True)
        stream = tenant.create_stream(STREAM_NAME, DataClass.PHI)
        return VerityLog(db, tenant, stream)

    def open_log(self, label: str) -> VerityLog:
        db = verity.open(self._folder / label, create=True)
        tenant = db.tenant(TENANT, create=False)
        for info in tenant.streams():
            if info.name == STREAM_NAME:
                return VerityLog(db, tenant, info.stream_id)
        db.close()
        raise NotFound("stream", STREAM_NAME, f"database {self._folder / label} has none")

    def build_keyed(self, label: str, data: KeyedData) -> KeyedStore:
        db = verity.open(self._folder / label, create=True)
        tenant = db.tenant(TENANT, create=True)
        tenant.execute("CREATE TABLE accounts (id BIGINT PRIMARY KEY, v BYTES NOT NULL)")
        for first in range(0, data.key_count, INSERT_ROWS_MAX):
            keys = range(first, min(first + INSERT_ROWS_MAX, data.key_count))
            placeholders = ", ".join(["(?, ?)"] * len(keys))
            values = [value for key in keys for value in (key, data.initial[key])]
            tenant.execute(f"INSERT INTO accounts VALUES {placeholders}", values)
        log_offsets: list[int] = []
        for update_index, value in enumerate(data.updates):
            receipt = tenant.execute(
                "UPDATE accounts SET v = ? WHERE id = ?", (value, data.key_of(update_index))
            )
            assert receipt.rows_affected == 1
            log_offsets.append(int(receipt.offset))
        return VerityKeyed(db, tenant, log_offsets)

    def build_verification_log(self, label: str, chunks: Iterable[Sequence[bytes]]) -> None:
        with open_log(self._folder / label, sync_policy=SyncPolicy.every_batch()) as log:
            for chunk in chunks:
                for first in range(0, len(chunk), VERIFY_BATCH_RECORDS):
                    log.append_batch(chunk[first : first + VERIFY_BATCH_RECORDS])

    def verify(self, label: str) -> int:
        # No shutdown checkpoint: verifying must leave the log as it found it.
        policy = CheckpointPolicy(on_shutdown=False)
        with open_log(self._folder / label, checkpoint_policy=policy) as log:
            return log.verify()

    # ------------------------------------------------------------ only VerityDB can

    def measure_checkpoints(self, label: str, count: int) -> HdrHistogram:
        """Latency of `count` signed checkpoints on log `label`; one signature is checked."""
        log = self.open_log(label)
        try:
            histogram = time_each(log.tenant.checkpoint, count)
            verify_signed_checkpoint(log.tenant.checkpoint(), log.tenant.public_key())
        finally:
            log.close()
        return histogram

    def measure_inclusion_proofs(
        self, label: str, count: int, seed: int
    ) -> tuple[HdrHistogram, int]:
        """Latency of `count` inclusion proofs of random leaves of verification log `label`.

        Returns the histogram and the tree size; one proof is checked against the root.
        """
        policy = CheckpointPolicy(on_shutdown=False)
        with open_log(self._folder / label, checkpoint_policy=policy) as log:
            size = log.size
            rng = random.Random(seed)
            leaves = iter([rng.randrange(size) for _ in range(count)])
            histogram = time_each(lambda: log.inclusion_proof(next(leaves), size), count)
            verify_inclusion(log.inclusion_proof(size // 2, size), log.merkle_root(size))
        return histogram, size
