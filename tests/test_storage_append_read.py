"""verity.storage: appends and reads, segment rolls, validation, reopen."""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from pathlib import Path

import pytest

from verity.errors import ClosedError, InvalidArgument, NotFound
from verity.storage import PAYLOAD_BYTES_MAX, Log, open_log
from verity.types import CheckpointPolicy, Hash, Offset, RecordKind, SyncPolicy, Timestamp

CHAIN_DOMAIN = b"verity.chain.v1\x00"
T0 = 1_700_000_000_000_000_000
NO_AUTO = CheckpointPolicy(explicit_only=True, on_shutdown=False)


class FakeClock:
    def __init__(self, now: int = T0) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.now


def canonical(offset: int, prev: bytes, timestamp: int, payload: bytes, kind: int = 0) -> bytes:
    return struct.pack(">Q32sQIB", offset, prev, timestamp, len(payload), kind) + payload


def chain(record_bytes: bytes) -> bytes:
    return hashlib.sha256(CHAIN_DOMAIN + record_bytes).digest()


def payload_of(index: int) -> bytes:
    return f"payload {index} ".encode() * (index % 7 + 1)


def open_small(path: Path, **kwargs: object) -> Log:
    options: dict[str, object] = {
        "segment_bytes_max": 1024,
        "checkpoint_policy": NO_AUTO,
        "clock": FakeClock(),
    }
    options.update(kwargs)
    return open_log(path, **options)  # type: ignore[arg-type]


def test_round_trip_across_segment_rolls(tmp_path: Path) -> None:
    clock = FakeClock()
    payloads = [payload_of(i) for i in range(200)]
    with open_small(tmp_path / "log", clock=clock) as log:
        first = log.append_batch(payloads[:50])
        offsets = [log.append(p) for p in payloads[50:120]]
        second = log.append_batch(payloads[120:])
        assert (first, offsets[0], offsets[-1], second) == (0, 50, 119, 120)
        assert log.size == 200
        segments = log.segments()
        assert len(segments) > 5
        assert all(s.byte_size <= 1024 for s in segments)
        assert [int(s.first_offset) for s in segments] == sorted(
            int(s.first_offset) for s in segments
        )
        assert sum(s.record_count for s in segments) == 200
        prev = bytes(32)
        for offset, payload in enumerate(payloads):
            record = log.read(offset)
            assert record.payload == payload
            assert record.header.offset == offset
            assert record.header.kind is RecordKind.DATA
            assert record.header.prev_hash == prev
            assert record.record_bytes() == canonical(
                offset, prev, int(record.header.timestamp), payload
            )
            prev = record.chain_hash()
        assert log.head_hash == prev
        assert log.verify() == 200


def test_timestamps_read_the_clock_once_per_call_and_stay_monotonic(tmp_path: Path) -> None:
    clock = FakeClock()
    with open_small(tmp_path / "log", clock=clock) as log:
        log.append_batch([b"a", b"b", b"c"])
        assert clock.reads == 1
        clock.now = T0 - 500  # the clock steps back
        log.append(b"d")
        clock.now = T0 + 100
        log.append(b"e")
        stamps = [int(log.read(i).header.timestamp) for i in range(5)]
        assert stamps == [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 100]
        assert log.last_timestamp == Timestamp(T0 + 100)


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    payloads = [payload_of(i) for i in range(90)]
    with open_small(tmp_path / "log") as log:
        log.append_batch(payloads)
        head = log.head_hash
        root = log.merkle_root()
        before = [log.read(i).record_bytes() for i in range(90)]
    with open_small(tmp_path / "log") as log:
        assert log.size == 90
        assert log.head_hash == head
        assert log.merkle_root() == root
        assert [log.read(i).record_bytes() for i in range(90)] == before
        log.append(b"after reopen")
        assert log.read(90).header.prev_hash == head
        assert log.verify() == 91


