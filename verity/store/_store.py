"""`Store`: versioned B+trees in one page file, with atomic, durable batches.

MVCC encoding. A tree holds one entry per version of a key:

    escape(key) ‖ 00 00 ‖ u64be(2**64 - 1 - position)  ->  tag ‖ payload

`escape` doubles every 00 byte as 00 FF, so the terminator 00 00 sorts below
any continuation and the encoding keeps bytewise key order. Versions of one
key sit together, newest first, so the first entry at or after
`escape(key) ‖ 00 00 ‖ u64be(2**64 - 1 - as_of)` is the version visible as of
`as_of`. The tag is 0 (the value follows), 1 (a tombstone: deleted) or 2 (the
value lives in an overflow chain: u32 first page, u32 length). Versions are
never removed, so every past position stays queryable.

Commit protocol (`sync`): write the catalog (tree name -> root page) and the
free list as copy-on-write pages and every dirty page, fsync; write
superblock copies 0 and 1, fsync; write copies 2 and 3, which the next
commit's first fsync (or `close`) makes durable. Two fsyncs per commit.
A crash before the copies-0-1 fsync leaves copies 2 and 3 at the previous
state, whose pages were not overwritten; after it, copies 0 and 1 hold the
new state. Once copies 2 and 3 are durable too, all four agree and any three
may rot. Pages a commit frees are not overwritten until no durable copy can
refer to them: they cool down until the next commit's first fsync. Opening
fsyncs the file, then rewrites copies that are invalid or older than the
newest valid one.

IO failures (a full disk, an IO error) raise `StorageFull` / `StorageError`
and close the store, as any failure part way through a batch does: its
memory then matches no durable state, and it must never answer for a log
position it does not hold. `written` says what became of the batches not
yet durable: False while the commit had not reached the superblock (the
store reopens at the previous commit), None once superblock copies 0 and 1
were being written (it reopens at one or the other), True when only copies
2 and 3 failed (the commit is durable; reopening rewrites them). Reopening
(`open_store`) goes back to the last durable batch, which `applied()` names;
the log holds every batch after it. A store is derived data: nothing is
lost, the caller re-applies the log from there once space returns.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Final, final

from verity.crypto import PageKey
from verity.errors import ClosedError, CorruptionError, InvalidArgument, StorageError
from verity.storage._files import make_private_dir, open_private, storage_error
from verity.storage._frame import write_all
from verity.store._api import (
    KEY_BYTES_MAX,
    Change,
    Runs,
    StoreStats,
    check_as_of,
    check_batch,
    check_bound,
    check_key,
    check_tree,
)
from verity.store._format import (
    ENTRY_BYTES_MAX,
    FREELIST_ENTRIES_MAX,
    KIND_FREELIST,
    PAGE_BYTES,
    SUPERBLOCK_COPIES,
    Superblock,
    decode_freelist,
    decode_superblock,
    encode_freelist,
    encode_superblock,
)
from verity.store._pagefile import PageFile, fsync, fsync_directory
from verity.store._tree import LEAF_ENTRY_OVERHEAD_BYTES, Pager, decode_node

__all__ = ["PAGE_CACHE_PAGES_MIN", "PAGE_FILE_NAME", "Store", "open_store"]

logger = logging.getLogger("verity.store")

PAGE_FILE_NAME: Final = "pages.vstore"
PAGE_CACHE_PAGES_MIN: Final = 16

_NEWEST: Final = 2**64 - 1
_VERSION: Final = struct.Struct(">Q")
_PAGE_NUMBER: Final = struct.Struct(">I")
_OVERFLOW_REF: Final = struct.Struct(">BII")
_TERMINATOR: Final = b"\x00\x00"
# Just above every entry of one key: escape(key) ‖ 00 01 sorts after escape(key) ‖ 00 00 ‖ any.
_AFTER_KEY: Final = b"\x00\x01"
_TAG_VALUE: Final = 0
_TAG_TOMBSTONE: Final = 1
_TAG_OVERFLOW: Final = 2
_TOMBSTONE: Final = bytes([_TAG_TOMBSTONE])
_VALUE_PREFIX: Final = bytes([_TAG_VALUE])
# Greater than every encoded entry (the longest is 2 * KEY_BYTES_MAX + 10 bytes).
_ABOVE_ALL: Final = b"\xff" * (2 * KEY_BYTES_MAX + 11)


def _escape(key: bytes) -> bytes:
    return key.replace(b"\x00", b"\x00\xff")


def _unescape(escaped: bytes) -> bytes:
    return escaped.replace(b"\x00\xff", b"\x00")


def open_store(
    path: Path, *, page_cache_pages: int = 1024, page_key: PageKey | None = None
) -> Store:
    """Open the store in folder `path`, creating the folder and an empty store if needed.

    With `page_key` every page is sealed on disk (AES-256-GCM, docs/formats.md §6);
    a page that does not open under it reads as damaged (CorruptionError).

    `page_cache_pages` bounds the decoded pages held in memory (at least 16; a decoded
    page takes about 5-7 KiB, so the default 1,024 pages hold roughly 6 MiB).
    InvalidArgument if the store is already open (the page file is locked);
    CorruptionError if no superblock copy is valid.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgument("path", path, "a folder path (str or os.PathLike)")
    if page_key is not None and not isinstance(page_key, PageKey):
        raise InvalidArgument("page_key", page_key, "a verity.crypto.PageKey or None")
    if type(page_cache_pages) is not int or page_cache_pages < PAGE_CACHE_PAGES_MIN:
        raise InvalidArgument(
            "page_cache_pages", page_cache_pages, f"an int >= {PAGE_CACHE_PAGES_MIN}"
        )
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InvalidArgument("path", str(folder), "exists and is not a folder")
    file_path = folder / PAGE_FILE_NAME
    try:
        make_private_dir(folder, parents=True)
        if not file_path.exists():
            _create(file_path, page_key)
        return Store(PageFile(file_path, page_key), page_cache_pages)
    except OSError as failure:
        # Nothing was changed that a store holds: a new file is written whole or not at all.
        raise storage_error(
            f"open store {folder}", failure, path=failure.filename or file_path, written=False
        ) from failure


