"""A damaged projection store is set aside and rebuilt from the log, with identical answers.

The store is derived data (docs/sdk.md): a flipped byte or a cut page file,
found on open or by a later read, must never become a wrong answer or a dead
tenant. The damaged folder is kept for inspection and one warning names it.
A damaged *log* is never treated this way: that is the truth, and it is
reported.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

import verity
from verity import TenantId
from verity.crypto import GCM_TAG_BYTES, PAGE_NONCE_BYTES
from verity.errors import ClosedError, CorruptionError
from verity.store import Store

T1 = TenantId(1)
# A sealed store page on disk: 4 KiB of plain page, its nonce and its GCM tag.
PAGE_BYTES = 4096 + PAGE_NONCE_BYTES + GCM_TAG_BYTES
QUESTIONS = [
    "SELECT * FROM patients",
    "SELECT name FROM patients WHERE id = 17",
    "SELECT id FROM patients WHERE ward = 'ward-3' ORDER BY id",
    "SELECT COUNT(*) FROM patients",
]


def build(folder: Path) -> list[int]:
    """A tenant with enough rows for several store pages; returns some past positions."""
    positions = []
    with verity.open(folder, create=True) as db:
        t = db.tenant(T1, create=True)
        t.execute("CREATE TABLE patients (id BIGINT PRIMARY KEY, name TEXT, ward TEXT)")
        t.execute("CREATE INDEX by_ward ON patients (ward)")
        for start in range(0, 600, 100):
            rows = ", ".join(
                f"({i}, 'patient-{i:04d}-{'x' * 40}', 'ward-{i % 7}')"
                for i in range(start, start + 100)
            )
            positions.append(int(t.execute(f"INSERT INTO patients VALUES {rows}").offset))
        positions.append(int(t.execute("UPDATE patients SET ward = 'icu' WHERE id < 50").offset))
        positions.append(int(t.execute("DELETE FROM patients WHERE id >= 550").offset))
    return positions


def answers(folder: Path, positions: list[int]) -> list[object]:
    with verity.open(folder, create=True) as db:
        t = db.tenant(T1, create=True)
        found: list[object] = [t.query(sql).rows for sql in QUESTIONS]
        found += [t.query_at(QUESTIONS[0], [], position).rows for position in positions]
        found.append(t.explain(QUESTIONS[1]))
        assert db.verify().ok
        return found


def page_file(folder: Path) -> Path:
    [pages] = folder.glob("**/tenant-1/store/pages.vstore")
    return pages


def flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x5A
    path.write_bytes(bytes(data))


def forget_cached_pages(t: verity.TenantHandle) -> None:
    """Drop decoded pages, as a cache too small for the table would: reads go to the file."""
    t._store._pager.cache.clear()  # type: ignore[attr-defined]


def set_aside(folder: Path) -> list[Path]:
    return sorted(folder.glob("**/tenant-1/store.damaged-*"))


def store_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "projection store" in r.getMessage()]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int], list[object]]:
    folder = tmp_path_factory.mktemp("pristine") / "db"
    positions = build(folder)
    return folder, positions, answers(folder, positions)


def test_a_flipped_byte_in_any_page_is_rebuilt_with_identical_answers(
    tmp_path: Path,
    pristine: tuple[Path, list[int], list[object]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, positions, expected = pristine
    pages = page_file(source).stat().st_size // PAGE_BYTES
    assert pages >= 8  # superblocks and several tree pages
    rebuilt = 0
    for page in range(pages):
        work = tmp_path / f"page-{page}"
        shutil.copytree(source, work)
        flip(page_file(work), page * PAGE_BYTES + 100 + page % 3000)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="verity"):
            assert answers(work, positions) == expected, f"page {page}"
        # The superblock has four copies: one bad copy is no damage at all.
        if store_warnings(caplog):
            rebuilt += 1
            [aside] = set_aside(work)
            assert (aside / "pages.vstore").exists()
            assert "damaged" in store_warnings(caplog)[0]
    # Spare superblock copies and pages copy-on-write left free are never read:
    # a flip there changes no answer. Every other flip was found and rebuilt.
    assert rebuilt >= pages // 2, (rebuilt, pages)


def test_a_truncated_page_file_is_rebuilt(
    tmp_path: Path,
    pristine: tuple[Path, list[int], list[object]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, positions, expected = pristine
    for kept in (0, 100, 3 * PAGE_BYTES + 7, page_file(source).stat().st_size - 1):
        work = tmp_path / f"cut-{kept}"
        shutil.copytree(source, work)
        with page_file(work).open("r+b") as cut:
            cut.truncate(kept)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="verity"):
            assert answers(work, positions) == expected, f"cut at {kept}"
        assert len(store_warnings(caplog)) == 1
        assert len(set_aside(work)) == 1


def test_damage_after_open_is_rebuilt_on_the_next_read_and_writes_go_on(
    tmp_path: Path,
    pristine: tuple[Path, list[int], list[object]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, _, expected = pristine
    work = tmp_path / "db"
    shutil.copytree(source, work)
    # A store with a tiny page cache, so later reads go to the file.
    with verity.open(work, create=True) as db, caplog.at_level(logging.WARNING, logger="verity"):
        t = db.tenant(T1, create=True)
        pages = page_file(work)
        size = pages.stat().st_size
        for position in range(8 * PAGE_BYTES + 50, size, PAGE_BYTES):
            flip(pages, position)
        forget_cached_pages(t)
        assert [t.query(sql).rows for sql in QUESTIONS] == expected[: len(QUESTIONS)]
        assert store_warnings(caplog), "the damage was read and must have been reported"
        receipt = t.execute("INSERT INTO patients VALUES (9000, 'late', 'ward-1')")
        assert t.query_at("SELECT name FROM patients WHERE id = 9000", [], receipt.offset).rows == [
            ("late",)
        ]
    assert len(set_aside(work)) == 1
    with verity.open(work, create=True) as db:
        assert db.tenant(T1, create=True).query("SELECT COUNT(*) FROM patients").rows == [(551,)]


def test_a_damaged_log_is_reported_not_rebuilt_around(
    tmp_path: Path, pristine: tuple[Path, list[int], list[object]]
) -> None:
    """The store rebuild reads the log; a flipped record there raises, naming the segment."""
    source, _, _ = pristine
    work = tmp_path / "db"
    shutil.copytree(source, work)
    [segment] = work.glob("**/tenant-1/log/*.vlog")
    flip(segment, segment.stat().st_size // 2)
    shutil.rmtree(page_file(work).parent)
    with pytest.raises(CorruptionError) as caught, verity.open(work, create=True) as db:
        db.tenant(T1, create=True)
    assert caught.value.file == str(segment)
    assert set_aside(work) == []
    with verity.open(work, create=True) as db:
        report = db.verify()
    assert not report.ok and report.first_bad is not None
    assert report.first_bad.file == str(segment)


LATE_ROW = "INSERT INTO patients VALUES (9000, 'late', 'ward-1')"


def test_a_write_meeting_damage_anywhere_is_appended_exactly_once(
    tmp_path: Path,
    pristine: tuple[Path, list[int], list[object]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Damage met by the write's checks (nothing appended yet), by applying it (already
    in the log) or by the commit at close: one record, and the row is there after."""
    source, _, _ = pristine
    pages = page_file(source).stat().st_size // PAGE_BYTES
    warned = 0
    for page in range(pages):
        work = tmp_path / f"page-{page}"
        shutil.copytree(source, work)
        caplog.clear()
        with (
            verity.open(work, create=True) as db,
            caplog.at_level(logging.WARNING, logger="verity"),
        ):
            t = db.tenant(T1, create=True)
            size_before = t.log_size()
            flip(page_file(work), page * PAGE_BYTES + 200)
            forget_cached_pages(t)
            assert t.execute(LATE_ROW).rows_affected == 1
            assert t.log_size() == size_before + 1, f"page {page}"
            assert t.query("SELECT name FROM patients WHERE id = 9000").rows == [("late",)]
        with verity.open(work, create=True) as db:
            t = db.tenant(T1, create=True)
            assert t.query("SELECT COUNT(*) FROM patients").rows == [(551,)], f"page {page}"
            assert t.query("SELECT id FROM patients WHERE ward = 'ward-1' AND id >= 9000").rows == [
                (9000,)
            ]
        if store_warnings(caplog):
            warned += 1
            assert len(set_aside(work)) == 1
    # The insert reads a few pages only: data and index leaves, their branches, the catalog.
    assert warned >= 3, warned


