"""Copy-on-write B+trees over a bounded LRU cache of decoded pages.

`Pager` owns the cache, the page allocator and the free-page bookkeeping;
its tree operations (`insert`, `seek_ge`, `seek_lt`) work on any tree given
its root page. Keys and values are opaque bytes compared bytewise.

Copy-on-write: a page reachable from the durable superblock is never
written in place. The first change to such a page after a commit moves its
node to a newly allocated page ("fresh") and queues the old page as
`pending` free; a fresh page is changed in place until the next commit, so
many batches between two commits cost one copy per page, not one per batch.
Pending pages join the free list only once a commit that no longer refers
to them is durable in every superblock copy.

A branch with separators s[0..n-1] and children c[0..n] keeps in c[i] the
keys k with s[i-1] <= k < s[i]. Separators are the shortest prefixes that
still separate the two leaves, which keeps branches wide. Nothing is ever
deleted from a tree (the store writes tombstone versions), so nodes only
grow and split; no node is ever empty.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import OrderedDict
from itertools import accumulate, repeat
from operator import add, itemgetter
from typing import Final, final

from verity.errors import CorruptionError
from verity.store._format import (
    ENTRY_BYTES_MAX,
    KIND_BRANCH,
    KIND_LEAF,
    KIND_OVERFLOW,
    NODE_CONTENT_BYTES,
    OVERFLOW_DATA_BYTES,
    PAGE_BYTES,
    decode_branch,
    decode_leaf,
    decode_overflow,
    encode_branch,
    encode_leaf,
    encode_overflow,
)
from verity.store._pagefile import PageFile

__all__ = ["LEAF_ENTRY_OVERHEAD_BYTES", "Node", "Pager", "decode_node"]

# Per leaf entry: a u16 key length and a u16 value length.
LEAF_ENTRY_OVERHEAD_BYTES: Final = 4
# Per branch separator: a u16 length and one more u32 child pointer.
_BRANCH_ENTRY_OVERHEAD_BYTES: Final = 6
# The key and the value of an (entry key, value) item.
_key: Final = itemgetter(0)
_value: Final = itemgetter(1)


@final
class Node:
    """One decoded tree page. Leaves use `values`; branches use `children`."""

    __slots__ = ("children", "dirty", "is_leaf", "keys", "page", "size", "values")

    def __init__(
        self,
        page: int,
        is_leaf: bool,
        keys: list[bytes],
        values: list[bytes],
        children: list[int],
        size: int,
    ) -> None:
        self.page = page
        self.is_leaf = is_leaf
        self.keys = keys
        self.values = values
        self.children = children
        self.dirty = False
        self.size = size
        """Content bytes when encoded (everything after the node header)."""


def leaf_node(page: int, keys: list[bytes], values: list[bytes]) -> Node:
    return Node(page, True, keys, values, [], _leaf_size(keys, values))


def branch_node(page: int, keys: list[bytes], children: list[int]) -> Node:
    return Node(page, False, keys, [], children, _branch_size(keys))


def decode_node(data: bytes, page: int, file: str) -> Node:
    """The node in page `page` (CRC already checked); CorruptionError if it is not one."""
    kind = data[4]
    if kind == KIND_LEAF:
        keys, values, size = decode_leaf(data, page, file)
        return Node(page, True, keys, values, [], size)
    if kind == KIND_BRANCH:
        branch_keys, children, size = decode_branch(data, page, file)
        return Node(page, False, branch_keys, [], children, size)
    raise CorruptionError(
        f"page {page}: kind {kind} where a tree node was expected",
        file=file,
        byte_offset=page * PAGE_BYTES,
    )


def _leaf_size(keys: list[bytes], values: list[bytes]) -> int:
    """Content bytes of a leaf (everything after the node header)."""
    return LEAF_ENTRY_OVERHEAD_BYTES * len(keys) + sum(map(len, keys)) + sum(map(len, values))


def _branch_size(keys: list[bytes]) -> int:
    return 4 + _BRANCH_ENTRY_OVERHEAD_BYTES * len(keys) + sum(map(len, keys))


def _separator(left_last: bytes, right_first: bytes) -> bytes:
    """The shortest prefix of `right_first` that is greater than `left_last`."""
    assert left_last < right_first, (left_last, right_first)
    common = 0
    limit = min(len(left_last), len(right_first))
    while common < limit and left_last[common] == right_first[common]:
        common += 1
    separator = right_first[: common + 1]
    assert left_last < separator <= right_first
    return separator


def _balanced_split(sizes: list[int]) -> int:
    """The index s (1 <= s < len) that minimises the larger of sum(sizes[:s]), sum(sizes[s:])."""
    total = sum(sizes)
    best_index = 1
    best_larger = total
    running = 0
    for index in range(1, len(sizes)):
        running += sizes[index - 1]
        larger = max(running, total - running)
        if larger < best_larger:
            best_index, best_larger = index, larger
    return best_index


@final
class Pager:
    """Page cache, allocator and copy-on-write B+tree operations of one page file."""

    def __init__(self, file: PageFile, capacity: int, page_count: int, free: list[int]) -> None:
        assert capacity >= 16, capacity
        self.file = file
        self.capacity = capacity
        self.cache: OrderedDict[int, Node] = OrderedDict()
        self.page_count = page_count
        # Free in the durable state; popped from the end, so kept in descending order.
        self.free = sorted(free, reverse=True)
        # Reachable from the durable state but replaced since; free after the next commit.
        self.pending: list[int] = []
        # Allocated since the last commit: not reachable from any durable state.
        self.fresh: set[int] = set()
        self.dirty: set[int] = set()
        self.hits = 0
        self.misses = 0

    # -- pages and the cache ------------------------------------------------------------

    def allocate(self) -> int:
        """A page no durable state refers to; it stays fresh until the next commit."""
        page = self.free.pop() if self.free else self._extend()
        self.fresh.add(page)
        return page

    def _extend(self) -> int:
        page = self.page_count
        self.page_count += 1
        return page

    def load(self, page: int) -> Node:
        node = self.cache.get(page)
        if node is not None:
            self.cache.move_to_end(page)
            self.hits += 1
            return node
        return self._load_missing(page)

    def _load_missing(self, page: int) -> Node:
        if not 0 < page < self.page_count:
            raise CorruptionError(
                f"page {page}: tree pointer outside the {self.page_count} pages in use",
                file=self.file.name,
                byte_offset=page * PAGE_BYTES,
            )
        node = decode_node(self.file.read(page), page, self.file.name)
        self.misses += 1
        self.cache[page] = node
        self._evict()
        return node

    def _evict(self) -> None:
        cache = self.cache
        while len(cache) > self.capacity:
            page, victim = next(iter(cache.items()))
            if victim.dirty:
                # Only fresh pages are dirty, and no durable state refers to them: safe to write.
                assert page in self.fresh, page
                try:
                    self.file.write([(page, self._encode(victim))])
                except OSError:
                    # A full disk: keep the page (the cache runs over its bound); the
                    # commit writes it and reports the failure. A read never fails here.
                    cache.move_to_end(page)
                    return
                victim.dirty = False
                self.dirty.discard(page)
            del cache[page]

    def _encode(self, node: Node) -> bytes:
        if node.is_leaf:
            return encode_leaf(node.page, node.keys, node.values)
        return encode_branch(node.page, node.keys, node.children)

    def put_dirty(self, node: Node) -> None:
        """Record that `node` (on a fresh page) changed; it is written by eviction or flush."""
        assert node.page in self.fresh, node.page
        if node.is_leaf:
            assert node.size <= NODE_CONTENT_BYTES, node.size
        node.dirty = True
        self.dirty.add(node.page)
        self.cache[node.page] = node
        self.cache.move_to_end(node.page)
        self._evict()

    def writable(self, node: Node) -> Node:
        """`node`, moved to a fresh page first if a durable state refers to its page."""
        if node.page in self.fresh:
            return node
        old = node.page
        self.cache.pop(old, None)
        self.pending.append(old)
        node.page = self.allocate()
        return node

    def new_leaf(self, keys: list[bytes], values: list[bytes]) -> Node:
        node = leaf_node(self.allocate(), keys, values)
        self.put_dirty(node)
        return node

    def new_branch(self, keys: list[bytes], children: list[int]) -> Node:
        node = branch_node(self.allocate(), keys, children)
        self.put_dirty(node)
        return node

    def flush(self) -> None:
        """Write every dirty node (before a commit's fsync)."""
        cache = self.cache
        pages = []
        for page in self.dirty:
            node = cache[page]
            pages.append((page, self._encode(node)))
            node.dirty = False
        self.dirty.clear()
        self.file.write(pages)

    # -- overflow values ----------------------------------------------------------------

    def write_overflow(self, data: bytes) -> int:
        """Write `data` as a chain of fresh overflow pages; the first page number."""
        assert len(data) > 0
        chunks = [
            data[start : start + OVERFLOW_DATA_BYTES]
            for start in range(0, len(data), OVERFLOW_DATA_BYTES)
        ]
        pages = [self.allocate() for _ in chunks]
        following = [*pages[1:], 0]
        self.file.write(
            [
                (page, encode_overflow(page, chunk, next_page))
                for page, chunk, next_page in zip(pages, chunks, following, strict=True)
            ]
        )
        return pages[0]

    def read_overflow(self, first_page: int, length: int) -> bytes:
        parts = []
        page = first_page
        remaining = length
        while remaining > 0:
            if not 0 < page < self.page_count:
                raise CorruptionError(
                    f"page {page}: overflow chain leaves the {self.page_count} pages in use",
                    file=self.file.name,
                    byte_offset=page * PAGE_BYTES,
                )
            data = self.file.read(page)
            if data[4] != KIND_OVERFLOW:
                raise CorruptionError(
                    f"page {page}: kind {data[4]} where an overflow page was expected",
                    file=self.file.name,
                    byte_offset=page * PAGE_BYTES,
                )
            chunk, page = decode_overflow(data, page, self.file.name)
            parts.append(chunk)
            remaining -= len(chunk)
            if not chunk:
                break
        value = b"".join(parts)
        if len(value) != length:
            raise CorruptionError(
                f"page {first_page}: overflow chain holds {len(value)} bytes, expected {length}",
                file=self.file.name,
                byte_offset=first_page * PAGE_BYTES,
            )
        return value

    def overflow_pages(self, first_page: int) -> list[int]:
        """Every page of an overflow chain (for verification)."""
        pages = []
        page = first_page
        while page != 0:
            if page in pages or not 0 < page < self.page_count:
                raise CorruptionError(
                    f"page {page}: overflow chain loops or leaves the file",
                    file=self.file.name,
                    byte_offset=page * PAGE_BYTES,
                )
            pages.append(page)
            _, page = decode_overflow(self.file.read(page), page, self.file.name)
        return pages

    # -- tree operations ----------------------------------------------------------------

    def seek_ge(self, root: int, key: bytes) -> tuple[Node | None, int]:
        """The leaf and index of the first key >= `key` in the tree at `root`, or (None, 0)."""
        # The hot path of every get and scan: cache lookups are inlined.
        cache = self.cache
        cached = cache.get
        touch = cache.move_to_end
        hits = 0
        while True:
            node = cached(root)
            if node is None:
                node = self._load_missing(root)
            else:
                touch(root)
                hits += 1
            bound: bytes | None = None
            while not node.is_leaf:
                keys = node.keys
                index = bisect_right(keys, key)
                if index < len(keys):
                    bound = keys[index]
                child = node.children[index]
                node = cached(child)
                if node is None:
                    node = self._load_missing(child)
                else:
                    touch(child)
                    hits += 1
            index = bisect_left(node.keys, key)
            if index < len(node.keys):
                self.hits += hits
                return node, index
            if bound is None:
                self.hits += hits
                return None, 0
            # Every key of this leaf is < key: the answer opens the next leaf.
            assert bound > key
            key = bound

    def seek_lt(self, root: int, key: bytes) -> tuple[Node | None, int]:
        """The leaf and index of the last key < `key` in the tree at `root`, or (None, -1)."""
        load = self.load
        while True:
            node = load(root)
            bound: bytes | None = None
            while not node.is_leaf:
                keys = node.keys
                index = bisect_left(keys, key)
                if index > 0:
                    bound = keys[index - 1]
                node = load(node.children[index])
            index = bisect_left(node.keys, key) - 1
            if index >= 0:
                return node, index
            if bound is None:
                return None, -1
            assert bound < key
            key = bound

    def insert(self, root: int, key: bytes, value: bytes) -> int:
        """Insert (or replace) `key` in the tree at `root` (0: empty); the new root page."""
        return self._insert_one(root, key, value)[0]

    def insert_sorted(self, root: int, items: list[tuple[bytes, bytes]]) -> int:
        """Insert (or replace) `items`, ascending by key without repeats; the new root page.

        After a full descent for one key, the following keys that stay below the
        leaf's upper bound and fit go straight into the same leaf: a batch of
        neighbouring keys pays one descent per leaf, not one per key. Keys past the
        leaf's last one (ascending ids) are appended as a run: as many as fit, at once.
        """
        count = len(items)
        # ends[i]: content bytes of items[:i] as leaf entries, to size a run in one bisect.
        entry_sizes = map(
            add,
            map(add, map(len, map(_key, items)), map(len, map(_value, items))),
            repeat(LEAF_ENTRY_OVERHEAD_BYTES),
        )
        ends = list(accumulate(entry_sizes, initial=0))
        index = 0
        while index < count:
            key, value = items[index]
            root, leaf, high = self._insert_one(root, key, value)
            index += 1
            keys = leaf.keys
            values = leaf.values
            size = leaf.size
            slot = bisect_left(keys, key) + 1
            while index < count:
                if slot == len(keys):
                    # Every key left is past the leaf's last: append those below `high`
                    # that fit, in one go.
                    stop = count if high is None else bisect_left(items, high, index, key=_key)
                    fits = bisect_right(ends, ends[index] + NODE_CONTENT_BYTES - size) - 1
                    stop = min(stop, fits)
                    if stop > index:
                        run = items[index:stop]
                        assert run[0][0] > keys[-1], "items must ascend"
                        keys.extend([run_key for run_key, _ in run])
                        values.extend([run_value for _, run_value in run])
                        size += ends[stop] - ends[index]
                        index = stop
                    break  # the leaf is full, or the next key belongs to another leaf
                key, value = items[index]
                if high is not None and key >= high:
                    break
                grown = size + LEAF_ENTRY_OVERHEAD_BYTES + len(key) + len(value)
                if grown > NODE_CONTENT_BYTES:
                    break
                assert key > keys[slot - 1], "items must ascend"
                slot = bisect_left(keys, key, slot)
                if slot < len(keys) and keys[slot] == key:
                    size += len(value) - len(values[slot])
                    values[slot] = value
                else:
                    keys.insert(slot, key)
                    values.insert(slot, value)
                    size = grown
                slot += 1
                index += 1
            leaf.size = size
            assert size <= NODE_CONTENT_BYTES, size
            self.put_dirty(leaf)
        return root

    def _insert_one(self, root: int, key: bytes, value: bytes) -> tuple[int, Node, bytes | None]:
        """Insert (or replace) `key`: (new root page, the leaf that holds `key` now (after
        a split, the half that does), the bound every key of that leaf stays below or
        None)."""
        assert LEAF_ENTRY_OVERHEAD_BYTES + len(key) + len(value) <= ENTRY_BYTES_MAX
        if root == 0:
            leaf = self.new_leaf([key], [value])
            return leaf.page, leaf, None
        load = self.load
        path: list[Node] = []
        slots: list[int] = []
        rightmost = True
        high: bytes | None = None
        node = load(root)
        while not node.is_leaf:
            index = bisect_right(node.keys, key)
            if index < len(node.keys):
                rightmost = False
                high = node.keys[index]
            path.append(node)
            slots.append(index)
            node = load(node.children[index])
        old_page = node.page
        leaf = self.writable(node)
        keys = leaf.keys
        values = leaf.values
        index = bisect_left(keys, key)
        if index < len(keys) and keys[index] == key:
            leaf.size += len(value) - len(values[index])
            values[index] = value
        else:
            keys.insert(index, key)
            values.insert(index, value)
            leaf.size += LEAF_ENTRY_OVERHEAD_BYTES + len(key) + len(value)
        appended = rightmost and index == len(keys) - 1
        holder = leaf
        split: tuple[bytes, int] | None = None
        if leaf.size > NODE_CONTENT_BYTES:
            separator, right = self._split_leaf(leaf, appended)
            split = separator, right.page
            if key >= separator:
                holder = right  # its bound stays `high`
            else:
                high = separator
        self.put_dirty(leaf)
        assert high is None or holder.keys[-1] < high
        child_page = leaf.page
        moved = child_page != old_page
        for depth in range(len(path) - 1, -1, -1):
            if split is None and not moved:
                return root, holder, high  # changed in place: nothing above changes
            old_page = path[depth].page
            parent = self.writable(path[depth])
            slot = slots[depth]
            parent.children[slot] = child_page
            if split is not None:
                separator, right_page = split
                parent.keys.insert(slot, separator)
                parent.children.insert(slot + 1, right_page)
                parent.size += _BRANCH_ENTRY_OVERHEAD_BYTES + len(separator)
                appended = rightmost and slot == len(parent.keys) - 1
                split = (
                    self._split_branch(parent, appended)
                    if parent.size > NODE_CONTENT_BYTES
                    else None
                )
            self.put_dirty(parent)
            child_page = parent.page
            moved = child_page != old_page
        if split is not None:
            separator, right_page = split
            return self.new_branch([separator], [child_page, right_page]).page, holder, high
        return child_page, holder, high

    def _split_leaf(self, leaf: Node, appended: bool) -> tuple[bytes, Node]:
        """Split an overfull leaf: (separator, the new right leaf); `appended`: the new key
        is the largest of the tree."""
        keys = leaf.keys
        values = leaf.values
        count = len(keys)
        assert count >= 2, count
        if appended:
            # Ascending inserts: keep the left leaf full instead of half full forever.
            split_at = count - 1
        else:
            sizes = [
                LEAF_ENTRY_OVERHEAD_BYTES + len(k) + len(v)
                for k, v in zip(keys, values, strict=True)
            ]
            split_at = _balanced_split(sizes)
        right = self.new_leaf(keys[split_at:], values[split_at:])
        del keys[split_at:]
        del values[split_at:]
        leaf.size -= right.size
        assert leaf.size == _leaf_size(keys, values)
        assert right.size <= NODE_CONTENT_BYTES and leaf.size <= NODE_CONTENT_BYTES
        return _separator(keys[-1], right.keys[0]), right

    def _split_branch(self, branch: Node, appended: bool) -> tuple[bytes, int]:
        keys = branch.keys
        children = branch.children
        count = len(keys)
        assert count >= 3, count
        if appended:
            promoted = count - 2
        else:
            sizes = [_BRANCH_ENTRY_OVERHEAD_BYTES + len(k) for k in keys]
            # Promote the key just left of the balanced cut; both sides keep a key.
            promoted = min(max(_balanced_split(sizes), 1), count - 2)
        separator = keys[promoted]
        right = self.new_branch(keys[promoted + 1 :], children[promoted + 1 :])
        del keys[promoted:]
        del children[promoted + 1 :]
        branch.size = _branch_size(keys)
        assert branch.size <= NODE_CONTENT_BYTES and right.size <= NODE_CONTENT_BYTES
        return separator, right.page
