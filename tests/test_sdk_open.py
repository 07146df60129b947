"""Opening a database: one writer, any number of readers, and reads that never write.

Issue 10 §1 (a second process must never touch a live database), §6 (bad
opens create nothing) and §7 (reads never write).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _crash import saved_mark, unacknowledge

import verity
import verity._tenant
from verity.errors import (
    CorruptionError,
    InUse,
    InvalidArgument,
    KeyError_,
    NotFound,
    ReadOnly,
    StorageError,
)
from verity.storage._io import install, restore
from verity.types import DataClass, StreamId, TenantId
from verity_conformance.drivers import FaultyIO

T1 = TenantId(1)


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and folder under `folder`: its mode and (for files) its bytes."""
    found: dict[str, tuple[int, bytes]] = {}
    for path in sorted(folder.rglob("*")):
        data = path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(folder))] = (path.stat().st_mode, data)
    return found


def filled(folder: Path) -> tuple[int, int]:
    """A closed database with one tenant, a PUBLIC and a PHI stream and a table."""
    with verity.open(folder, create=True) as db:
        t = db.tenant(T1, create=True)
        public = t.create_stream("public", DataClass.PUBLIC)
        phi = t.create_stream("phi", DataClass.PHI)
        t.append(public, [b"p0", b"p1"])
        t.append(phi, [b"secret"])
        t.execute("CREATE TABLE r (id BIGINT PRIMARY KEY, v TEXT)")
        t.execute("INSERT INTO r VALUES (1, 'one')")
        return int(public), int(phi)


HOLDER = textwrap.dedent(
    """
    import sys, verity
    from verity.types import DataClass, TenantId
    db = verity.open(sys.argv[1])
    t = db.tenant(TenantId(1))
    print("holding", flush=True)
    sys.stdin.readline()
    db.close()
    """
)

WRITER = textwrap.dedent(
    """
    import sys, verity
    from verity.types import StreamId, TenantId
    db = verity.open(sys.argv[1])
    t = db.tenant(TenantId(1))
    stream = StreamId(int(sys.argv[2]))
    print("writing", flush=True)
    for i in range(int(sys.argv[3])):
        t.append(stream, [b"event %d " % i * 20])
    db.close()
    print("done", flush=True)
    """
)