def test_damage_found_after_the_append_is_rebuilt_not_appended_again(
    tmp_path: Path,
    pristine: tuple[Path, list[int], list[object]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The record is in the log when applying it meets the damage: the rebuild applies it."""
    source, positions, expected = pristine
    work = tmp_path / "db"
    shutil.copytree(source, work)
    pages = page_file(work)
    real_write_batch = Store.write_batch
    failures = [CorruptionError("page 9: checksum mismatch", file=str(pages), byte_offset=9)]

    def write_batch_meeting_damage_once(store: Store, *args: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop()
        real_write_batch(store, *args, **kwargs)

    with verity.open(work, create=True) as db, caplog.at_level(logging.WARNING, logger="verity"):
        t = db.tenant(T1, create=True)
        size_before = t.log_size()
        monkeypatch.setattr(Store, "write_batch", write_batch_meeting_damage_once)
        receipt = t.execute(LATE_ROW)
        assert failures == [], "the damage was met"
        assert t.log_size() == size_before + 1
        assert int(receipt.offset) == size_before
        assert t.query("SELECT name FROM patients WHERE id = 9000").rows == [("late",)]
        assert t.query(QUESTIONS[3]).rows == [(551,)]
        assert t.query_at(QUESTIONS[0], [], positions[-1]).rows == expected[0]
    assert len(set_aside(work)) == 1
    assert any(str(pages) in warning for warning in store_warnings(caplog))


def test_damage_found_by_sync_or_close_loses_no_acknowledged_write(
    tmp_path: Path,
    pristine: tuple[Path, list[int], list[object]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A commit reads catalog pages: damage there is rebuilt (sync) or set aside (close)."""
    source, _, _ = pristine
    for ending in ("sync", "close"):
        work = tmp_path / ending
        shutil.copytree(source, work)
        caplog.clear()
        with (
            verity.open(work, create=True) as db,
            caplog.at_level(logging.WARNING, logger="verity"),
        ):
            t = db.tenant(T1, create=True)
            t.execute(LATE_ROW)
            pages = page_file(work)
            # Every page but the superblocks: whatever the commit reads is damaged.
            for position in range(4 * PAGE_BYTES + 50, pages.stat().st_size, PAGE_BYTES):
                flip(pages, position)
            forget_cached_pages(t)
            if ending == "sync":
                db.sync()
                assert t.query("SELECT COUNT(*) FROM patients").rows == [(551,)]
        assert len(store_warnings(caplog)) == 1, ending
        assert len(set_aside(work)) == 1, ending
        with verity.open(work, create=True) as db:
            t = db.tenant(T1, create=True)
            assert t.query("SELECT name FROM patients WHERE id = 9000").rows == [("late",)]
            assert t.query("SELECT COUNT(*) FROM patients").rows == [(551,)]


def test_a_damaged_log_met_by_a_rebuild_on_an_open_tenant_is_raised_and_nothing_stale_answers(
    tmp_path: Path, pristine: tuple[Path, list[int], list[object]]
) -> None:
    source, _, _ = pristine
    work = tmp_path / "db"
    shutil.copytree(source, work)
    [segment] = work.glob("**/tenant-1/log/*.vlog")
    with verity.open(work, create=True) as db:
        t = db.tenant(T1, create=True)
        pages = page_file(work)
        for position in range(4 * PAGE_BYTES + 50, pages.stat().st_size, PAGE_BYTES):
            flip(pages, position)
        forget_cached_pages(t)
        flip(segment, segment.stat().st_size // 2)
        with pytest.raises(CorruptionError) as caught:
            t.query(QUESTIONS[3])
        assert caught.value.file == str(segment)
        # The half-built store is behind the log: it must not answer, nor plan a write.
        with pytest.raises(ClosedError, match="rebuild from the log failed"):
            t.query(QUESTIONS[3])
        size = t.log_size()
        with pytest.raises(ClosedError, match="rebuild from the log failed"):
            t.execute(LATE_ROW)
        assert t.log_size() == size
    with pytest.raises(CorruptionError) as caught, verity.open(work, create=True) as db:
        db.tenant(T1, create=True)
    assert caught.value.file == str(segment)
