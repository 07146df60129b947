"""`MemoryStore`: the reference model of a versioned store, in plain dicts and lists.

Same contract and the same argument errors as `Store`, nothing on disk. The
SQL layer's tests run on it, and the store's own tests use it as the oracle
that `Store` must agree with.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import final

from verity.errors import ClosedError
from verity.store._api import (
    Change,
    check_as_of,
    check_batch,
    check_bound,
    check_key,
    check_tree,
)

__all__ = ["MemoryStore"]


@final
class _Versions:
    """Every version of one key: parallel lists, positions ascending."""

    __slots__ = ("positions", "values")

    def __init__(self) -> None:
        self.positions: list[int] = []
        self.values: list[bytes | None] = []

    def as_of(self, position: int) -> bytes | None:
        index = bisect_right(self.positions, position) - 1
        return self.values[index] if index >= 0 else None


@final
class MemoryStore:
    """A `VersionedStore` held in memory; nothing survives the process."""

    def __init__(self) -> None:
        self._trees: dict[str, tuple[list[bytes], dict[bytes, _Versions]]] = {}
        self._applied: tuple[int, bytes] | None = None
        self._closed = False

    def write_batch(
        self,
        position: int,
        log_hash: bytes,
        changes: Sequence[Change],
        *,
        sync: bool = True,
    ) -> None:
        """Apply the batch and record `(position, log_hash)` as applied (see `Store`)."""
        self._check_open()
        runs = check_batch(position, log_hash, changes, self._applied)
        for tree, (keys, values) in runs.items():
            ordered_keys, versions = self._trees.setdefault(tree, ([], {}))
            for key, value in zip(keys, values, strict=True):
                history = versions.get(key)
                if history is None:
                    history = versions[key] = _Versions()
                    insort(ordered_keys, key)
                history.positions.append(position)
                history.values.append(value)
        self._applied = (position, bytes(log_hash))

    def write_batches(self, batches: Iterable[tuple[int, bytes, Sequence[Change]]]) -> None:
        for position, log_hash, changes in batches:
            self.write_batch(position, log_hash, changes)

    def get(self, tree: str, key: bytes, as_of: int | None = None) -> bytes | None:
        self._check_open()
        check_tree(tree)
        check_key(key)
        position = self._position(check_as_of(as_of))
        found = self._trees.get(tree)
        if found is None or position is None:
            return None
        history = found[1].get(key)
        return None if history is None else history.as_of(position)

    def scan(
        self,
        tree: str,
        low: bytes | None = None,
        high: bytes | None = None,
        *,
        as_of: int | None = None,
        low_inclusive: bool = True,
        high_inclusive: bool = True,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Live pairs in the range as of `as_of`, taken when called (see `Store.scan`)."""
        self._check_open()
        check_tree(tree)
        low = check_bound(low, "low")
        high = check_bound(high, "high")
        position = self._position(check_as_of(as_of))
        found = self._trees.get(tree)
        if found is None or position is None:
            return iter(())
        ordered_keys, versions = found
        start = 0
        if low is not None:
            start = (bisect_left if low_inclusive else bisect_right)(ordered_keys, low)
        end = len(ordered_keys)
        if high is not None:
            end = (bisect_right if high_inclusive else bisect_left)(ordered_keys, high)
        pairs = []
        for key in ordered_keys[start:end]:
            value = versions[key].as_of(position)
            if value is not None:
                pairs.append((key, value))
        if reverse:
            pairs.reverse()
        return iter(pairs)

    def applied(self) -> tuple[int, bytes] | None:
        self._check_open()
        return self._applied

    def trees(self) -> list[str]:
        self._check_open()
        return sorted(self._trees)

    def sync(self) -> None:
        """Nothing to make durable; checks the store is open, like `Store.sync`."""
        self._check_open()

    def close(self) -> None:
        self._closed = True

    def abandon(self) -> None:
        """Drop the store as a crash would (`Store.abandon`): here the same as `close`."""
        self._closed = True

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _position(self, as_of: int | None) -> int | None:
        if as_of is not None:
            return as_of
        return None if self._applied is None else self._applied[0]

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("store")
