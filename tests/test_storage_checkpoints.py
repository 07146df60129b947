"""verity.storage: checkpoint records (auto, explicit, shutdown), read_verified, verify."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import pytest

from verity.errors import ChainBroken, CorruptionError
from verity.storage import Log, open_log
from verity.types import CheckpointPolicy, RecordKind

CHAIN_DOMAIN = b"verity.chain.v1\x00"
T0 = 1_700_000_000_000_000_000


class FakeClock:
    def __init__(self, now: int = T0) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.now


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return sha(b"")
    if n == 1:
        return sha(b"\x00" + leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def open_with(path: Path, policy: CheckpointPolicy, clock: FakeClock, **kwargs: object) -> Log:
    return open_log(path, checkpoint_policy=policy, clock=clock, **kwargs)  # type: ignore[arg-type]


def frames(segment: Path) -> list[tuple[int, int]]:
    """(start, end) of each frame, parsed sequentially (test helper)."""
    data = segment.read_bytes()
    spans = []
    position = 0
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        spans.append((position, position + 8 + length))
        position += 8 + length
    return spans


def rewrite_record(log_dir: Path, segment: Path, index: int, edit_at: int, value: bytes) -> None:
    """Overwrite bytes of a record (offset within the record bytes) and fix its CRC."""
    data = bytearray(segment.read_bytes())
    start, end = frames(segment)[index]
    data[start + 8 + edit_at : start + 8 + edit_at + len(value)] = value
    struct.pack_into(">I", data, start + 4, zlib.crc32(bytes(data[start + 8 : end])))
    segment.write_bytes(bytes(data))
    del log_dir


def test_auto_checkpoints_land_inside_the_batch(tmp_path: Path) -> None:
    clock = FakeClock()
    policy = CheckpointPolicy(every_n_records=3, on_shutdown=False)
    with open_with(tmp_path / "log", policy, clock) as log:
        first = log.append_batch([f"d{i}".encode() for i in range(7)])
        assert first == 0
        kinds = [log.read(i).header.kind for i in range(log.size)]
        assert kinds == [RecordKind.DATA] * 3 + [RecordKind.CHECKPOINT] + [RecordKind.DATA] * 3 + [
            RecordKind.CHECKPOINT,
            RecordKind.DATA,
        ]
        stamps = [int(log.read(i).header.timestamp) for i in range(log.size)]
        assert stamps == list(range(T0, T0 + 9))
        records = [log.read(i).record_bytes() for i in range(log.size)]
        for checkpoint in log.checkpoints():
            c = int(checkpoint.offset)
            assert checkpoint.record_count == c
            assert checkpoint.chain_hash == sha(CHAIN_DOMAIN + records[c - 1])
            assert checkpoint.merkle_root == mth(records[:c])
            assert checkpoint.created_at == T0 + c
            payload = log.read(c).payload
            assert payload == struct.pack(
                ">BQ32s32s", 1, c, checkpoint.chain_hash, checkpoint.merkle_root
            )
        assert [int(c.offset) for c in log.checkpoints()] == [3, 7]
        assert clock.reads == 1


def test_explicit_checkpoint_including_on_an_empty_log(tmp_path: Path) -> None:
    clock = FakeClock()
    policy = CheckpointPolicy(explicit_only=True)
    with open_with(tmp_path / "log", policy, clock) as log:
        empty = log.append_checkpoint()
        assert (int(empty.offset), empty.record_count) == (0, 0)
        assert empty.chain_hash == bytes(32)
        assert empty.merkle_root == sha(b"")
        log.append_batch([b"a"] * 2500)
        assert len(log.checkpoints()) == 1  # explicit_only: none automatic
        checkpoint = log.append_checkpoint()
        assert int(checkpoint.offset) == 2501
        assert checkpoint.merkle_root == log.merkle_root(2501)
        assert log.checkpoints()[-1] == checkpoint
        assert log.verify() == 2502


def test_shutdown_checkpoint_rules(tmp_path: Path) -> None:
    clock = FakeClock()
    policy = CheckpointPolicy(every_n_records=100)
    with open_with(tmp_path / "a", policy, clock) as log:
        log.append(b"x")
        clock.now = T0 + 50
    with open_with(tmp_path / "a", policy, clock) as log:
        assert log.size == 2
        last = log.checkpoints()[-1]
        assert (int(last.offset), int(last.created_at)) == (1, T0 + 50)
    with open_with(tmp_path / "a", policy, clock) as log:
        assert log.size == 2  # the last record is already a checkpoint
    with open_with(tmp_path / "empty", policy, clock) as log:
        pass
    with open_with(tmp_path / "empty", policy, clock) as log:
        assert log.size == 0  # nothing to cover
    off = CheckpointPolicy(every_n_records=100, on_shutdown=False)
    with open_with(tmp_path / "off", off, clock) as log:
        log.append(b"x")
    with open_with(tmp_path / "off", off, clock) as log:
        assert log.size == 1


def test_abandon_writes_no_shutdown_checkpoint(tmp_path: Path) -> None:
    clock = FakeClock()
    log = open_with(tmp_path / "log", CheckpointPolicy(), clock)
    log.append(b"x")
    log.abandon()
    with open_with(tmp_path / "log", CheckpointPolicy(on_shutdown=False), clock) as log:
        assert log.size == 1
        assert log.checkpoints() == []


def test_checkpoint_count_continues_across_reopen(tmp_path: Path) -> None:
    clock = FakeClock()
    policy = CheckpointPolicy(every_n_records=5, on_shutdown=False)
    with open_with(tmp_path / "log", policy, clock) as log:
        log.append_batch([b"a"] * 3)
    with open_with(tmp_path / "log", policy, clock) as log:
        log.append_batch([b"b"] * 2)
        assert log.read(5).header.kind is RecordKind.CHECKPOINT
        assert [int(c.offset) for c in log.checkpoints()] == [5]


def test_nearest_checkpoint_and_reopen_keeps_the_list(tmp_path: Path) -> None:
    clock = FakeClock()
    policy = CheckpointPolicy(every_n_records=4, on_shutdown=False)
    with open_with(tmp_path / "log", policy, clock, segment_bytes_max=600) as log:
        log.append_batch([b"p" * 20] * 20)
        listed = log.checkpoints()
        assert [int(c.offset) for c in listed] == [4, 9, 14, 19, 24]
        assert log.nearest_checkpoint(3) is None
        nearest = log.nearest_checkpoint(4)
        assert nearest is not None and int(nearest.offset) == 4
        nearest = log.nearest_checkpoint(13)
        assert nearest is not None and int(nearest.offset) == 9
    with open_with(tmp_path / "log", policy, clock, segment_bytes_max=600) as log:
        assert log.checkpoints() == listed
        assert len(log.segments()) > 2


def test_read_verified_returns_what_read_returns(tmp_path: Path) -> None:
    clock = FakeClock()
    policy = CheckpointPolicy(every_n_records=6)
    with open_with(tmp_path / "log", policy, clock, segment_bytes_max=700) as log:
        log.append_batch([f"record {i}".encode() * 3 for i in range(60)])
        assert len(log.segments()) > 3
        for offset in range(log.size):
            assert log.read_verified(offset) == log.read(offset)


def test_read_verified_and_verify_catch_a_rewritten_record(tmp_path: Path) -> None:
    # A record rewritten with a matching CRC: only the chain can tell.
    clock = FakeClock()
    policy = CheckpointPolicy(every_n_records=5, on_shutdown=False)
    log_dir = tmp_path / "log"
    with open_with(log_dir, policy, clock) as log:
        log.append_batch([f"record {i}".encode() for i in range(12)])
        segment = log.segments()[0].path
    # Records: d0-d4, C5, d6-d10, C11, d12, d13. Rewrite d7's payload.
    rewrite_record(log_dir, segment, 7, 53, b"X")
    with open_with(log_dir, policy, clock) as log:
        assert log.read(7).payload.startswith(b"X")
        assert log.read_verified(7).payload.startswith(b"X")  # nothing after it checked yet
        with pytest.raises(ChainBroken) as caught:
            log.read_verified(8)
        assert caught.value.record_offset == 8
        assert log.read_verified(12).payload == b"record 10"  # anchored at checkpoint 11
        # verify stops one record earlier: the stored Merkle leaf still has record 7's old hash.
        with pytest.raises(CorruptionError) as failure:
            log.verify()
        assert failure.value.record_offset == 7
        assert failure.value.file is not None and failure.value.file.endswith("level-00.bin")


def test_read_verified_checks_the_anchor_checkpoint(tmp_path: Path) -> None:
    clock = FakeClock()
    policy = CheckpointPolicy(every_n_records=5, on_shutdown=False)
    log_dir = tmp_path / "log"
    with open_with(log_dir, policy, clock) as log:
        log.append_batch([f"record {i}".encode() for i in range(8)])
        segment = log.segments()[0].path
    # Checkpoint 5's payload chain_hash sits at record byte 53 + 1 + 8.
    rewrite_record(log_dir, segment, 5, 53 + 9, b"\xff" * 32)
    with open_with(log_dir, policy, clock) as log:
        for offset in (5, 6, 8):
            with pytest.raises(CorruptionError) as caught:
                log.read_verified(offset)
            assert caught.value.record_offset == 5
        assert log.read_verified(4).payload == b"record 4"
        with pytest.raises(CorruptionError) as caught:
            log.verify()
        assert caught.value.record_offset == 5


def test_verify_checks_checkpoint_merkle_roots_and_timestamps(tmp_path: Path) -> None:
    clock = FakeClock()
    policy = CheckpointPolicy(every_n_records=5, on_shutdown=False)
    with open_with(tmp_path / "root", policy, clock) as log:
        log.append_batch([f"record {i}".encode() for i in range(8)])
        segment = log.segments()[0].path
    rewrite_record(tmp_path / "root", segment, 5, 53 + 41, b"\x00" * 32)
    with open_with(tmp_path / "root", policy, clock) as log:
        with pytest.raises(CorruptionError, match="merkle_root") as caught:
            log.verify()
        assert caught.value.record_offset == 5
        with pytest.raises(ChainBroken) as broken:
            log.read_verified(6)  # the record disagrees with the trusted checkpoint list
        assert broken.value.record_offset == 5

    with open_with(tmp_path / "time", policy, clock) as log:
        log.append_batch([f"record {i}".encode() for i in range(8)])
        segment = log.segments()[0].path
        earlier = int(log.read(1).header.timestamp)
    rewrite_record(tmp_path / "time", segment, 2, 40, struct.pack(">Q", earlier))
    with open_with(tmp_path / "time", policy, clock) as log:
        with pytest.raises(CorruptionError, match="timestamp") as caught:
            log.verify()
        assert caught.value.record_offset == 2


def test_verify_reports_progress(tmp_path: Path) -> None:
    clock = FakeClock()
    seen: list[tuple[int, int]] = []
    with open_with(tmp_path / "log", CheckpointPolicy(), clock, segment_bytes_max=2000) as log:
        log.append_batch([b"z" * 100] * 100)
        size = log.size
        assert log.verify(lambda done, total: seen.append((done, total))) == size
    assert len(seen) > 1
    assert seen[-1] == (size, size)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
