"""verity.storage against a plain in-memory model, over seeded random operation walks.

The model below recomputes everything from docs/formats.md §1-2 with nothing
but hashlib: record bytes, chain, checkpoint payloads, RFC 9162 roots and
proofs, timestamps, and what a crash keeps. Each walk mixes appends, explicit
checkpoints, clean reopens, crashes that cut the newest segment (at a frame
boundary or inside a frame), reads, verified reads, verification and proofs,
and compares every observation.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _crash import saved_mark, unacknowledge

from verity.errors import CorruptionError, HistoryLost, InvalidArgument, NotFound
from verity.proofs import verify_consistency, verify_inclusion
from verity.storage import Log, SegmentInfo, open_log
from verity.types import CheckpointPolicy, SyncPolicy

CHAIN_DOMAIN = b"verity.chain.v1\x00"
T0 = 1_767_225_600_000_000_000


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaf_hashes: list[bytes]) -> bytes:
    n = len(leaf_hashes)
    if n == 0:
        return sha(b"")
    if n == 1:
        return leaf_hashes[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return sha(b"\x01" + mth(leaf_hashes[:k]) + mth(leaf_hashes[k:]))


def path(m: int, leaf_hashes: list[bytes]) -> list[bytes]:
    n = len(leaf_hashes)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*path(m, leaf_hashes[:k]), mth(leaf_hashes[k:])]
    return [*path(m - k, leaf_hashes[k:]), mth(leaf_hashes[:k])]


def subproof(m: int, leaf_hashes: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaf_hashes)
    if m == n:
        return [] if whole else [mth(leaf_hashes)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*subproof(m, leaf_hashes[:k], whole), mth(leaf_hashes[k:])]
    return [*subproof(m - k, leaf_hashes[k:], False), mth(leaf_hashes[:k])]


@dataclass
class Model:
    every_n: int
    explicit_only: bool
    on_shutdown: bool
    records: list[bytes] = field(default_factory=list)
    generation: int = 0
    recoveries: list[tuple[int, int, int]] = field(default_factory=list)
    damaged: set[int] = field(default_factory=set)

    def head(self) -> bytes:
        return sha(CHAIN_DOMAIN + self.records[-1]) if self.records else bytes(32)

    def last_ts(self) -> int:
        return struct.unpack_from(">Q", self.records[-1], 40)[0] if self.records else -1

    def leaves(self, n: int) -> list[bytes]:
        return [sha(b"\x00" + record) for record in self.records[:n]]

    def add(self, kind: int, payload: bytes, now: int) -> None:
        timestamp = max(now, self.last_ts() + 1)
        header = struct.pack(
            ">Q32sQIB", len(self.records), self.head(), timestamp, len(payload), kind
        )
        self.records.append(header + payload)

    def checkpoint(self, now: int) -> None:
        c = len(self.records)
        payload = struct.pack(">BQ32s32s", 1, c, self.head(), mth(self.leaves(c)))
        self.add(1, payload, now)

    def data_since_checkpoint(self) -> int:
        since = 0
        for record in reversed(self.records):
            if record[52] == 1:
                break
            since += 1
        return since

    def append_batch(self, payloads: list[bytes], now: int) -> None:
        for payload in payloads:
            self.add(0, payload, now)
            if not self.explicit_only and self.data_since_checkpoint() >= self.every_n:
                self.checkpoint(now)

    def shutdown(self, now: int) -> None:
        if self.on_shutdown and self.records and self.records[-1][52] != 1:
            self.checkpoint(now)

    def crash(self, keep: int, torn: bool) -> None:
        if torn:
            self.generation += 1
            self.recoveries.append((self.generation, keep, keep + 1))
        del self.records[keep:]
        self.damaged = {offset for offset in self.damaged if offset < keep}

    def first_damaged(self, start: int, end: int) -> int | None:
        """The first damaged offset in start..end-1, or None."""
        found = [offset for offset in self.damaged if start <= offset < end]
        return min(found) if found else None

    def anchor(self, offset: int) -> int:
        """The nearest checkpoint at or before `offset`, or 0."""
        for candidate in range(offset, -1, -1):
            if self.records[candidate][52] == 1:
                return candidate
        return 0


class Walk:
    def __init__(self, directory: Path, seed: int) -> None:
        self.rng = random.Random(seed)
        self.directory = directory
        self.now = T0
        every_n = self.rng.randint(1, 9)
        explicit_only = self.rng.random() < 0.2
        on_shutdown = self.rng.random() < 0.7
        self.model = Model(every_n, explicit_only, on_shutdown)
        self.policy = CheckpointPolicy(
            every_n_records=every_n, explicit_only=explicit_only, on_shutdown=on_shutdown
        )
        self.sync = self.rng.choice(
            [
                SyncPolicy.every_record(),
                SyncPolicy.every_batch(),
                SyncPolicy.group_commit(max_delay_ms=0, max_batch=3),
            ]
        )
        self.log = self.open()

    def clock(self) -> int:
        return self.now

    def open(self) -> Log:
        return open_log(
            self.directory,
            sync_policy=self.sync,
            checkpoint_policy=self.policy,
            segment_bytes_max=900,
            clock=self.clock,
            index_cache_segments=2,
        )

    def tick(self) -> None:
        self.now = max(0, self.now + self.rng.choice([0, 1, 1000, 5_000_000, -3_000]))

    def step(self) -> None:
        choice = self.rng.random()
        self.tick()
        if choice < 0.35:
            payloads = [
                self.rng.randbytes(self.rng.choice([0, 3, 40, 200, 700]))
                for _ in range(self.rng.randint(1, 6))
            ]
            first = self.log.append_batch(payloads)
            assert first == len(self.model.records)
            self.model.append_batch(payloads, self.now)
        elif choice < 0.42:
            checkpoint = self.log.append_checkpoint()
            self.model.checkpoint(self.now)
            assert checkpoint.offset == len(self.model.records) - 1
        elif choice < 0.52:
            self.log.close()
            self.model.shutdown(self.now)
            self.log = self.open()
        elif choice < 0.61 and self.model.records:
            self.crash()
        elif choice < 0.64 and self.model.records:
            self.lose_history()
        elif choice < 0.70:
            self.corrupt()
        else:
            self.observe()
        self.compare_state()

    def crash(self) -> None:
        """The process dies in an append that never returns: only its records may be cut."""
        acknowledged = len(self.model.records)
        before = saved_mark(self.directory)
        payloads = [self.rng.randbytes(self.rng.choice([0, 40, 300])) for _ in range(3)]
        self.log.append_batch(payloads)
        self.model.append_batch(payloads, self.now)
        newest = self.log.segments()[-1]
        first = int(newest.first_offset)
        size = len(self.model.records)
        # Records in sealed segments were fsynced when sealed: they survive any crash.
        keep = self.rng.randint(max(first, acknowledged), size)
        torn = keep < size and self.rng.random() < 0.6
        cut = sum(8 + len(record) for record in self.model.records[first:keep])
        if torn:
            cut += self.rng.randrange(1, 8 + len(self.model.records[keep]))
        self.log.abandon()
        unacknowledge(self.directory, before)
        os.truncate(newest.path, cut)
        self.model.crash(keep, torn)
        self.log = self.open()

    def lose_history(self) -> None:
        """Cut acknowledged records from the newest segment: open refuses and touches nothing."""
        self.log.close()
        self.model.shutdown(self.now)
        newest = self.open_and_last_segment()
        first = int(newest.first_offset)
        size = len(self.model.records)
        if size > first:
            keep = self.rng.randrange(first, size)
            cut = sum(8 + len(record) for record in self.model.records[first:keep])
            data = newest.path.read_bytes()
            os.truncate(newest.path, cut)
            with pytest.raises(HistoryLost) as caught:
                self.open()
            assert (caught.value.first_lost, caught.value.end_lost) == (keep, size)
            assert newest.path.stat().st_size == cut
            newest.path.write_bytes(data)
        self.log = self.open()

    def open_and_last_segment(self) -> SegmentInfo:
        log = self.open()
        newest = log.segments()[-1]
        log.close()
        return newest

    def corrupt(self) -> None:
        # Like the conformance machine: a sealed segment's record, never the last record.
        segments = self.log.segments()
        sealed_end = min(int(segments[-1].first_offset), len(self.model.records) - 1)
        if sealed_end <= 0:
            return
        offset = self.rng.randrange(sealed_end)
        segment = next(s for s in reversed(segments) if int(s.first_offset) <= offset)
        first = int(segment.first_offset)
        start = sum(8 + len(record) for record in self.model.records[first:offset])
        byte = start + self.rng.randrange(8 + len(self.model.records[offset]))
        data = bytearray(segment.path.read_bytes())
        data[byte] ^= 0x01
        segment.path.write_bytes(bytes(data))
        self.model.damaged.add(offset)

    def expect_damage(self, action: Callable[[], object], offset: int | None) -> bool:
        """If `offset` is not None, `action` must raise CorruptionError naming it; True then."""
        if offset is None:
            return False
        with pytest.raises(CorruptionError) as caught:
            action()
        assert caught.value.record_offset == offset
        return True

    def observe(self) -> None:
        size = len(self.model.records)
        log = self.log
        model = self.model
        offset = self.rng.randrange(size + 1)
        if offset == size:
            with pytest.raises(NotFound):
                log.read(offset)
            return
        if not self.expect_damage(
            lambda: log.read(offset), model.first_damaged(offset, offset + 1)
        ):
            assert log.read(offset).record_bytes() == model.records[offset]
        damaged_on_walk = model.first_damaged(model.anchor(offset), offset + 1)
        if not self.expect_damage(lambda: log.read_verified(offset), damaged_on_walk):
            assert log.read_verified(offset).record_bytes() == model.records[offset]
        if not self.expect_damage(log.verify, model.first_damaged(0, size)):
            assert log.verify() == size
        leaves = self.model.leaves(size)
        n = self.rng.randint(0, size)
        assert log.merkle_root(n) == mth(leaves[:n])
        if n == 0:
            with pytest.raises(InvalidArgument):
                log.inclusion_proof(0, 0)
            return
        m = self.rng.randrange(n)
        if self.expect_damage(lambda: log.inclusion_proof(m, n), model.first_damaged(m, m + 1)):
            return
        proof = log.inclusion_proof(m, n)
        assert list(proof.path) == path(m, leaves[:n])
        verify_inclusion(proof, mth(leaves[:n]))
        old = self.rng.randint(1, n)
        consistency = log.consistency_proof(old, n)
        assert list(consistency.path) == subproof(old, leaves[:n], True)
        verify_consistency(consistency, mth(leaves[:old]), mth(leaves[:n]))

    def compare_state(self) -> None:
        model = self.model
        assert self.log.size == len(model.records)
        assert self.log.head_hash == model.head()
        assert self.log.generation == model.generation
        assert [
            (int(r.generation), *(int(o) for o in r.discarded_range or ()))
            for r in self.log.recoveries()
        ] == model.recoveries
        checkpoints = [i for i, record in enumerate(model.records) if record[52] == 1]
        assert [int(c.offset) for c in self.log.checkpoints()] == checkpoints


@pytest.mark.parametrize("seed", range(12))
def test_random_walk_matches_the_model(tmp_path: Path, seed: int) -> None:
    walk = Walk(tmp_path / "log", seed)
    try:
        for _ in range(60):
            walk.step()
        walk.log.close()
        walk.model.shutdown(walk.now)
        with walk.open() as log:
            assert log.head_hash == walk.model.head()
            if not walk.model.damaged:
                assert log.verify() == len(walk.model.records)
    finally:
        walk.log.abandon()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12, 52))
def test_long_random_walks_match_the_model(tmp_path: Path, seed: int) -> None:
    walk = Walk(tmp_path / "log", seed)
    try:
        for _ in range(150):
            walk.step()
    finally:
        walk.log.abandon()
