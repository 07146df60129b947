"""verity.storage on a full disk: typed errors, nothing half-written, writes resume with space.

Every scenario runs twice where it can: on a real full tmpfs (`TmpfsDisk`),
and in a child process past RLIMIT_FSIZE (`FsizeDisk`), which works where
mounting is not permitted (tests/_enospc.py). Failures the kernel cannot be
made to produce on demand (a failed fsync, a failed cut) are injected at
the end of the file.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _crash import saved_mark, unacknowledge
from _enospc import (
    PAGE_BYTES,
    Disk,
    TmpfsDisk,
    child_main,
    mount_refusal,
    mounted_tmpfs,
    run_in_child,
)

from verity._keyring import Keyring
from verity.crypto import FileMasterKeyProvider, SigningKey
from verity.errors import ClosedError, StorageError, StorageFull
from verity.proofs import verify_signed_checkpoint
from verity.storage import _log, open_log
from verity.storage._io import OS
from verity.types import CheckpointPolicy, RecordKind, SyncPolicy, TenantId

DISK_BYTES = 4 * 1024 * 1024
FRAME_OVERHEAD_BYTES = 8 + 53
KEY_FRAME_BYTES = FRAME_OVERHEAD_BYTES + 33
# A DATA record whose frame is exactly one page: it keeps a segment page-aligned, so a
# full tmpfs has no room left in the segment's last page either.
PAGE_PAYLOAD = b"p" * (PAGE_BYTES - FRAME_OVERHEAD_BYTES)
NO_AUTO = CheckpointPolicy(explicit_only=True, on_shutdown=False)
FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG)

SCENARIOS: dict[str, Callable[[Disk, Path], None]] = {}


def scenario(run: Callable[[Disk, Path], None]) -> Callable[[Disk, Path], None]:
    SCENARIOS[run.__name__] = run
    return run


def check_full(error: StorageError, written: bool | None, path: Path | None = None) -> None:
    assert isinstance(error, StorageFull) and error.os_error.errno in FULL_ERRNOS, error
    assert error.written is written, error
    assert path is None or error.path == str(path), (error.path, path)


def reopened_payloads(folder: Path) -> list[bytes]:
    """Open the log again, verify it from genesis, and return its DATA payloads."""
    with open_log(folder, checkpoint_policy=NO_AUTO) as log:
        assert log.verify() == log.size
        return [r.payload for r in log.records() if r.header.kind is RecordKind.DATA]


@scenario
def appends_refused_then_resumed(disk: Disk, root: Path) -> None:
    folder = root / "log"
    log = open_log(folder, checkpoint_policy=NO_AUTO)
    log.append(PAGE_PAYLOAD)
    segment = log.segments()[-1].path
    disk.fill(around=segment)
    with pytest.raises(StorageFull) as refused:
        log.append(b"x" * 100)
    check_full(refused.value, False, segment)
    # Not one byte reached the file: the position may be sealed again under the same key.
    assert (log.size, log.failed_write_generation, log.write_failure) == (1, 0, None)

    disk.fill(leave_bytes=PAGE_BYTES, around=segment)
    with pytest.raises(StorageFull) as cut:
        log.append_batch([b"y" * 3000, b"z" * 3000])
    check_full(cut.value, False, segment)
    # Part of the batch reached the file and was cut away again: a fresh key is due.
    assert (log.size, log.failed_write_generation) == (1, 1)
    assert segment.stat().st_size == PAGE_BYTES
    assert log.read(0).payload == PAGE_PAYLOAD and log.verify() == 1

    disk.free()
    assert log.append_batch([b"y" * 3000, b"z" * 3000]) == 1
    assert log.append(b"w") == 3
    log.close()
    assert reopened_payloads(folder) == [PAGE_PAYLOAD, b"y" * 3000, b"z" * 3000, b"w"]


@scenario
def checkpoint_and_key_rotation_refused_then_resumed(disk: Disk, root: Path) -> None:
    folder = root / "log"
    first, second = SigningKey.generate(), SigningKey.generate()
    log = open_log(folder, checkpoint_policy=NO_AUTO, signer=first)
    log.append(b"k" * (PAGE_BYTES - KEY_FRAME_BYTES - FRAME_OVERHEAD_BYTES))
    segment = log.segments()[-1].path
    assert segment.stat().st_size == PAGE_BYTES
    disk.fill(around=segment)
    with pytest.raises(StorageFull) as checkpoint:
        log.append_checkpoint()
    check_full(checkpoint.value, False, segment)
    with pytest.raises(StorageFull) as rotation:
        log.rotate_key(second)
    check_full(rotation.value, False, segment)
    assert log.size == 2 and log.checkpoints() == []
    assert log.pinned_key == first.public_key_bytes()

    disk.free()
    assert log.rotate_key(second) == 2
    checkpoint_offset = int(log.append_checkpoint().offset)
    verify_signed_checkpoint(log.signed_checkpoint(checkpoint_offset), second.public_key_bytes())
    log.close()
    with open_log(folder, checkpoint_policy=NO_AUTO, signer=second) as reopened:
        assert reopened.verify() == 4 and reopened.pinned_key == second.public_key_bytes()


@scenario
def every_record_keeps_what_it_made_durable(disk: Disk, root: Path) -> None:
    folder = root / "log"
    policy = CheckpointPolicy(every_n_records=2, on_shutdown=False)
    log = open_log(folder, sync_policy=SyncPolicy.every_record(), checkpoint_policy=policy)
    log.append(PAGE_PAYLOAD)
    segment = log.segments()[-1].path
    disk.fill(leave_bytes=PAGE_BYTES, around=segment)
    # The record fills the free page and is fsynced; the checkpoint due after it does not
    # fit. The caller asked for the record, which is durable: the append succeeds.
    assert log.append(PAGE_PAYLOAD) == 1
    assert log.size == 2 and log.read(1).header.kind is RecordKind.DATA

    disk.fill(leave_bytes=PAGE_BYTES, around=segment)
    with pytest.raises(StorageFull) as partial:
        log.append_batch([PAGE_PAYLOAD, b"never"])
    # The batch's first record was made durable before the disk refused the rest.
    check_full(partial.value, None, segment)
    assert log.size == 3 and log.write_failure is None
    assert log.failed_write_generation == 0  # every refusal came at a page's first byte

    disk.free()
    assert log.append(b"after") == 3
    log.close()
    payloads = [PAGE_PAYLOAD, PAGE_PAYLOAD, PAGE_PAYLOAD, b"after"]
    assert reopened_payloads(folder) == payloads


@scenario
def group_commit_appenders_each_get_a_typed_answer(disk: Disk, root: Path) -> None:
    folder = root / "log"
    policy = SyncPolicy.group_commit(max_delay_ms=2, max_batch=64)
    log = open_log(folder, sync_policy=policy, checkpoint_policy=NO_AUTO)
    log.append(PAGE_PAYLOAD)
    acknowledged = {0: PAGE_PAYLOAD}
    failures: list[StorageError] = []
    guard = threading.Lock()

    def appender(thread: int) -> None:
        for sequence in range(20):
            payload = f"t{thread}-s{sequence}".encode().ljust(500, b".")
            try:
                offset = log.append(payload)
            except StorageError as failure:
                with guard:
                    failures.append(failure)
            else:
                with guard:
                    acknowledged[offset] = payload

    disk.fill(leave_bytes=2 * PAGE_BYTES, around=log.segments()[-1].path)
    threads = [threading.Thread(target=appender, args=(thread,)) for thread in range(4)]
    try:
        for thread in threads:
            thread.start()
    finally:
        for thread in threads:
            thread.join()
    assert failures and len(acknowledged) > 1
    for failure in failures:
        check_full(failure, False)
    assert log.write_failure is None and log.size == len(acknowledged)

    disk.free()
    acknowledged[log.append(b"after")] = b"after"
    log.close()
    assert reopened_payloads(folder) == [acknowledged[offset] for offset in sorted(acknowledged)]


@scenario
def close_on_a_full_disk_keeps_every_record(disk: Disk, root: Path) -> None:
    folder = root / "log"
    shutdown = CheckpointPolicy(explicit_only=True, on_shutdown=True)
    log = open_log(folder, checkpoint_policy=shutdown)
    log.append(PAGE_PAYLOAD)
    disk.fill(around=log.segments()[-1].path)
    with pytest.raises(StorageFull) as refused:
        log.close()
    # The shutdown checkpoint was not written; the log is closed all the same.
    check_full(refused.value, False)
    log.close()
    with pytest.raises(ClosedError):
        log.read(0)
    # Nothing close left behind claims more than the disk holds: a reader and a writer
    # open what is there, and no recovery is needed.
    with open_log(folder, read_only=True) as reader:
        assert reader.size == 1 and reader.verify() == 1
    disk.free()
    with open_log(folder, checkpoint_policy=shutdown) as reopened:
        assert reopened.size == 1 and reopened.recoveries() == []
        assert reopened.verify() == 1
    assert reopened_payloads(folder) == [PAGE_PAYLOAD]


@scenario
def open_on_a_full_disk_when_nothing_is_discarded(disk: Disk, root: Path) -> None:
    folder = root / "log"
    with open_log(folder, checkpoint_policy=NO_AUTO) as log:
        log.append_batch([b"a" * 100, b"b" * 100, b"c" * 100])
    disk.fill()
    with open_log(folder, read_only=True) as reader:
        assert reader.verify() == 3
    log = open_log(folder, checkpoint_policy=NO_AUTO)
    assert log.verify() == 3 and log.inclusion_proof(1, 3).leaf_index == 1
    with pytest.raises(StorageFull) as refused:
        log.append(b"x" * 3 * PAGE_BYTES)
    check_full(refused.value, False)
    disk.free()
    assert log.append(b"d") == 3
    log.close()
    assert reopened_payloads(folder) == [b"a" * 100, b"b" * 100, b"c" * 100, b"d"]


@scenario
def open_on_a_full_disk_says_what_recovery_must_write(disk: Disk, root: Path) -> None:
    folder = root / "log"
    log = open_log(folder, checkpoint_policy=NO_AUTO)
    log.append_batch([b"a" * 100, b"b" * 100])
    mark = saved_mark(folder)
    log.append(b"torn" * 100)  # taken to be a crash in the middle of this append
    segment = log.segments()[-1].path
    log.abandon()
    unacknowledge(folder, mark)
    os.truncate(segment, segment.stat().st_size - 10)
    torn_bytes = segment.stat().st_size
    disk.fill()
    with pytest.raises(StorageFull) as refused:
        open_log(folder, checkpoint_policy=NO_AUTO)
    check_full(refused.value, False)
    message = str(refused.value)
    assert "recovery.vrec" in message and "read_only=True" in message and "record 2" in message
    assert segment.stat().st_size == torn_bytes  # nothing discarded before it is accounted for
    with open_log(folder, read_only=True) as reader:
        assert reader.size == 2 and reader.verify() == 2
    disk.free()
    with open_log(folder, checkpoint_policy=NO_AUTO) as recovered:
        assert recovered.size == 2
        [recovery] = recovered.recoveries()
        assert recovery.discarded_range == (2, 3)


@scenario
def a_seal_refused_leaves_the_segment_active(disk: Disk, root: Path) -> None:
    folder = root / "log"
    log = open_log(folder, checkpoint_policy=NO_AUTO, segment_bytes_max=2 * PAGE_BYTES)
    log.append_batch([PAGE_PAYLOAD, PAGE_PAYLOAD])
    disk.fill()
    with pytest.raises(StorageFull) as refused:
        log.append(b"n" * 10)  # needs a seal: derived files and an index, then a new segment
    check_full(refused.value, False)
    assert log.size == 2 and len(log.segments()) == 1
    assert not list(folder.glob("*.tmp")) and not (folder / "00000000000000000002.vlog").exists()
    disk.free()
    assert log.append(b"n" * 10) == 2 and len(log.segments()) == 2
    log.close()
    assert reopened_payloads(folder) == [PAGE_PAYLOAD, PAGE_PAYLOAD, b"n" * 10]


@scenario
def sync_on_a_full_disk_keeps_derived_files_for_later(disk: Disk, root: Path) -> None:
    folder = root / "log"
    log = open_log(folder, checkpoint_policy=NO_AUTO)
    log.append(PAGE_PAYLOAD)
    disk.fill()
    with pytest.raises(StorageFull) as refused:
        log.sync()  # the record is durable; its Merkle leaf has no room
    check_full(refused.value, False)
    assert log.write_failure is None and log.merkle_root() == log.merkle_root(1)
    disk.free()
    log.sync()
    assert log.append(b"after") == 1
    log.close()
    assert reopened_payloads(folder) == [PAGE_PAYLOAD, b"after"]


@scenario
def appends_go_on_while_derived_files_wait(disk: Disk, root: Path) -> None:
    folder = root / "log"
    log = open_log(folder, checkpoint_policy=NO_AUTO)
    log.append(PAGE_PAYLOAD)
    log.sync()
    payloads = [f"{index:06d}".encode() for index in range(3000)]
    frames_bytes = len(payloads) * (FRAME_OVERHEAD_BYTES + 6)
    # Room for the records; on a tmpfs none for the 96 KiB of Merkle leaves they bring.
    disk.fill(leave_bytes=frames_bytes, around=log.segments()[-1].path)
    assert log.append_batch(payloads) == 1
    proof = log.inclusion_proof(2000, log.size)
    assert proof.leaf_index == 2000 and log.verify() == 3001
    disk.free()
    log.sync()
    log.close()
    assert reopened_payloads(folder) == [PAGE_PAYLOAD, *payloads]


@scenario
def a_fresh_key_after_a_failed_write_waits_for_space(disk: Disk, root: Path) -> None:
    # What the tenant does when `failed_write_generation` moves: retire the session DEK
    # (no IO), and make the next one when the key ring can be written again.
    provider = FileMasterKeyProvider.load_or_create(root / "master.key")
    ring_path = root / "keyring.json"
    keyring = Keyring.create(ring_path, provider, TenantId(7))
    first_id, first_key = keyring.session_key()
    sealed = first_key.encrypt(5, b"record five")
    ring_bytes = ring_path.read_bytes()
    keyring.retire_session_key()
    disk.fill()
    for _ in range(2):
        with pytest.raises(StorageFull) as refused:
            keyring.session_key()
        check_full(refused.value, False, ring_path)
    assert ring_path.read_bytes() == ring_bytes and not list(root.glob("*.tmp"))
    disk.free()
    second_id, second_key = keyring.session_key()
    assert second_id == first_id + 1 and keyring.session_key() == (second_id, second_key)
    keyring.close()
    reloaded = Keyring(ring_path, provider, TenantId(7))
    assert reloaded.key(first_id, 5).decrypt(5, sealed) == b"record five"
    reloaded.key(second_id, 5)
    reloaded.close()
    provider.close()


# ----------------------------------------------------------------- the runs


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


# ------------------------------------------------- failures the disk won't make


def failing_fsync(monkeypatch: pytest.MonkeyPatch, path_suffix: str) -> list[int]:
    """Make os.fsync of files whose name ends with `path_suffix` fail with EIO."""
    real = os.fsync
    calls: list[int] = []

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(path_suffix):
            calls.append(fd)
            raise OSError(errno.EIO, "injected fsync failure")
        real(fd)

    monkeypatch.setattr(OS, "fsync", fsync)
    return calls


def test_after_a_failed_fsync_the_outcome_is_unknown_and_writes_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "log"
    log = open_log(folder, checkpoint_policy=CheckpointPolicy(explicit_only=True))
    log.append(b"kept")
    with monkeypatch.context() as patch:
        failing_fsync(patch, ".vlog")
        with pytest.raises(StorageError) as unknown:
            log.append(b"unknown")
    assert not isinstance(unknown.value, StorageFull) and unknown.value.written is None
    assert log.write_failure is not None and log.failed_write_generation == 1
    with pytest.raises(StorageError) as refused:
        log.append(b"refused")
    assert refused.value.written is False and "reopen" in str(refused.value)
    # Reads go on over the records as written; close writes nothing and raises nothing.
    assert [r.payload for r in log.records()] == [b"kept", b"unknown"]
    log.close()
    assert not list(folder.glob("*.vidx"))
    # Here the page cache still holds the record, so the reopened log has it.
    assert reopened_payloads(folder) == [b"kept", b"unknown"]


def test_a_failed_group_commit_fsync_answers_every_waiting_appender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = SyncPolicy.group_commit(max_delay_ms=50, max_batch=1000)
    log = open_log(tmp_path / "log", sync_policy=policy, checkpoint_policy=NO_AUTO)
    log.append(b"kept")
    outcomes: list[BaseException | None] = []
    guard = threading.Lock()

    def appender(thread: int) -> None:
        try:
            log.append(f"t{thread}".encode())
        except BaseException as failure:  # every outcome is recorded
            with guard:
                outcomes.append(failure)
        else:
            with guard:
                outcomes.append(None)

    failing_fsync(monkeypatch, ".vlog")
    threads = [threading.Thread(target=appender, args=(thread,)) for thread in range(6)]
    try:
        for thread in threads:
            thread.start()
    finally:
        for thread in threads:
            thread.join()
    monkeypatch.undo()
    # Appenders whose records the failed fsync should have covered: outcome unknown;
    # any arriving after it: refused, nothing written.
    assert len(outcomes) == 6
    for outcome in outcomes:
        assert isinstance(outcome, StorageError) and outcome.written in (None, False), outcome
    assert any(isinstance(o, StorageError) and o.written is None for o in outcomes)
    log.close()


def test_a_cut_that_fails_leaves_the_outcome_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(tmp_path / "log", checkpoint_policy=NO_AUTO)
    log.append(b"kept")
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data)[:10])
        raise OSError(errno.ENOSPC, "injected: no space left")

    def ftruncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "injected ftruncate failure")

    with monkeypatch.context() as patch:
        patch.setattr(OS, "write", write)
        patch.setattr(OS, "ftruncate", ftruncate)
        with pytest.raises(StorageError) as unknown:
            log.append(b"torn")
    # Not StorageFull: space coming back does not cure it, the log takes no more writes.
    assert not isinstance(unknown.value, StorageFull) and unknown.value.written is None
    assert log.write_failure is unknown.value
    assert log.size == 1 and log.failed_write_generation == 1
    log.close()
    # The ten bytes left behind are a torn tail: the next open accounts for them.
    with open_log(tmp_path / "log", checkpoint_policy=NO_AUTO) as reopened:
        assert reopened.size == 1 and len(reopened.recoveries()) == 1


def test_a_mark_that_cannot_be_written_stays_behind_without_failing_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "log"
    log = open_log(folder, checkpoint_policy=NO_AUTO)
    log.append(b"a")
    mark_before = saved_mark(folder)

    def pwrite_all(fd: int, data: bytes, position: int) -> None:
        raise OSError(errno.ENOSPC, "injected: no space left")

    with monkeypatch.context() as patch:
        patch.setattr("verity.storage._durable.pwrite_all", pwrite_all)
        assert log.append(b"b") == 1  # durable: a lagging mark only lowers the evidence
        assert saved_mark(folder) == mark_before
        with pytest.raises(StorageFull) as refused:
            log.sync()
    check_full(refused.value, False, folder / "durable.vmark")
    log.sync()
    assert saved_mark(folder) != mark_before
    log.close()
    assert reopened_payloads(folder) == [b"a", b"b"]


def test_a_seal_that_fails_after_its_index_drops_the_index_before_the_next_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "log"
    log = open_log(folder, checkpoint_policy=NO_AUTO, segment_bytes_max=1000)
    log.append(b"a" * 800)
    real_open_private = _log.open_private

    def open_private(path: Path | str, flags: int) -> int:
        if str(path).endswith(".vlog"):
            raise OSError(errno.ENOSPC, "injected: no space left")
        return real_open_private(path, flags)

    with monkeypatch.context() as patch:
        patch.setattr("verity.storage._log.open_private", open_private)
        with pytest.raises(StorageFull) as refused:
            log.append(b"b" * 200)
    check_full(refused.value, False, folder / "00000000000000000001.vlog")
    assert (folder / "00000000000000000000.vidx").exists()  # the seal got that far
    assert log.append(b"c") == 1  # fits the active segment: its stale index goes first
    assert not (folder / "00000000000000000000.vidx").exists()
    log.abandon()
    assert reopened_payloads(folder) == [b"a" * 800, b"c"]


def test_merkle_files_that_cannot_be_remade_are_kept_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "log"
    with open_log(folder, checkpoint_policy=NO_AUTO) as log:
        log.append_batch([f"{index:04d}".encode() for index in range(200)])
        expected = log.inclusion_proof(5, 200)
    with (folder / "merkle" / "level-00.bin").open("r+b") as level:
        level.seek(4 * 32)
        level.write(b"\xff")  # leaf 4, which the proof of leaf 5 needs

    def make_private_dir(path: Path, *, parents: bool = False) -> None:
        raise OSError(errno.ENOSPC, "injected: no space left")

    log = open_log(folder, checkpoint_policy=NO_AUTO)
    with monkeypatch.context() as patch:
        patch.setattr("verity.storage._merkle.make_private_dir", make_private_dir)
        # The damaged folder is set aside; a new one cannot be made, so the rebuilt
        # nodes serve this session from memory.
        assert log.inclusion_proof(5, 200) == expected
    assert len(list(folder.glob("merkle.damaged-*"))) == 1 and not (folder / "merkle").exists()
    assert log.append(b"after") == 200 and log.verify() == 201
    log.close()
    assert len(reopened_payloads(folder)) == 201


if __name__ == "__main__":
    child_main(SCENARIOS)
