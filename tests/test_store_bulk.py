"""verity.store: batches of hundreds of keys agree with MemoryStore, the reference model.

A batch INSERT hands the store hundreds of changes at once, usually ascending keys
past every stored one. The store checks such a batch a field at a time, takes keys
that already ascend as they are, and appends a run of keys to a leaf in one go
(`Pager.insert_sorted`). Hypothesis draws runs of keys that append to a tree, land
between its keys, replace or delete stored ones, arrive shuffled or repeated, carry
values that spill to overflow pages, and span several trees; every tree's contents
(now and as of each earlier position) must equal the model's, and `verify()` must
find the page file sound, also after a reopen.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verity.errors import InvalidArgument
from verity.store import MemoryStore, Store, open_store

TREES = ("t:1:rows", "i:2:idx", "z\x00odd")
# Prefixes of keys: plain, with 00 bytes to escape, and long (fewer entries per leaf).
PREFIXES = (b"", b"\x04\x00", b"\x00\xff", b"p" * 200)

Change = tuple[str, bytes, bytes | None]


def key_of(prefix: bytes, number: int) -> bytes:
    return prefix + struct.pack(">Q", number)


def value_of(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@st.composite
def runs(draw: st.DrawFn) -> list[Change]:
    """One batch: a run of keys in a tree, from `first` by `step`, possibly shuffled,
    with some keys repeated (the last change wins) and some deleted."""
    tree = draw(st.sampled_from(TREES))
    prefix = draw(st.sampled_from(PREFIXES))
    first = draw(st.integers(0, 3_000))
    step = draw(st.sampled_from((1, 1, 2, 7)))
    count = draw(st.integers(1, 600))
    size = draw(st.sampled_from((0, 8, 48, 300)))
    seed = draw(st.integers(0, 2**16))
    rng = random.Random(seed)
    changes: list[Change] = []
    for index in range(count):
        key = key_of(prefix, first + index * step)
        roll = rng.random()
        if roll < 0.05:
            value: bytes | None = None
        elif roll < 0.07:
            value = value_of(rng.randrange(2_100, 5_000), rng.randrange(2**16))  # overflow
        else:
            value = value_of(size, rng.randrange(2**16))
        changes.append((tree, key, value))
    if draw(st.booleans()) and len(changes) > 2:
        repeated = rng.sample(changes, k=min(len(changes), 5))
        changes.extend((tree, key, b"again") for tree, key, _ in repeated)
    if draw(st.integers(0, 3)) == 0:
        rng.shuffle(changes)
    return changes


batches = st.lists(
    st.one_of(runs(), st.builds(lambda a, b: a + b, runs(), runs())),  # two trees at once
    min_size=1,
    max_size=6,
)


def same_contents(store: Store, model: MemoryStore, positions: list[int]) -> None:
    for tree in TREES:
        assert list(store.scan(tree)) == list(model.scan(tree))
        assert list(store.scan(tree, reverse=True)) == list(model.scan(tree, reverse=True))
        for as_of in positions:
            assert list(store.scan(tree, as_of=as_of)) == list(model.scan(tree, as_of=as_of))
    assert store.applied() == model.applied()
    assert store.trees() == model.trees()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batches=batches, reopen_after=st.integers(0, 6), sync_every=st.integers(1, 3))
def test_large_batches_match_the_model(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[list[Change]],
    reopen_after: int,
    sync_every: int,
) -> None:
    folder = tmp_path_factory.mktemp("bulk")
    store = open_store(folder, page_cache_pages=16)  # pages are evicted and reread all along
    model = MemoryStore()
    positions: list[int] = []
    try:
        for number, batch in enumerate(batches, start=1):
            position = 10 * number
            store.write_batch(position, b"h%d" % position, batch, sync=number % sync_every == 0)
            model.write_batch(position, b"h%d" % position, batch)
            positions.append(position)
            if number == reopen_after:
                store.close()
                store = open_store(folder, page_cache_pages=16)
            for _, key, _ in batch[:: max(1, len(batch) // 8)]:
                for tree in TREES:
                    assert store.get(tree, key) == model.get(tree, key)
        same_contents(store, model, positions)
        assert store.verify() > 4
        store.close()
        store = open_store(folder, page_cache_pages=16)
        same_contents(store, model, positions)
    finally:
        store.close()


def test_ascending_ids_fill_leaves_and_stay_readable(tmp_path: Path) -> None:
    # The batch INSERT shape: 500 ascending keys past every stored one, batch after batch.
    model = MemoryStore()
    with open_store(tmp_path / "s", page_cache_pages=16) as store:
        for position in range(1, 41):
            batch: list[Change] = [
                ("t", key_of(b"\x04", 500 * position + index), b"row %d" % index)
                for index in range(500)
            ]
            store.write_batch(position, b"h", batch, sync=position % 10 == 0)
            model.write_batch(position, b"h", batch)
        assert list(store.scan("t")) == list(model.scan("t"))
        assert list(store.scan("t", as_of=7)) == list(model.scan("t", as_of=7))
        pages = store.verify()
        # Appended runs leave leaves full: 20,000 entries of about 34 bytes fill about 170
        # leaves (plus branches, overflow-free); half-full leaves would need twice as many.
        assert pages < 260


def test_a_bad_change_in_a_large_batch_is_named_and_changes_nothing(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as store:
        batch: list[object] = [("t", key_of(b"", index), b"v") for index in range(300)]
        batch[200] = ("t", b"k" * 1001, b"v")
        with pytest.raises(InvalidArgument) as info:
            store.write_batch(1, b"h", batch)  # type: ignore[arg-type]
        assert "changes[200].key" in str(info.value)
        batch[200] = ("t", b"k", 7)
        with pytest.raises(InvalidArgument) as info:
            store.write_batch(1, b"h", batch)  # type: ignore[arg-type]
        assert "changes[200].value" in str(info.value)
        assert store.applied() is None
        assert list(store.scan("t")) == []