def test_empty_log(tmp_path: Path) -> None:
    with open_small(tmp_path / "log") as log:
        assert log.size == 0
        assert log.head_hash == Hash.zero()
        assert log.merkle_root() == hashlib.sha256(b"").digest()
        assert log.verify() == 0
        assert log.checkpoints() == []
        assert log.last_timestamp == 0
        with pytest.raises(NotFound):
            log.read(0)
    with open_small(tmp_path / "log") as log:
        assert log.size == 0


def test_batch_validation_is_all_or_nothing(tmp_path: Path) -> None:
    with open_small(tmp_path / "log") as log:
        log.append(b"first")
        size_bytes = log.segments()[-1].byte_size
        bad_batches: list[object] = [
            [b"ok", "not bytes", b"ok"],
            [b"ok", bytearray(b"mutable")],
            [b"ok", None],
            [],
            b"a bytes object is not a batch",
            "a str is not a batch",
        ]
        for bad in bad_batches:
            with pytest.raises(InvalidArgument) as caught:
                log.append_batch(bad)  # type: ignore[arg-type]
            assert "payloads" in str(caught.value)
        with pytest.raises(InvalidArgument, match=r"payloads\[1\]"):
            log.append_batch([b"ok", "text"])  # type: ignore[list-item]
        with pytest.raises(InvalidArgument, match="payload"):
            log.append("text")  # type: ignore[arg-type]
        assert log.size == 1
        assert log.segments()[-1].byte_size == size_bytes
        assert log.verify() == 1


def test_oversized_payload_is_rejected(tmp_path: Path) -> None:
    huge = bytes(PAYLOAD_BYTES_MAX + 1)
    with open_small(tmp_path / "log") as log:
        with pytest.raises(InvalidArgument, match="at most"):
            log.append(huge)
        with pytest.raises(InvalidArgument, match=r"payloads\[1\]"):
            log.append_batch([b"fine", huge])
        assert log.size == 0


def test_a_record_larger_than_a_segment_gets_its_own_segment(tmp_path: Path) -> None:
    big = bytes(range(256)) * 20
    with open_small(tmp_path / "log") as log:
        log.append_batch([b"small", big, b"small again"])
        assert [s.record_count for s in log.segments()] == [1, 1, 1]
        assert log.read(1).payload == big
    with open_small(tmp_path / "log") as log:
        assert log.read(1).payload == big
        assert log.verify() == 3


def test_offset_and_size_arguments(tmp_path: Path) -> None:
    with open_small(tmp_path / "log") as log:
        log.append_batch([b"x", b"y"])
        with pytest.raises(NotFound, match="2"):
            log.read(2)
        with pytest.raises(NotFound):
            log.read_verified(5)
        for bad in (-1, 1.0, "0", True, None):
            with pytest.raises(InvalidArgument, match="offset"):
                log.read(bad)  # type: ignore[arg-type]
        with pytest.raises(NotFound):
            log.merkle_root(3)
        with pytest.raises(InvalidArgument):
            log.merkle_root(-1)
        with pytest.raises(NotFound):
            log.inclusion_proof(0, 3)
        with pytest.raises(InvalidArgument, match="leaf_index"):
            log.inclusion_proof(2, 2)
        with pytest.raises(InvalidArgument, match="leaf_index"):
            log.inclusion_proof(0, 0)
        with pytest.raises(NotFound):
            log.consistency_proof(1, 3)
        with pytest.raises(InvalidArgument, match="old_size"):
            log.consistency_proof(0, 2)
        with pytest.raises(InvalidArgument, match="old_size"):
            log.consistency_proof(2, 1)
        with pytest.raises(NotFound):
            log.nearest_checkpoint(2)


def test_open_arguments_are_checked(tmp_path: Path) -> None:
    target = tmp_path / "log"
    with pytest.raises(InvalidArgument, match="segment_bytes_max"):
        open_log(target, segment_bytes_max=0)
    with pytest.raises(InvalidArgument, match="index_cache_segments"):
        open_log(target, index_cache_segments=0)
    with pytest.raises(InvalidArgument, match="sync_policy"):
        open_log(target, sync_policy="every_batch")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="clock"):
        open_log(target, clock=5)  # type: ignore[arg-type]
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(InvalidArgument, match="path"):
        open_log(tmp_path / "file")


