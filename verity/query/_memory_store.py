"""A reference `VersionedStore` in plain dicts and sorted lists, for tests and small tools.

It has the semantics of the Protocol and nothing more: every version of every key is
kept in memory, reads as of an old position bisect that key's history, and nothing
survives the process. `verity.store` is the durable implementation; this one is the
yardstick it can be compared with, and the store the SQL engine's tests run on.

Not safe for concurrent writers; concurrent readers are fine while nobody writes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import final

from verity.errors import InvalidArgument
from verity.query._store_protocol import Change

__all__ = ["MemoryVersionedStore"]


@final
class _Tree:
    """One tree: its keys in byte order, each key's history, and the live values."""

    __slots__ = ("history", "keys", "latest")

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        # key -> (positions ascending, value written at each; None = deleted)
        self.history: dict[bytes, tuple[list[int], list[bytes | None]]] = {}
        self.latest: dict[bytes, bytes] = {}

    def value_as_of(self, key: bytes, as_of: int | None) -> bytes | None:
        if as_of is None:
            return self.latest.get(key)
        versions = self.history.get(key)
        if versions is None:
            return None
        positions, values = versions
        index = bisect.bisect_right(positions, as_of)
        return values[index - 1] if index > 0 else None


@final
class MemoryVersionedStore:
    """The `VersionedStore` Protocol over dicts: a reference store and a test double.

    Within one batch, a key changed twice keeps its last change.
    """

    def __init__(self) -> None:
        self._trees: dict[str, _Tree] = {}
        self._applied: tuple[int, bytes] | None = None

    def write_batch(self, position: int, log_hash: bytes, changes: Sequence[Change]) -> None:
        """Apply `changes` as the effect of the log record at `position`, then record
        (position, log_hash) as applied. Validates everything before changing anything."""
        if not isinstance(position, int) or isinstance(position, bool) or position < 0:
            raise InvalidArgument("position", position, "must be an int >= 0")
        if self._applied is not None and position <= self._applied[0]:
            raise InvalidArgument(
                "position", position, f"must exceed the applied position {self._applied[0]}"
            )
        if not isinstance(log_hash, bytes):
            raise InvalidArgument("log_hash", log_hash, "must be bytes")
        for change in changes:
            tree_name, key, value = change
            if not isinstance(tree_name, str) or not isinstance(key, bytes):
                raise InvalidArgument("change", change, "must be (str, bytes, bytes | None)")
            if value is not None and not isinstance(value, bytes):
                raise InvalidArgument("change", change, "value must be bytes or None")
        for tree_name, key, value in changes:
            tree = self._trees.get(tree_name)
            if tree is None:
                tree = self._trees[tree_name] = _Tree()
            versions = tree.history.get(key)
            if versions is None:
                versions = tree.history[key] = ([], [])
                bisect.insort(tree.keys, key)
            positions, values = versions
            if positions and positions[-1] == position:
                values[-1] = value
            else:
                positions.append(position)
                values.append(value)
            if value is None:
                tree.latest.pop(key, None)
            else:
                tree.latest[key] = value
        self._applied = (position, log_hash)
        assert self._applied[0] == position

    def get(self, tree: str, key: bytes, as_of: int | None = None) -> bytes | None:
        """The value of `key` in `tree` as of `as_of` (None: latest), or None."""
        found = self._trees.get(tree)
        if found is None:
            return None
        return found.value_as_of(key, as_of)

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
        """Live (key, value) pairs of `tree` as of `as_of` between the bounds, in byte order
        (descending when `reverse`)."""
        found = self._trees.get(tree)
        if found is None:
            return iter(())
        keys = found.keys
        if low is None:
            start = 0
        elif low_inclusive:
            start = bisect.bisect_left(keys, low)
        else:
            start = bisect.bisect_right(keys, low)
        if high is None:
            stop = len(keys)
        elif high_inclusive:
            stop = bisect.bisect_right(keys, high)
        else:
            stop = bisect.bisect_left(keys, high)
        # A copy of the slice, so that a write during the iteration cannot shift it.
        selected = keys[start:stop] if start < stop else []
        if reverse:
            selected.reverse()
        return self._live_pairs(found, selected, as_of)

    @staticmethod
    def _live_pairs(
        tree: _Tree, keys: list[bytes], as_of: int | None
    ) -> Iterator[tuple[bytes, bytes]]:
        for key in keys:
            value = tree.value_as_of(key, as_of)
            if value is not None:
                yield key, value

    def applied(self) -> tuple[int, bytes] | None:
        """(position, log_hash) of the last applied record, or None before the first."""
        return self._applied
