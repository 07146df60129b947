"""verity.store: the public surface, its argument checks, durability and bounds.

Argument checks run against both `Store` and `MemoryStore`, which must reject
the same inputs with the same `InvalidArgument`. The rest pins behaviour a
caller relies on: versions and tombstones, overflow values, `sync=False` plus
`sync()`, `write_batches`, reopen, locking, closing, snapshots of running
scans, the cache bound on a store much larger than the cache, and reuse of
pages freed by copy-on-write.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import verity.store
from verity.crypto import PageKey
from verity.errors import ClosedError, InvalidArgument
from verity.store import (
    KEY_BYTES_MAX,
    VALUE_BYTES_MAX,
    MemoryStore,
    Store,
    VersionedStore,
    open_store,
)

AnyStore = Store | MemoryStore


@pytest.fixture(params=["page-file", "sealed-page-file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyStore]:
    opened: AnyStore
    if request.param == "page-file":
        opened = open_store(tmp_path / "s")
    elif request.param == "sealed-page-file":
        opened = open_store(tmp_path / "s", page_key=PageKey(bytes(range(32))))
    else:
        opened = MemoryStore()
    yield opened
    opened.close()


def test_exports_are_locked() -> None:
    assert sorted(verity.store.__all__) == [
        "Change",
        "KEY_BYTES_MAX",
        "MemoryStore",
        "Store",
        "StoreStats",
        "TREE_NAME_BYTES_MAX",
        "VALUE_BYTES_MAX",
        "VersionedStore",
        "open_store",
    ]


def through_protocol(store: VersionedStore) -> list[tuple[bytes, bytes]]:
    store.write_batch(1, b"h1", [("t", b"k", b"v")])
    assert store.get("t", b"k") == b"v"
    assert store.applied() == (1, b"h1")
    return list(store.scan("t"))


def test_both_stores_meet_the_protocol(store: AnyStore) -> None:
    assert through_protocol(store) == [(b"k", b"v")]


@pytest.mark.parametrize(
    ("position", "log_hash", "changes", "named"),
    [
        (-1, b"", [], "position"),
        (True, b"", [], "position"),
        (2**64, b"", [], "position"),
        ("1", b"", [], "position"),
        (5, "hash", [], "log_hash"),
        (5, b"x" * 65, [], "log_hash"),
        (5, b"", "t", "changes"),
        (5, b"", [["t", b"k", b"v"]], "changes[0]"),
        (5, b"", [("t", b"k")], "changes[0]"),
        (5, b"", [("t", "k", b"v")], "changes[0].key"),
        (5, b"", [("t", bytearray(b"k"), b"v")], "changes[0].key"),
        (5, b"", [("t", b"k" * (KEY_BYTES_MAX + 1), b"v")], "changes[0].key"),
        (5, b"", [(b"t", b"k", b"v")], "changes[0].tree"),
        (5, b"", [("", b"k", b"v")], "changes[0].tree"),
        (5, b"", [("t" * 256, b"k", b"v")], "changes[0].tree"),
        (5, b"", [("t", b"k", b"v"), ("t", b"k", "v")], "changes[1].value"),
    ],
)
def test_bad_batches_are_rejected_and_change_nothing(
    store: AnyStore, position: object, log_hash: object, changes: object, named: str
) -> None:
    store.write_batch(3, b"h3", [("t", b"k", b"old")])
    with pytest.raises(InvalidArgument) as caught:
        store.write_batch(position, log_hash, changes)  # type: ignore[arg-type]
    assert caught.value.name == named
    assert store.applied() == (3, b"h3")
    assert list(store.scan("t")) == [(b"k", b"old")]


def test_positions_strictly_increase(store: AnyStore) -> None:
    store.write_batch(7, b"", [])
    for stale in (7, 6, 0):
        with pytest.raises(InvalidArgument, match=f"position={stale}.*7 is already applied"):
            store.write_batch(stale, b"", [("t", b"k", b"v")])
    assert store.get("t", b"k") is None


def test_oversized_value_names_its_size(store: AnyStore) -> None:
    too_big = bytes(VALUE_BYTES_MAX + 1)
    with pytest.raises(InvalidArgument, match=f"<{VALUE_BYTES_MAX + 1} bytes>"):
        store.write_batch(1, b"", [("t", b"k", too_big)])


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda s: s.get(b"t", b"k"), "tree"),
        (lambda s: s.get("t", "k"), "key"),
        (lambda s: s.get("t", b"k", as_of=-1), "as_of"),
        (lambda s: s.get("t", b"k", as_of=1.5), "as_of"),
        (lambda s: s.get("nope", b"k", as_of=-1), "as_of"),
        (lambda s: s.scan(1), "tree"),
        (lambda s: s.scan("t", low="a"), "low"),
        (lambda s: s.scan("t", high=3), "high"),
        (lambda s: s.scan("t", as_of=True), "as_of"),
    ],
)
def test_bad_reads_are_rejected(store: AnyStore, call: object, named: str) -> None:
    store.write_batch(1, b"", [("t", b"k", b"v")])
    assert callable(call)
    with pytest.raises(InvalidArgument) as caught:
        call(store)
    assert caught.value.name == named


def test_versions_tombstones_and_as_of(store: AnyStore) -> None:
    store.write_batch(10, b"a", [("t", b"k", b"v10"), ("t", b"j", b"")])
    store.write_batch(20, b"b", [("t", b"k", None)])
    store.write_batch(30, b"c", [("t", b"k", b"v30"), ("t", b"k", b"last wins")])
    assert store.get("t", b"k", as_of=9) is None
    assert store.get("t", b"k", as_of=10) == b"v10"
    assert store.get("t", b"k", as_of=19) == b"v10"
    assert store.get("t", b"k", as_of=20) is None
    assert store.get("t", b"k") == b"last wins"
    assert store.get("t", b"j") == b""  # an empty value is a value, not a deletion
    assert list(store.scan("t", as_of=25)) == [(b"j", b"")]
    assert list(store.scan("t", as_of=2**64 - 1)) == [(b"j", b""), (b"k", b"last wins")]
    assert store.get("other", b"k") is None
    assert list(store.scan("other")) == []
    assert store.trees() == ["t"]


def test_scan_bounds_and_direction(store: AnyStore) -> None:
    keys = [b"", b"\x00", b"\x00\x00", b"\x00\xff", b"a", b"a\x00", b"ab", b"b", b"\xff"]
    store.write_batch(1, b"", [("t", key, key + b"!") for key in keys])
    assert [k for k, _ in store.scan("t")] == keys
    assert [k for k, _ in store.scan("t", reverse=True)] == keys[::-1]
    assert [k for k, _ in store.scan("t", b"a", b"b")] == [b"a", b"a\x00", b"ab", b"b"]
    assert [k for k, _ in store.scan("t", b"a", b"b", low_inclusive=False)] == [
        b"a\x00",
        b"ab",
        b"b",
    ]
    assert [k for k, _ in store.scan("t", b"a", b"b", high_inclusive=False, reverse=True)] == [
        b"ab",
        b"a\x00",
        b"a",
    ]
    assert [k for k, _ in store.scan("t", high=b"\x00")] == [b"", b"\x00"]
    assert [k for k, _ in store.scan("t", low=b"\x00\xff", low_inclusive=False)] == keys[4:]
    assert list(store.scan("t", b"b", b"a")) == []


def test_large_values_round_trip_through_overflow_pages(tmp_path: Path) -> None:
    rng = random.Random(3)
    values = {bytes([i]): rng.randbytes(size) for i, size in enumerate([2039, 2048, 5000, 300_000])}
    with open_store(tmp_path / "s") as store:
        store.write_batch(1, b"", [("rows", key, value) for key, value in values.items()])
        assert {key: store.get("rows", key) for key in values} == values
    with open_store(tmp_path / "s") as store:
        assert dict(store.scan("rows")) == values
        assert dict(store.scan("rows", reverse=True)) == values
        assert store.verify() > 300_000 // 4096


def test_sync_false_batches_are_durable_after_sync(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    store = open_store(folder)
    for position in range(1, 101):
        key = b"%03d" % position
        store.write_batch(position, bytes([position]), [("t", key, b"v")], sync=False)
    assert store.applied() == (100, bytes([100]))  # visible before it is durable
    store.sync()
    store.write_batch(101, b"lost", [("t", b"lost", b"v")], sync=False)
    store.abandon()  # a crash: the unsynced batch is gone, the synced ones stay
    with open_store(folder) as reopened:
        assert reopened.applied() == (100, bytes([100]))
        assert len(list(reopened.scan("t"))) == 100
        assert reopened.get("t", b"lost") is None


def test_write_batches_commits_once_and_stops_at_a_bad_batch(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    with open_store(folder) as store:
        store.write_batches([(p, b"h", [("t", bytes([p]), b"v")]) for p in range(1, 50)])
        assert store.applied() == (49, b"h")
        with pytest.raises(InvalidArgument, match="position=3"):
            store.write_batches([(50, b"h", [("t", b"x", b"v")]), (3, b"h", [])])
        assert store.applied() == (50, b"h")
    with open_store(folder) as store:
        assert store.applied() == (50, b"h")
        assert store.get("t", b"x") == b"v"


def test_reopen_answers_identically(tmp_path: Path) -> None:
    rng = random.Random(5)
    model = MemoryStore()
    with open_store(tmp_path / "s", page_cache_pages=32) as store:
        for position in range(1, 60):
            batch: list[tuple[str, bytes, bytes | None]] = [
                (rng.choice("abc"), rng.randbytes(2), rng.choice([None, rng.randbytes(90)]))
                for _ in range(50)
            ]
            store.write_batch(position, b"h", batch, sync=position % 10 == 0)
            model.write_batch(position, b"h", batch)
    with open_store(tmp_path / "s", page_cache_pages=32) as store:
        assert store.trees() == model.trees() == ["a", "b", "c"]
        for tree in "abc":
            for as_of in (None, 1, 30, 59):
                assert list(store.scan(tree, as_of=as_of)) == list(model.scan(tree, as_of=as_of))


def test_cache_stays_bounded_on_a_store_far_larger_than_it(tmp_path: Path) -> None:
    rng = random.Random(8)
    with open_store(tmp_path / "s", page_cache_pages=16) as store:
        for position in range(1, 41):
            store.write_batch(
                position,
                b"h",
                [("t", rng.randbytes(6), rng.randbytes(200)) for _ in range(100)],
                sync=position % 8 == 0,
            )
            assert store.stats().cache_pages <= 16
        keys = [key for key, _ in store.scan("t")]
        assert store.stats().cache_pages <= 16
        for key in rng.sample(keys, 300):
            assert store.get("t", key) is not None
            assert store.stats().cache_pages <= 16
        stats = store.stats()
        assert stats.pages_total > 20 * 16  # the store is far larger than the cache
        assert stats.cache_misses > 300 and stats.cache_hits > 0


def test_pages_freed_by_copy_on_write_are_reused(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as store:
        for position in range(1, 121):
            store.write_batch(position, b"h", [("t", bytes([position % 4]), b"v" * 50)])
        stats = store.stats()
        # Without reuse every commit would add its copied pages: hundreds of pages.
        assert stats.pages_total < 30
        assert stats.pages_free > 0
        assert store.verify() == stats.pages_total  # every page used once or free: no leak


def test_a_running_scan_sees_the_state_it_started_in(tmp_path: Path) -> None:
    with open_store(tmp_path / "s", page_cache_pages=16) as store:
        store.write_batch(1, b"", [("t", b"%04d" % i, b"old") for i in range(2000)])
        scan = store.scan("t")
        first = [next(scan) for _ in range(10)]
        store.write_batch(2, b"", [("t", b"%04d" % i, b"new") for i in range(0, 2000, 2)])
        store.write_batch(3, b"", [("t", b"%04d" % i, None) for i in range(1, 2000, 2)])
        rest = list(scan)
        assert [value for _, value in first + rest] == [b"old"] * 2000
        assert [value for _, value in store.scan("t")] == [b"new"] * 1000


def test_threads_share_a_store(tmp_path: Path) -> None:
    with open_store(tmp_path / "s", page_cache_pages=16) as store:
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                for _ in range(200):
                    values = {value for _, value in store.scan("t")}
                    assert len(values) <= 1  # every batch rewrites all keys at once
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for thread in threads:
            thread.start()
        for position in range(1, 60):
            value = bytes([position]) * 40
            batch = [("t", b"%03d" % i, value) for i in range(150)]
            store.write_batch(position, b"", batch, sync=position % 10 == 0)
        for thread in threads:
            thread.join()
        assert errors == []


def test_open_validates_and_locks(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="page_cache_pages"):
        open_store(tmp_path / "s", page_cache_pages=4)
    with pytest.raises(InvalidArgument, match="path"):
        open_store(42)  # type: ignore[arg-type]
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(InvalidArgument, match="not a folder"):
        open_store(tmp_path / "file")
    with open_store(tmp_path / "s"), pytest.raises(InvalidArgument, match="already open"):
        open_store(tmp_path / "s")
    with open_store(tmp_path / "s") as again:  # the lock went with the close
        assert again.applied() is None


def test_closed_store_refuses_everything(store: AnyStore) -> None:
    store.write_batch(1, b"", [("t", b"k", b"v")])
    scan = store.scan("t")
    store.close()
    store.close()  # idempotent
    for call in (
        lambda: store.get("t", b"k"),
        lambda: store.scan("t"),
        lambda: store.write_batch(2, b"", []),
        store.applied,
        store.trees,
        store.sync,
    ):
        with pytest.raises(ClosedError, match="store is closed"):
            call()
    if isinstance(store, Store):
        with pytest.raises(ClosedError):
            next(scan)  # a scan reads lazily and notices the close


def test_context_manager_commits_on_exit(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as store:
        store.write_batch(1, b"h", [("t", b"k", b"v")], sync=False)
    assert store.closed
    with open_store(tmp_path / "s") as store:
        assert store.get("t", b"k") == b"v"
        stats = store.stats()
        assert stats.pages_total >= 6 and stats.cache_pages >= 1
