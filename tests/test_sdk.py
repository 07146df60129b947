"""The embedded SDK, as a user sees it: `verity.open` -> tenants -> streams, events, proofs."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from _crash import saved_mark, unacknowledge

import verity
from verity import (
    CheckpointPolicy,
    DataClass,
    IdempotencyId,
    Offset,
    StreamId,
    SyncPolicy,
    TenantId,
)
from verity.errors import (
    AlreadyExists,
    ClosedError,
    Conflict,
    InvalidArgument,
    NotFound,
)
from verity.proofs import verify_consistency, verify_inclusion, verify_signed_checkpoint

T1 = TenantId(1)
T2 = TenantId(2)
START_NS = 1_767_225_600_000_000_000


class FakeClock:
    """A clock the test moves; the database reads no other."""

    def __init__(self) -> None:
        self.now = START_NS

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


def open_db(path: Path, clock: FakeClock | None = None, **options: object) -> verity.Verity:
    options.setdefault("create", True)
    return verity.open(path, clock=clock or FakeClock(), **options)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[verity.Verity]:
    database = open_db(tmp_path / "db")
    yield database
    database.close()


def test_the_documented_tour(tmp_path: Path) -> None:
    with verity.open(tmp_path / "db", sync_policy=SyncPolicy.every_record(), create=True) as db:
        t = db.tenant(TenantId(1), create=True)
        s = t.create_stream("audit", DataClass.PHI)
        assert t.streams() == [verity.StreamInfo(s, "audit", DataClass.PHI)]
        key = IdempotencyId.generate()
        first = t.append(s, [b"e1", b"e2"], idempotency_id=key)
        assert first == Offset(0)
        assert t.read_events(s, from_offset=Offset(0), max_bytes=1 << 20) == [b"e1", b"e2"]
        assert t.committed(key) == Offset(0)
        earlier = t.checkpoint()
        t.append(s, [b"e3"])
        cp = t.checkpoint()
        public_key = t.public_key()
        verify_signed_checkpoint(earlier, public_key)
        verify_signed_checkpoint(cp, public_key)
        proof = t.inclusion_proof(1, cp.tree_size)
        verify_inclusion(proof, cp.root)
        consistency = t.consistency_proof(earlier.tree_size, cp.tree_size)
        verify_consistency(consistency, earlier.root, cp.root)
        db.sync()
        report = db.verify()
        # The checkpoint covers the records before its own record.
    assert report.ok and report.records_checked == cp.tree_size + 1 and report.first_bad is None


def test_appends_get_dense_offsets_per_stream(db: verity.Verity) -> None:
    t = db.tenant(T1, create=True)
    a = t.create_stream("a", DataClass.PUBLIC)
    b = t.create_stream("b", DataClass.INTERNAL)
    assert t.append(a, [b"1", b"2"]) == 0
    assert t.append(b, [b"x"]) == 0
    assert t.append(a, [b"3"]) == 2
    assert t.read_events(a) == [b"1", b"2", b"3"]
    assert t.read_events(a, from_offset=Offset(1)) == [b"2", b"3"]
    assert t.read_events(a, from_offset=Offset(3)) == []
    assert t.read_events(b) == [b"x"]


def test_read_events_respects_max_bytes_but_always_makes_progress(db: verity.Verity) -> None:
    t = db.tenant(T1, create=True)
    s = t.create_stream("s", DataClass.PUBLIC)
    t.append(s, [b"a" * 10, b"b" * 10, b"c" * 10])
    assert t.read_events(s, max_bytes=25) == [b"a" * 10, b"b" * 10]
    assert t.read_events(s, max_bytes=5) == [b"a" * 10]
    assert t.read_events(s, max_bytes=0) == []


def test_expected_offset_is_optimistic_concurrency(db: verity.Verity) -> None:
    t = db.tenant(T1, create=True)
    s = t.create_stream("s", DataClass.PUBLIC)
    t.append(s, [b"a"], expected_offset=Offset(0))
    with pytest.raises(Conflict, match=r"expected_offset=Offset\(0\).*at offset 1"):
        t.append(s, [b"b"], expected_offset=Offset(0))
    assert t.read_events(s) == [b"a"]
    assert t.append(s, [b"b"], expected_offset=Offset(1)) == 1


def test_a_retry_returns_the_original_offset_and_appends_nothing(tmp_path: Path) -> None:
    key = IdempotencyId.generate()
    with open_db(tmp_path / "db") as db:
        t = db.tenant(T1, create=True)
        s = t.create_stream("s", DataClass.PII)
        t.append(s, [b"before"])
        assert t.append(s, [b"once"], idempotency_id=key) == 1
        size = t.log_size()
        assert t.append(s, [b"once"], idempotency_id=key) == 1
        assert t.log_size() == size
    with open_db(tmp_path / "db") as db:
        t = db.tenant(T1, create=True)
        # Also after a restart: the kernel state is rebuilt from the log.
        assert t.committed(key) == 1
        assert t.append(s, [b"once"], idempotency_id=key) == 1
        assert t.read_events(s) == [b"before", b"once"]
        assert t.committed(IdempotencyId.generate()) is None


def test_idempotency_ids_are_remembered_for_the_retention_in_log_time(tmp_path: Path) -> None:
    clock = FakeClock()
    key = IdempotencyId.generate()
    with open_db(tmp_path / "db", clock, idempotency_retention_ns=1_000_000) as db:
        t = db.tenant(T1, create=True)
        s = t.create_stream("s", DataClass.PUBLIC)
        t.append(s, [b"a"], idempotency_id=key)
        clock.now += 500_000
        t.append(s, [b"b"])
        assert t.committed(key) == 0  # within retention
        clock.now += 2_000_000
        t.append(s, [b"c"])  # an event past the retention lets the id go
        assert t.committed(key) is None


def test_tenants_are_isolated(db: verity.Verity) -> None:
    one, two = db.tenant(T1, create=True), db.tenant(T2, create=True)
    s1 = one.create_stream("shared-name", DataClass.PUBLIC)
    s2 = two.create_stream("shared-name", DataClass.PUBLIC)
    assert s1 != s2
    one.append(s1, [b"tenant one"])
    with pytest.raises(NotFound, match="stream"):
        two.append(s1, [b"intruder"])
    with pytest.raises(NotFound):
        two.read_events(s1)
    assert two.read_events(s2) == []
    assert db.tenants() == [T1, T2]
    assert one.public_key() != two.public_key()


@pytest.mark.parametrize(
    ("name", "error"),
    [("", InvalidArgument), ("x" * 129, InvalidArgument), ("tab\there", InvalidArgument)],
)
def test_bad_stream_names_are_refused(db: verity.Verity, name: str, error: type) -> None:
    t = db.tenant(T1, create=True)
    size = t.log_size()
    with pytest.raises(error):
        t.create_stream(name, DataClass.PUBLIC)
    assert t.log_size() == size and t.streams() == []


def test_bad_input_is_refused_and_changes_nothing(db: verity.Verity) -> None:
    t = db.tenant(T1, create=True)
    s = t.create_stream("s", DataClass.PUBLIC)
    t.append(s, [b"kept"])
    size = t.log_size()
    with pytest.raises(AlreadyExists, match="'s'"):
        t.create_stream("s", DataClass.PHI)
    with pytest.raises(InvalidArgument, match="events\\[1\\]"):
        t.append(s, [b"ok", "text"])  # type: ignore[list-item]
    with pytest.raises(InvalidArgument, match="events"):
        t.append(s, b"bytes, not a list")
    with pytest.raises(InvalidArgument, match="events"):
        t.append(s, [])
    with pytest.raises(InvalidArgument, match="events"):
        t.append(s, [b"x"] * 10_001)
    with pytest.raises(NotFound, match="stream"):
        t.append(StreamId(int(s) + 1), [b"x"])
    with pytest.raises(InvalidArgument, match="max_bytes"):
        t.read_events(s, max_bytes=-1)
    with pytest.raises(InvalidArgument, match="data_class"):
        t.create_stream("t", 4)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="idempotency_id"):
        t.append(s, [b"x"], idempotency_id=b"0" * 16)  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="tenant"):
        db.tenant(TenantId(99), create=False)
    with pytest.raises(InvalidArgument, match="tenant"):
        db.tenant(1, create=True)  # type: ignore[arg-type]
    assert t.log_size() == size
    assert t.read_events(s) == [b"kept"]


def test_sensitive_payloads_never_reach_the_disk_in_plaintext(tmp_path: Path) -> None:
    secret = b"PATIENT-7731-DIAGNOSIS-CONFIDENTIAL"
    public = b"WARD-3-REOPENS-MONDAY-PUBLIC"
    with open_db(tmp_path / "db") as db:
        t = db.tenant(T1, create=True)
        for data_class in (DataClass.INTERNAL, DataClass.CONFIDENTIAL, DataClass.PII):
            t.append(t.create_stream(data_class.name, data_class), [secret + b"-" + bytes(2)])
        phi = t.create_stream("phi", DataClass.PHI)
        bulletin = t.create_stream("bulletin", DataClass.PUBLIC)
        t.append(phi, [secret])
        t.append(bulletin, [public])
    stored = b"".join(p.read_bytes() for p in (tmp_path / "db").rglob("*") if p.is_file())
    assert secret not in stored
    assert public in stored
    with open_db(tmp_path / "db") as db:
        t = db.tenant(T1, create=True)
        assert t.read_events(phi) == [secret]


def test_everything_acknowledged_survives_a_crash(tmp_path: Path) -> None:
    db = open_db(tmp_path / "db", sync_policy=SyncPolicy.every_record())
    t = db.tenant(T1, create=True)
    s = t.create_stream("s", DataClass.PHI)
    acknowledged = [t.append(s, [f"event {i}".encode()]) for i in range(20)]
    db._abandon()  # no clean shutdown: no checkpoint, no index
    with open_db(tmp_path / "db") as reopened:
        t = reopened.tenant(T1, create=True)
        assert t.read_events(s) == [f"event {i}".encode() for i in range(20)]
        assert acknowledged == list(range(20))
        assert t.recoveries() == []
        # A new session writes with a new data key; old events stay readable.
        t.append(s, [b"after"])
        assert t.read_events(s, from_offset=Offset(20)) == [b"after"]


def test_a_torn_tail_is_reported_as_a_recovery(tmp_path: Path) -> None:
    db = open_db(tmp_path / "db")
    t = db.tenant(T1, create=True)
    s = t.create_stream("s", DataClass.PUBLIC)
    t.append(s, [b"kept"])
    log = next((tmp_path / "db").rglob("log"))
    before = saved_mark(log)
    t.append(s, [b"torn" * 50])  # the process dies in this append: it never returns
    segment = sorted((tmp_path / "db").rglob("*.vlog"))[-1]
    db._abandon()
    unacknowledge(log, before)
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) - 100])  # cut the last record in half
    with open_db(tmp_path / "db") as reopened:
        t = reopened.tenant(T1, create=True)
        [recovery] = t.recoveries()
        assert int(recovery.generation) == 1
        assert recovery.discarded_range is not None
        assert t.read_events(s) == [b"kept"]


def test_a_flipped_byte_is_reported_by_verify(tmp_path: Path) -> None:
    marker = b"FLIP-ME-PLEASE"
    with open_db(tmp_path / "db", checkpoint_policy=CheckpointPolicy(every_n_records=2)) as db:
        t = db.tenant(T1, create=True)
        s = t.create_stream("s", DataClass.PUBLIC)
        t.append(s, [marker])
        t.append(s, [b"later"])
    segment = next((tmp_path / "db").rglob("*.vlog"))
    data = bytearray(segment.read_bytes())
    data[data.find(marker)] ^= 0x01
    segment.write_bytes(bytes(data))
    with open_db(tmp_path / "db") as db:
        report = db.verify()
    assert not report.ok
    assert report.first_bad is not None
    # Record 0 pins the signing key, 1 creates the stream, 2 holds the marker.
    assert report.first_bad.tenant == T1 and report.first_bad.record_offset == 2


def test_closed_handles_refuse_work(tmp_path: Path) -> None:
    db = open_db(tmp_path / "db")
    t = db.tenant(T1, create=True)
    s = t.create_stream("s", DataClass.PUBLIC)
    db.close()
    db.close()  # idempotent
    with pytest.raises(ClosedError):
        t.append(s, [b"x"])
    with pytest.raises(ClosedError):
        db.tenant(T1, create=True)


def test_close_checkpoints_and_reopen_is_identical(tmp_path: Path) -> None:
    with open_db(tmp_path / "db") as db:
        t = db.tenant(T1, create=True)
        streams = [t.create_stream(f"s{i}", DataClass(i % 5)) for i in range(5)]
        for stream, n in zip(streams, itertools.count(1), strict=False):
            t.append(stream, [bytes([n]) * n] * n)
        before = (t.streams(), [t.read_events(s) for s in streams])
        size = t.log_size()
    with open_db(tmp_path / "db") as db:
        t = db.tenant(T1, create=True)
        assert (t.streams(), [t.read_events(s) for s in streams]) == before
        assert t.log_size() == size + 1  # the shutdown checkpoint


def test_the_shard_count_is_fixed_at_creation(tmp_path: Path) -> None:
    with open_db(tmp_path / "db", shard_count=4) as db:
        db.tenant(TenantId(12345), create=True).create_stream("s", DataClass.PUBLIC)
    with open_db(tmp_path / "db", shard_count=64) as db:
        # The stored count wins: tenants are found where they were placed.
        assert db.tenants() == [TenantId(12345)]


def test_read_events_refuses_a_negative_offset(tmp_path: Path) -> None:
    with open_db(tmp_path / "db") as db:
        t = db.tenant(T1, create=True)
        s = t.create_stream("s", DataClass.PUBLIC)
        t.append(s, [b"a"])
        with pytest.raises(InvalidArgument, match="from_offset"):
            t.read_events(s, -1)  # type: ignore[arg-type]
