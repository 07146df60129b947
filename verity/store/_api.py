"""What every projection store offers, and the argument checks they share.

`VersionedStore` is the contract the SQL layer programs against; `Store`
(the page file) and `MemoryStore` (the reference model) both meet it and
reject bad arguments with the same `InvalidArgument` errors, because both
run the checks here.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeAlias, cast, final

from verity.errors import InvalidArgument

__all__ = [
    "KEY_BYTES_MAX",
    "LOG_HASH_BYTES_MAX",
    "POSITION_MAX",
    "TREE_NAME_BYTES_MAX",
    "VALUE_BYTES_MAX",
    "Change",
    "Runs",
    "StoreStats",
    "VersionedStore",
    "check_as_of",
    "check_batch",
    "check_bound",
    "check_key",
    "check_tree",
]

KEY_BYTES_MAX: Final = 1000
"""Longest key; with its escaping and version suffix, an entry still fits half a page."""
VALUE_BYTES_MAX: Final = 16 * 1024 * 1024
"""Longest value; values that do not fit a leaf go to a chain of overflow pages."""
TREE_NAME_BYTES_MAX: Final = 255
"""Longest tree name, in UTF-8 bytes."""
LOG_HASH_BYTES_MAX: Final = 64
POSITION_MAX: Final = 2**64 - 1
_VALUE_TYPES: Final = frozenset({bytes, type(None)})

Change = tuple[str, bytes, bytes | None]
"""(tree name, key, value); a value of None deletes the key."""


@final
@dataclass(frozen=True, slots=True)
class StoreStats:
    """A snapshot of a store's page and cache counters."""

    pages_total: int
    """Pages the store uses, superblocks included."""
    pages_free: int
    """Pages free for reuse (freed by copy-on-write and no longer referenced)."""
    cache_pages: int
    """Decoded pages held in the cache now (never more than `page_cache_pages`)."""
    cache_hits: int
    cache_misses: int


class VersionedStore(Protocol):
    """Trees of bytes to bytes, versioned by log position (the SQL layer's view of a store)."""

    def write_batch(self, position: int, log_hash: bytes, changes: Sequence[Change]) -> None:
        """Apply every change of the log record at `position` (trees by name; value None =
        delete), atomically with recording `(position, log_hash)` as applied. Positions
        strictly increase; within one batch the last change to a key wins."""
        ...

    def get(self, tree: str, key: bytes, as_of: int | None = None) -> bytes | None:
        """The value of `key` as of log position `as_of` (None: the latest applied); None if
        the key was absent or deleted then."""
        ...

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
        """Live (key, value) pairs as of `as_of` with low <= key <= high (bounds None: open),
        in key byte order (descending when `reverse`)."""
        ...

    def applied(self) -> tuple[int, bytes] | None:
        """(position, log_hash) of the last batch applied, or None before the first."""
        ...


def check_tree(tree: object, name: str = "tree") -> str:
    if type(tree) is not str:
        raise InvalidArgument(name, tree, "a tree name must be a str")
    size = len(tree.encode("utf-8", "surrogatepass"))
    if not 0 < size <= TREE_NAME_BYTES_MAX:
        raise InvalidArgument(name, tree, f"a tree name has 1..{TREE_NAME_BYTES_MAX} UTF-8 bytes")
    return tree


def check_key(key: object, name: str = "key") -> bytes:
    if type(key) is not bytes:
        raise InvalidArgument(name, key, "a key must be bytes")
    if len(key) > KEY_BYTES_MAX:
        raise InvalidArgument(
            name, key, f"a key has at most {KEY_BYTES_MAX} bytes, this one {len(key)}"
        )
    return key


def check_bound(bound: object, name: str) -> bytes | None:
    if bound is None:
        return None
    if type(bound) is not bytes:
        raise InvalidArgument(name, bound, "a scan bound must be bytes or None")
    return bound


def check_as_of(as_of: object) -> int | None:
    if as_of is None:
        return None
    if type(as_of) is not int or not 0 <= as_of <= POSITION_MAX:
        raise InvalidArgument("as_of", as_of, f"a log position is an int in 0..{POSITION_MAX}")
    return as_of


Runs: TypeAlias = dict[str, tuple[Sequence[bytes], Sequence[bytes | None]]]
"""A checked batch: for each tree, its keys ascending without repeats and their values."""


