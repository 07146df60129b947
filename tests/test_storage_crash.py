"""verity.storage: crash recovery — torn tails are cut after a durable RecoveryRecord."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from _crash import saved_mark, unacknowledge

from verity.errors import CorruptionError, HistoryLost
from verity.storage import Log, open_log
from verity.types import (
    CheckpointPolicy,
    Generation,
    Offset,
    RecoveryReason,
    RecoveryRecord,
    Timestamp,
)

T0 = 1_700_000_000_000_000_000
T_RECOVER = 1_800_000_000_000_000_000
POLICY = CheckpointPolicy(every_n_records=4, on_shutdown=False)


class FakeClock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def open_at(path: Path, now: int = T_RECOVER, **kwargs: object) -> Log:
    options: dict[str, object] = {
        "checkpoint_policy": POLICY,
        "segment_bytes_max": 1024,
        "clock": FakeClock(now),
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


class Crashed:
    """A log whose process died after appends; the pristine files are kept for copies."""

    def __init__(self, root: Path, data_records: int = 30) -> None:
        self.pristine = root / "pristine"
        log = open_at(self.pristine, now=T0)
        # The process dies in the middle of this append: it never returns.
        before = saved_mark(self.pristine)
        log.append_batch([b"record %d " % i * (1 + i % 5) for i in range(data_records)])
        log.sync()  # derived files now run ahead of any cut below
        self.size = log.size
        self.records = [log.read(i).record_bytes() for i in range(self.size)]
        self.roots = [log.merkle_root(n) for n in range(self.size + 1)]
        self.heads = [log.read(i).chain_hash() for i in range(self.size)]
        self.checkpoints = log.checkpoints()
        newest = log.segments()[-1]
        self.newest_name = newest.path.name
        self.newest_first = int(newest.first_offset)
        log.abandon()
        unacknowledge(self.pristine, before)
        self.last_frame = frames(self.pristine / self.newest_name)[-1]
        self.copies = 0
        self.root = root

    def copy_cut_at(self, cut: int) -> Path:
        self.copies += 1
        target = self.root / f"copy-{self.copies}"
        shutil.copytree(self.pristine, target)
        os.truncate(target / self.newest_name, cut)
        return target


def test_acknowledged_records_survive_a_crash(tmp_path: Path) -> None:
    crashed = Crashed(tmp_path)
    with open_at(crashed.pristine) as log:
        assert log.size == crashed.size
        assert log.recoveries() == []
        assert log.generation == 0
        assert [log.read(i).record_bytes() for i in range(log.size)] == crashed.records
        assert log.verify() == crashed.size


def test_cut_at_every_byte_of_the_last_frame(tmp_path: Path) -> None:
    crashed = Crashed(tmp_path)
    start, end = crashed.last_frame
    kept = crashed.size - 1
    assert crashed.records[kept][52] == 0  # the torn record is DATA
    for cut in range(start, end):
        directory = crashed.copy_cut_at(cut)
        with open_at(directory) as log:
            assert log.size == kept
            assert (directory / crashed.newest_name).stat().st_size == start
            if cut == start:
                assert log.recoveries() == []
                assert log.generation == 0
            else:
                expected = RecoveryRecord(
                    generation=Generation(1),
                    previous_generation=Generation(0),
                    known_committed=Offset(kept),
                    recovery_point=Offset(kept),
                    discarded_range=(Offset(kept), Offset(kept + 1)),
                    discarded_bytes=(crashed.newest_name, start, cut),
                    timestamp=Timestamp(T_RECOVER),
                    reason=RecoveryReason.NODE_RESTART,
                )
                assert log.recoveries() == [expected], cut
                assert log.generation == 1
            assert log.head_hash == crashed.heads[kept - 1]
            assert log.merkle_root() == crashed.roots[kept]
            assert log.checkpoints() == crashed.checkpoints
            for offset in (0, crashed.newest_first, kept - 1):
                assert log.read(offset).record_bytes() == crashed.records[offset]
            if cut in (start, start + 1, end - 1):
                assert [log.read(i).record_bytes() for i in range(kept)] == crashed.records[:kept]
                assert log.verify() == kept
        shutil.rmtree(directory)


def test_recovered_log_keeps_working_and_remembers(tmp_path: Path) -> None:
    crashed = Crashed(tmp_path)
    start, end = crashed.last_frame
    directory = crashed.copy_cut_at(start + 3)
    kept = crashed.size - 1
    with open_at(directory) as log:
        assert log.generation == 1
        log.append_batch([b"after recovery", b"more", b"and more"])
        # One data record since the last checkpoint was kept; three more make four.
        assert log.read(kept + 3).header.kind.name == "CHECKPOINT"
        assert log.read(kept).header.prev_hash == crashed.heads[kept - 1]
        assert log.verify() == log.size
        size = log.size
    with open_at(directory) as log:
        assert log.size == size
        assert log.generation == 1
        assert len(log.recoveries()) == 1
        assert log.verify() == size
    # A second torn tail makes a second recovery, generation 2.
    newest = open_at(directory)
    before = saved_mark(directory)
    newest.append(b"never acknowledged")
    last = newest.segments()[-1]
    newest.abandon()
    unacknowledge(directory, before)
    last_start, last_end = frames(last.path)[-1]
    os.truncate(last.path, last_end - 1)
    with open_at(directory) as log:
        assert log.generation == 2
        assert [int(r.generation) for r in log.recoveries()] == [1, 2]
        assert log.recoveries()[1].discarded_bytes == (last.path.name, last_start, last_end - 1)
    # recovery.vrec is length ‖ crc32 ‖ JSON per record (docs/formats.md §4.4).
    data = (directory / "recovery.vrec").read_bytes()
    length, crc = struct.unpack_from(">II", data)
    body = data[8 : 8 + length]
    assert zlib.crc32(body) == crc
    fields = json.loads(body)
    assert fields["generation"] == 1
    assert fields["discarded_range"] == [kept, kept + 1]
    assert fields["reason"] == "node_restart"
    del end


def test_torn_only_record_of_a_new_segment_leaves_it_empty(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    log = open_at(directory, now=T0, checkpoint_policy=CheckpointPolicy(explicit_only=True))
    while len(log.segments()) < 3 or log.segments()[-1].record_count != 1:
        before = saved_mark(directory)
        log.append(b"x" * 200)
    newest = log.segments()[-1]
    size = log.size
    head_before = log.read(size - 2).chain_hash()
    log.abandon()
    unacknowledge(directory, before)
    os.truncate(newest.path, 30)
    with open_at(directory, checkpoint_policy=CheckpointPolicy(explicit_only=True)) as log:
        assert log.size == size - 1
        assert log.segments()[-1].byte_size == 0
        assert log.head_hash == head_before
        assert log.recoveries()[0].discarded_range == (size - 1, size)
        log.append(b"new")
        assert log.verify() == size


def test_a_stale_index_from_an_earlier_clean_close_is_not_trusted(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    with open_at(directory, now=T0) as log:
        log.append_batch([b"a", b"b"])
        size = log.size
        segment = log.segments()[-1].path
        clean_bytes = log.segments()[-1].byte_size
    index = segment.with_suffix(".vidx")
    assert index.exists()
    log = open_at(directory, now=T0 + 10)
    log.append(b"c")
    assert not index.exists()  # the first append forgets the clean-close index
    log.abandon()
    with open_at(directory) as log:
        assert log.size == size + 1
    log = open_at(directory, now=T0 + 20)
    before = saved_mark(directory)
    log.append(b"d")
    log.abandon()
    unacknowledge(directory, before)
    # Exactly where the first clean close left it: "c" was acknowledged, so this is
    # lost history, refused, not a clean shutdown and not a torn tail.
    os.truncate(segment, clean_bytes)
    with pytest.raises(HistoryLost) as caught:
        open_at(directory)
    assert (caught.value.first_lost, caught.value.end_lost) == (size, size + 1)
    assert segment.stat().st_size == clean_bytes
    assert not (directory / "recovery.vrec").exists()


def test_a_bad_frame_with_good_frames_after_it_is_not_truncated(tmp_path: Path) -> None:
    crashed = Crashed(tmp_path)
    segment_frames = frames(crashed.pristine / crashed.newest_name)
    assert len(segment_frames) >= 3
    middle_start, _ = segment_frames[1]
    for where in (middle_start + 2, middle_start + 20, middle_start + 70):
        directory = crashed.copy_cut_at(segment_frames[-1][1])  # no cut: the whole file
        path = directory / crashed.newest_name
        data = bytearray(path.read_bytes())
        data[where] ^= 0x40
        path.write_bytes(bytes(data))
        with pytest.raises(CorruptionError) as caught:
            open_at(directory)
        assert caught.value.file == str(path)
        assert caught.value.byte_offset == middle_start
        assert caught.value.record_offset == crashed.newest_first + 1
        assert path.stat().st_size == len(data)
        assert not (directory / "recovery.vrec").exists()


def test_a_crc_valid_frame_with_the_wrong_offset_is_not_a_torn_tail(tmp_path: Path) -> None:
    crashed = Crashed(tmp_path)
    start, end = crashed.last_frame
    directory = crashed.copy_cut_at(end)
    path = directory / crashed.newest_name
    data = bytearray(path.read_bytes())
    struct.pack_into(">Q", data, start + 8, 999)
    struct.pack_into(">I", data, start + 4, zlib.crc32(bytes(data[start + 8 : end])))
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="offset 999"):
        open_at(directory)
    assert path.stat().st_size == end


def test_a_damaged_recovery_file_is_corruption(tmp_path: Path) -> None:
    crashed = Crashed(tmp_path)
    start, _ = crashed.last_frame
    directory = crashed.copy_cut_at(start + 5)
    open_at(directory).close()
    recovery = directory / "recovery.vrec"
    data = bytearray(recovery.read_bytes())
    data[-2] ^= 0x01
    recovery.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as caught:
        open_at(directory)
    assert caught.value.file == str(recovery)


def test_open_after_a_crash_reads_no_sealed_record_when_the_list_was_rebuilt(
    tmp_path: Path,
) -> None:
    # A rebuilt checkpoint list holds one coverage mark, at the size it was rebuilt
    # at. After a crash in the active segment that mark lies past the records open
    # trusts unscanned; it still vouches for the sealed segments below them, so open
    # reads none of their records, and a damaged one is verify's to report.
    directory = tmp_path / "log"
    with open_at(directory, now=T0) as log:
        log.append_batch([b"sealed %d " % i * 9 for i in range(60)])
        assert len(log.segments()) >= 3
        first_sealed = log.segments()[0]
    (directory / "checkpoints.vcpt").unlink()
    log = open_at(directory, now=T0 + 10)
    log.append(b"after the rebuild")
    before = saved_mark(directory)
    log.append(b"never returns")
    size = log.size
    log.abandon()
    unacknowledge(directory, before)
    _, end = frames(first_sealed.path)[1]
    with open(first_sealed.path, "r+b") as handle:
        handle.seek(end - 1)
        last = handle.read(1)
        handle.seek(end - 1)
        handle.write(bytes([last[0] ^ 1]))
    with open_at(directory) as log:
        assert log.size == size
        with pytest.raises(CorruptionError) as caught:
            log.verify()
        assert caught.value.record_offset == 1
        assert log.read(size - 1).payload == b"never returns"