def _superblock_or_none(file: PageFile, copy: int) -> Superblock | str | None:
    raw = file.read_raw(copy)
    return None if isinstance(raw, str) else decode_superblock(raw, copy)


def _create(file_path: Path, page_key: PageKey | None) -> None:
    """Write an empty store atomically: a crash leaves no page file or a complete one."""
    empty = Superblock(0, SUPERBLOCK_COPIES, 0, 0, 0, None)
    pages = [encode_superblock(copy, empty) for copy in range(SUPERBLOCK_COPIES)]
    if page_key is not None:
        pages = [page_key.seal(copy, page) for copy, page in enumerate(pages)]
    data = b"".join(pages)
    temporary = file_path.with_name(file_path.name + ".tmp")
    try:
        fd = open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            write_all(fd, data)
            fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, file_path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(file_path.parent)


@final
class Store:
    """Versioned B+trees (tree name -> key -> value as of a log position) in a page file.

    Made by `open_store`. Every public method holds one lock, so a store may
    be shared between threads. Durability: `write_batch(..., sync=True)` (the
    default) returns once the batch is durable; with `sync=False` batches are
    visible at once and become durable at the next `sync()` (or `close()`).
    After a crash the store reopens at the last durable batch, and `applied()`
    says which: the log is the source of truth, and the caller re-applies the
    records after it.
    """

    def __init__(self, file: PageFile, page_cache_pages: int) -> None:
        self._file = file
        self._lock = threading.Lock()
        self._closed = False
        try:
            superblock = self._choose_superblock()
            free, self._freelist_pages = self._read_freelist(superblock)
            self._pager = Pager(file, page_cache_pages, superblock.page_count, free)
            self._sequence = superblock.sequence
            self._catalog_root = superblock.catalog_root
            self._applied = superblock.applied
            self._roots: dict[str, int] = {}
            for name, root in self._items(superblock.catalog_root):
                self._roots[name.decode("utf-8", "surrogatepass")] = _PAGE_NUMBER.unpack(root)[0]
        except BaseException:
            file.close()
            raise
        self._changed_trees: set[str] = set()
        self._uncommitted = False
        # Freed by the last commit; reusable once its superblock copies 2 and 3 are durable.
        self._cooling: list[int] = []
        self._copies_unsynced = False
        # What a failing write leaves of the batches not yet durable (the module docstring).
        self._written_if_failed: bool | None = False

    # -- opening ------------------------------------------------------------------------

    def _choose_superblock(self) -> Superblock:
        file = self._file
        # What a crashed process left in the OS cache is made durable before it is trusted.
        file.sync()
        if file.byte_size() < SUPERBLOCK_COPIES * PAGE_BYTES:
            raise CorruptionError(
                f"the file has {file.byte_size()} bytes, fewer than its 4 superblock pages",
                file=file.name,
                byte_offset=0,
            )
        valid: list[Superblock] = []
        problems: list[str] = []
        for copy in range(SUPERBLOCK_COPIES):
            raw = file.read_raw(copy)
            decoded = raw if isinstance(raw, str) else decode_superblock(raw, copy)
            if isinstance(decoded, Superblock):
                valid.append(decoded)
            else:
                problems.append(f"copy {copy} at byte {copy * PAGE_BYTES}: {decoded}")
        if not valid:
            raise CorruptionError(
                "no valid superblock copy: " + "; ".join(problems), file=file.name, byte_offset=0
            )
        chosen = max(valid, key=lambda superblock: superblock.sequence)
        if file.byte_size() < chosen.page_count * PAGE_BYTES:
            raise CorruptionError(
                f"superblock {chosen.sequence} counts {chosen.page_count} pages but the file "
                f"holds {file.byte_size()} bytes",
                file=file.name,
                byte_offset=file.byte_size(),
            )
        stale = [
            copy for copy in range(SUPERBLOCK_COPIES) if _superblock_or_none(file, copy) != chosen
        ]
        if stale:
            # Bring every copy to the chosen state, so that later pages freed by the next
            # commit can never be reached again through an older copy.
            logger.warning(
                "store %s: superblock copies %s are invalid or older than sequence %d (%s); "
                "rewriting them",
                file.name,
                stale,
                chosen.sequence,
                "; ".join(problems) or "older",
            )
            file.write([(copy, encode_superblock(copy, chosen)) for copy in stale])
            file.sync()
        return chosen

    def _read_freelist(self, superblock: Superblock) -> tuple[list[int], list[int]]:
        """(free page numbers, pages of the free-list chain) of `superblock`."""
        file = self._file
        free: list[int] = []
        chain: list[int] = []
        page = superblock.freelist_head
        while page != 0:
            if page in chain or not SUPERBLOCK_COPIES <= page < superblock.page_count:
                raise CorruptionError(
                    f"page {page}: free-list chain loops or leaves the {superblock.page_count} "
                    "pages in use",
                    file=file.name,
                    byte_offset=page * PAGE_BYTES,
                )
            data = file.read(page)
            if data[4] != KIND_FREELIST:
                raise CorruptionError(
                    f"page {page}: kind {data[4]} where a free-list page was expected",
                    file=file.name,
                    byte_offset=page * PAGE_BYTES,
                )
            entries, following = decode_freelist(data, page, file.name)
            chain.append(page)
            free.extend(entries)
            page = following
        distinct = set(free)
        if (
            len(free) != superblock.free_count
            or len(distinct) != len(free)
            or (free and not SUPERBLOCK_COPIES <= min(free) <= max(free) < superblock.page_count)
            or distinct.intersection(chain)
        ):
            raise CorruptionError(
                f"free list of superblock {superblock.sequence} is inconsistent "
                f"({len(free)} entries, {superblock.free_count} expected)",
                file=file.name,
                byte_offset=superblock.freelist_head * PAGE_BYTES,
            )
        return free, chain

    # -- writing ------------------------------------------------------------------------

    def write_batch(
        self,
        position: int,
        log_hash: bytes,
        changes: Sequence[Change],
        *,
        sync: bool = True,
    ) -> None:
        """Apply every change of the log record at `position` and record
        `(position, log_hash)` as applied, all or nothing.

        `changes` are (tree, key, value) with value None deleting the key; the
        last change to a key wins. Positions strictly increase. With `sync`
        (the default) the batch is durable when this returns; otherwise it is
        visible now and durable after the next `sync()`. Bad arguments raise
        InvalidArgument and change nothing; if applying fails half way (an I/O
        error, say) the store closes itself, and reopening it returns to the
        last durable batch.
        """
        with self._lock:
            self._check_open()
            runs = check_batch(position, log_hash, changes, self._applied)
            self._run_guarded(
                partial(self._apply, position, bytes(log_hash), runs, sync), "write_batch"
            )

    def write_batches(self, batches: Iterable[tuple[int, bytes, Sequence[Change]]]) -> None:
        """Apply several (position, log_hash, changes) batches in order, then commit once.

        If one batch is invalid, the ones before it are applied and made durable,
        and InvalidArgument names the bad one; it and later ones are not applied.
        """
        with self._lock:
            self._check_open()
            try:
                for position, log_hash, changes in batches:
                    runs = check_batch(position, log_hash, changes, self._applied)
                    self._run_guarded(
                        partial(self._apply, position, bytes(log_hash), runs, False),
                        "write_batches",
                    )
            finally:
                if not self._closed:
                    self._run_guarded(self._commit, "write_batches")

    def sync(self) -> None:
        """Make every batch applied so far durable (a no-op when nothing is pending)."""
        with self._lock:
            self._check_open()
            self._run_guarded(self._commit, "sync")

    def _run_guarded(self, action: Callable[[], None], what: str) -> None:
        """Run `action`; if it fails half way, close the store: memory no longer matches
        any durable state, and reopening goes back to the last durable batch.

        An OSError becomes `StorageFull` / `StorageError` naming the page file.
        """
        self._written_if_failed = False
        try:
            action()
        except BaseException as failure:
            self._closed = True
            self._file.close()
            if isinstance(failure, OSError):
                raise self._storage_error(what, failure) from failure
            raise

    def _storage_error(self, what: str, failure: OSError) -> StorageError:
        return storage_error(
            f"store {what} (the store closed itself; reopen it to resume from applied())",
            failure,
            path=self._file.name,
            written=self._written_if_failed,
        )

    def _apply(self, position: int, log_hash: bytes, runs: Runs, sync: bool) -> None:
        suffix = _TERMINATOR + _VERSION.pack(_NEWEST - position)
        for tree in sorted(runs):
            keys, values = runs[tree]
            self._insert_entries(tree, self._entries(keys, values, suffix))
        self._applied = (position, log_hash)
        self._uncommitted = True
        if sync:
            self._commit()

    def _entries(
        self, keys: Sequence[bytes], values: Sequence[bytes | None], suffix: bytes
    ) -> list[tuple[bytes, bytes]]:
        """The (entry key, stored value) of each change of one tree, keys ascending; values
        too large for a leaf are written to overflow pages, in key order."""
        # Escaping keeps key order, so the entries ascend too.
        entry_keys = [key.replace(b"\x00", b"\x00\xff") + suffix for key in keys]
        stored = [_TOMBSTONE if value is None else _VALUE_PREFIX + value for value in values]
        inline_max = ENTRY_BYTES_MAX - LEAF_ENTRY_OVERHEAD_BYTES
        if max(map(len, entry_keys)) + max(map(len, stored)) <= inline_max:
            return list(zip(entry_keys, stored, strict=True))  # every entry fits a leaf
        for index in [
            index
            for index, (entry_key, value) in enumerate(zip(entry_keys, stored, strict=True))
            if len(entry_key) + len(value) > inline_max
        ]:
            value = stored[index][1:]
            assert values[index] == value, "a tombstone always fits a leaf"
            first_page = self._pager.write_overflow(value)
            stored[index] = _OVERFLOW_REF.pack(_TAG_OVERFLOW, first_page, len(value))
        return list(zip(entry_keys, stored, strict=True))

    def _insert_entries(self, tree: str, entries: list[tuple[bytes, bytes]]) -> None:
        root = self._roots.get(tree, 0)
        new_root = self._pager.insert_sorted(root, entries)
        if new_root != root:
            self._roots[tree] = new_root
            self._changed_trees.add(tree)

    def _commit(self) -> None:
        if not self._uncommitted:
            return
        pager = self._pager
        file = self._file
        catalog_root = self._catalog_root
        for tree in sorted(self._changed_trees):
            catalog_root = pager.insert(
                catalog_root,
                tree.encode("utf-8", "surrogatepass"),
                _PAGE_NUMBER.pack(self._roots[tree]),
            )
        # The previous free list is replaced by this commit's, like any copied page.
        pager.pending.extend(self._freelist_pages)
        cooling = self._cooling
        unreferenced = len(pager.free) + len(cooling) + len(pager.pending)
        chain = [pager.allocate() for _ in range(math.ceil(unreferenced / FREELIST_ENTRIES_MAX))]
        free_after = sorted(pager.free + cooling + pager.pending)
        assert not set(chain).intersection(free_after)
        chain_pages = [
            (
                page,
                encode_freelist(
                    page,
                    free_after[index * FREELIST_ENTRIES_MAX : (index + 1) * FREELIST_ENTRIES_MAX],
                    chain[index + 1] if index + 1 < len(chain) else 0,
                ),
            )
            for index, page in enumerate(chain)
        ]
        pager.flush()
        file.write(chain_pages)
        # This fsync also makes the previous commit's copies 2 and 3 durable, so no durable
        # copy refers to the pages that commit freed any more: they may be overwritten now.
        file.sync()
        pager.free.extend(cooling)
        pager.free.sort(reverse=True)
        self._cooling = []
        self._written_if_failed = None  # from here a reopen may find either commit
        superblock = Superblock(
            sequence=self._sequence + 1,
            page_count=pager.page_count,
            catalog_root=catalog_root,
            freelist_head=chain[0] if chain else 0,
            free_count=len(free_after),
            applied=self._applied,
        )
        file.write([(0, encode_superblock(0, superblock)), (1, encode_superblock(1, superblock))])
        file.sync()
        self._written_if_failed = True
        # Copies 2 and 3 become durable with the next commit's first fsync (or at close).
        # Until then they may still hold the previous state, so what this commit freed
        # cools down: it is reused only after that fsync.
        file.write([(2, encode_superblock(2, superblock)), (3, encode_superblock(3, superblock))])
        self._copies_unsynced = True
        self._sequence = superblock.sequence
        self._catalog_root = catalog_root
        self._freelist_pages = chain
        self._cooling = pager.pending
        pager.pending = []
        pager.fresh.clear()
        self._changed_trees.clear()
        self._uncommitted = False

    # -- reading ------------------------------------------------------------------------

    def applied(self) -> tuple[int, bytes] | None:
        """(position, log_hash) of the last batch applied, or None before the first.

        Batches written with `sync=False` count once applied; after a reopen this
        is the last durable batch, where the caller resumes applying the log.
        """
        with self._lock:
            self._check_open()
            return self._applied

    def get(self, tree: str, key: bytes, as_of: int | None = None) -> bytes | None:
        """The value of `key` in `tree` as of log position `as_of` (None: latest applied);
        None if the key was absent or deleted then."""
        with self._lock:
            if self._closed:
                raise ClosedError("store")
            if type(tree) is not str:
                check_tree(tree)
            if type(key) is not bytes or len(key) > KEY_BYTES_MAX:
                check_tree(tree)  # the tree is named first when both are bad (the spec's order)
                check_key(key)
            root = self._roots.get(tree)
            if root is None:
                check_tree(tree)
                check_as_of(as_of)
                return None
            if as_of is None:
                applied = self._applied
                assert applied is not None
                as_of = applied[0]
            elif type(as_of) is not int or not 0 <= as_of <= _NEWEST:
                check_as_of(as_of)
            prefix = key.replace(b"\x00", b"\x00\xff") + _TERMINATOR
            leaf, index = self._pager.seek_ge(root, prefix + _VERSION.pack(_NEWEST - as_of))
            if leaf is None:
                return None
            found = leaf.keys[index]
            if len(found) != len(prefix) + 8 or not found.startswith(prefix):
                return None
            stored = leaf.values[index]
            tag = stored[0]
            if tag == _TAG_VALUE:
                return stored[1:]
            if tag == _TAG_TOMBSTONE:
                return None
            return self._overflow_value(stored)

    def _overflow_value(self, stored: bytes) -> bytes:
        tag, first_page, length = _OVERFLOW_REF.unpack(stored)
        assert tag == _TAG_OVERFLOW, tag
        return self._pager.read_overflow(first_page, length)

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
        """Live (key, value) pairs of `tree` as of `as_of` (None: the latest applied when
        called) with low <= key <= high (None: unbounded; `*_inclusive` False: strict),
        ascending by key bytes, or descending when `reverse`.

        The iterator reads a leaf at a time and sees exactly the state as of its
        position, even if batches are written while it runs.
        """
        with self._lock:
            self._check_open()
            check_tree(tree)
            low = check_bound(low, "low")
            high = check_bound(high, "high")
            as_of = check_as_of(as_of)
            if tree not in self._roots:
                return iter(())
            if as_of is None:
                applied = self._applied
                assert applied is not None
                as_of = applied[0]
        visible_from = _VERSION.pack(_NEWEST - as_of)
        # Key prefixes (escape(key) ‖ 00 00) of the bounds, and where the walk starts.
        if low is None:
            low_prefix, low_inclusive, forward_start = b"", True, b""
        else:
            low_prefix = _escape(low) + _TERMINATOR
            forward_start = low_prefix if low_inclusive else _escape(low) + _AFTER_KEY
        if high is None:
            high_prefix, high_inclusive, backward_start = _ABOVE_ALL, True, _ABOVE_ALL
        else:
            high_prefix = _escape(high) + _TERMINATOR
            backward_start = _escape(high) + _AFTER_KEY if high_inclusive else high_prefix
        if reverse:
            return self._scan_backward(
                tree, backward_start, low_prefix, low_inclusive, visible_from
            )
        return self._scan_forward(tree, forward_start, high_prefix, high_inclusive, visible_from)

    def _scan_forward(
        self,
        tree: str,
        seek: bytes,
        high_prefix: bytes,
        high_inclusive: bool,
        visible_from: bytes,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Entries from the first one >= `seek`, up to the `high_prefix` key."""
        done_prefix = b""  # the key already answered (no entry prefix is empty)
        while True:
            found: list[tuple[bytes, bytes]] = []
            with self._lock:
                self._check_open()
                leaf, start = self._pager.seek_ge(self._roots[tree], seek)
                if leaf is None:
                    return
                keys = leaf.keys
                values = leaf.values
                finished = False
                for index in range(start, len(keys)):
                    entry_key = keys[index]
                    prefix = entry_key[:-8]
                    if prefix == done_prefix or entry_key[-8:] < visible_from:
                        continue  # an older version of a key answered, or too new a version
                    if prefix > high_prefix or (prefix == high_prefix and not high_inclusive):
                        finished = True
                        break
                    done_prefix = prefix
                    stored = values[index]
                    tag = stored[0]
                    if tag == _TAG_VALUE:
                        found.append((_unescape(prefix[:-2]), stored[1:]))
                    elif tag == _TAG_OVERFLOW:
                        found.append((_unescape(prefix[:-2]), self._overflow_value(stored)))
                seek = keys[-1] + b"\x00"
            yield from found
            if finished:
                return

    def _scan_backward(
        self,
        tree: str,
        seek: bytes,
        low_prefix: bytes,
        low_inclusive: bool,
        visible_from: bytes,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Entries from the last one < `seek` down to the `low_prefix` key."""
        # Walking backwards, a key's versions come oldest first: the visible one is the
        # last eligible version seen before the key changes.
        current_prefix = b""
        candidate: bytes | None = None
        while True:
            found: list[tuple[bytes, bytes]] = []
            with self._lock:
                self._check_open()
                leaf, start = self._pager.seek_lt(self._roots[tree], seek)
                finished = leaf is None
                if leaf is not None:
                    keys = leaf.keys
                    values = leaf.values
                    for index in range(start, -1, -1):
                        entry_key = keys[index]
                        prefix = entry_key[:-8]
                        if prefix != current_prefix:
                            if candidate is not None:
                                self._emit(found, current_prefix, candidate)
                            candidate = None
                            if prefix < low_prefix or (prefix == low_prefix and not low_inclusive):
                                finished = True
                                current_prefix = b""
                                break
                            current_prefix = prefix
                        if entry_key[-8:] >= visible_from:
                            candidate = values[index]
                    seek = keys[0]
                if finished and candidate is not None:
                    self._emit(found, current_prefix, candidate)
            yield from found
            if finished:
                return

    def _emit(self, found: list[tuple[bytes, bytes]], prefix: bytes, stored: bytes) -> None:
        tag = stored[0]
        if tag == _TAG_VALUE:
            found.append((_unescape(prefix[:-2]), stored[1:]))
        elif tag == _TAG_OVERFLOW:
            found.append((_unescape(prefix[:-2]), self._overflow_value(stored)))

    def _items(self, root: int) -> Iterator[tuple[bytes, bytes]]:
        """Every raw (entry key, stored value) of the tree at `root`, in order."""
        if root == 0:
            return
        seek = b""
        while True:
            leaf, start = self._pager.seek_ge(root, seek)
            if leaf is None:
                return
            yield from zip(leaf.keys[start:], leaf.values[start:], strict=True)
            seek = leaf.keys[-1] + b"\x00"

    def trees(self) -> list[str]:
        """Names of the trees written so far, sorted."""
        with self._lock:
            self._check_open()
            return sorted(self._roots)

    def stats(self) -> StoreStats:
        with self._lock:
            self._check_open()
            pager = self._pager
            return StoreStats(
                pages_total=pager.page_count,
                pages_free=len(pager.free) + len(self._cooling),
                cache_pages=len(pager.cache),
                cache_hits=pager.hits,
                cache_misses=pager.misses,
            )

    # -- checking -----------------------------------------------------------------------

    def verify(self) -> int:
        """Commit, then read every page from disk and check the whole store: CRCs, key
        order within and across pages, equal leaf depth, the catalog, and that every page
        is used exactly once (superblock, tree, overflow, free list) or free.

        Returns the number of pages checked; CorruptionError names the first problem.
        """
        with self._lock:
            self._check_open()
            self._run_guarded(self._commit, "verify")
            pager = self._pager
            file = self._file
            owner: dict[int, str] = {copy: "superblock" for copy in range(SUPERBLOCK_COPIES)}

            def claim(page: int, what: str) -> None:
                if page in owner or not 0 < page < pager.page_count:
                    raise CorruptionError(
                        f"page {page}: used as {what} and as {owner.get(page, 'out of range')}",
                        file=file.name,
                        byte_offset=page * PAGE_BYTES,
                    )
                owner[page] = what

            catalog = dict(self._check_tree_pages(self._catalog_root, "catalog", claim))
            expected = {
                name.encode("utf-8", "surrogatepass"): _PAGE_NUMBER.pack(root)
                for name, root in self._roots.items()
            }
            if catalog != expected:
                raise CorruptionError(
                    f"catalog lists {len(catalog)} trees, {len(expected)} expected",
                    file=file.name,
                    byte_offset=self._catalog_root * PAGE_BYTES,
                )
            for name, root in sorted(self._roots.items()):
                for _, stored in self._check_tree_pages(root, f"tree {name!r}", claim):
                    if stored[0] == _TAG_OVERFLOW:
                        _, first_page, _ = _OVERFLOW_REF.unpack(stored)
                        for page in pager.overflow_pages(first_page):
                            claim(page, f"overflow of tree {name!r}")
            for page in self._freelist_pages:
                claim(page, "free list")
            for page in pager.free:
                claim(page, "free")
            for page in self._cooling:
                claim(page, "free after the next commit")
            missing = sorted(set(range(pager.page_count)) - owner.keys())
            if missing:
                raise CorruptionError(
                    f"{len(missing)} pages neither used nor free (leaked), first {missing[0]}",
                    file=file.name,
                    byte_offset=missing[0] * PAGE_BYTES,
                )
            return len(owner)

    def _check_tree_pages(
        self, root: int, what: str, claim: Callable[[int, str], None]
    ) -> list[tuple[bytes, bytes]]:
        """Read the tree at `root` from disk, check its shape; its (key, stored) entries."""
        if root == 0:
            return []
        entries: list[tuple[bytes, bytes]] = []
        leaf_depths: set[int] = set()
        file = self._file
        # (page, depth, lowest allowed key, bound every key must stay below)
        stack: list[tuple[int, int, bytes, bytes | None]] = [(root, 0, b"", None)]
        while stack:
            page, depth, low, high = stack.pop()
            claim(page, what)
            node = decode_node(self._file.read(page), page, self._file.name)
            keys = node.keys
            problem = ""
            if any(a >= b for a, b in pairwise(keys)):
                problem = "keys out of order"
            elif keys and (keys[0] < low or (high is not None and keys[-1] >= high)):
                problem = "keys outside the range its parent gives it"
            elif not keys:
                # A split keeps a key on both sides: no node is ever written empty.
                problem = "an empty leaf" if node.is_leaf else "a branch without a separator key"
            if problem:
                raise CorruptionError(
                    f"page {page} of {what}: {problem}",
                    file=file.name,
                    byte_offset=page * PAGE_BYTES,
                )
            if node.is_leaf:
                leaf_depths.add(depth)
                entries.extend(zip(keys, node.values, strict=True))
                continue
            lows = [low, *keys]
            highs: list[bytes | None] = [*keys, high]
            for index in range(len(node.children) - 1, -1, -1):
                stack.append((node.children[index], depth + 1, lows[index], highs[index]))
        if len(leaf_depths) != 1:
            raise CorruptionError(
                f"{what}: leaves at depths {sorted(leaf_depths)}",
                file=file.name,
                byte_offset=root * PAGE_BYTES,
            )
        return entries

    # -- closing ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("store")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Commit what is pending and close the file. Idempotent.

        The file is closed whatever happens; an IO failure of the last commit
        raises `StorageFull` / `StorageError` after it (see the module
        docstring for `written`), and the next open resumes at the last
        durable batch.
        """
        with self._lock:
            if self._closed:
                return
            self._written_if_failed = False
            try:
                self._commit()
                if self._copies_unsynced:
                    self._written_if_failed = True
                    self._file.sync()
            except OSError as failure:
                raise self._storage_error("close", failure) from failure
            finally:
                self._closed = True
                self._file.close()

    def abandon(self) -> None:
        """Close the file without committing, as a crash would (for tests and simulation).

        Batches written with `sync=False` since the last commit are lost; reopening
        finds the last durable batch.
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._file.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
