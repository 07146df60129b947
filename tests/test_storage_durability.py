"""verity.storage: an append returns only once its sync policy made it durable."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from verity.storage import Log, open_log
from verity.storage._io import OS
from verity.types import CheckpointPolicy, SyncPolicy

NO_AUTO = CheckpointPolicy(explicit_only=True, on_shutdown=False)
PAYLOAD_BYTES = 40
FRAME_BYTES = 8 + 53 + PAYLOAD_BYTES


class FsyncSpy:
    """Counts fsyncs and tracks how many bytes of each file an fsync has made durable."""

    def __init__(self, real: Callable[[int], None]) -> None:
        self.real = real
        self.calls = 0
        self.durable_bytes: dict[int, int] = {}
        self.lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        status = os.fstat(fd)
        self.real(fd)
        with self.lock:
            self.calls += 1
            inode = status.st_ino
            self.durable_bytes[inode] = max(self.durable_bytes.get(inode, 0), status.st_size)

    def durable(self, path: Path) -> int:
        with self.lock:
            return self.durable_bytes.get(path.stat().st_ino, 0)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> FsyncSpy:
    spy = FsyncSpy(os.fsync)
    monkeypatch.setattr(OS, "fsync", spy)
    return spy


def payload(thread: int, sequence: int) -> bytes:
    return f"t{thread:03d}-s{sequence:05d}".encode().ljust(PAYLOAD_BYTES, b".")


def open_policy(path: Path, policy: SyncPolicy, checkpoints: CheckpointPolicy = NO_AUTO) -> Log:
    return open_log(path, sync_policy=policy, checkpoint_policy=checkpoints)


def test_every_batch_is_one_fsync_per_call(tmp_path: Path, spy: FsyncSpy) -> None:
    with open_policy(tmp_path / "log", SyncPolicy.every_batch()) as log:
        log.append(payload(0, 0))
        segment = log.segments()[-1].path
        before = spy.calls
        log.append_batch([payload(0, i) for i in range(1, 101)])
        assert spy.calls == before + 1
        assert spy.durable(segment) == segment.stat().st_size == 101 * FRAME_BYTES
        log.append(payload(0, 101))
        assert spy.calls == before + 2
        log.append_checkpoint()
        assert spy.calls == before + 3
        assert spy.durable(segment) == segment.stat().st_size


def test_every_record_fsyncs_each_record_even_in_a_batch(tmp_path: Path, spy: FsyncSpy) -> None:
    policy = CheckpointPolicy(every_n_records=10, on_shutdown=False)
    with open_policy(tmp_path / "log", SyncPolicy.every_record(), policy) as log:
        log.append(payload(0, 0))
        before = spy.calls
        log.append_batch([payload(0, i) for i in range(1, 101)])
        # 100 data records and the 10 checkpoints the policy puts among them.
        assert log.size == 111
        assert spy.calls == before + 110
        segment = log.segments()[-1].path
        assert spy.durable(segment) == segment.stat().st_size


def test_group_commit_shares_fsyncs_and_acknowledges_only_durable_records(
    tmp_path: Path, spy: FsyncSpy
) -> None:
    threads = 8
    per_thread = 40
    policy = SyncPolicy.group_commit(max_delay_ms=2, max_batch=8)
    log = open_policy(tmp_path / "log", policy)
    segment = log.segments()[-1].path
    acknowledged: dict[int, bytes] = {}
    problems: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads + 2)
    writers_done = threading.Event()

    def writer(thread: int) -> None:
        start.wait()
        for sequence in range(per_thread):
            data = payload(thread, sequence)
            if sequence % 5 == 4:
                offset = int(log.append_batch([data, data]))
                count = 2
            else:
                offset = int(log.append(data))
                count = 1
            durable = spy.durable(segment)
            if durable < (offset + count) * FRAME_BYTES:
                problems.append(f"offset {offset} acknowledged with {durable} bytes durable")
            with lock:
                for index in range(count):
                    acknowledged[offset + index] = data

    def reader() -> None:
        rng = random.Random(5)
        start.wait()
        while not writers_done.is_set():
            size = log.size
            if size:
                offset = rng.randrange(size)
                if log.read(offset).header.offset != offset:
                    problems.append(f"read({offset}) returned another record")

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    watcher = threading.Thread(target=reader)
    for worker in workers:
        worker.start()
    watcher.start()
    start.wait()
    for worker in workers:
        worker.join()
    writers_done.set()
    watcher.join()
    total = threads * (per_thread + per_thread // 5)
    assert problems == []
    assert sorted(acknowledged) == list(range(total))
    assert spy.calls < total  # appends shared fsyncs
    log.abandon()  # a crash now loses nothing that was acknowledged
    with open_policy(tmp_path / "log", policy) as reopened:
        assert reopened.size == total
        for offset, data in acknowledged.items():
            assert reopened.read(offset).payload == data
        assert reopened.verify() == total


def test_group_commit_with_one_writer_and_no_delay(tmp_path: Path, spy: FsyncSpy) -> None:
    policy = SyncPolicy.group_commit(max_delay_ms=0, max_batch=1000)
    with open_policy(tmp_path / "log", policy) as log:
        segment = log.segments()[-1].path
        for sequence in range(20):
            offset = int(log.append(payload(0, sequence)))
            assert spy.durable(segment) >= (offset + 1) * FRAME_BYTES


def test_group_commit_across_segment_rolls(tmp_path: Path) -> None:
    policy = SyncPolicy.group_commit(max_delay_ms=1, max_batch=4)
    log = open_log(
        tmp_path / "log", sync_policy=policy, checkpoint_policy=NO_AUTO, segment_bytes_max=700
    )

    def writer(thread: int) -> None:
        for sequence in range(30):
            log.append(payload(thread, sequence))

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(log.segments()) > 10
    log.abandon()
    with open_log(tmp_path / "log", checkpoint_policy=NO_AUTO, segment_bytes_max=700) as log:
        assert log.size == 120
        payloads = sorted(log.read(i).payload for i in range(120))
        assert payloads == sorted(payload(t, s) for t in range(4) for s in range(30))
        assert log.verify() == 120


def test_sync_makes_derived_files_durable_too(tmp_path: Path, spy: FsyncSpy) -> None:
    with open_policy(tmp_path / "log", SyncPolicy.every_batch()) as log:
        log.append_batch([payload(0, i) for i in range(10)])
        before = spy.calls
        log.sync()
        merkle_leaves = tmp_path / "log" / "merkle" / "level-00.bin"
        assert spy.calls > before + 1
        assert spy.durable(merkle_leaves) == merkle_leaves.stat().st_size == 10 * 32
