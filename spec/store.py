"""The projection store: named trees of bytes, versioned by log position.

Tables are projections of the log, and the store keeps them. It is a map
from (tree name, key) to value, where every write records the log position
that made it, so it answers "as of" any past position. The store applies one
log record at a time, as a *batch* of changes, all or nothing:

    write_batch(position, log_hash, changes)

`changes` are (tree, key, value) triples; a value of None deletes the key;
within one batch the last change to a key wins. Positions strictly increase.
`applied()` is (position, log_hash) of the last batch applied: where a
caller resumes applying the log after a restart.

Durability: a batch written with `sync` is durable when the call returns;
one written without is visible at once and durable after the next `sync`.
A crash loses exactly the batches that were not yet durable; a store never
reopens part way through a batch.

This model keeps every batch, in order, and answers each question by reading
them from the start: it has no trees, pages or caches. Arguments are checked
in a fixed order, and the first bad one is named (`InvalidArgumentError.name`),
so an implementation must check in the same order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import icontract

from verity_spec.errors import InvalidArgumentError

__all__ = [
    "KEY_BYTES_MAX",
    "LOG_HASH_BYTES_MAX",
    "POSITION_MAX",
    "TREE_NAME_BYTES_MAX",
    "VALUE_BYTES_MAX",
    "Batch",
    "Store",
    "applied",
    "check_batch",
    "crash",
    "empty_store",
    "get",
    "scan",
    "sync",
    "write_batch",
]

KEY_BYTES_MAX = 1000
VALUE_BYTES_MAX = 16 * 1024 * 1024
TREE_NAME_BYTES_MAX = 255
LOG_HASH_BYTES_MAX = 64
POSITION_MAX = 2**64 - 1

Change = tuple[str, bytes, bytes | None]


@dataclass(frozen=True)
class Batch:
    position: int
    log_hash: bytes
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class Store:
    batches: tuple[Batch, ...]
    durable: int
    """How many of `batches` (a prefix) a crash keeps."""


def is_store(store: Store) -> bool:
    positions = [batch.position for batch in store.batches]
    increasing = all(a < b for a, b in itertools.pairwise(positions))
    return increasing and 0 <= store.durable <= len(store.batches)


def empty_store() -> Store:
    return Store(batches=(), durable=0)


@icontract.require(lambda store: is_store(store))
def applied(store: Store) -> tuple[int, bytes] | None:
    """(position, log_hash) of the last batch applied, or None before the first."""
    if not store.batches:
        return None
    last = store.batches[-1]
    return (last.position, last.log_hash)


# ---------------------------------------------------------------- checking arguments


def check_tree(tree: object, name: str = "tree") -> str:
    if type(tree) is not str:
        raise InvalidArgumentError(name, tree, "a tree name must be a str")
    size = len(tree.encode("utf-8", "surrogatepass"))
    if not 0 < size <= TREE_NAME_BYTES_MAX:
        raise InvalidArgumentError(name, tree, f"has 1..{TREE_NAME_BYTES_MAX} UTF-8 bytes")
    return tree


def check_key(key: object, name: str = "key") -> bytes:
    if type(key) is not bytes:
        raise InvalidArgumentError(name, key, "a key must be bytes")
    if len(key) > KEY_BYTES_MAX:
        raise InvalidArgumentError(name, key, f"a key has at most {KEY_BYTES_MAX} bytes")
    return key


def check_bound(bound: object, name: str) -> bytes | None:
    if bound is not None and type(bound) is not bytes:
        raise InvalidArgumentError(name, bound, "a scan bound must be bytes or None")
    return bound


def check_as_of(as_of: object) -> int | None:
    if as_of is not None and (type(as_of) is not int or not 0 <= as_of <= POSITION_MAX):
        raise InvalidArgumentError("as_of", as_of, f"a log position is an int in 0..{POSITION_MAX}")
    return as_of


@icontract.require(lambda store: is_store(store))
def check_batch(store: Store, position: object, log_hash: object, changes: object) -> None:
    """Raise InvalidArgumentError naming the first bad argument, in this order:
    the position (an int in 0..2**64-1, above the last applied), the log hash
    (at most 64 bytes), `changes` (a sequence, not bytes or str), then each
    change in turn: a 3-tuple, its tree, its key, its value (bytes of at most
    16 MiB, or None)."""
    if type(position) is not int or not 0 <= position <= POSITION_MAX:
        raise InvalidArgumentError("position", position, "a log position")
    last = applied(store)
    if last is not None and position <= last[0]:
        raise InvalidArgumentError("position", position, "positions strictly increase")
    if not isinstance(log_hash, bytes) or len(log_hash) > LOG_HASH_BYTES_MAX:
        raise InvalidArgumentError("log_hash", log_hash, f"bytes of 0..{LOG_HASH_BYTES_MAX}")
    if not isinstance(changes, Sequence) or isinstance(changes, bytes | str):
        raise InvalidArgumentError("changes", changes, "a sequence of (tree, key, value)")
    for index, change in enumerate(changes):
        if type(change) is not tuple or len(change) != 3:
            raise InvalidArgumentError(f"changes[{index}]", change, "expected (tree, key, value)")
        tree, key, value = change
        check_tree(tree, f"changes[{index}].tree")
        check_key(key, f"changes[{index}].key")
        if value is not None and (type(value) is not bytes or len(value) > VALUE_BYTES_MAX):
            raise InvalidArgumentError(f"changes[{index}].value", value, "bytes or None")


# ---------------------------------------------------------------- writing


@icontract.require(lambda store: is_store(store))
@icontract.ensure(lambda result: is_store(result))
def write_batch(
    store: Store, position: int, log_hash: bytes, changes: Sequence[Change], durable: bool
) -> Store:
    """Apply one batch; with `durable` every batch so far is durable on return.

    :raises InvalidArgumentError: as `check_batch`; the store is unchanged.
    """
    check_batch(store, position, log_hash, changes)
    batches = (*store.batches, Batch(position, bytes(log_hash), tuple(changes)))
    return Store(batches=batches, durable=len(batches) if durable else store.durable)


@icontract.require(lambda store: is_store(store))
@icontract.ensure(lambda result: result.durable == len(result.batches))
def sync(store: Store) -> Store:
    """Every batch applied so far becomes durable."""
    return replace(store, durable=len(store.batches))


@icontract.require(lambda store: is_store(store))
@icontract.ensure(lambda store, result: result.batches == store.batches[: store.durable])
def crash(store: Store) -> Store:
    """The process stops without closing: the store reopens at its last durable batch."""
    return Store(batches=store.batches[: store.durable], durable=store.durable)


# ---------------------------------------------------------------- reading


def _as_of_position(store: Store, as_of: int | None) -> int | None:
    """The position reads see: `as_of`, or the last applied one (None: nothing applied)."""
    if as_of is not None:
        return as_of
    last = applied(store)
    return None if last is None else last[0]


def _value_as_of(store: Store, tree: str, key: bytes, position: int) -> bytes | None:
    value: bytes | None = None
    for batch in store.batches:
        if batch.position > position:
            break
        for changed_tree, changed_key, changed_value in batch.changes:
            if changed_tree == tree and changed_key == key:
                value = changed_value
    return value


@icontract.require(lambda store: is_store(store))
def get(store: Store, tree: object, key: object, as_of: object = None) -> bytes | None:
    """The value of `key` in `tree` as of position `as_of` (None: the last applied);
    None when the key was absent or deleted then.

    :raises InvalidArgumentError: the tree, the key or `as_of`, checked in that order.
    """
    checked_tree = check_tree(tree)
    checked_key = check_key(key)
    position = _as_of_position(store, check_as_of(as_of))
    if position is None:
        return None
    return _value_as_of(store, checked_tree, checked_key, position)


@icontract.require(lambda store: is_store(store))
def scan(
    store: Store,
    tree: object,
    low: object = None,
    high: object = None,
    as_of: object = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    reverse: bool = False,
) -> list[tuple[bytes, bytes]]:
    """The live (key, value) pairs of `tree` as of `as_of` between the bounds (None: open),
    in key byte order, descending when `reverse`.

    :raises InvalidArgumentError: the tree, `low`, `high` or `as_of`, in that order.
    """
    checked_tree = check_tree(tree)
    checked_low = check_bound(low, "low")
    checked_high = check_bound(high, "high")
    position = _as_of_position(store, check_as_of(as_of))
    if position is None:
        return []
    keys = {
        key
        for batch in store.batches
        for changed_tree, key, _ in batch.changes
        if changed_tree == checked_tree and batch.position <= position
    }
    pairs = []
    for key in sorted(keys):
        if checked_low is not None and (
            key < checked_low or (key == checked_low and not low_inclusive)
        ):
            continue
        if checked_high is not None and (
            key > checked_high or (key == checked_high and not high_inclusive)
        ):
            continue
        value = _value_as_of(store, checked_tree, key, position)
        if value is not None:
            pairs.append((key, value))
    return pairs[::-1] if reverse else pairs