@contextmanager
def process(script: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A child running `script`; killed in `finally`, whatever the test did."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)


def test_a_second_writer_process_is_refused_and_touches_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    filled(folder)
    with process(HOLDER, str(folder)) as holder:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        before = snapshot(folder)
        with pytest.raises(InUse) as caught:
            verity.open(folder)
        assert caught.value.pid == holder.pid
        assert str(holder.pid) in str(caught.value)
        assert not isinstance(caught.value, InvalidArgument)
        assert snapshot(folder) == before  # nothing written, renamed or deleted
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
    with verity.open(folder) as db:  # the lock went with the holder
        assert db.tenant(T1).read_events(verity.StreamId(1 << 32 | 1)) == [b"p0", b"p1"]


def test_a_second_open_in_the_same_process_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    filled(folder)
    with verity.open(folder) as db:
        db.tenant(T1)
        with pytest.raises(InUse) as caught:
            verity.open(folder)
        assert caught.value.pid == os.getpid()
    with verity.open(folder):
        pass


@pytest.mark.parametrize("lock_errno", [errno.ENOLCK, errno.EIO])
def test_a_lock_the_os_refuses_for_another_reason_is_a_storage_error_not_in_use(
    tmp_path: Path, lock_errno: int
) -> None:
    folder = tmp_path / "db"
    filled(folder)
    before = snapshot(folder)
    previous = install(FaultyIO(lock_errno=lock_errno).io())
    try:
        with pytest.raises(StorageError) as caught:
            verity.open(folder)
    finally:
        restore(previous)
    assert not isinstance(caught.value, InUse)
    assert caught.value.os_error is not None and caught.value.os_error.errno == lock_errno
    assert "verity.lock" in str(caught.value)
    assert snapshot(folder) == before  # nothing written, renamed or deleted
    with verity.open(folder) as db:
        assert db.tenant(T1).read_events(verity.StreamId(1 << 32 | 1)) == [b"p0", b"p1"]


def test_readers_run_beside_a_live_writer_and_see_durable_prefixes(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    public, _ = filled(folder)
    appends = 300
    with process(WRITER, str(folder), str(public), str(appends)) as writer:
        assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
        seen = []
        while writer.poll() is None and len(seen) < 50:
            with verity.open(folder, read_only=True) as reader:
                t = reader.tenant(T1)
                events = t.read_events(verity.StreamId(public))
                assert events[:2] == [b"p0", b"p1"]
                assert all(e == b"event %d " % i * 20 for i, e in enumerate(events[2:]))
                report = reader.verify()
                assert report.ok, report
                seen.append(len(events))
        assert writer.stdout.readline() == "done\n"
        assert writer.wait(timeout=60) == 0
    assert seen == sorted(seen)  # each reader saw at least what the one before it saw
    with verity.open(folder) as db:
        events = db.tenant(T1).read_events(verity.StreamId(public))
        assert len(events) == 2 + appends
        assert not db.tenant(T1).recoveries()


def test_a_read_only_open_writes_nothing_and_refuses_writes(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    public, phi = filled(folder)
    before = snapshot(folder)
    with verity.open(folder, read_only=True) as db:
        t = db.tenant(T1)
        assert t.read_events(verity.StreamId(public)) == [b"p0", b"p1"]
        assert t.read_events(verity.StreamId(phi)) == [b"secret"]
        assert t.query("SELECT v FROM r").rows == [("one",)]
        assert db.verify().ok
        size = t.log_size()
        proof = t.inclusion_proof(0, size)
        assert proof.tree_size == size
        for write in (
            lambda: t.create_stream("x", DataClass.PUBLIC),
            lambda: t.append(verity.StreamId(public), [b"no"]),
            lambda: t.execute("INSERT INTO r VALUES (2, 'two')"),
            lambda: t.checkpoint(),
            lambda: db.tenant(TenantId(2), create=True),
        ):
            with pytest.raises(ReadOnly):
                write()
    assert snapshot(folder) == before


def test_a_read_only_open_leaves_a_torn_tail_to_the_writer(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    public, _ = filled(folder)
    db = verity.open(folder)
    t = db.tenant(T1)
    log = next(folder.rglob("log"))
    before_mark = saved_mark(log)
    t.append(verity.StreamId(public), [b"never acknowledged" * 10])
    db._abandon()
    unacknowledge(log, before_mark)
    segment = sorted(log.glob("*.vlog"))[-1]
    os.truncate(segment, segment.stat().st_size - 7)
    before = snapshot(folder)
    with verity.open(folder, read_only=True) as reader:
        assert reader.tenant(T1).read_events(verity.StreamId(public)) == [b"p0", b"p1"]
        assert reader.tenant(T1).recoveries() == []
    assert snapshot(folder) == before
    with verity.open(folder) as writer:
        [recovery] = writer.tenant(T1).recoveries()
        assert recovery.discarded_bytes is not None


def test_reads_never_create_a_database_or_a_tenant(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    for read_only in (False, True):
        with pytest.raises(NotFound, match="create=True"):
            verity.open(missing, read_only=read_only)
    assert not (tmp_path / "no").exists()
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("not a database")
    with pytest.raises(NotFound):
        verity.open(stranger)
    with pytest.raises(InvalidArgument, match="not empty"):
        verity.open(stranger, create=True)
    assert sorted(p.name for p in stranger.iterdir()) == ["notes.txt"]
    folder = tmp_path / "db"
    filled(folder)
    before = snapshot(folder)
    with verity.open(folder) as db, pytest.raises(NotFound, match="tenant"):
        db.tenant(TenantId(99))
    with verity.open(folder, read_only=True) as db, pytest.raises(NotFound):
        db.tenant(TenantId(99))
    after = snapshot(folder)
    assert [name for name in after if "tenant-99" in name] == []
    assert set(after) == set(before)


def test_bad_arguments_to_open_create_nothing(tmp_path: Path) -> None:
    target = tmp_path / "db"
    file = tmp_path / "hostname"
    file.write_text("a file")
    with pytest.raises(InvalidArgument, match="not a folder"):
        verity.open(file)
    for options in (
        {"shard_count": 0},
        {"clock": None},
        {"read_only": 1},
        {"master_key_provider": object()},
    ):
        with pytest.raises(InvalidArgument):
            verity.open(target, create=True, **options)  # type: ignore[arg-type]
        assert not target.exists(), options
    with pytest.raises(InvalidArgument):
        verity.open(target, create="yes")  # type: ignore[arg-type]
    assert not target.exists()


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o077])
def test_everything_is_created_owner_only_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        folder = tmp_path / "db"
        filled(folder)
        with verity.open(folder) as db:
            db.tenant(T1).checkpoint()
    finally:
        os.umask(previous)
    assert (folder.stat().st_mode & 0o777) == 0o700
    for path in folder.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_a_database_without_its_layout_file_refuses_to_open(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    filled(folder)
    (folder / "verity.json").unlink()
    before = snapshot(folder)
    for options in ({}, {"create": True}, {"read_only": True}):
        with pytest.raises(CorruptionError, match="no layout file") as caught:
            verity.open(folder, **options)  # type: ignore[arg-type]
        assert caught.value.file == str(folder / "verity.json")
    assert snapshot(folder) == before


def test_a_changed_shard_count_can_never_hide_a_tenant(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    filled(folder)
    layout = folder / "verity.json"
    fields = json.loads(layout.read_text())
    # Edited by hand: the checksum no longer matches.
    layout.write_text(json.dumps({**fields, "shard_count": 3}))
    with pytest.raises(CorruptionError, match="sha256") as caught:
        verity.open(folder)
    assert caught.value.file == str(layout)
    # Edited with the checksum recomputed: the tenants are in the wrong shards.
    body = {"format": fields["format"], "shard_count": 3}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    layout.write_text(json.dumps({**body, "sha256": digest.hexdigest()}))
    with pytest.raises(CorruptionError, match="places it in") as caught:
        verity.open(folder, read_only=True)
    assert "tenant 1" in str(caught.value)


def test_a_layout_from_before_the_checksum_is_upgraded_by_the_next_writer(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "db"
    filled(folder)
    layout = folder / "verity.json"
    fields = json.loads(layout.read_text())
    layout.write_text(json.dumps({"format": fields["format"], "shard_count": 16}))
    with verity.open(folder, read_only=True) as db:
        assert db.tenants() == [T1]
    assert "sha256" not in json.loads(layout.read_text())  # a reader writes nothing
    with verity.open(folder) as db:
        assert db.tenants() == [T1]
    assert json.loads(layout.read_text())["sha256"] == fields["sha256"]


@pytest.mark.parametrize("name", ["master.key", "shard-00006/tenant-1/keyring.json"])
def test_a_missing_key_is_never_silently_replaced(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "db"
    filled(folder)
    assert (folder / name).exists()
    (folder / name).unlink()
    before = snapshot(folder)
    with pytest.raises(KeyError_, match="missing") as caught, verity.open(folder) as db:
        db.tenant(T1)
    assert str(folder / name) in str(caught.value)
    assert snapshot(folder) == before


def test_a_missing_signing_key_opens_for_reads_and_refuses_to_sign_or_write(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "db"
    public, _ = filled(folder)
    key_path = folder / "shard-00006/tenant-1/signing.key"
    key_path.unlink()
    with verity.open(folder) as db:
        t = db.tenant(T1)
        assert t.read_events(StreamId(public)) == [b"p0", b"p1"]
        size = t.log_size()
        with pytest.raises(KeyError_, match="missing") as caught:
            t.checkpoint()
        assert str(key_path) in str(caught.value)
        with pytest.raises(KeyError_):
            t.append(StreamId(public), [b"p2"])
        with pytest.raises(KeyError_):
            t.execute("INSERT INTO r VALUES (2, 'two')")
        assert t.log_size() == size
        report = db.verify()
        assert report.ok
        (tenant_report,) = report.tenants
        assert tenant_report.key_problem is not None and str(key_path) in tenant_report.key_problem
    assert not key_path.exists()  # never re-created


@pytest.mark.parametrize("name", ["master.key", "shard-00006/tenant-1/keyring.json"])
def test_a_reader_without_keys_reads_public_data_and_verifies(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "db"
    public, phi = filled(folder)
    (folder / name).unlink()
    before = snapshot(folder)
    with verity.open(folder, read_only=True) as db:
        t = db.tenant(T1)
        assert t.read_events(StreamId(public)) == [b"p0", b"p1"]
        assert [s.name for s in t.streams()] == ["public", "phi"]
        with pytest.raises(KeyError_, match="missing"):
            t.read_events(StreamId(phi))
        with pytest.raises(KeyError_, match="missing"):
            t.query("SELECT * FROM r")
        public_key = t.public_key()
        size = t.log_size()
        signed = t.latest_checkpoint()
        assert signed is not None
        verity.proofs.verify_signed_checkpoint(signed, public_key)
        report = db.verify()
    assert report.ok and report.records_checked == size
    (found,) = report.tenants
    assert found.key_problem is not None and str(folder / name) in found.key_problem
    assert snapshot(folder) == before
    # A writer still refuses the tenant, and its verify() reports rather than raises.
    if name.endswith("keyring.json"):
        with verity.open(folder) as db:
            report = db.verify()
        assert report.ok and str(folder / name) in str(report.tenants[0].key_problem)


def test_a_key_ring_of_the_wrong_shape_is_corruption_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    filled(folder)
    path = folder / "shard-00006/tenant-1/keyring.json"
    fields = json.loads(path.read_text())
    fields["deks"] = []  # a list where an object belongs
    path.write_text(json.dumps(fields))
    with verity.open(folder) as db, pytest.raises(CorruptionError) as caught:
        db.tenant(T1)
    assert caught.value.file == str(path)


def test_a_reader_that_opened_before_a_writer_closed_is_not_told_history_was_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "db"
    public, _ = filled(folder)
    original = verity._tenant.open_log  # type: ignore[attr-defined]

    def open_then_let_a_writer_run(path: Path, **options: Any) -> Any:
        log = original(path, **options)
        if options.get("read_only"):
            # Between the reader's look at the log and at the snapshot, a writer
            # appends and closes: its snapshot reflects more than the reader's log.
            monkeypatch.setattr(verity._tenant, "open_log", original)
            with verity.open(folder) as writer:
                writer.tenant(T1).append(verity.StreamId(public), [b"p2"])
        return log

    monkeypatch.setattr(verity._tenant, "open_log", open_then_let_a_writer_run)
    with verity.open(folder, read_only=True) as reader:
        assert reader.tenant(T1).read_events(verity.StreamId(public)) == [b"p0", b"p1"]
        assert reader.verify().ok
