"""Lockstep: the projection store (`verity.store`) against the spec (`verity_spec.store`).

The spec keeps every batch in a list and answers by reading them; the
implementation keeps copy-on-write B+trees in a page file, with a small page
cache so pages are evicted and reread all the time. Both get the same
batches, reads and bad arguments, and must give the same answers and name
the same bad argument. The store is reopened cleanly, crashed (closed
without committing: batches written without sync are lost), and verified
page by page.

What it reaches: trees of three and more levels from long keys (up to the
1,000-byte bound), overflow chains from values over half a page, versions
read back at every past position, deletes (tombstones), overwrites that free
pages for reuse, batches of a few hundred changes, and every argument check
of `write_batch`, `get` and `scan`. Keys of up to 1,000 bytes made mostly of
zero bytes, which the store escapes to twice their length, written in random
order over several batches: branches of three 1,300 to 2,000-byte
separators split at every few leaf splits, then the store verifies every
page and answers a full scan. Dozens of trees whose names (up to the 255-byte
bound) are each a prefix of the next: the catalog (tree name to root) splits
its leaves between a name and its extension, then verify and a scan of each.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import verity_spec.errors as spec_errors
import verity_spec.store as spec_store
from verity.crypto import PageKey
from verity.errors import InvalidArgument
from verity.store import Store, open_store

TREES = ("accounts", "orders", "idx\x00odd", "é" * 127)
# Prefixes that share long runs (deep trees, long separators) or hold 00 and FF bytes.
KEY_PREFIXES = (b"", b"k", b"\x00", b"\x00\xff", b"\xff", b"a" * 300, b"b" * 600 + b"\x00")
KEY_TAILS = (b"", b"\x00", b"\x01", b"x", b"xy", b"\xff")
PAGE_KEY = bytes(range(32))
LONGEST_KEY = b"z" * spec_store.KEY_BYTES_MAX

keys = st.one_of(
    st.builds(
        lambda prefix, tail: prefix + tail,
        st.sampled_from(KEY_PREFIXES),
        st.one_of(st.sampled_from(KEY_TAILS), st.binary(max_size=3)),
    ),
    st.just(LONGEST_KEY),
)


def seeded_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# Large values come from a seed: drawing thousands of bytes would exhaust Hypothesis' buffer.
values = st.one_of(
    st.binary(max_size=8),
    st.builds(seeded_bytes, st.integers(200, 600), st.integers(0, 2**16)),
    st.builds(seeded_bytes, st.integers(2100, 9000), st.integers(0, 2**16)),  # overflow
)
change_lists = st.lists(
    st.tuples(st.sampled_from(TREES), keys, st.one_of(st.none(), values)), max_size=10
)
bounds = st.one_of(st.none(), keys)

# Bad arguments, each with where it goes; shared so Hypothesis never builds them.
TOO_LONG_VALUE = bytes(spec_store.VALUE_BYTES_MAX + 1)
BAD_TREES: tuple[object, ...] = (b"accounts", 7, None, "", "t" * 256, "é" * 128)
BAD_KEYS: tuple[object, ...] = ("k", bytearray(b"k"), None, 1, b"k" * 1001)
BAD_VALUES: tuple[object, ...] = ("v", bytearray(b"v"), 0, TOO_LONG_VALUE)
BAD_AS_OF: tuple[object, ...] = (-1, 2**64, "1", 1.0, True)
BAD_LOG_HASHES: tuple[object, ...] = (bytes(65), "hash", None)
BAD_CHANGES: tuple[object, ...] = (b"abc", "abc", 5, None)
BAD_CHANGE_SHAPES: tuple[object, ...] = (["accounts", b"k", b"v"], ("accounts", b"k"), "x")
# Tree names of 200 to 254 bytes, each a prefix of the next (catalog separators).
CHAINED_TREES = tuple("t" * 200 + "u" * extra for extra in range(55))

Observation = dict[str, Any]


def observe(call: Callable[[], object]) -> Observation:
    """The answer of `call`, or the argument it refused."""
    try:
        answer = call()
    except (InvalidArgument, spec_errors.InvalidArgumentError) as refused:
        return {"invalid_argument": refused.name}
    if answer is None:
        return {"none": None}
    if isinstance(answer, bytes):
        return {"value": answer.hex()}
    if isinstance(answer, tuple):
        position, log_hash = answer
        return {"applied": [position, log_hash.hex()]}
    pairs = list(answer)  # type: ignore[call-overload]
    return {"pairs": [[key.hex(), value.hex()] for key, value in pairs]}


class StoreLockstep(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="verity-store-lockstep-"))
        self.spec = spec_store.empty_store()
        self.page_key: bytes | None = None
        self.store: Store | None = None
        self.position = 0

    def open(self) -> Store:
        key = None if self.page_key is None else PageKey(self.page_key)
        return open_store(self.folder, page_cache_pages=16, page_key=key)

    @property
    def impl(self) -> Store:
        assert self.store is not None
        return self.store

    def agree(self, what: str, expected: Observation, actual: Observation) -> None:
        assert actual == expected, f"{what}: spec {expected!r:.600}, implementation {actual!r:.600}"

    @initialize(sealed=st.booleans(), seed=st.integers(0, 2**32 - 1), count=st.integers(0, 300))
    def open_both(self, sealed: bool, seed: int, count: int) -> None:
        # Many long keys up front: trees three and four levels deep from the first step.
        self.page_key = PAGE_KEY if sealed else None
        self.store = self.open()
        rng = random.Random(seed)
        batch: list[spec_store.Change] = [
            (rng.choice(TREES), b"b" * 600 + rng.randbytes(2), rng.randbytes(rng.randrange(50)))
            for _ in range(count)
        ]
        self.write(batch, sync=True, gap=1)

    # ------------------------------------------------------------ writes

    def write(
        self,
        changes: object,
        sync: bool,
        gap: int,
        log_hash: object = None,
        position: object = None,
    ) -> None:
        """One batch to both; a refused one changes neither."""
        at = self.position + gap if position is None else position
        digest = log_hash
        if log_hash is None:
            digest = at.to_bytes(8, "big") * 4 if isinstance(at, int) and 0 <= at < 2**64 else b""
        written: list[spec_store.Store] = []

        def spec_write() -> None:
            written.append(spec_store.write_batch(self.spec, at, digest, changes, sync))  # type: ignore[arg-type]

        expected = observe(spec_write)
        actual = observe(lambda: self.impl.write_batch(at, digest, changes, sync=sync))  # type: ignore[arg-type]
        self.agree(f"write_batch({at!r})", expected, actual)
        if written:
            self.spec = written[0]
            assert isinstance(at, int)
            self.position = at

    @rule(changes=change_lists, sync=st.booleans(), gap=st.integers(1, 3))
    def write_batch(self, changes: list[spec_store.Change], sync: bool, gap: int) -> None:
        self.write(changes, sync, gap)

    @rule(seed=st.integers(0, 2**32 - 1), count=st.integers(100, 400), sync=st.booleans())
    def write_bulk(self, seed: int, count: int, sync: bool) -> None:
        # A batch of hundreds: leaves split many times in one commit; some keys repeat,
        # some values overflow, some changes delete what earlier batches wrote.
        rng = random.Random(seed)
        changes: list[spec_store.Change] = []
        for _ in range(count):
            key = rng.choice(KEY_PREFIXES) + rng.randbytes(rng.randrange(4))
            roll = rng.random()
            value = (
                None if roll < 0.1 else rng.randbytes(3000 if roll > 0.97 else rng.randrange(80))
            )
            changes.append((rng.choice(TREES), key, value))
        self.write(changes, sync, gap=1)

    def agree_on_scan(self, tree: str) -> None:
        """Every live pair of `tree`, forward, from both."""
        self.agree(
            f"scan({tree[:20]!r}...)",
            observe(lambda: spec_store.scan(self.spec, tree)),
            observe(lambda: self.impl.scan(tree)),
        )

    @rule(
        seed=st.integers(0, 2**32 - 1),
        count=st.integers(20, 90),
        batches=st.integers(1, 3),
        tree=st.sampled_from(TREES[:2]),
    )
    def write_escaped_long_keys(self, seed: int, count: int, batches: int, tree: str) -> None:
        """Keys of 650 to 999 bytes, mostly zero bytes (escaped to twice their length),
        in random order, over a few batches (versions of a key side by side): branches
        hold three 1,300 to 2,000-byte separators and split often, the last one often
        the longest. Then every page is verified and the tree scanned."""
        rng = random.Random(seed)
        pool = [
            b"\x00" * rng.randrange(650, 996) + rng.randbytes(rng.randrange(1, 5))
            for _ in range(count)
        ]
        for _ in range(batches):
            changes: list[spec_store.Change] = [
                (tree, key, rng.randbytes(rng.randrange(40))) for key in rng.sample(pool, count)
            ]
            self.write(changes, sync=rng.random() < 0.5, gap=1)
        self.verify()
        self.agree_on_scan(tree)

    @rule(count=st.integers(25, len(CHAINED_TREES)), sync=st.booleans())
    def write_chained_trees(self, count: int, sync: bool) -> None:
        """One change in each of `count` trees named each by a prefix of the next: the
        catalog splits where one name is a prefix of the other. Then verify, and scan."""
        changes: list[spec_store.Change] = []
        for index, tree in enumerate(CHAINED_TREES[:count]):
            changes.append((tree, tree.encode()[-3:], bytes([index])))
        self.write(changes, sync, gap=1)
        self.verify()
        for tree in CHAINED_TREES[: count : max(1, count // 8)]:
            self.agree_on_scan(tree)

    @rule(data=st.data(), changes=change_lists)
    def write_bad(self, data: st.DataObject, changes: list[Any]) -> None:
        # One bad argument: refused, named, and nothing written.
        where = data.draw(
            st.sampled_from(["position", "log_hash", "changes", "shape", "tree", "key", "value"]),
            label="bad",
        )
        if where == "position":
            applied = spec_store.applied(self.spec)
            stale = [applied[0]] if applied is not None else []
            position = data.draw(st.sampled_from([*stale, -1, 2**64, "1", 1.0]), label="position")
            self.write(changes, True, 1, position=position)
            return
        if where == "log_hash":
            log_hash = data.draw(st.sampled_from(BAD_LOG_HASHES), label="log_hash")
            self.write(changes, True, 1, log_hash=log_hash)
            return
        if where == "changes":
            self.write(data.draw(st.sampled_from(BAD_CHANGES), label="changes"), True, 1)
            return
        index = data.draw(st.integers(0, len(changes)), label="index")
        good: tuple[object, object, object] = ("accounts", b"k", b"v")
        if where == "shape":
            bad: object = data.draw(st.sampled_from(BAD_CHANGE_SHAPES), label="change")
        elif where == "tree":
            bad = (data.draw(st.sampled_from(BAD_TREES), label="tree"), good[1], good[2])
        elif where == "key":
            bad = (good[0], data.draw(st.sampled_from(BAD_KEYS), label="key"), good[2])
        else:
            bad = (good[0], good[1], data.draw(st.sampled_from(BAD_VALUES), label="value"))
        self.write([*changes[:index], bad, *changes[index:]], True, 1)

    @rule()
    def sync(self) -> None:
        self.impl.sync()
        self.spec = spec_store.sync(self.spec)

    # ------------------------------------------------------------ reads

    def as_of(self, choice: int | None) -> int | None:
        if choice is None:
            return None
        return choice % (self.position + 2)  # past, current and future positions

    @rule(tree=st.sampled_from(TREES), key=keys, as_of=st.one_of(st.none(), st.integers(0)))
    def get(self, tree: str, key: bytes, as_of: int | None) -> None:
        position = self.as_of(as_of)
        self.agree(
            f"get({tree!r}, {key[:20]!r}, {position})",
            observe(lambda: spec_store.get(self.spec, tree, key, position)),
            observe(lambda: self.impl.get(tree, key, position)),
        )

    @rule(tree=st.sampled_from(TREES), as_of=st.one_of(st.none(), st.integers(0)))
    def get_written_keys(self, tree: str, as_of: int | None) -> None:
        # Keys somewhere in the history, so that gets meet versions, not gaps.
        position = self.as_of(as_of)
        written = sorted(
            {key for batch in self.spec.batches for name, key, _ in batch.changes if name == tree}
        )
        for key in written[:: max(1, len(written) // 20)]:
            self.agree(
                f"get({tree!r}, {key[:20]!r}, {position})",
                observe(lambda key=key: spec_store.get(self.spec, tree, key, position)),  # type: ignore[misc]
                observe(lambda key=key: self.impl.get(tree, key, position)),  # type: ignore[misc]
            )

    @rule(data=st.data())
    def get_bad(self, data: st.DataObject) -> None:
        tree: object = data.draw(st.sampled_from([*TREES[:2], *BAD_TREES]), label="tree")
        key: object = data.draw(st.sampled_from([b"k", *BAD_KEYS]), label="key")
        as_of: object = data.draw(st.sampled_from([None, 0, *BAD_AS_OF]), label="as_of")
        self.agree(
            f"get({tree!r:.40}, {key!r:.40}, {as_of!r})",
            observe(lambda: spec_store.get(self.spec, tree, key, as_of)),
            observe(lambda: self.impl.get(tree, key, as_of)),  # type: ignore[arg-type]
        )

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
        position = self.as_of(as_of)
        flags = {"low_inclusive": low_inclusive, "high_inclusive": high_inclusive}
        self.agree(
            f"scan({tree!r}, {low!r:.30}, {high!r:.30}, {flags}, {reverse}, {position})",
            observe(
                lambda: spec_store.scan(
                    self.spec, tree, low, high, position, reverse=reverse, **flags
                )
            ),
            observe(
                lambda: self.impl.scan(tree, low, high, as_of=position, reverse=reverse, **flags)
            ),
        )

    @rule(data=st.data())
    def scan_bad(self, data: st.DataObject) -> None:
        tree: object = data.draw(st.sampled_from([TREES[0], *BAD_TREES]), label="tree")
        low: object = data.draw(st.sampled_from([None, b"a", "a", 1]), label="low")
        high: object = data.draw(st.sampled_from([None, b"z", bytearray(b"z")]), label="high")
        as_of: object = data.draw(st.sampled_from([None, 1, *BAD_AS_OF]), label="as_of")
        self.agree(
            f"scan({tree!r:.40}, {low!r}, {high!r}, as_of={as_of!r})",
            observe(lambda: spec_store.scan(self.spec, tree, low, high, as_of)),
            observe(lambda: self.impl.scan(tree, low, high, as_of=as_of)),  # type: ignore[arg-type]
        )

    # ------------------------------------------------------------ lifecycle

    @rule()
    def reopen(self) -> None:
        # A clean close commits what is pending.
        self.impl.close()
        self.store = self.open()
        self.spec = spec_store.sync(self.spec)

    @rule()
    def crash(self) -> None:
        # Closed without committing: batches written without sync since the last commit
        # are lost, and the store reopens at the last durable one.
        self.impl.abandon()
        self.store = self.open()
        self.spec = spec_store.crash(self.spec)
        applied = spec_store.applied(self.spec)
        self.position = 0 if applied is None else applied[0]

    @rule()
    def verify(self) -> None:
        # Commits what is pending, then checks every page from disk: CRCs, tree shapes,
        # the free list, the overflow chains.
        assert self.impl.verify() > 0
        self.spec = spec_store.sync(self.spec)

    @invariant()
    def same_applied(self) -> None:
        if self.store is not None:
            self.agree(
                "applied()",
                observe(lambda: spec_store.applied(self.spec)),
                observe(self.impl.applied),
            )

    def teardown(self) -> None:
        if self.store is not None:
            self.store.abandon()
        shutil.rmtree(self.folder, ignore_errors=True)
