"""verity.storage: flipped bytes are pinned to their record; derived files are rebuilt."""

from __future__ import annotations

import logging
import os
import shutil
import struct
from pathlib import Path

import pytest
from _crash import acknowledged_through

from verity.errors import CorruptionError
from verity.storage import Log, open_log
from verity.types import CheckpointPolicy

T0 = 1_700_000_000_000_000_000
POLICY = CheckpointPolicy(every_n_records=5)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += 10
        return self.now


def open_small(path: Path, **kwargs: object) -> Log:
    options: dict[str, object] = {
        "checkpoint_policy": POLICY,
        "segment_bytes_max": 1024,
        "clock": FakeClock(),
    }
    options.update(kwargs)
    return open_log(path, **options)  # type: ignore[arg-type]


def frames(segment: Path) -> list[tuple[int, int]]:
    data = segment.read_bytes()
    spans = []
    position = 0
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        spans.append((position, position + 8 + length))
        position += 8 + length
    return spans


def flip(path: Path, byte: int) -> None:
    data = bytearray(path.read_bytes())
    data[byte] ^= 0x01
    path.write_bytes(bytes(data))


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "verity.storage" and r.levelno == logging.WARNING
    ]


class Built:
    def __init__(self, root: Path, data_records: int = 60) -> None:
        self.pristine = root / "pristine"
        with open_small(self.pristine) as log:
            log.append_batch([b"record %d " % i * (1 + i % 4) for i in range(data_records)])
            self.segments = log.segments()
        with open_small(self.pristine) as log:
            self.size = log.size
            self.records = [log.read(i).record_bytes() for i in range(self.size)]
            self.checkpoints = log.checkpoints()
        assert len(self.segments) >= 4
        self.root = root
        self.copies = 0

    def copy(self) -> Path:
        self.copies += 1
        target = self.root / f"copy-{self.copies}"
        shutil.copytree(self.pristine, target)
        return target


def test_every_flipped_byte_of_a_sealed_record_is_pinned_to_it(tmp_path: Path) -> None:
    built = Built(tmp_path)
    segment = built.segments[1]
    target = int(segment.first_offset) + 2
    start, end = frames(segment.path)[2]
    for byte in range(start, end):
        directory = built.copy()
        path = directory / segment.path.name
        flip(path, byte)
        with open_small(directory) as log:
            with pytest.raises(CorruptionError) as caught:
                log.read(target)
            assert caught.value.record_offset == target
            assert caught.value.file == str(path)
            assert caught.value.byte_offset == start
            assert log.read(target - 1).record_bytes() == built.records[target - 1]
            assert log.read(target + 1).record_bytes() == built.records[target + 1]
            with pytest.raises(CorruptionError) as caught:
                log.verify()
            assert caught.value.record_offset == target
            assert caught.value.file == str(path)
            with pytest.raises(CorruptionError) as caught:
                log.read_verified(target + 1)
            assert caught.value.record_offset in (target, target + 1)
        assert path.stat().st_size == segment.byte_size
        shutil.rmtree(directory)


def test_flip_in_the_active_segment_after_a_clean_close(tmp_path: Path) -> None:
    built = Built(tmp_path)
    directory = built.copy()
    quiet = CheckpointPolicy(every_n_records=5, on_shutdown=False)
    with open_small(directory, checkpoint_policy=quiet) as log:
        while log.segments()[-1].record_count < 4:
            log.append(b"more")
        newest = log.segments()[-1]
        last = log.read(log.size - 1).record_bytes()
    start, _ = frames(newest.path)[0]
    flip(newest.path, start + 30)
    with open_small(directory, checkpoint_policy=quiet) as log:
        with pytest.raises(CorruptionError) as caught:
            log.read(int(newest.first_offset))
        assert caught.value.record_offset == int(newest.first_offset)
        assert log.read(log.size - 1).record_bytes() == last
        assert log.read(int(newest.first_offset) + 1).header.offset == int(newest.first_offset) + 1
    assert newest.path.stat().st_size == newest.byte_size


@pytest.mark.parametrize("where", [1, 5, 8 + 3, 8 + 60])
def test_flip_in_a_sealed_segment_without_its_index_is_never_truncated(
    tmp_path: Path, where: int
) -> None:
    built = Built(tmp_path)
    directory = built.copy()
    segment = built.segments[1]
    path = directory / segment.path.name
    start, _ = frames(path)[3]
    flip(path, start + where)
    (directory / path.name.replace(".vlog", ".vidx")).unlink()
    with pytest.raises(CorruptionError) as caught, open_small(directory) as log:
        log.verify()
    assert caught.value.file == str(path)
    assert caught.value.byte_offset == start
    assert caught.value.record_offset == int(segment.first_offset) + 3
    assert path.stat().st_size == segment.byte_size
    assert not (directory / "recovery.vrec").exists()


