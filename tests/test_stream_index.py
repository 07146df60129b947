"""The stream event index, `streams.vsix` (docs/formats.md §5.5): derived, never trusted blindly.

Every test compares what `read_events` answers with the events the test
appended, after the index file was deleted, damaged, made stale or left
behind by a crash: the answers never change, only the file is rebuilt.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import stat
import struct
import tempfile
import zlib
from pathlib import Path

import pytest

import verity
from verity import DataClass, Offset, StreamId, TenantId
from verity._snapshot import SNAPSHOT_FILE

T1 = TenantId(1)
INDEX_FILE = "streams.vsix"
HEADER_BYTES = 128
EXTENT_HEAD_BYTES = 16
ENTRY_BYTES = 16
Model = dict[StreamId, list[bytes]]


def append_some(t: verity.TenantHandle, model: Model, seed: int, appends: int) -> None:
    """`appends` appends of 1-3 events to random streams, recorded in `model`."""
    rng = random.Random(seed)
    streams = list(model)
    for _ in range(appends):
        stream = rng.choice(streams)
        events = [rng.randbytes(rng.randrange(1, 30)) for _ in range(rng.randrange(1, 4))]
        t.append(stream, events)
        model[stream].extend(events)


def write(folder: Path, seed: int, appends: int) -> tuple[verity.Verity, Model]:
    """An open database whose tenant has a PUBLIC and a PHI stream with `appends` appends."""
    db = verity.open(folder, create=True)
    t = db.tenant(T1, create=True)
    model: Model = {
        t.create_stream("public", DataClass.PUBLIC): [],
        t.create_stream("phi", DataClass.PHI): [],
    }
    append_some(t, model, seed, appends)
    return db, model


def read_all(t: verity.TenantHandle, stream: StreamId, from_offset: int) -> list[bytes]:
    return t.read_events(stream, Offset(from_offset), max_bytes=1 << 30)


def assert_answers(t: verity.TenantHandle, model: Model) -> None:
    """Every stream read from every fifth offset, and one event at a time, equals the model."""
    for stream, events in model.items():
        for start in range(0, len(events) + 1, 5):
            assert read_all(t, stream, start) == events[start:]
        assert [t.read_events(stream, Offset(n), max_bytes=1)[0] for n in range(len(events))] == (
            events
        )


def index_of(folder: Path) -> Path:
    [path] = folder.glob(f"**/tenant-1/{INDEX_FILE}")
    return path


def check_reopened(folder: Path, model: Model) -> None:
    with verity.open(folder) as db:
        assert_answers(db.tenant(T1), model)


def test_events_come_back_through_the_index_from_any_offset(tmp_path: Path) -> None:
    # 300 appends spread over two streams fill several extents (8, 16, 32, ... entries).
    db, model = write(tmp_path / "db", seed=1, appends=300)
    t = db.tenant(T1)
    assert_answers(t, model)
    stream = next(iter(model))
    # max_bytes still returns at least one event; 0 returns none.
    assert t.read_events(stream, Offset(0), max_bytes=0) == []
    db.close()


def test_reopening_answers_as_before(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    db, model = write(folder, seed=2, appends=200)
    db.close()
    check_reopened(folder, model)
    # The reopened index takes further appends where it left off.
    with verity.open(folder) as db:
        append_some(db.tenant(T1), model, seed=3, appends=100)
    check_reopened(folder, model)


def test_the_index_is_an_owner_only_file_of_the_tenant(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # even a permissive umask gets no group or other bits
    try:
        db, _ = write(tmp_path / "db", seed=4, appends=20)
        db.close()
    finally:
        os.umask(old_umask)
    path = index_of(tmp_path / "db")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.parent.name == "tenant-1"


def test_a_deleted_index_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    db, model = write(folder, seed=5, appends=150)
    db.close()
    index_of(folder).unlink()
    check_reopened(folder, model)
    assert index_of(folder).stat().st_size > HEADER_BYTES


def test_an_index_deleted_with_the_snapshot_is_rebuilt_too(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    db, model = write(folder, seed=6, appends=150)
    db.close()
    index_of(folder).unlink()
    next(folder.glob(f"**/tenant-1/{SNAPSHOT_FILE}")).unlink()
    check_reopened(folder, model)


def flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_header_is_rebuilt_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "db"
    db, model = write(folder, seed=7, appends=150)
    db.close()
    flip(index_of(folder), 20)  # inside the covered size
    with caplog.at_level(logging.WARNING, logger="verity"):
        check_reopened(folder, model)
    assert any("damaged header" in r.getMessage() for r in caplog.records)


def test_a_damaged_extent_header_is_rebuilt_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "db"
    db, model = write(folder, seed=8, appends=150)
    db.close()
    flip(index_of(folder), HEADER_BYTES + 3)  # the first extent's stream id
    with caplog.at_level(logging.WARNING, logger="verity"):
        check_reopened(folder, model)
    assert any("damaged extent header" in r.getMessage() for r in caplog.records)


def extent_starts(path: Path) -> list[int]:
    """Where each allocated extent of the index file begins (docs/formats.md §5.8)."""
    data = path.read_bytes()
    starts = []
    position = HEADER_BYTES
    while position + EXTENT_HEAD_BYTES <= len(data):
        _, ordinal, crc = struct.unpack_from("=QII", data, position)
        if crc == 0:
            break
        starts.append(position)
        position += EXTENT_HEAD_BYTES + ENTRY_BYTES * min(8 << ordinal, 65_536)
    return starts


@pytest.mark.parametrize("keep_extents", [1, 2, -1])
def test_an_index_cut_at_an_extent_boundary_is_rebuilt_not_believed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, keep_extents: int
) -> None:
    # Whole extents gone, every remaining one intact: only the header's entry
    # count shows that entries below P are missing.
    folder = tmp_path / "db"
    db, model = write(folder, seed=9, appends=150)
    db.close()
    path = index_of(folder)
    starts = extent_starts(path)
    assert len(starts) >= 4
    os.truncate(path, starts[keep_extents])
    with caplog.at_level(logging.WARNING, logger="verity"), verity.open(folder) as db:
        t = db.tenant(T1)
        append_some(t, model, seed=10, appends=20)  # records past P are indexed on top
        assert_answers(t, model)
    assert any("its header vouches for" in r.getMessage() for r in caplog.records)
    check_reopened(folder, model)


@pytest.mark.parametrize("field", ["first stream offset", "log offset"])
def test_a_damaged_entry_is_caught_by_the_read_that_uses_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, field: str
) -> None:
    """An entry's CRC-free bytes are checked against the record they name, on every read."""
    folder = tmp_path / "db"
    db, model = write(folder, seed=9, appends=150)
    db.close()
    # Entry 3 of the first extent (the first stream's fourth record) names another record.
    entry = HEADER_BYTES + EXTENT_HEAD_BYTES + 3 * ENTRY_BYTES
    flip(index_of(folder), entry + (0 if field == "first stream offset" else 8))
    with caplog.at_level(logging.WARNING, logger="verity"):
        check_reopened(folder, model)
    assert any("rebuilding it from the log" in r.getMessage() for r in caplog.records)


