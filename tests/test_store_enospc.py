"""verity.store on a full disk: typed errors, never a position it does not hold, resume.

The scenarios run on a real full tmpfs and, in a child process, past
RLIMIT_FSIZE (tests/_enospc.py). A store that a write failed on closes
itself; reopened, it is at its last durable batch, which `applied()` names,
and the caller re-applies the log from there.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _enospc import Disk, TmpfsDisk, child_main, mount_refusal, mounted_tmpfs, run_in_child

from verity.crypto import PageKey
from verity.errors import ClosedError, StorageError, StorageFull
from verity.store import Change, open_store
from verity.store._store import PAGE_FILE_NAME

DISK_BYTES = 4 * 1024 * 1024
FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG)
PAGE_KEY = bytes(range(32))

SCENARIOS: dict[str, Callable[[Disk, Path], None]] = {}


def scenario(run: Callable[[Disk, Path], None]) -> Callable[[Disk, Path], None]:
    SCENARIOS[run.__name__] = run
    return run


def log_hash(position: int) -> bytes:
    return position.to_bytes(32, "big")


def rows(position: int, count: int, value_bytes: int) -> list[Change]:
    """`count` keys of `value_bytes` each: enough of them make the page file grow."""
    value = f"{position}:".encode().ljust(value_bytes, b"v")
    return [("t", f"k{index:05d}".encode(), value) for index in range(count)]


def check_full(error: StorageError, written: bool | None, page_file: Path) -> None:
    assert isinstance(error, StorageFull) and error.os_error.errno in FULL_ERRNOS, error
    assert error.written is written and error.path == str(page_file), error


@scenario
def a_refused_batch_closes_the_store_and_reopening_resumes(disk: Disk, root: Path) -> None:
    folder = root / "store"
    page_file = folder / PAGE_FILE_NAME
    store = open_store(folder, page_key=PageKey(PAGE_KEY))
    store.write_batch(0, log_hash(0), rows(0, 10, 100))
    disk.fill(around=page_file)
    with pytest.raises(StorageFull) as refused:
        store.write_batch(1, log_hash(1), rows(1, 50, 3000))
    check_full(refused.value, False, page_file)
    # Its memory held batch 1, which is on no disk: it answers for nothing any more.
    assert store.closed
    with pytest.raises(ClosedError):
        store.applied()
    # Opening needs no space: it is at the last durable batch.
    store = open_store(folder, page_key=PageKey(PAGE_KEY))
    assert store.applied() == (0, log_hash(0)) and store.get("t", b"k00049") is None
    disk.free()
    store.write_batch(1, log_hash(1), rows(1, 50, 3000))
    assert store.verify() > 0
    store.close()
    with open_store(folder, page_key=PageKey(PAGE_KEY)) as reopened:
        assert reopened.applied() == (1, log_hash(1))
        assert reopened.get("t", b"k00049") == rows(1, 50, 3000)[49][2]


@scenario
def close_on_a_full_disk_closes_and_keeps_the_last_durable_batch(disk: Disk, root: Path) -> None:
    folder = root / "store"
    page_file = folder / PAGE_FILE_NAME
    store = open_store(folder)
    store.write_batch(0, log_hash(0), rows(0, 10, 100))
    store.write_batch(1, log_hash(1), rows(1, 400, 100), sync=False)
    disk.fill(around=page_file)
    with pytest.raises(StorageFull) as refused:
        store.close()
    check_full(refused.value, False, page_file)
    assert store.closed
    store.close()  # idempotent, no ClosedError
    disk.free()
    with open_store(folder) as reopened:
        assert reopened.applied() == (0, log_hash(0)) and reopened.verify() > 0


@scenario
def reads_go_on_while_pages_wait_for_space(disk: Disk, root: Path) -> None:
    folder = root / "store"
    page_file = folder / PAGE_FILE_NAME
    store = open_store(folder, page_cache_pages=16)
    store.write_batch(0, log_hash(0), rows(0, 10, 100))
    disk.fill(around=page_file)
    # Far more new pages than the cache holds: evicting them would write them, which the
    # disk refuses; they stay cached (over the bound) and reads keep answering.
    store.write_batch(1, log_hash(1), rows(1, 400, 300), sync=False)
    assert store.get("t", b"k00399") == rows(1, 400, 300)[399][2]
    assert len(list(store.scan("t"))) == 400
    with pytest.raises(StorageFull) as refused:
        store.sync()
    check_full(refused.value, False, page_file)
    disk.free()
    with open_store(folder) as reopened:
        assert reopened.applied() == (0, log_hash(0))
        reopened.write_batch(1, log_hash(1), rows(1, 400, 300))
        assert reopened.verify() > 0


@scenario
def a_new_store_on_a_full_disk_leaves_nothing_behind(disk: Disk, root: Path) -> None:
    folder = root / "store"
    disk.fill()
    with pytest.raises(StorageFull) as refused:
        open_store(folder)
    check_full(refused.value, False, folder / PAGE_FILE_NAME)
    assert not (folder / PAGE_FILE_NAME).exists() and not list(folder.glob("*.tmp"))
    disk.free()
    with open_store(folder) as created:
        assert created.applied() is None


@pytest.fixture
def tmpfs_disk(tmp_path: Path) -> Iterator[TmpfsDisk]:
    with mounted_tmpfs(tmp_path / "disk", DISK_BYTES) as disk:
        if disk is None:
            pytest.skip(mount_refusal(tmp_path / "disk"))
        yield disk


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_on_a_full_tmpfs(name: str, tmpfs_disk: TmpfsDisk) -> None:
    SCENARIOS[name](tmpfs_disk, tmpfs_disk.root)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_past_a_file_size_limit(name: str, tmp_path: Path) -> None:
    run_in_child(__file__, name, tmp_path)


if __name__ == "__main__":
    child_main(SCENARIOS)
