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

import pytest

import verity
from verity import TenantId
from verity.errors import CorruptionError

T1 = TenantId(1)
PAGE_BYTES = 4096
QUESTIONS = [
    "SELECT * FROM patients",
    "SELECT name FROM patients WHERE id = 17",
    "SELECT id FROM patients WHERE ward = 'ward-3' ORDER BY id",
    "SELECT COUNT(*) FROM patients",
]


def build(folder: Path) -> list[int]:
    """A tenant with enough rows for several store pages; returns some past positions."""
    positions = []
    with verity.open(folder) as db:
        t = db.tenant(T1)
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
    with verity.open(folder) as db:
        t = db.tenant(T1)
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
    with verity.open(work) as db, caplog.at_level(logging.WARNING, logger="verity"):
        t = db.tenant(T1)
        pages = page_file(work)
        size = pages.stat().st_size
        for position in range(8 * PAGE_BYTES + 50, size, PAGE_BYTES):
            flip(pages, position)
        # Forget decoded pages, as a cache too small for the table would.
        t._store._pager.cache.clear()  # type: ignore[attr-defined]
        assert [t.query(sql).rows for sql in QUESTIONS] == expected[: len(QUESTIONS)]
        assert store_warnings(caplog), "the damage was read and must have been reported"
        receipt = t.execute("INSERT INTO patients VALUES (9000, 'late', 'ward-1')")
        assert t.query_at("SELECT name FROM patients WHERE id = 9000", [], receipt.offset).rows == [
            ("late",)
        ]
    assert len(set_aside(work)) == 1
    with verity.open(work) as db:
        assert db.tenant(T1).query("SELECT COUNT(*) FROM patients").rows == [(551,)]


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
    with pytest.raises(CorruptionError) as caught, verity.open(work) as db:
        db.tenant(T1)
    assert caught.value.file == str(segment)
    assert set_aside(work) == []
    with verity.open(work) as db:
        report = db.verify()
    assert not report.ok and report.first_bad is not None
    assert report.first_bad.file == str(segment)
