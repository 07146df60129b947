"""The SDK on a full disk (issue 10 §5): typed errors, nothing half-done, writes resume.

Each scenario runs on a real full tmpfs and, in a child process, past
RLIMIT_FSIZE (tests/_enospc.py), through `verity.open`: appends, SQL writes,
checkpoints, snapshots, store pages and close. What a caller is told matches
what the next open finds: a write refused with `written=False` is nowhere, an
acknowledged one is everywhere, and the database keeps answering reads and
verification while the disk is full.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _enospc import Disk, TmpfsDisk, child_main, mount_refusal, mounted_tmpfs, run_in_child

import verity
from verity import CheckpointPolicy, DataClass, IdempotencyId, RecordKind, StreamId, TenantId
from verity.errors import StorageError, StorageFull
from verity.storage import open_log

DISK_BYTES = 8 * 1024 * 1024
FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG)
T1 = TenantId(1)
NOW = 1_767_225_600_000_000_000
BIG = b"x" * 200_000  # bigger than what a filled disk leaves

SCENARIOS: dict[str, Callable[[Disk, Path], None]] = {}


def scenario(run: Callable[[Disk, Path], None]) -> Callable[[Disk, Path], None]:
    SCENARIOS[run.__name__] = run
    return run


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


def open_db(root: Path, **options: object) -> verity.Verity:
    return verity.open(
        root / "db",
        create=True,
        clock=Clock(),
        checkpoint_policy=CheckpointPolicy(every_n_records=1_000),
        **options,  # type: ignore[arg-type]
    )


def full(failure: BaseException, written: bool | None) -> None:
    assert isinstance(failure, StorageFull), repr(failure)
    assert failure.os_error.errno in FULL_ERRNOS, failure
    assert failure.written is written, failure


def file_bytes(path: Path) -> int:
    return path.stat().st_size


def segment_of(root: Path) -> Path:
    return next((root / "db").rglob("*.vlog"))


@scenario
def a_refused_append_is_nowhere_and_writes_resume(disk: Disk, root: Path) -> None:
    db = open_db(root)
    try:
        t = db.tenant(T1, create=True)
        public = t.create_stream("public", DataClass.PUBLIC)
        t.append(public, [b"before"])
        size = t.log_size()
        key = IdempotencyId.generate()
        disk.fill(leave_bytes=4096, around=segment_of(root))
        with pytest.raises(StorageError) as caught:
            t.append(public, [BIG], idempotency_id=key)
        full(caught.value, written=False)
        # Nothing of it anywhere: not the kernel, not the log; reads and verify work.
        assert t.log_size() == size
        assert t.committed(key) is None
        assert t.read_events(public) == [b"before"]
        assert db.verify().ok
        disk.free()
        # Space is back: the same handle writes again, at the same place.
        assert t.append(public, [b"after"]) == 1
        assert t.log_size() == size + 1
    finally:
        db.close()
    with verity.open(root / "db", read_only=True) as reader:
        assert reader.tenant(T1).read_events(StreamId(public)) == [b"before", b"after"]
        assert reader.verify().ok


@scenario
def a_refused_sql_write_is_not_in_the_log_after_reopen(disk: Disk, root: Path) -> None:
    db = open_db(root)
    try:
        t = db.tenant(T1, create=True)
        t.execute("CREATE TABLE r (id BIGINT PRIMARY KEY, v BYTEA)")
        t.execute("INSERT INTO r VALUES (1, ?)", [b"one"])
        disk.fill(leave_bytes=4096, around=segment_of(root))
        with pytest.raises(StorageError) as caught:
            t.execute("INSERT INTO r VALUES (2, ?)", [BIG])
        full(caught.value, written=False)
        assert t.query("SELECT id FROM r").rows == [(1,)]
        disk.free()
        t.execute("INSERT INTO r VALUES (3, ?)", [b"three"])
    finally:
        db.close()
    with verity.open(root / "db") as db:
        assert db.tenant(T1).query("SELECT id FROM r ORDER BY id").rows == [(1,), (3,)]


@scenario
def a_refused_checkpoint_signs_nothing_and_the_next_one_works(disk: Disk, root: Path) -> None:
    db = open_db(root)
    try:
        t = db.tenant(T1, create=True)
        stream = t.create_stream("s", DataClass.PUBLIC)
        t.append(stream, [b"a"])
        size = t.log_size()
        disk.fill(around=segment_of(root))
        with pytest.raises(StorageError) as caught:
            t.checkpoint()
        full(caught.value, written=False)
        assert t.log_size() == size
        disk.free()
        signed = t.checkpoint()
        assert signed.tree_size == size
    finally:
        db.close()


@scenario
def a_sealed_write_that_failed_is_never_resealed_under_its_key(disk: Disk, root: Path) -> None:
    db = open_db(root)
    try:
        t = db.tenant(T1, create=True)
        phi = t.create_stream("phi", DataClass.PHI)
        t.append(phi, [b"first"])
        disk.fill(leave_bytes=8192, around=segment_of(root))
        with pytest.raises(StorageError) as caught:
            t.append(phi, [BIG])  # part of its sealed bytes reach the segment, then go
        full(caught.value, written=False)
        disk.free()
        t.append(phi, [b"second"])
        assert t.read_events(phi) == [b"first", b"second"]
    finally:
        db.close()
    log_dir = next((root / "db").rglob("log"))
    with open_log(log_dir, read_only=True) as log:
        records = [log.read(offset) for offset in range(log.size)]
        sealed = [
            record.payload
            for record in records
            if record.header.kind is RecordKind.DATA and record.payload[:1] == b"\x02"
        ]
    dek_ids = [int.from_bytes(payload[1:5], "big") for payload in sealed]
    assert len(dek_ids) == 2, dek_ids
    assert dek_ids[1] != dek_ids[0]  # the failed write's DEK was retired
    with verity.open(root / "db") as db:
        assert db.tenant(T1).read_events(StreamId(phi)) == [b"first", b"second"]


@scenario
def close_on_a_full_disk_loses_nothing_acknowledged(disk: Disk, root: Path) -> None:
    db = open_db(root)
    t = db.tenant(T1, create=True)
    stream = t.create_stream("s", DataClass.PUBLIC)
    t.execute("CREATE TABLE r (id BIGINT PRIMARY KEY)")
    for index in range(20):
        t.append(stream, [f"event {index}".encode()])
        t.execute(f"INSERT INTO r VALUES ({index})")
    disk.fill(around=segment_of(root))
    with pytest.raises(StorageError):
        t.append(stream, [BIG])
    try:
        db.close()  # snapshot, shutdown checkpoint, store pages: no room for any
    except StorageError as failure:
        assert failure.written is not None, failure  # what is acknowledged is durable
    disk.free()
    with verity.open(root / "db") as db:
        t = db.tenant(T1)
        assert len(t.read_events(StreamId(int(stream)))) == 20
        assert len(t.query("SELECT id FROM r").rows) == 20
        assert db.verify().ok


@scenario
def opening_on_a_full_disk_reads_and_verifies(disk: Disk, root: Path) -> None:
    with open_db(root) as db:
        t = db.tenant(T1, create=True)
        stream = t.create_stream("s", DataClass.PUBLIC)
        t.append(stream, [b"kept"])
    # Under RLIMIT_FSIZE the limit is every file's, a reader's private copies included:
    # let files be as large as the largest the database has, no larger.
    disk.fill(around=max((p for p in (root / "db").rglob("*") if p.is_file()), key=file_bytes))
    with verity.open(root / "db", read_only=True) as reader:
        assert reader.tenant(T1).read_events(StreamId(int(stream))) == [b"kept"]
        assert reader.verify().ok
    with verity.open(root / "db") as db:  # nothing to discard: a writer opens too
        t = db.tenant(T1)
        assert t.read_events(StreamId(int(stream))) == [b"kept"]
        with pytest.raises(StorageError) as caught:
            t.append(stream, [BIG])
        full(caught.value, written=False)
        disk.free()
    with verity.open(root / "db", read_only=True) as reader:
        assert reader.tenant(T1).read_events(StreamId(int(stream))) == [b"kept"]


@scenario
def a_writer_whose_stream_index_is_gone_opens_on_a_full_disk(disk: Disk, root: Path) -> None:
    with open_db(root) as db:
        t = db.tenant(T1, create=True)
        stream = t.create_stream("s", DataClass.PUBLIC)
        t.append(stream, [b"one"])
        t.append(stream, [b"two"])
    next((root / "db").rglob("streams.vsix")).unlink()  # derived: rebuilt from the log
    disk.fill(around=segment_of(root))
    with verity.open(root / "db") as db:
        assert db.tenant(T1).read_events(StreamId(int(stream))) == [b"one", b"two"]
        assert db.verify().ok
        disk.free()


@scenario
def store_pages_that_wait_for_space_catch_up_from_the_log(disk: Disk, root: Path) -> None:
    db = open_db(root)
    try:
        t = db.tenant(T1, create=True)
        t.execute("CREATE TABLE r (id BIGINT PRIMARY KEY, v TEXT)")
        value = "v" * 900
        committed = 0
        # Leave room for the log records but not for every store page: a write the log
        # took is committed even when its pages must wait.
        disk.fill(leave_bytes=96 * 1024)
        for index in range(200):
            try:
                t.execute("INSERT INTO r VALUES (?, ?)", [index, value])
            except StorageError as failure:
                full(failure, written=False)
                break
            committed += 1
        assert committed > 0
        disk.free()
        assert len(t.query("SELECT id FROM r").rows) == committed
    finally:
        db.close()
    with verity.open(root / "db") as db:
        assert len(db.tenant(T1).query("SELECT id FROM r").rows) == committed
        assert db.verify().ok


@pytest.fixture
def tmpfs_disk(tmp_path: Path) -> Iterator[TmpfsDisk]:
    with mounted_tmpfs(tmp_path / "disk", DISK_BYTES) as disk:
        if disk is None:
            pytest.skip(mount_refusal(tmp_path / "disk"))
        yield disk


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_on_a_full_tmpfs(name: str, tmpfs_disk: TmpfsDisk) -> None:
    SCENARIOS[name](tmpfs_disk, tmpfs_disk.root)


# RLIMIT_FSIZE limits every file a process writes, memory files too: the fallback a
# full disk takes (derived data kept in memory, memfd) has no room under it either.
FULL_DISK_ONLY = {"a_writer_whose_stream_index_is_gone_opens_on_a_full_disk"}


@pytest.mark.parametrize("name", sorted(set(SCENARIOS) - FULL_DISK_ONLY))
def test_past_a_file_size_limit(name: str, tmp_path: Path) -> None:
    run_in_child(__file__, name, tmp_path)


if __name__ == "__main__":
    child_main(SCENARIOS)


def test_an_append_whose_fsync_failed_is_outcome_unknown_with_its_id(tmp_path: Path) -> None:
    import verity.storage._io as storage_io
    from verity.errors import OutcomeUnknown

    failing = {"fsync": False}

    def fsync(fd: int) -> None:
        if failing["fsync"]:
            raise OSError(errno.EIO, "injected: the disk lost the write")
        os.fsync(fd)

    previous = storage_io.install(storage_io.IO(fsync=fsync))
    try:
        db = open_db(tmp_path)
        try:
            t = db.tenant(T1, create=True)
            stream = t.create_stream("s", DataClass.PUBLIC)
            size = t.log_size()
            key = IdempotencyId.generate()
            failing["fsync"] = True
            with pytest.raises(OutcomeUnknown) as caught:
                t.append(stream, [b"maybe"], idempotency_id=key)
            failing["fsync"] = False
            assert caught.value.idempotency_id == bytes(key)
            assert caught.value.log_offset == size and caught.value.written is None
            # The log takes no write until reopened; reads go on.
            with pytest.raises(StorageError):
                t.append(stream, [b"refused"])
            assert t.read_events(stream) in ([], [b"maybe"])
        finally:
            db.close()
    finally:
        storage_io.restore(previous)
    with verity.open(tmp_path / "db") as db:
        t = db.tenant(T1)
        # After reopening, the id says whether it committed, and the stream agrees.
        offset = t.committed(key)
        assert t.read_events(stream) == ([] if offset is None else [b"maybe"])