def test_an_index_covering_more_than_the_log_is_stale_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shorter = tmp_path / "shorter"
    db, model = write(shorter, seed=10, appends=100)
    db.close()
    longer = tmp_path / "longer"
    shutil.copytree(shorter, longer)
    with verity.open(longer) as db:
        append_some(db.tenant(T1), {s: [] for s in model}, seed=11, appends=100)
    shutil.copy(index_of(longer), index_of(shorter))
    with caplog.at_level(logging.WARNING, logger="verity"):
        check_reopened(shorter, model)
    assert any("is stale" in r.getMessage() for r in caplog.records)


def test_an_index_of_another_history_is_stale_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, model = write(tmp_path / "one", seed=12, appends=100)
    db.close()
    db, _ = write(tmp_path / "other", seed=13, appends=100)
    db.close()
    shutil.copy(index_of(tmp_path / "other"), index_of(tmp_path / "one"))
    with caplog.at_level(logging.WARNING, logger="verity"):
        check_reopened(tmp_path / "one", model)
    assert any("is stale" in r.getMessage() for r in caplog.records)


def test_an_index_covering_less_than_the_log_catches_up(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    db, model = write(folder, seed=14, appends=100)
    db.close()
    older = tmp_path / "older.vsix"
    shutil.copy(index_of(folder), older)
    with verity.open(folder) as db:
        append_some(db.tenant(T1), model, seed=15, appends=100)
    shutil.copy(older, index_of(folder))
    check_reopened(folder, model)


def test_entries_a_crashed_session_wrote_past_the_log_are_never_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash can leave entries the header does not vouch for; they are cleared, not reused.

    Reads would catch stale entries and rebuild the index (with a warning); here
    nothing needs rebuilding.
    """
    folder = tmp_path / "db"
    db, model = write(folder, seed=16, appends=60)
    db.close()
    before_crash = tmp_path / "before"
    shutil.copytree(folder, before_crash)
    with verity.open(folder) as db:
        append_some(db.tenant(T1), {s: [] for s in model}, seed=17, appends=200)
        db._abandon()  # type: ignore[attr-defined]
    # The log as it was at the clean close, with an index holding the crashed session's
    # entries past it (what a crash between the index writes and the log's fsync leaves).
    shutil.copy(index_of(folder), index_of(before_crash))
    with caplog.at_level(logging.WARNING, logger="verity"):
        check_reopened(before_crash, model)
        with verity.open(before_crash) as db:
            # Only to the second stream: the first keeps its crashed entries past its
            # end, now below the log's end, in the slots its next records would take.
            second = list(model)[1]
            append_some(db.tenant(T1), {second: model[second]}, seed=18, appends=100)
        check_reopened(before_crash, model)
    assert [r.getMessage() for r in caplog.records if "stream index" in r.getMessage()] == []


def folder_contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("index_present", [True, False])
def test_a_reader_writes_nothing_in_the_folder_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index_present: bool
) -> None:
    folder = tmp_path / "db"
    db, model = write(folder, seed=19, appends=100)
    db.close()
    if not index_present:
        index_of(folder).unlink()
    before = folder_contents(folder)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    with verity.open(folder, read_only=True) as db:
        assert_answers(db.tenant(T1), model)
        assert list(temporary.iterdir()) == []  # the private copy is unlinked once open
    assert folder_contents(folder) == before
    assert list(temporary.iterdir()) == []


def test_a_version_2_snapshot_with_stream_indexes_still_restores_the_kernel(
    tmp_path: Path,
) -> None:
    """Snapshots written before the index moved to streams.vsix are read, their indexes skipped."""
    folder = tmp_path / "db"
    db, model = write(folder, seed=20, appends=50)
    db.close()
    snapshot = next(folder.glob(f"**/tenant-1/{SNAPSHOT_FILE}"))
    body = bytearray(snapshot.read_bytes()[:-4])
    assert body[4] == 3
    body[4] = 2
    # Version 2 appended per stream: id, count, then count firsts and count log
    # offsets, little-endian. The counts are not checked against the log: any will do.
    body += struct.pack(">I", len(model))
    for stream in model:
        body += struct.pack(">QQ", stream, 1) + struct.pack("<QQ", 0, 1)
    snapshot.write_bytes(bytes(body) + struct.pack(">I", zlib.crc32(body)))
    check_reopened(folder, model)