def check_batch(
    position: object,
    log_hash: object,
    changes: object,
    applied: tuple[int, bytes] | None,
) -> Runs:
    """The batch's changes by tree, each tree's keys ascending, the last change to a key
    kept; InvalidArgument for anything bad."""
    if type(position) is not int or not 0 <= position <= POSITION_MAX:
        raise InvalidArgument(
            "position", position, f"a log position is an int in 0..{POSITION_MAX}"
        )
    if applied is not None and position <= applied[0]:
        raise InvalidArgument(
            "position", position, f"positions strictly increase; {applied[0]} is already applied"
        )
    if not isinstance(log_hash, bytes) or len(log_hash) > LOG_HASH_BYTES_MAX:
        raise InvalidArgument("log_hash", log_hash, f"bytes of length 0..{LOG_HASH_BYTES_MAX}")
    if not isinstance(changes, Sequence) or isinstance(changes, (bytes, str)):
        raise InvalidArgument("changes", changes, "a sequence of (tree, key, value) tuples")
    runs = _runs_if_valid(changes)
    if runs is not None:
        return runs
    # Something is wrong: find the first bad change, to name it.
    latest: dict[str, dict[bytes, bytes | None]] = {}
    for index, change in enumerate(changes):
        if type(change) is not tuple or len(change) != 3:
            raise InvalidArgument(f"changes[{index}]", change, "expected (tree, key, value)")
        tree, key, value = change
        if type(tree) is not str or tree not in latest:
            latest[check_tree(tree, f"changes[{index}].tree")] = {}
        if type(key) is not bytes or len(key) > KEY_BYTES_MAX:
            check_key(key, f"changes[{index}].key")
        if value is not None and (type(value) is not bytes or len(value) > VALUE_BYTES_MAX):
            if type(value) is not bytes:
                raise InvalidArgument(f"changes[{index}].value", value, "bytes or None")
            raise InvalidArgument(
                f"changes[{index}].value",
                f"<{len(value)} bytes>",
                f"a value has at most {VALUE_BYTES_MAX} bytes",
            )
        latest[tree][key] = value
    return {tree: _ascending(values_by_key) for tree, values_by_key in latest.items()}


def _runs_if_valid(changes: Sequence[object]) -> Runs | None:
    """`check_batch`'s answer when every change is valid, checked a field at a time over
    the whole batch (a batch INSERT has hundreds of changes); None if any is not."""
    if not changes:
        return {}
    if set(map(type, changes)) != {tuple}:
        return None
    triples = cast("Sequence[tuple[object, ...]]", changes)
    if set(map(len, triples)) != {3}:
        return None
    trees, keys, values = zip(*triples, strict=True)
    if set(map(type, trees)) != {str} or set(map(type, keys)) != {bytes}:
        return None
    if not set(map(type, values)) <= _VALUE_TYPES:
        return None
    tree_names = cast("tuple[str, ...]", trees)
    key_bytes = cast("tuple[bytes, ...]", keys)
    value_bytes = cast("tuple[bytes | None, ...]", values)
    present = [value for value in value_bytes if value is not None]
    if max(map(len, key_bytes)) > KEY_BYTES_MAX:
        return None
    if present and max(map(len, present)) > VALUE_BYTES_MAX:
        return None
    distinct = set(tree_names)
    for tree in distinct:
        size = len(tree.encode("utf-8", "surrogatepass"))
        if not 0 < size <= TREE_NAME_BYTES_MAX:
            return None
    if len(distinct) == 1:
        # One tree, as a batch INSERT into a table without indexes writes: often its keys
        # ascend already (ascending ids), and then they are the answer as they are.
        if all(map(operator.lt, key_bytes, key_bytes[1:])):
            return {tree_names[0]: (key_bytes, value_bytes)}
        return {tree_names[0]: _ascending(dict(zip(key_bytes, value_bytes, strict=True)))}
    latest: dict[str, dict[bytes, bytes | None]] = {tree: {} for tree in distinct}
    for tree, key, value in zip(tree_names, key_bytes, value_bytes, strict=True):
        latest[tree][key] = value
    return {tree: _ascending(values_by_key) for tree, values_by_key in latest.items()}


def _ascending(
    values_by_key: dict[bytes, bytes | None],
) -> tuple[Sequence[bytes], Sequence[bytes | None]]:
    """The keys of `values_by_key` ascending, and their values."""
    keys = sorted(values_by_key)
    values = [values_by_key[key] for key in keys]
    assert len(keys) == len(values)
    return keys, values
