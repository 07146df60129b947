"""The projection store: versioned B+trees in a page file (issue 4, "tables").

Tables are projections of the log; this package keeps them. `open_store(path)`
opens (or creates) a store in a folder and returns a `Store`: named trees of
bytes keys to bytes values, where every version records the log position
that wrote it, so `get` and `scan` answer as of any past position
(`as_of`). Each `write_batch(position, log_hash, changes)` applies one log
record's changes atomically with recording `(position, log_hash)` as
applied; after a crash the store reopens at the last durable batch, never
part way through one, and `applied()` tells the caller where to resume
applying the log.

On disk (`pages.vstore`): 4 KiB pages, each with a CRC-32 checked on every
read (a bad page raises `CorruptionError` naming the file, page and byte
offset; nothing is repaired); copy-on-write B+trees, one per tree name,
found through a catalog tree; a free list of pages released by
copy-on-write; and four superblock copies, written two and two with an
fsync between, so any three can be lost. Decoded pages live in a bounded
LRU cache (`page_cache_pages`).

Limits: keys up to `KEY_BYTES_MAX` (1,000) bytes, values up to
`VALUE_BYTES_MAX` (16 MiB); a value whose leaf entry would exceed half a
page (about 2,000 bytes) is kept in a chain of overflow pages. Tree names are
1..255 UTF-8 bytes. Versions are never removed.

`MemoryStore` is the in-memory reference model with the same contract, and
`VersionedStore` is the protocol both meet.
"""

from verity.store._api import KEY_BYTES_MAX as KEY_BYTES_MAX
from verity.store._api import TREE_NAME_BYTES_MAX as TREE_NAME_BYTES_MAX
from verity.store._api import VALUE_BYTES_MAX as VALUE_BYTES_MAX
from verity.store._api import Change as Change
from verity.store._api import StoreStats as StoreStats
from verity.store._api import VersionedStore as VersionedStore
from verity.store._memory import MemoryStore as MemoryStore
from verity.store._store import Store as Store
from verity.store._store import open_store as open_store

__all__ = [
    "KEY_BYTES_MAX",
    "TREE_NAME_BYTES_MAX",
    "VALUE_BYTES_MAX",
    "Change",
    "MemoryStore",
    "Store",
    "StoreStats",
    "VersionedStore",
    "open_store",
]
