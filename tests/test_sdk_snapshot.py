"""Kernel snapshots: a tenant reopens from its snapshot plus the later records, never differently.

`kernel.vsnap` (docs/formats.md §5.4) is derived data: every answer a tenant
gives after opening from it equals the answer a full replay of the log gives,
and a snapshot that is damaged or belongs to another history is ignored.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path

import pytest

import verity
from verity import DataClass, IdempotencyId, StreamId, TenantId
from verity.errors import CorruptionError, HistoryLost

T1 = TenantId(1)
START_NS = 1_767_225_600_000_000_000
HOUR_NS = 3_600 * 1_000_000_000


class FakeClock:
    def __init__(self, now: int = START_NS) -> None:
        self.now = now

    def __call__(self) -> int:
        self.now += 1_000_000
        return self.now


def key(number: int) -> IdempotencyId:
    return IdempotencyId(number.to_bytes(16, "big"))


def write(folder: Path, seed: int, appends: int, clock: FakeClock) -> verity.Verity:
    """An open database with streams of several classes, keyed and plain appends, and SQL."""
    rng = random.Random(seed)
    db = verity.open(folder, clock=clock, create=True)
    t = db.tenant(T1, create=True)
    streams = [s.stream_id for s in t.streams()]
    if not streams:
        streams = [
            t.create_stream(f"s{number}", data_class)
            for number, data_class in enumerate([DataClass.PUBLIC, DataClass.PHI, DataClass.PII])
        ]
        t.execute("CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT)")
    for _ in range(appends):
        stream = rng.choice(streams)
        events = [rng.randbytes(rng.randrange(1, 40)) for _ in range(rng.randrange(1, 4))]
        if rng.random() < 0.5:
            t.append(stream, events, idempotency_id=key(rng.randrange(10_000)))
        else:
            t.append(stream, events)
        if rng.random() < 0.1:
            row = rng.randrange(1_000_000)
            t.execute("INSERT INTO notes VALUES (?, ?)", [row, f"note {row}"])
    return db


def answers(folder: Path, clock: FakeClock | None = None) -> dict[str, object]:
    with verity.open(folder, clock=clock or FakeClock(START_NS + 100 * HOUR_NS), create=True) as db:
        t = db.tenant(T1, create=True)
        found: dict[str, object] = {"streams": t.streams(), "log size": t.log_size()}
        for info in t.streams():
            found[f"events {info.name}"] = t.read_events(info.stream_id, max_bytes=1 << 30)
            found[f"events {info.name} from 7"] = t.read_events(info.stream_id, verity.Offset(7))
        found["committed"] = [t.committed(key(number)) for number in range(10_000)]
        found["rows"] = t.query("SELECT * FROM notes ORDER BY id").rows
        return found


def snapshot_of(folder: Path) -> Path:
    [path] = folder.glob("**/tenant-1/kernel.vsnap")
    return path


def without_snapshot(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    snapshot_of(to).unlink()
    return to


def test_a_clean_close_writes_a_snapshot_and_reopening_answers_as_a_full_replay(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "db"
    write(folder, seed=1, appends=400, clock=FakeClock()).close()
    assert snapshot_of(folder).stat().st_size > 0
    replayed = without_snapshot(folder, tmp_path / "replayed")
    assert answers(folder) == answers(replayed)


def test_records_after_the_snapshot_are_replayed_after_a_crash(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    clock = FakeClock()
    write(folder, seed=2, appends=300, clock=clock).close()
    crashed = write(folder, seed=3, appends=300, clock=clock)
    crashed._abandon()  # type: ignore[attr-defined]
    replayed = without_snapshot(folder, tmp_path / "replayed")
    assert answers(folder) == answers(replayed)
    assert answers(folder)["log size"] == answers(replayed)["log size"]


def test_the_snapshot_spares_the_open_from_reading_old_records(tmp_path: Path) -> None:
    """Opening does not re-read what the snapshot covers; verify() still checks all of it."""
    folder = tmp_path / "db"
    write(folder, seed=4, appends=200, clock=FakeClock()).close()
    [segment] = folder.glob("**/tenant-1/log/*.vlog")
    data = bytearray(segment.read_bytes())
    data[len(data) // 3] ^= 0x20
    segment.write_bytes(bytes(data))
    with verity.open(folder, create=True) as db:
        t = db.tenant(T1, create=True)  # opens: the flipped record is before the snapshot
        assert len(t.streams()) == 3
        report = db.verify()
        assert not report.ok and report.first_bad is not None
        assert report.first_bad.file == str(segment)
    snapshot_of(folder).unlink()
    with pytest.raises(CorruptionError), verity.open(folder, create=True) as db:
        db.tenant(T1, create=True)  # a full replay reads it


@pytest.mark.parametrize("damage", ["flip", "cut", "garbage"])
def test_a_damaged_snapshot_is_ignored_with_a_warning(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "db"
    write(folder, seed=5, appends=200, clock=FakeClock()).close()
    expected = answers(without_snapshot(folder, tmp_path / "replayed"))
    path = snapshot_of(folder)
    data = bytearray(path.read_bytes())
    rng = random.Random(damage)
    for trial in range(12):
        damaged = bytearray(data)
        if damage == "flip":
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        elif damage == "cut":
            del damaged[rng.randrange(len(damaged)) :]
        else:
            damaged = bytearray(rng.randbytes(rng.randrange(0, 200)))
        path.write_bytes(bytes(damaged))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="verity"):
            assert answers(folder) == expected, trial
        assert any("ignoring kernel snapshot" in r.getMessage() for r in caplog.records)
        path.write_bytes(bytes(data))


def test_a_snapshot_of_another_history_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    write(first, seed=6, appends=300, clock=FakeClock()).close()
    write(second, seed=7, appends=100, clock=FakeClock(START_NS + 5)).close()
    expected = answers(second)
    shutil.copy(snapshot_of(first), snapshot_of(second))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="verity"):
        assert answers(second) == expected
    assert any("does not hold" in r.getMessage() for r in caplog.records)


def test_a_snapshot_of_more_records_than_the_log_holds_is_lost_history(tmp_path: Path) -> None:
    # The snapshot was written at a clean close, of this very log (it names its record
    # 0): a log that now holds fewer records lost acknowledged ones, even with the
    # durability mark gone too.
    folder = tmp_path / "db"
    write(folder, seed=8, appends=120, clock=FakeClock()).close()
    log = next(folder.rglob("log"))
    segment = sorted(log.glob("*.vlog"))[-1]
    (log / "durable.vmark").unlink()
    (log / "checkpoints.vcpt").unlink()
    for index in log.glob("*.vidx"):
        index.unlink()
    os.truncate(segment, segment.stat().st_size // 2)
    with pytest.raises(HistoryLost, match="kernel snapshot") as caught, verity.open(folder) as db:
        db.tenant(T1)
    assert caught.value.first_lost < caught.value.end_lost


def test_an_open_refused_for_lost_history_sets_no_store_aside_and_changes_no_file(
    tmp_path: Path,
) -> None:
    # The log put back from a copy taken at a clean close, under the newer snapshot and
    # the store that applied a SQL write made since: the store names a record this log
    # does not hold, but the log is not whole. The open is refused before the store is
    # judged: nothing is set aside, no page key replaced, and putting the newer log
    # back (the remedy) opens the tenant with its store as it was.
    folder = tmp_path / "db"
    write(folder, seed=9, appends=20, clock=FakeClock()).close()
    log = next(folder.rglob("log"))
    older = tmp_path / "older-log"
    shutil.copytree(log, older)
    with verity.open(folder, clock=FakeClock(START_NS + HOUR_NS)) as db:
        db.tenant(T1).execute("INSERT INTO notes VALUES (1, 'after the copy')")
    newer = tmp_path / "newer-log"
    shutil.move(log, newer)
    shutil.copytree(older, log)
    tenant_folder = log.parent

    def files() -> dict[str, bytes]:
        return {
            str(path.relative_to(tenant_folder)): path.read_bytes()
            for path in sorted(tenant_folder.rglob("*"))
            if path.is_file()
        }

    before = files()
    with pytest.raises(HistoryLost, match="kernel snapshot"), verity.open(folder) as db:
        db.tenant(T1)
    assert files() == before
    assert not list(tenant_folder.glob("store.*"))
    shutil.rmtree(log)
    shutil.move(newer, log)
    with verity.open(folder) as db:
        rows = db.tenant(T1).query("SELECT body FROM notes WHERE id = 1").rows
    assert rows == [("after the copy",)]
    assert not list(tenant_folder.glob("store.*"))


def test_a_snapshot_taken_under_another_retention_is_not_used(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    clock = FakeClock()
    db = verity.open(folder, clock=clock, idempotency_retention_ns=HOUR_NS, create=True)
    t = db.tenant(T1, create=True)
    stream: StreamId = t.create_stream("keyed", DataClass.PUBLIC)
    t.append(stream, [b"early"], idempotency_id=key(1))
    clock.now += 2 * HOUR_NS
    t.append(stream, [b"late"], idempotency_id=key(2))
    db.close()
    # Under a one-hour retention the first id is forgotten; under a day it is not.
    with verity.open(folder, clock=clock, idempotency_retention_ns=HOUR_NS, create=True) as db:
        assert db.tenant(T1, create=True).committed(key(1)) is None
    with verity.open(folder, clock=clock, idempotency_retention_ns=24 * HOUR_NS, create=True) as db:
        assert db.tenant(T1, create=True).committed(key(1)) == 0
        assert db.tenant(T1, create=True).committed(key(2)) == 1


def test_a_deleted_store_is_rebuilt_in_full_even_when_the_snapshot_fits(tmp_path: Path) -> None:
    """The snapshot vouches for the store only while the store applied what it recorded."""
    folder = tmp_path / "db"
    write(folder, seed=8, appends=400, clock=FakeClock()).close()
    expected = answers(folder)
    [store] = folder.glob("**/tenant-1/store")
    shutil.rmtree(store)
    assert answers(folder) == expected
    assert len(expected["rows"]) > 10  # type: ignore[arg-type]


def test_a_snapshot_the_disk_refuses_only_costs_a_longer_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "db"
    db = write(folder, seed=9, appends=100, clock=FakeClock())
    [tenant_folder] = folder.glob("**/tenant-1")
    (tenant_folder / "kernel.vsnap").mkdir()  # the atomic rename onto it fails
    with caplog.at_level(logging.WARNING, logger="verity"):
        db.close()  # closes cleanly all the same
    assert any("could not write kernel snapshot" in r.getMessage() for r in caplog.records)
    (tenant_folder / "kernel.vsnap").rmdir()
    replayed = without_snapshot_copy(folder, tmp_path / "copy")
    assert answers(folder) == answers(replayed)


def without_snapshot_copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    for snapshot in to.glob("**/kernel.vsnap"):
        snapshot.unlink()
    return to