def test_a_bad_clock_reading_is_rejected(tmp_path: Path) -> None:
    clock = FakeClock(-5)
    with open_small(tmp_path / "log", clock=clock) as log:
        with pytest.raises(InvalidArgument, match="clock"):
            log.append(b"x")
        assert log.size == 0


def test_closed_log_refuses_operations(tmp_path: Path) -> None:
    log = open_small(tmp_path / "log")
    log.append(b"x")
    log.close()
    log.close()  # idempotent
    log.abandon()  # no-op once closed
    with pytest.raises(ClosedError):
        log.append(b"y")
    with pytest.raises(ClosedError):
        log.read(0)
    with pytest.raises(ClosedError):
        log.verify()
    assert log.size == 1


def test_segment_files_follow_the_documented_layout(tmp_path: Path) -> None:
    with open_small(tmp_path / "log") as log:
        log.append_batch([payload_of(i) for i in range(40)])
        segments = log.segments()
    names = sorted(os.listdir(tmp_path / "log"))
    for segment in segments:
        assert segment.path.name == f"{int(segment.first_offset):020d}.vlog"
        assert f"{int(segment.first_offset):020d}.vidx" in names
    assert "merkle" in names
    # A segment is frames only: length ‖ crc32 ‖ record bytes, from byte 0.
    data = segments[0].path.read_bytes()
    length, _ = struct.unpack_from(">II", data)
    offset, prev, _, payload_len, kind = struct.unpack_from(">Q32sQIB", data, 8)
    assert (offset, prev, kind, length) == (0, bytes(32), 0, 53 + payload_len)


def test_record_values_are_typed(tmp_path: Path) -> None:
    with open_small(tmp_path / "log") as log:
        offset = log.append(b"typed")
        assert isinstance(offset, Offset)
        record = log.read(0)
        assert isinstance(record.header.prev_hash, Hash)
        assert isinstance(record.chain_hash(), Hash)
        assert record.chain_hash() == chain(record.record_bytes())


def test_sync_policies_all_produce_the_same_log(tmp_path: Path) -> None:
    heads = []
    for name, policy in [
        ("record", SyncPolicy.every_record()),
        ("batch", SyncPolicy.every_batch()),
        ("group", SyncPolicy.group_commit(max_delay_ms=0, max_batch=4)),
    ]:
        with open_small(tmp_path / name, sync_policy=policy) as log:
            log.append_batch([payload_of(i) for i in range(30)])
            log.append(b"one more")
            heads.append(log.head_hash)
    assert heads[0] == heads[1] == heads[2]


def test_sealed_indexes_in_memory_are_bounded_in_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import verity.storage._log as log_module

    # Room for about two small segments' positions: reads across many segments
    # must stay right while the cache keeps evicting (and closing their files).
    monkeypatch.setattr(log_module, "INDEX_CACHE_BYTES_MAX", 2 * 8 * 40)
    no_checkpoints = CheckpointPolicy(explicit_only=True, on_shutdown=False)
    with open_log(
        tmp_path / "log", segment_bytes_max=4096, checkpoint_policy=no_checkpoints
    ) as log:
        log.append_batch([bytes([i % 256]) * 60 for i in range(2_000)])
    with open_log(tmp_path / "log") as log:
        assert len(log.segments()) > 20
        for offset in range(0, log.size, 7):
            assert log.read(offset).payload == bytes([offset % 256]) * 60
        # Sealed segments held open are the cached ones (plus the active one).
        assert len(open_segment_files()) <= 3


def open_segment_files() -> list[str]:
    """The segment files this process holds open."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
    return [target for target in targets if target.endswith(".vlog")]