@pytest.mark.parametrize("damage", ["delete", "flip", "truncate", "swap"])
def test_a_bad_sealed_index_is_rebuilt_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    built = Built(tmp_path)
    directory = built.copy()
    index = directory / built.segments[1].path.name.replace(".vlog", ".vidx")
    other = directory / built.segments[2].path.name.replace(".vlog", ".vidx")
    if damage == "delete":
        index.unlink()
    elif damage == "flip":
        flip(index, 40)
    elif damage == "truncate":
        os.truncate(index, index.stat().st_size - 5)
    else:
        shutil.copyfile(other, index)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="verity.storage"):
        with open_small(directory) as log:
            # Open compares each sealed index's header with its segment: a missing or
            # foreign one is rebuilt there; damage past the header when first read.
            at_open = len(warnings_of(caplog))
            assert at_open == (1 if damage in ("delete", "swap") else 0)
            assert [log.read(i).record_bytes() for i in range(built.size)] == built.records
            assert log.verify() == built.size
        assert len(warnings_of(caplog)) == 1
        assert str(index) in warnings_of(caplog)[0].getMessage()
        caplog.clear()
        with open_small(directory) as log:
            assert [log.read(i).record_bytes() for i in range(built.size)] == built.records
        assert warnings_of(caplog) == []


def test_open_rebuilds_missing_sealed_indexes_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A sealed segment without its index could be cut short: open scans it (and
    # rebuilds the index) instead of trusting it, once.
    built = Built(tmp_path)
    directory = built.copy()
    missing = built.segments[:-2]
    for segment in missing:
        (directory / segment.path.name.replace(".vlog", ".vidx")).unlink()
    with caplog.at_level(logging.WARNING, logger="verity.storage"):
        log = open_small(directory)
        assert len(warnings_of(caplog)) == len(missing)
        assert log.read(0).record_bytes() == built.records[0]
        assert len(warnings_of(caplog)) == len(missing)
        log.close()
        caplog.clear()
        open_small(directory).close()
        assert warnings_of(caplog) == []


def test_a_missing_active_index_means_a_scan(tmp_path: Path) -> None:
    built = Built(tmp_path)
    directory = built.copy()
    (directory / built.segments[-1].path.name.replace(".vlog", ".vidx")).unlink()
    with open_small(directory) as log:
        assert log.size == built.size
        assert log.recoveries() == []
        assert [log.read(i).record_bytes() for i in range(built.size)] == built.records


def test_a_lost_checkpoint_list_is_rebuilt_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    built = Built(tmp_path)
    directory = built.copy()
    (directory / "checkpoints.vcpt").unlink()
    with caplog.at_level(logging.WARNING, logger="verity.storage"):
        with open_small(directory) as log:
            assert log.checkpoints() == built.checkpoints
            assert log.verify() == built.size
        assert len(warnings_of(caplog)) == 1
        caplog.clear()
        with open_small(directory) as log:
            assert log.checkpoints() == built.checkpoints
        assert warnings_of(caplog) == []


def test_the_index_cache_is_bounded(tmp_path: Path) -> None:
    built = Built(tmp_path, data_records=200)
    directory = built.copy()
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.exists():
        pytest.skip("needs /proc/self/fd to count open files")
    with open_small(directory, index_cache_segments=2) as log:
        assert len(log.segments()) > 10
        before = len(os.listdir(fd_dir))
        for offset in range(built.size):
            assert log.read(offset).record_bytes() == built.records[offset]
        assert len(os.listdir(fd_dir)) <= before + 2
        assert log.verify() == built.size


def test_a_damaged_head_in_a_sealed_segment_does_not_stop_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The newest segment is cut to nothing, so the head is the last record of a
    # sealed segment whose frame was damaged before: open goes on, reads report it.
    built = Built(tmp_path)
    directory = built.copy()
    quiet = CheckpointPolicy(explicit_only=True, on_shutdown=False)
    log = open_small(directory, checkpoint_policy=quiet)
    segments_at_open = len(log.segments())
    while (
        len(log.segments()) == segments_at_open
        or log.segments()[-1].record_count == 0
        or log.read(log.size - 1).header.kind != 0
    ):
        log.append(b"data")
    sealed, newest = log.segments()[-2:]
    head_offset = int(newest.first_offset) - 1
    expected_head = log.read(head_offset).chain_hash()
    log.abandon()
    # The appends after the last roll never returned: the roll's fsync was the last.
    acknowledged_through(directory, head_offset + 1, expected_head)
    start, _ = frames(sealed.path)[-1]
    flip(sealed.path, start + 8 + 53)  # the first payload byte
    os.truncate(newest.path, 0)
    with (
        caplog.at_level(logging.WARNING, logger="verity.storage"),
        open_small(directory, checkpoint_policy=quiet) as log,
    ):
        assert log.size == head_offset + 1
        assert log.head_hash == expected_head
        with pytest.raises(CorruptionError) as caught:
            log.read(head_offset)
        assert caught.value.record_offset == head_offset
        log.append(b"after")
        assert log.read(head_offset + 1).header.prev_hash == expected_head
        with pytest.raises(CorruptionError) as caught:
            log.verify()
        assert caught.value.record_offset == head_offset
    assert any("damaged" in r.getMessage() for r in warnings_of(caplog))
    assert sealed.path.stat().st_size == sealed.byte_size


def test_a_damaged_active_index_is_rebuilt_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with open_log(tmp_path / "log") as log:
        log.append_batch([b"a", b"b", b"c"])
    [index] = list((tmp_path / "log").glob("*.vidx"))
    data = bytearray(index.read_bytes())
    data[40] ^= 0x01
    index.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="verity"), open_log(tmp_path / "log") as log:
        assert [log.read(i).payload for i in range(3)] == [b"a", b"b", b"c"]
    warnings = [r.getMessage() for r in caplog.records if "offset index" in r.getMessage()]
    assert len(warnings) == 1 and index.name in warnings[0] and "CRC" in warnings[0]
