"""Storage through its IO seam (`verity.storage._io`) under the conformance suite's FaultyIO."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from verity.errors import CorruptionError, StorageError, StorageFull
from verity.storage import open_log
from verity.storage._io import IO, OS, install, restore
from verity.types import CheckpointPolicy
from verity_conformance.drivers import FaultyIO


@pytest.fixture
def seam() -> Iterator[None]:
    previous = IO(OS.pread, OS.write, OS.pwrite, OS.fsync, OS.ftruncate, OS.replace)
    yield
    restore(previous)


def test_the_default_seam_is_the_os() -> None:
    import os

    assert OS.pread is os.pread and OS.write is os.write and OS.fsync is os.fsync


def test_short_reads_and_writes_are_invisible(tmp_path: Path, seam: None) -> None:
    payloads = [bytes([i % 251]) * (i * 7 % 300) for i in range(400)]
    faults = FaultyIO(short_reads=True, short_writes=True)
    install(faults.io())
    policy = CheckpointPolicy(every_n_records=50)
    with open_log(tmp_path / "log", checkpoint_policy=policy, segment_bytes_max=8192) as log:
        log.append_batch(payloads[:200])
        log.append_batch(payloads[200:])
    with open_log(tmp_path / "log", checkpoint_policy=policy, segment_bytes_max=8192) as log:
        data = [r.payload for r in log.records(0, log.size) if r.header.kind == 0]
        assert data == payloads
        assert log.verify() == log.size
    assert faults.calls["pread"] > 0 and faults.calls["write"] > 0


@pytest.mark.parametrize(("code", "full"), [(errno.EIO, False), (errno.ENOSPC, True)])
def test_a_refused_append_leaves_the_log_as_it_was(
    tmp_path: Path, seam: None, code: int, full: bool
) -> None:
    policy = CheckpointPolicy(explicit_only=True)
    with open_log(tmp_path / "log", checkpoint_policy=policy) as log:
        log.append_batch([b"a", b"b"])
        head = log.head_hash
        previous = install(FaultyIO(fail_errno=code, fail_kind=".vlog").io())
        with pytest.raises(StorageError) as refused:
            log.append_batch([b"c", b"d"])
        restore(previous)
        assert isinstance(refused.value, StorageFull) is full
        assert refused.value.written is False
        assert log.size == 2 and log.head_hash == head
        assert log.append_batch([b"e"]) == 2
    with open_log(tmp_path / "log", checkpoint_policy=policy) as log:
        assert [r.payload for r in log.records(0, 3)] == [b"a", b"b", b"e"]


def test_a_flipped_bit_in_a_segment_read_is_reported_never_returned(
    tmp_path: Path, seam: None
) -> None:
    policy = CheckpointPolicy(explicit_only=True)
    with open_log(tmp_path / "log", checkpoint_policy=policy) as log:
        log.append_batch([b"payload %d" % i for i in range(10)])
        previous = install(FaultyIO(flip_kind=".vlog").io())
        try:
            with pytest.raises(CorruptionError):
                log.read(3)
        finally:
            restore(previous)
        assert log.read(3).payload == b"payload 3"
