"""verity.store: the page-file store agrees with MemoryStore, the reference model.

A Hypothesis state machine runs the same batches against a `Store` (with a
16-page cache, so pages are evicted and reread all the time) and a
`MemoryStore`, and compares every `get` and `scan` (bounds, inclusivity,
direction, `as_of` at past positions). Long keys make trees three and more
levels deep. Clean reopens must answer identically; a crash (abandon) must
reopen at the last synced batch, which the model rebuilds from its history.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

import pytest
from _campaign import campaign
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from verity.store import MemoryStore, Store, open_store

TREES = ("accounts", "orders", "idx\x00odd")
# Prefixes that share long runs (deep trees, long separators) or contain 00 and FF bytes.
KEY_PREFIXES = (b"", b"k", b"\x00", b"\x00\xff", b"\xff", b"a" * 300, b"b" * 600 + b"\x00")

# Mostly a few tails, so keys repeat and gather many versions; sometimes any short tail.
KEY_TAILS = (b"", b"\x00", b"\x01", b"x", b"xy", b"\xff")
keys = st.builds(
    lambda prefix, tail: prefix + tail,
    st.sampled_from(KEY_PREFIXES),
    st.one_of(st.sampled_from(KEY_TAILS), st.binary(max_size=3)),
)


def seeded_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# Large values come from a seed: drawing thousands of bytes would exhaust Hypothesis' buffer.
values = st.one_of(
    st.binary(max_size=8),
    st.builds(seeded_bytes, st.integers(200, 600), st.integers(0, 2**16)),
    st.builds(seeded_bytes, st.integers(2100, 9000), st.integers(0, 2**16)),  # overflow pages
)
changes = st.lists(
    st.tuples(st.sampled_from(TREES), keys, st.one_of(st.none(), values)),
    max_size=12,
)
bounds = st.one_of(st.none(), keys)

Batch = tuple[int, bytes, list[tuple[str, bytes, bytes | None]]]


def model_of(batches: list[Batch]) -> MemoryStore:
    model = MemoryStore()
    for position, log_hash, batch_changes in batches:
        model.write_batch(position, log_hash, batch_changes)
    return model


class StoreMatchesModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="verity-store-model-"))
        self.store: Store = open_store(self.folder, page_cache_pages=16)
        self.model = MemoryStore()
        self.batches: list[Batch] = []
        self.durable_batches = 0
        self.position = 0

    @initialize(seed=st.integers(0, 2**32 - 1), count=st.integers(0, 300))
    def preload(self, seed: int, count: int) -> None:
        # Many long keys up front: trees three and four levels deep from the first step.
        rng = random.Random(seed)
        batch: list[tuple[str, bytes, bytes | None]] = [
            (rng.choice(TREES), b"b" * 600 + rng.randbytes(2), rng.randbytes(rng.randrange(50)))
            for _ in range(count)
        ]
        self.write(batch, sync=True)

    def write(self, batch: list[tuple[str, bytes, bytes | None]], sync: bool) -> None:
        self.position += 1 + len(self.batches) % 3
        log_hash = self.position.to_bytes(8, "big") * 4
        self.store.write_batch(self.position, log_hash, batch, sync=sync)
        self.model.write_batch(self.position, log_hash, batch)
        self.batches.append((self.position, log_hash, batch))
        if sync:
            self.durable_batches = len(self.batches)

    @rule(batch=changes, sync=st.booleans())
    def write_batch(self, batch: list[tuple[str, bytes, bytes | None]], sync: bool) -> None:
        self.write(batch, sync)

    def as_of(self, choice: int | None) -> int | None:
        if choice is None or not self.batches:
            return None
        return choice % (self.position + 2)  # past, current and future positions

    @rule(tree=st.sampled_from(TREES), key=keys, as_of=st.one_of(st.none(), st.integers(0)))
    def get(self, tree: str, key: bytes, as_of: int | None) -> None:
        position = self.as_of(as_of)
        assert self.store.get(tree, key, position) == self.model.get(tree, key, position)

    @rule(tree=st.sampled_from(TREES), as_of=st.one_of(st.none(), st.integers(0)))
    def get_written_keys(self, tree: str, as_of: int | None) -> None:
        # Keys that exist somewhere in the history, so that gets hit versions, not gaps.
        position = self.as_of(as_of)
        written = {key for _, _, batch in self.batches for name, key, _ in batch if name == tree}
        for key in sorted(written)[:20]:
            assert self.store.get(tree, key, position) == self.model.get(tree, key, position)

    @rule(
        tree=st.sampled_from(TREES),
        low=bounds,
        high=bounds,
        low_inclusive=st.booleans(),
        high_inclusive=st.booleans(),
        reverse=st.booleans(),
        as_of=st.one_of(st.none(), st.integers(0)),
    )
    def scan(
        self,
        tree: str,
        low: bytes | None,
        high: bytes | None,
        low_inclusive: bool,
        high_inclusive: bool,
        reverse: bool,
        as_of: int | None,
    ) -> None:
        options = {
            "as_of": self.as_of(as_of),
            "low_inclusive": low_inclusive,
            "high_inclusive": high_inclusive,
            "reverse": reverse,
        }
        actual = list(self.store.scan(tree, low, high, **options))  # type: ignore[arg-type]
        expected = list(self.model.scan(tree, low, high, **options))  # type: ignore[arg-type]
        assert actual == expected

    @rule()
    def sync(self) -> None:
        self.store.sync()
        self.durable_batches = len(self.batches)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.durable_batches = len(self.batches)
        self.store = open_store(self.folder, page_cache_pages=16)

    @precondition(lambda self: self.batches)
    @rule()
    def crash(self) -> None:
        self.store.abandon()
        self.store = open_store(self.folder, page_cache_pages=16)
        del self.batches[self.durable_batches :]
        self.model = model_of(self.batches)
        self.position = self.batches[-1][0] if self.batches else 0

    @rule()
    def verify(self) -> None:
        self.store.verify()
        self.durable_batches = len(self.batches)

    @invariant()
    def same_applied_and_trees(self) -> None:
        assert self.store.applied() == self.model.applied()
        assert self.store.trees() == self.model.trees()
        assert self.store.stats().cache_pages <= 16

    def teardown(self) -> None:
        self.store.abandon()
        shutil.rmtree(self.folder, ignore_errors=True)


StoreMatchesModel.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_store_matches_model = StoreMatchesModel.TestCase


@pytest.mark.slow
def test_store_matches_model_long_campaign() -> None:
    run_state_machine_as_test(
        StoreMatchesModel,
        settings=settings(
            max_examples=campaign(300),
            stateful_step_count=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )


def tree_depth(store: Store, tree: str) -> int:
    """Levels of `tree` (white-box: only to prove the scenario below is deep enough)."""
    node = store._pager.load(store._roots[tree])
    depth = 1
    while not node.is_leaf:
        node = store._pager.load(node.children[0])
        depth += 1
    return depth


def test_deep_tree_answers_every_position(tmp_path: Path) -> None:
    rng = random.Random(4)
    model = MemoryStore()
    with open_store(tmp_path / "s", page_cache_pages=16) as store:
        for position in range(1, 41):
            batch: list[tuple[str, bytes, bytes | None]] = []
            for _ in range(25):
                key = b"p" * 500 + rng.randbytes(2)
                value = None if rng.random() < 0.15 else rng.randbytes(rng.randrange(120))
                batch.append(("t", key, value))
            store.write_batch(position, b"h", batch, sync=position % 7 == 0)
            model.write_batch(position, b"h", batch)
        assert tree_depth(store, "t") >= 3
        for position in range(0, 42, 3):
            assert list(store.scan("t", as_of=position)) == list(model.scan("t", as_of=position))
            assert list(store.scan("t", as_of=position, reverse=True)) == list(
                model.scan("t", as_of=position, reverse=True)
            )
        probes = [key for _, key, _ in batch] + [b"p" * 500, b"p" * 501 + b"\xff"]
        for key in probes:
            for position in (1, 13, 27, 40):
                assert store.get("t", key, position) == model.get("t", key, position)
    with open_store(tmp_path / "s", page_cache_pages=16) as reopened:
        assert reopened.verify() > 100
        for position in (5, 20, 40):
            assert list(reopened.scan("t", as_of=position)) == list(model.scan("t", as_of=position))
